-- No silent loss: a fast source and a slow pipeline, every message
-- processed, on both brokers (on the embedded one, flow control holds the
-- source to a budget ahead of the app). When loss happens anyway (here: the
-- app floods a topic it reads itself, which flow control does not cover),
-- the app stops with the error and a non-zero exit, never exit 0.
local H = require("helper")

-- QHOST_TEST_FLOW_MESSAGES lowers the count where the binary is slow
-- (the ASan+UBSan stage); the figure of the issue is 1,000,000.
local COUNT = tonumber(os.getenv("QHOST_TEST_FLOW_MESSAGES") or "") or 1000000

describe("flow control #" .. H.mode, function()
  it("a fast source into a slower pipeline: every message processed, once each in order per key", function()
    local dir = H.tmpdir()
    local topic = H.unique("fast")
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local Fast = qhost.sources.Source:extend("Fast")
function Fast:run()
  -- ~120-byte JSON values, as fast as the producer takes them
  local pad = string.rep("x", 80)
  for i = 1, self.count do
    self:produce{ key = "k" .. (i %% 16), value = '{"i":' .. i .. ',"pad":"' .. pad .. '"}' }
  end
end
local topic = app:topic(%q, { config = qhost.TopicConfig{ num_partitions = 4 } })
local sdf = app:dataframe{ topic = topic, source = Fast{ name = %q, count = %d } }
local seen, dup, order, last = {}, 0, 0, {}
local n = 0
sdf:update(function(v, key)
  -- slower than the source: some work per message
  local x = 0
  for j = 1, 300 do x = x + j %% 7 end
  if seen[v.i] then dup = dup + 1 end
  seen[v.i] = true
  if last[key] and v.i <= last[key] then order = order + 1 end
  last[key] = v.i
  n = n + 1
end, { metadata = true })
app:run{ count = %d, timeout = 60 }
local missing = 0
for i = 1, %d do if not seen[i] then missing = missing + 1 end end
print(n, missing, dup, order)
]], H.unique("g"), topic, topic, COUNT, COUNT, COUNT))
    local r = H.run(dir, "app.lua", { timeout = 900 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(COUNT .. "\t0\t0\t0\n", r.stdout)
    assert.falsy(r.stderr:find("DATA LOST", 1, true), r.stderr)
  end)

  it("stops with an error and a non-zero exit when the embedded broker drops data anyway", function()
    if H.mode ~= "embedded" then pending("the embedded broker's retention") return end
    local dir = H.tmpdir()
    local topic, flood = H.unique("seed"), H.unique("flood")
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local Seed = qhost.sources.Source:extend("Seed")
function Seed:run()
  for i = 1, 400 do self:produce{ value = '{"i":' .. i .. '}' } end
end
local sdf = app:dataframe{ topic = app:topic(%q), source = Seed{ name = %q } }
-- Each input becomes 200 messages of 2 KB on a topic this app also reads,
-- slowly: 160 MB for a broker that keeps 5 MiB per partition.
local out = app:topic(%q)
local blob = string.rep("y", 2000)
sdf = sdf:apply(function(v)
  local list = {}
  for j = 1, 200 do list[j] = { i = v.i, j = j, blob = blob } end
  return list
end, { expand = true })
sdf:to_topic(out)
app:dataframe(out):update(function() local x = 0 for k = 1, 20000 do x = x + k end end)
app:run()
]], H.unique("g"), topic, topic, flood))
    local r = H.run(dir, "app.lua", { timeout = 300 })
    assert.are_not.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("DATA LOST: the embedded broker dropped messages", 1, true), r.stderr)
    assert.truthy(r.stderr:find("of topic '" .. flood .. "' partition 0", 1, true), r.stderr)
  end)
end)
