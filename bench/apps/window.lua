-- Workload "window" (qhost): per key, 1 s tumbling windows with the count,
-- mean and sum of "v", produced when they close (final), with the same key.
-- The same as bench/apps/window.py.
--   qhost run window.lua BROKER INPUT OUTPUT GROUP STATE_DIR
local qhost = require("qhost")
local broker, input_name, output_name, group, state_dir = unpack(arg)

local app = qhost.Application{ broker_address = broker, consumer_group = group,
  auto_offset_reset = "earliest", state_dir = state_dir, loglevel = "WARNING" }
local config = qhost.TopicConfig{ num_partitions = 8, replication_factor = 1 }
local events = app:topic(input_name, { config = config })
local out = app:topic(output_name, { config = config })

local sdf = app:dataframe(events)
sdf = sdf:tumbling_window{ duration_ms = 1000 }
  :agg{ count = qhost.agg.Count(), mean = qhost.agg.Mean("v"), sum = qhost.agg.Sum("v") }
  :final()
sdf:to_topic(out)
app:run()
