-- Workload 1 (qhost): JSON in, filter about half out on a field, add a
-- computed field, JSON out. Mirrors bench/apps/pipeline.py line for line.
--   qhost run pipeline.lua BROKER INPUT OUTPUT GROUP
local qhost = require("qhost")
local broker, input, output, group = arg[1], arg[2], arg[3], arg[4]

local app = qhost.Application{
  broker_address = broker, consumer_group = group,
  auto_offset_reset = "earliest", loglevel = "WARNING",
}
local config = qhost.TopicConfig{ num_partitions = 8, replication_factor = 1 }
local orders = app:topic(input, { config = config })
local out = app:topic(output, { config = config })

local floor = math.floor
local sdf = app:dataframe(orders)
sdf = sdf:filter(function(order) return order.kind == "buy" end)
sdf = sdf:apply(function(order)
  order.total = floor(order.qty * order.price * 100 + 0.5)
  return order
end)
sdf:to_topic(out)
app:run()
