-- 3. a standalone source: no dataframe; the app ends when its sources end
local qhost = require("qhost")
local app = qhost.Application{}
local source = qhost.sources.CSVSource{ path = "input.csv" }
app:add_source(source)                 -- or app:add_source(source, topic)
app:run()
