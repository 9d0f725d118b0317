-- The input of the counting pipeline: n JSON messages {"k": key, "v": i}
-- (i = from..from+n-1, from 1 by default) over `keys` keys, produced by a
-- source to topic `topic` with `partitions` partitions, kept forever
-- (retention.ms=-1).
--   qhost run fill.lua topic=T n=200000 [from=1] keys=500 partitions=4
local qhost = require("qhost")
local a = {}
for _, kv in ipairs(arg) do local k, v = kv:match("^([^=]+)=(.*)$"); a[k] = v end

local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  for i = self.from, self.from + self.n - 1 do
    local k = "key" .. (i % self.keys)
    self:produce{ key = k, value = '{"k":"' .. k .. '","v":' .. i .. '}' }
  end
end

local app = qhost.Application{}
app:add_source(Fill{ name = a.topic, n = tonumber(a.n), from = tonumber(a.from or "1"),
    keys = tonumber(a.keys or "500") },
  app:topic(a.topic, { config = qhost.TopicConfig{ num_partitions = tonumber(a.partitions or "4"),
    extra_config = { ["retention.ms"] = "-1" } } }))
app:run()
