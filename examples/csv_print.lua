-- 1. a source feeding a dataframe (topic source__input.csv, 1 partition)
local qhost = require("qhost")
local app = qhost.Application{}
local source = qhost.sources.CSVSource{ path = "input.csv" }
local sdf = app:dataframe{ source = source }
sdf:print{ metadata = true }
app:run()
