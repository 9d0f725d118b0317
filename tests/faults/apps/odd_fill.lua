-- An input with one odd message amid ordinary ones: messages v = 1..100
-- ({"k": key, "v": v}, as apps/fill.lua's), the odd one (v = 101), then
-- v = 102..201, into topic `topic` (4 partitions; messages up to 20 MB).
--   qhost run odd_fill.lua topic=T case=big|header|empty_key|empty_value|null_value
-- big: a 10 MB value; header: a 1 MB header; empty_key: the key "";
-- empty_value: the value "" (not JSON); null_value: no value (a tombstone).
local qhost = require("qhost")
local a = {}
for _, kv in ipairs(arg) do local k, v = kv:match("^([^=]+)=(.*)$"); a[k] = v end

local Odd = qhost.sources.Source:extend("Odd")
function Odd:run()
  local function ordinary(v)
    local k = "key" .. (v % 7)
    self:produce{ key = k, value = '{"k":"' .. k .. '","v":' .. v .. '}' }
  end
  for v = 1, 100 do ordinary(v) end
  if self.case == "big" then
    self:produce{ key = "key1", value = '{"k":"key1","v":101,"pad":"' .. string.rep("x", 10 * 1024 * 1024) .. '"}' }
  elseif self.case == "header" then
    self:produce{ key = "key1", value = '{"k":"key1","v":101}', headers = { { "big", string.rep("h", 1024 * 1024) } } }
  elseif self.case == "empty_key" then
    self:produce{ key = "", value = '{"k":"","v":101}' }
  elseif self.case == "empty_value" then
    self:produce{ key = "key1", value = "" }
  elseif self.case == "null_value" then
    self:produce{ key = "key1" }
  end
  for v = 102, 201 do ordinary(v) end
end

local MAX = 20 * 1024 * 1024
local app = qhost.Application{ producer_extra_config = { ["message.max.bytes"] = MAX } }
app:add_source(Odd{ name = a.topic, case = a.case },
  app:topic(a.topic, { config = qhost.TopicConfig{ num_partitions = 4,
    extra_config = { ["retention.ms"] = "-1", ["max.message.bytes"] = tostring(MAX) } } }))
app:run()
