-- What the conformance specs share: reading an output topic per key, and
-- comparing Quix's records with qhost's. Loaded with dofile by the specs
-- (not a spec itself: busted runs *_spec.lua only).
local H = require("helper")
local assert = require("luassert")
local codec = require("qhost.codec")
local json = require("qhost").json
local topic_reader = require("qhost.kafka.topic_reader")

local compare = {}

-- Output records per key, in order: key -> list of { value, timestamp }.
function compare.per_key(topic)
  local by_key = {}
  assert(topic_reader.read_to_end({ ["bootstrap.servers"] = H.broker }, topic, { on_record = function(r)
    by_key[r.key] = by_key[r.key] or {}
    table.insert(by_key[r.key], { json.decode(r.value), r.timestamp })
  end }))
  return by_key
end

-- Deep equality with key order: JSON objects must list the same keys in
-- the same order (an empty object and an empty array are alike).
function compare.same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  local ka, kb = codec.keys_of(a), codec.keys_of(b)
  if ka and kb and #ka > 0 and #kb > 0 then
    if #ka ~= #kb then return false end
    for i = 1, #ka do
      if ka[i] ~= kb[i] or not compare.same(a[ka[i]], b[kb[i]]) then return false end
    end
    return true
  end
  for k, v in pairs(a) do if not compare.same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- Asserts that two output topics hold the same records per key (value and
-- timestamp, in order), and no key only one of them has. what: the case's
-- name for the messages. Returns the number of keys and of records.
function compare.topics(what, quix_topic, qhost_topic)
  local quix, ours = compare.per_key(quix_topic), compare.per_key(qhost_topic)
  local keys, records = 0, 0
  for k, list in pairs(quix) do
    keys = keys + 1
    records = records + #list
    local mine = ours[k] or {}
    assert.are.equal(#list, #mine, what .. ": key " .. k .. ": record counts")
    for i, rec in ipairs(list) do
      assert.is_true(compare.same(rec[1], mine[i][1]) and rec[2] == mine[i][2], string.format(
        "%s: key %s, record %d: Quix %s at %d, qhost %s at %s", what, k, i, json.encode(rec[1]), rec[2],
        json.encode(mine[i][1]), tostring(mine[i][2])))
    end
  end
  for k in pairs(ours) do assert.truthy(quix[k], what .. ": qhost has key " .. k .. " that Quix has not") end
  if os.getenv("QHOST_VERBOSE") then io.stderr:write(what, ": ", records, " records\n") end
  return keys, records
end

return compare
