-- qhost.runtime.outputs: what app:run returns and when it stops (Quix's
-- RunTracker and RunCollector). Every output of the pipeline (a value
-- reaching the end of a branch) is counted, and collected when asked:
-- the values, or with metadata tables holding the value's fields and
-- _key _timestamp _headers _topic _partition _offset. run{ count = N }
-- stops after the message that made the Nth output; run{ timeout = S }
-- after S seconds without a consumed message.
local outputs = {}

local Outputs = {}
Outputs.__index = Outputs

-- outputs.new(opts, ctx): opts as app:run's; ctx the message being
-- processed (topic, partition, offset) for metadata.
function outputs.new(opts, ctx)
  local collect = opts.collect
  if collect == nil then collect = opts.count ~= nil or opts.timeout ~= nil end
  local self = setmetatable({ list = {}, count = 0, limit = opts.count, timeout = opts.timeout }, Outputs)
  local list = self.list
  if not collect then
    self.leaf = function() self.count = self.count + 1 end
  elseif opts.metadata then
    self.leaf = function(value, key, timestamp, headers)
      self.count = self.count + 1
      local row = {}
      if type(value) == "table" then for k, v in pairs(value) do row[k] = v end
      else row._value = value end
      row._key, row._timestamp, row._headers = key, timestamp, headers
      row._topic, row._partition, row._offset = ctx.topic, ctx.partition, ctx.offset
      list[#list + 1] = row
    end
  else
    self.leaf = function(value)
      self.count = self.count + 1
      list[#list + 1] = value
    end
  end
  return self
end

-- True once run{ count = N } has its N outputs.
function Outputs:reached()
  return self.limit ~= nil and self.count >= self.limit
end

-- True when run{ timeout = S } passed S seconds since `last_message`.
function Outputs:timed_out(now, last_message)
  return self.timeout ~= nil and now - last_message >= self.timeout
end

return outputs
