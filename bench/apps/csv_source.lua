-- Workload 2 (qhost): the built-in CSVSource into its topic, standalone
-- (no dataframe); the app ends when the source has produced every row.
--   qhost run csv_source.lua BROKER TOPIC CSV_PATH
local qhost = require("qhost")
local broker, topic_name, path = arg[1], arg[2], arg[3]

local app = qhost.Application{ broker_address = broker, loglevel = "WARNING" }
local topic = app:topic(topic_name, {
  key_serializer = "string", value_serializer = "json",
  config = qhost.TopicConfig{ num_partitions = 1, replication_factor = 1 },
})
app:add_source(qhost.sources.CSVSource{ path = path, name = "bench-csv" }, topic)
app:run()
