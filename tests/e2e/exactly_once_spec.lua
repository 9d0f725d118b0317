-- Exactly-once on a real Kafka: a pipeline counting per key and copying
-- each input, SIGKILLed at random points and restarted, leaves in its output
-- (read read_committed) each input exactly once, with exact counts. On the
-- embedded broker, which cannot isolate transactions, it refuses to start.
local H = require("helper")
local json = require("qhost").json
local topic_reader = require("qhost.kafka.topic_reader")

local FILL = [[
local qhost = require("qhost")
local app = qhost.Application{}
local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  for i = self.first, self.first + self.n - 1 do
    local k = "key" .. (i % 17)
    self:produce{ key = k, value = '{"k":"' .. k .. '","v":' .. i .. '}' }
  end
end
app:add_source(Fill{ name = arg[1], n = tonumber(arg[2]), first = tonumber(arg[3] or "1") },
  app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = 2 } }))
app:run()
]]

-- Counts per key in state and copies each input with its count, slowly
-- enough to be killed mid-way. Transactions of a killed instance expire
-- after 10 s (transaction.timeout.ms) and its group membership after 6 s,
-- so the next one is not held up long.
local WORKER = [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = arg[2], auto_offset_reset = "earliest", state_dir = arg[4],
  processing_guarantee = "exactly-once", commit_interval = 0.3,
  consumer_extra_config = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 },
  producer_extra_config = { ["transaction.timeout.ms"] = 10000 } }
local sdf = app:dataframe(app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = 2 } }))
local done = 0
sdf = sdf:apply(function(v, state)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  done = done + 1
  if done % 100 == 0 then qhost.sleep(0.01) end
  if done % 2000 == 0 then io.stderr:write("PROGRESS ", done, "\n") end
  return { k = v.k, v = v.v, n = n }
end, { stateful = true })
sdf:to_topic(app:topic(arg[3], { config = qhost.TopicConfig{ num_partitions = 2 } }))
app:run{ timeout = tonumber(arg[5] or "600") }
]]

-- The output, read read_committed, holds inputs 1..n each exactly once, and
-- per key the counts come 1, 2, 3, ... in order: state and output agree.
local function check_output(output, n)
  local seen, dups, counts, bad, first_bad = {}, 0, {}, 0, {}
  assert(topic_reader.read_to_end({ ["bootstrap.servers"] = H.broker, ["isolation.level"] = "read_committed" },
    output, { timeout = 120, on_record = function(rec)
      local v = json.decode(rec.value)
      if seen[v.v] then dups = dups + 1 end
      seen[v.v] = true
      local want = (counts[v.k] or 0) + 1
      if v.n ~= want then
        bad = bad + 1
        if #first_bad < 10 then
          first_bad[#first_bad + 1] = string.format("key %s input %d: count %d, expected %d (partition %d offset %d)",
            v.k, v.v, v.n, want, rec.partition, rec.offset)
        end
      end
      counts[v.k] = v.n
    end }))
  local missing = 0
  for i = 1, n do if not seen[i] then missing = missing + 1 end end
  assert.are.equal(0, missing, "inputs missing from the output")
  assert.are.equal(0, dups, "inputs in the output more than once")
  assert.are.equal(0, bad, "counts out of step: " .. table.concat(first_bad, "; "))
end

describe("exactly-once #" .. H.mode, function()
  it("refuses the embedded broker at start, saying why", function()
    if H.mode ~= "embedded" then pending("the embedded broker only") return end
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local app = qhost.Application{ processing_guarantee = "exactly-once" }
app:dataframe(app:topic("t")):print{}
app:run()
]])
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find('processing_guarantee = "exactly-once" needs a real Kafka', 1, true), r.stderr)
  end)

  it("SIGKILLed at 5 random points and restarted: each input exactly once in the output, counts exact", function()
    if H.mode ~= "kafka" then pending("transactions that isolate: real Kafka") return end
    local N = 100000
    local dir = H.tmpdir()
    local input, output, group = H.unique("eos-in"), H.unique("eos-out"), H.unique("eos")
    H.write(dir .. "/fill.lua", FILL)
    H.write(dir .. "/worker.lua", WORKER)
    local r = H.run(dir, "fill.lua", { args = { input, tostring(N) }, timeout = 180 })
    assert.are.equal(0, r.code, r.stderr)
    math.randomseed(os.time())
    local args = { input, group, output, dir .. "/state" }
    for kill = 1, 5 do
      local p = H.start_guarded(finally, dir, "worker.lua", { args = args })
      -- Some thousands of messages into this run, at a random point.
      local at = 2000 * math.random(1, 3)
      assert.is_true(H.eventually(function() return p:stderr():find("PROGRESS " .. at .. "\n", 1, true) ~= nil end,
        180), p:stderr())
      p:signal("KILL")
      p:wait(30)
    end
    r = H.run(dir, "worker.lua", { args = { input, group, output, dir .. "/state", "15" }, timeout = 600 })
    assert.are.equal(0, r.code, r.stderr)

    check_output(output, N)
  end)

  -- An instance killed mid-checkpoint leaves its transaction open on the
  -- changelog until the broker aborts it (after its transaction.timeout.ms).
  -- A recovery that meets it waits for it, says so, and then has every
  -- change committed before and after it. (Before: the read ended at the
  -- open transaction, and lost what a successor had committed after it.)
  it("a recovery that meets an open transaction on its changelog waits for it, then has every committed change",
    function()
    if H.mode ~= "kafka" then pending("transactions that isolate: real Kafka") return end
    local clients = require("qhost.kafka.clients")
    local dir = H.tmpdir()
    local input, output, group = H.unique("eos-open-in"), H.unique("eos-open-out"), H.unique("eos-open")
    H.write(dir .. "/fill.lua", FILL)
    H.write(dir .. "/worker.lua", WORKER)
    local args = { input, group, output, dir .. "/state", "5" }
    local r = H.run(dir, "fill.lua", { args = { input, "300", "1" }, timeout = 180 })
    assert.are.equal(0, r.code, r.stderr)
    r = H.run(dir, "worker.lua", { args = args, timeout = 180 })
    assert.are.equal(0, r.code, r.stderr)

    -- The killed instance's open transaction, on both changelog partitions.
    local killed = assert(clients.producer({ ["bootstrap.servers"] = H.broker,
      ["transactional.id"] = H.unique("killed"), ["transaction.timeout.ms"] = 300000 },
      { flush_reports_failures = false }))
    finally(function() killed:close() end)
    assert.is_true(killed:init_transactions(30))
    assert.is_true(killed:begin_transaction())
    local changelog = string.format("changelog__%s--%s--default", group, input)
    for p = 0, 1 do assert(killed:produce(changelog, "1000000", 'key0|"n"', p)) end
    assert(killed:flush(30))

    -- More input, and an instance whose state must come back from the
    -- changelog in full (its local store is gone).
    r = H.run(dir, "fill.lua", { args = { input, "300", "301" }, timeout = 180 })
    assert.are.equal(0, r.code, r.stderr)
    os.execute("rm -rf " .. H.quote(dir .. "/state"))
    local p = H.start_guarded(finally, dir, "worker.lua", { args = args })
    assert.is_true(H.eventually(function()
      return p:stderr():find("behind a transaction still open", 1, true) ~= nil end, 90), p:stderr())
    assert.is_true(killed:abort_transaction(30))
    r = p:wait(180)
    assert.truthy(r, "the worker did not end")
    assert.are.equal(0, r.code, r.stderr)
    check_output(output, 600)
  end)
end)
