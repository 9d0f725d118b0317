-- Sinks flushed at checkpoints: CSVSink's file, and a failing flush that
-- aborts the checkpoint so the messages are processed again.
local H = require("helper")

local function script(group, topic, sink_code)
  return string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local Counter = qhost.sources.Source:extend("Counter")
function Counter:run()
  for i = 0, 9 do self:produce{ key = "k" .. i, value = '{"n":' .. i .. '}' } end
end
local topic = app:topic(%q, { key_deserializer = "string" })
local sdf
if os.getenv("WITH_SOURCE") then sdf = app:dataframe{ topic = topic, source = Counter{ name = %q } }
else sdf = app:dataframe(topic) end
%s
app:run{ count = 10, timeout = 20 }
]], group, topic, topic, sink_code)
end

describe("sinks #" .. H.mode, function()
  it("CSVSink writes key, value, timestamp, topic, partition and offset of every message", function()
    local dir = H.tmpdir()
    local topic = H.unique("csvsink")
    H.write(dir .. "/app.lua", script(H.unique("g"), topic, 'sdf:sink(qhost.sinks.CSVSink{ path = "out.csv" })'))
    local r = H.run(dir, "app.lua", { env = { WITH_SOURCE = "1" } })
    assert.are.equal(0, r.code, r.stderr)
    local text = H.read(dir .. "/out.csv")
    -- Lines end with \r\n and values are json.dumps's text, as Quix's CSVSink writes them.
    local lines = {}
    for line in text:gmatch("([^\r\n]*)\r\n") do lines[#lines + 1] = line end
    assert.are.equal(11, #lines)
    assert.are.equal("key,value,timestamp,topic,partition,offset", lines[1])
    for i = 0, 9 do
      local key, value, ts, t, p, off = lines[i + 2]:match('^([^,]*),"(.*)",(%d+),([^,]+),(%d+),(%d+)$')
      assert.are.equal("k" .. i, key)
      assert.are.equal('{""n"": ' .. i .. '}', value)
      assert.is_true(tonumber(ts) > 1.6e12)
      assert.are.equal(topic, t)
      assert.are.equal("0", p)
      assert.are.equal(tostring(i), off)
    end
  end)

  it("a failing flush aborts the checkpoint: nothing is committed and the messages come again", function()
    local dir = H.tmpdir()
    local topic, group = H.unique("failsink"), H.unique("g")
    H.write(dir .. "/fail.lua", script(group, topic, [[
local Failing = qhost.sinks.BatchingSink:extend("Failing")
function Failing:write(batch) error("the database is down") end
sdf:sink(Failing{})
]]))
    local r = H.run(dir, "fail.lua", { env = { WITH_SOURCE = "1" } })
    assert.are.equal(1, r.code, r.stderr)
    assert.truthy(r.stderr:find("checkpoint aborted, nothing committed: Failing failed to flush topic '"
      .. topic:gsub("%-", "%%-") .. "' partition 0: .*the database is down"), r.stderr)
    if H.mode ~= "kafka" then return end   -- the embedded broker is gone with its process
    -- Same group again: all ten come again, as nothing was committed.
    H.write(dir .. "/again.lua", script(group, topic, 'sdf:sink(qhost.sinks.CSVSink{ path = "again.csv" })'))
    local r2 = H.run(dir, "again.lua")
    assert.are.equal(0, r2.code, r2.stderr)
    local _, rows = H.read(dir .. "/again.csv"):gsub("\n", "")
    assert.are.equal(11, rows)
  end)
end)
