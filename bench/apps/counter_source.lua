-- Workloads 3 and 4 (qhost): a custom Lua source producing LIMIT small JSON
-- messages (key "<i>", value {"n":<i>}) as fast as it can.
--   qhost run counter_source.lua BROKER TOPIC LIMIT            standalone source
--   qhost run counter_source.lua BROKER TOPIC LIMIT OUTPUT GROUP
--        also a dataframe on TOPIC copying every message to OUTPUT (workload 4)
local qhost = require("qhost")
local broker, topic_name, limit, output, group = arg[1], arg[2], tonumber(arg[3]), arg[4], arg[5]

local Counter = qhost.sources.Source:extend("Counter")
function Counter:run()
  local i = 0
  while self.running and i < self.limit do
    local msg = self:serialize{ key = tostring(i), value = { n = i } }
    self:produce{ key = msg.key, value = msg.value }
    i = i + 1
  end
end

local app = qhost.Application{
  broker_address = broker, consumer_group = group or "bench-counter",
  auto_offset_reset = "earliest", loglevel = "WARNING",
}
local topic = app:topic(topic_name, {
  key_serializer = "string", value_serializer = "json",
  config = qhost.TopicConfig{ num_partitions = 1, replication_factor = 1 },
})
local counter = Counter{ name = "counter", limit = limit }
if output then
  local out = app:topic(output, { config = qhost.TopicConfig{ num_partitions = 1, replication_factor = 1 } })
  local sdf = app:dataframe{ topic = topic, source = counter }
  sdf:to_topic(out)
else
  app:add_source(counter, topic)
end
app:run()
