-- 2. the same with a custom topic of four partitions
local qhost = require("qhost")
local app = qhost.Application{}
local source = qhost.sources.CSVSource{ path = "input.csv" }
local topic = app:topic("my_csv_source",
  { config = qhost.TopicConfig{ num_partitions = 4, replication_factor = 1 } })
local sdf = app:dataframe{ topic = topic, source = source }
sdf:print{ metadata = true }
app:run()
