-- Scenario 6, odd messages: one odd message amid 200 ordinary ones
-- (apps/odd_fill.lua) through the counting pipeline copying each value
-- with its headers (apps/counter.lua copy=true), and a topic of 100
-- partitions. Each must be handled (every message out, counts exact) or
-- refused with an error naming the message (topic, partition, offset),
-- nothing committed past it; never a crash (death by a signal), never a
-- stalled app (still running when its work should be done).
local L = require("lib")
local json = require("qhost").json

local MB = 1024 * 1024
local CASES = {
  { "a 10 MB message", "big" },
  { "a 10 MB message, limits raised", "big", { max_bytes = 20 * MB } },
  { "a 1 MB header", "header" },
  { "an empty key", "empty_key" },
  { "an empty value", "empty_value" },
  { "a null value (tombstone)", "null_value" },
}

-- Where the odd message (v = 101, or no JSON) is in the input.
local function find_odd(broker, topic)
  local at
  L.read_topic(broker, topic, function(r)
    local v = r.value and json.decode(r.value)
    if type(v) ~= "table" or v.v == 101 then at = { partition = r.partition, offset = r.offset } end
  end)
  return at
end

local function committed_offset(broker, group, topic, partition)
  local clients = require("qhost.kafka.clients")
  local c = assert(clients.consumer({ ["bootstrap.servers"] = broker, ["group.id"] = group }))
  local got = assert(c:committed({ { topic = topic, partition = partition } }, 30))
  c:close()
  return got[1].offset
end

-- Runs the pipeline on `input`; returns a row (without its scenario name).
local function judge(env, dir, input, extra, restarts)
  local output, group = L.unique("odd-out"), L.unique("odd")
  local args = { input = input, output = output, group = group, state_dir = dir .. "/state-" .. group, idle = 8,
    copy = true }
  for k, v in pairs(extra or {}) do args[k] = v end
  local code, err, why
  for _ = 0, restarts or 0 do
    code, err, _, why = L.run(dir, "counter.lua", { env = env.app_env, args = args, timeout = 300 })
    if code ~= 0 then break end
  end
  local r = L.check_counts(env.broker, input, output, false)
  local row = { runs = 1 + (restarts or 0), input = r.input, output = r.output }
  if code == nil then
    row.ok, row.verdict, row.note = false, "FAIL (stalled)", why
  elseif code > 128 then
    row.ok, row.verdict, row.note = false, "FAIL (crashed)", "killed by signal " .. (code - 128)
  elseif code == 0 then
    row.lost, row.duplicated = r.lost, r.duplicated
    row.state = r.state_wrong == 0 and "exact" or (r.state_wrong .. " wrong")
    row.ok = r.lost == 0 and r.duplicated == 0 and r.state_wrong == 0
    row.verdict = row.ok and "pass (handled)" or "FAIL"
    row.note = "handled: every message out, counts exact"
  else
    -- Refused: the error must name the odd message, and nothing past it
    -- may be committed.
    local odd = find_odd(env.broker, input)
    local said = L.last_error(err) or ""
    local where = odd and string.format("topic '%s' partition %d offset %d", input, odd.partition, odd.offset)
    local named = where and said:find(where, 1, true) ~= nil
    local at = odd and committed_offset(env.broker, group, input, odd.partition)
    local safe = at ~= nil and at <= odd.offset
    row.ok = named and safe
    row.verdict = row.ok and "pass (refused)" or "FAIL"
    row.note = string.format("refused: \"%s\"%s%s", L.replace(said, input, "<topic>"):sub(1, 220),
      named and "" or " (does not name the message)",
      safe and "" or string.format(" (offset %s committed past it)", tostring(at)))
  end
  return row
end

return function(env)
  local dir = L.mkdir(env.work .. "/odd_messages")
  local rows = {}
  for _, case in ipairs(CASES) do
    local input = L.unique("odd-" .. case[2]:gsub("_", "-"))
    local code, err = L.run(dir, "odd_fill.lua", { env = env.app_env, args = { topic = input, case = case[2] } })
    if code ~= 0 then error("producing the odd input failed: " .. err, 0) end
    local row = judge(env, dir, input, case[3])
    row.scenario = "6. Odd messages: " .. case[1]
    rows[#rows + 1] = row
  end
  -- 100 partitions: two runs (the second recovers 100 store partitions),
  -- each on half of the input.
  local input = L.unique("odd-p100")
  local N = env.short and 5000 or 20000
  local function fill(from)
    local code, err = L.run(dir, "fill.lua", { env = env.app_env,
      args = { topic = input, n = N / 2, from = from, keys = 500, partitions = 100 } })
    if code ~= 0 then error("filling the input failed: " .. err, 0) end
  end
  fill(1)
  local output, group = L.unique("odd-out"), L.unique("odd")
  local args = { input = input, output = output, group = group, state_dir = dir .. "/state-p100", idle = 8 }
  local notes = {}
  for half = 1, 2 do
    if half == 2 then fill(N / 2 + 1) end
    local code, err, _, why = L.run(dir, "counter.lua", { env = env.app_env, args = args, timeout = 600 })
    if code ~= 0 then notes[#notes + 1] = string.format("run %d: %s", half, why or L.last_error(err) or code) end
  end
  local r = L.check_counts(env.broker, input, output, false)
  rows[#rows + 1] = { scenario = "6. Odd messages: a topic of 100 partitions", runs = 2, input = r.input,
    output = r.output, lost = r.lost, duplicated = r.duplicated,
    state = r.state_wrong == 0 and "exact" or (r.state_wrong .. " wrong"),
    ok = #notes == 0 and r.lost == 0 and r.duplicated == 0 and r.state_wrong == 0,
    note = "stateful, two runs (the second recovers 100 store partitions)"
      .. (#notes > 0 and ("; " .. table.concat(notes, "; ")) or "") }
  for _, row in ipairs(rows) do
    if row.ok and not row.verdict then row.verdict = "pass (handled)" end
  end
  return rows
end
