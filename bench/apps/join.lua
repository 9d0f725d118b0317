-- Workload "join" (qhost): each message of LEFT joined as-of with its key's
-- latest metadata in RIGHT (inner, keep-left), produced to the output topic
-- with the same key. The same as bench/apps/join.py.
--   qhost run join.lua BROKER LEFT RIGHT OUTPUT GROUP STATE_DIR
local qhost = require("qhost")
local broker, left_name, right_name, output_name, group, state_dir = unpack(arg)

local app = qhost.Application{ broker_address = broker, consumer_group = group,
  auto_offset_reset = "earliest", state_dir = state_dir, loglevel = "WARNING" }
local config = qhost.TopicConfig{ num_partitions = 8, replication_factor = 1 }
local left = app:dataframe(app:topic(left_name, { config = config }))
local right = app:dataframe(app:topic(right_name, { config = config }))
local out = app:topic(output_name, { config = config })

left:join_asof(right, { how = "inner", on_merge = "keep-left" }):to_topic(out)
app:run()
