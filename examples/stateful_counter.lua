-- A source that resumes where it stopped: it counts 0, 1, 2, ... and keeps
-- the next number in its state, so a restarted app goes on counting instead
-- of starting again at 0.
--   QHOST_BROKER=127.0.0.1:9092 qhost run stateful_counter.lua [LIMIT]
-- Stop it with Ctrl-C and run it again: the count continues. (The embedded
-- broker keeps the state only as long as its process: use a real Kafka.)
--
-- The state is saved by self:flush(), which first waits until every number
-- produced so far is delivered and then writes the state to the changelog
-- topic changelog__stateful-counter--source-counter. A clean stop flushes
-- too; after a crash the numbers since the last flush are produced again.
local qhost = require("qhost")

local Counter = qhost.sources.StatefulSource:extend("Counter")

function Counter:run()
  local n = self.state:get("next", 0)          -- 0 on the very first run
  local unflushed = 0
  while self.running and (self.limit == nil or n < self.limit) do
    local msg = self:serialize{ key = "counter", value = { n = n } }
    self:produce{ key = msg.key, value = msg.value }
    n = n + 1
    self.state:set("next", n)
    unflushed = unflushed + 1
    if unflushed == self.flush_every then
      self:flush()                              -- the numbers, then the state
      unflushed = 0
    end
    if self.interval > 0 then qhost.sleep(self.interval) end
  end
end

local app = qhost.Application{ consumer_group = "stateful-counter", auto_offset_reset = "earliest" }
local counter = Counter{ name = "counter", flush_every = 10, interval = 0.1, limit = tonumber(arg[1]) }
local sdf = app:dataframe{ source = counter }
sdf:print{ pretty = false }
app:run()
