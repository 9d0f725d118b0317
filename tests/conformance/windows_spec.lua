-- Conformance with Quix Streams, windows on a real Kafka: one input topic
-- of 2 partitions (several keys, event times out of order, some late)
-- through the same window pipelines in Quix (apps/windows.py) and qhost
-- (apps/windows.lua); every case's output topic must hold the same records
-- per key, in order: key, value (compared as JSON values, key order
-- included) and timestamp (the window start).
-- Needs QHOST_BROKER (a real Kafka) and QHOST_QUIX_PYTHON (a Python with
-- quixstreams, tests/quix-venv.sh makes one).
local H = require("helper")
local codec = require("qhost.codec")
local json = require("qhost").json
local topic_reader = require("qhost.kafka.topic_reader")

local HERE = (os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/apps/"
local PYTHON = os.getenv("QHOST_QUIX_PYTHON")

local CASES = { "tumbling-sum", "tumbling-agg", "hopping-mean", "sliding-count", "collect-partition",
  "tumbling-count", "hopping-count", "sliding-count-window", "trigger" }

-- The input: n messages over 6 keys, one every 200 ms of event time from
-- a base a few minutes before now (Kafka keeps records near now), some
-- 1.5 s back in time (out of order, late for some windows) and some 8 s
-- back (late for most), with "x" missing now and then.
local FILL = [[
local qhost = require("qhost")
local app = qhost.Application{}
local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  local keys = { "a", "b", "c", "d", "e", "f" }
  for i = 1, self.n do
    local k = keys[(i * 7) % 6 + 1]
    local ts = self.base + i * 200
    if i % 17 == 0 then ts = ts - 1500 end
    if i % 41 == 0 then ts = ts - 8000 end
    local x = i % 5 == 0 and "" or (',"x":' .. (i * 13) % 50)
    self:produce{ key = k, value = '{"k":"' .. k .. '","v":' .. (i * 37) % 100 .. x .. '}', timestamp = ts }
  end
end
app:add_source(Fill{ name = arg[1], n = tonumber(arg[2]), base = tonumber(arg[3]) },
  app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = 2 } }))
app:run()
]]

-- Output records per key, in order: key -> list of { value, timestamp }.
local function per_key(topic)
  local by_key = {}
  assert(topic_reader.read_to_end({ ["bootstrap.servers"] = H.broker }, topic, { on_record = function(r)
    by_key[r.key] = by_key[r.key] or {}
    table.insert(by_key[r.key], { json.decode(r.value), r.timestamp })
  end }))
  return by_key
end

-- Deep equality with key order (an empty object and an empty array alike).
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  local ka, kb = codec.keys_of(a), codec.keys_of(b)
  if ka and kb and #ka > 0 and #kb > 0 then
    if #ka ~= #kb then return false end
    for i = 1, #ka do
      if ka[i] ~= kb[i] or not same(a[ka[i]], b[kb[i]]) then return false end
    end
    return true
  end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

describe("conformance with Quix Streams #" .. H.mode, function()
  it("windows: every case gives the same records per key (key, value, timestamp) over 2 partitions", function()
    if H.mode ~= "kafka" or not PYTHON then pending("needs a real Kafka and Quix Streams") return end
    local dir = H.tmpdir()
    local input = H.unique("conf-win-in")
    local N = 600
    local base = (math.floor(os.time() / 60) - 10) * 60000
    H.write(dir .. "/fill.lua", FILL)
    local r = H.run(dir, "fill.lua", { args = { input, tostring(N), string.format("%d", base) }, timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)

    local quix_out, qhost_out = H.unique("conf-win-quix"), H.unique("conf-win-qhost")
    local cmd = string.format("cd %s && PYTHONWARNINGS=ignore timeout -s KILL 240 %s %s %s %s %s %s %s 2>&1; echo rc=$?",
      H.quote(dir), H.quote(PYTHON), H.quote(HERE .. "windows.py"), H.broker, input, quix_out, H.unique("g-quix"),
      H.quote(dir .. "/quix-state"))
    local out = H.exec(cmd)
    assert.truthy(out:find("rc=0\n$"), out)
    r = H.run(dir, HERE .. "windows.lua", { args = { H.broker, input, qhost_out, H.unique("g-qhost"),
      dir .. "/qhost-state" }, timeout = 240 })
    assert.are.equal(0, r.code, r.stderr)

    for _, case in ipairs(CASES) do
      local quix, ours = per_key(quix_out .. "-" .. case), per_key(qhost_out .. "-" .. case)
      local keys, records = 0, 0
      for k, list in pairs(quix) do
        keys = keys + 1
        records = records + #list
        local mine = ours[k] or {}
        assert.are.equal(#list, #mine, case .. ": key " .. k .. ": record counts")
        for i, rec in ipairs(list) do
          assert.is_true(same(rec[1], mine[i][1]) and rec[2] == mine[i][2], string.format(
            "%s: key %s, record %d: Quix %s at %d, qhost %s at %s", case, k, i, json.encode(rec[1]), rec[2],
            json.encode(mine[i][1]), tostring(mine[i][2])))
        end
      end
      for k in pairs(ours) do assert.truthy(quix[k], case .. ": qhost has key " .. k .. " that Quix has not") end
      assert.are.equal(6, keys, case .. ": keys")
      assert.is_true(records >= 6, case .. ": only " .. records .. " records")
      if os.getenv("QHOST_VERBOSE") then io.stderr:write(case, ": ", records, " records\n") end
    end
  end)
end)
