-- Conformance with Quix Streams, windows on a real Kafka: one input topic
-- of 2 partitions (several keys, event times out of order, some late)
-- through the same window pipelines in Quix (apps/windows.py) and qhost
-- (apps/windows.lua); every case's output topic must hold the same records
-- per key, in order: key, value (compared as JSON values, key order
-- included) and timestamp (the window start).
-- Needs QHOST_BROKER (a real Kafka) and QHOST_QUIX_PYTHON (a Python with
-- quixstreams, tests/quix-venv.sh makes one).
local H = require("helper")
local compare = dofile((os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/compare.lua")

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
      local keys, records = compare.topics(case, quix_out .. "-" .. case, qhost_out .. "-" .. case)
      assert.are.equal(6, keys, case .. ": keys")
      assert.is_true(records >= 6, case .. ": only " .. records .. " records")
    end
  end)
end)
