-- A custom source that polls something: it follows a file that grows (like
-- `tail -f`) and produces each new line as { line = ..., n = ... }.
--   qhost run tail_file.lua /var/log/syslog
-- Fields travel to the source's own process, so they are plain data (the
-- path, the poll interval); the class is found again in this script.
local qhost = require("qhost")

local TailFile = qhost.sources.Source:extend("TailFile")

function TailFile:run()
  local file = assert(io.open(self.path, "rb"))
  if not self.from_start then file:seek("end") end
  local n, partial = 0, ""
  while self.running do
    local chunk = file:read(65536)
    if chunk then
      partial = partial .. chunk
      for line in partial:gmatch("([^\n]*)\n") do
        n = n + 1
        local msg = self:serialize{ key = self.path, value = { line = line, n = n } }
        self:produce{ key = msg.key, value = msg.value }
      end
      partial = partial:match("[^\n]*$")   -- a line still being written
    else
      qhost.sleep(self.poll_interval)         -- nothing new yet (a stop cuts it short)
    end
  end
  file:close()
end

local path = arg[1] or error("usage: qhost run tail_file.lua FILE")
local app = qhost.Application{ auto_offset_reset = "earliest" }
local sdf = app:dataframe{ source = TailFile{ name = "tail", path = path, poll_interval = 0.2,
                                              from_start = true } }
sdf:print{ pretty = false }
app:run()
