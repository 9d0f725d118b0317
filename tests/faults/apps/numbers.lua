-- A StatefulSource counting 0, 1, 2, ... up to `limit` (excluded) into its
-- topic, keeping the next number in its state and flushing every `every`
-- numbers; an app copies each number to `output`. The source prints
-- "SOURCE <n>" on stderr every 1000 numbers, for the harness to kill it at.
--   qhost run numbers.lua name=N group=G output=O limit=L every=F [pace=ms per 100] [idle=600]
local qhost = require("qhost")
local a = {}
for _, kv in ipairs(arg) do local k, v = kv:match("^([^=]+)=(.*)$"); a[k] = v end

local Numbers = qhost.sources.StatefulSource:extend("Numbers")
function Numbers:run()
  local n = self.state:get("next", 0)
  local unflushed = 0
  while self.running and n < self.limit do
    self:produce{ key = tostring(n % 10), value = '{"n":' .. n .. '}' }
    n = n + 1
    self.state:set("next", n)
    unflushed = unflushed + 1
    if unflushed == self.every then self:flush(); unflushed = 0 end
    if n % 100 == 0 and self.pace > 0 then qhost.sleep(self.pace) end
    if n % 1000 == 0 then io.stderr:write("SOURCE ", n, "\n") end
  end
end

local app = qhost.Application{ consumer_group = a.group, auto_offset_reset = "earliest", commit_interval = 0.5 }
local keep = { config = qhost.TopicConfig{ num_partitions = 1, extra_config = { ["retention.ms"] = "-1" } } }
local sdf = app:dataframe{ source = Numbers{ name = a.name, limit = tonumber(a.limit), every = tonumber(a.every),
  pace = tonumber(a.pace or "0") / 1000 } }
sdf:to_topic(app:topic(a.output, keep))
app:run{ timeout = tonumber(a.idle or "600") }
