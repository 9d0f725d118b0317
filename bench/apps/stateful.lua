-- Workload "stateful" (qhost): per key a running count in state, produced
-- to the output topic as a JSON number with the same key. The same as
-- bench/apps/stateful.py.
--   qhost run stateful.lua BROKER INPUT OUTPUT GROUP STATE_DIR
local qhost = require("qhost")
local broker, input_name, output_name, group, state_dir = unpack(arg)

local app = qhost.Application{ broker_address = broker, consumer_group = group,
  auto_offset_reset = "earliest", state_dir = state_dir, loglevel = "WARNING" }
local config = qhost.TopicConfig{ num_partitions = 8, replication_factor = 1 }
local events = app:topic(input_name, { config = config })
local out = app:topic(output_name, { config = config })

local sdf = app:dataframe(events)
sdf = sdf:apply(function(_, state)
  local n = state:get("count", 0) + 1
  state:set("count", n)
  return n
end, { stateful = true })
sdf:to_topic(out)
app:run()
