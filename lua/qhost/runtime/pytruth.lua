-- qhost.runtime.pytruth: Python's bool(v) for JSON values, where Quix tests
-- a value (a Series in a filter, `&`, `|`, `~`, a join's match): nil, null,
-- false, 0, "" and empty lists and objects are false.
local codec = require("qhost.codec")

local null = codec.null
local getmetatable, next, rawget, type = getmetatable, next, rawget, type

return function(v)
  if v == nil or v == null or v == false then return false end
  local t = type(v)
  if t == "number" or t == "cdata" then return v ~= 0 end
  if t == "string" then return v ~= "" end
  if t == "table" then
    -- a decoded object as decoded: its remembered keys say (no next(), which
    -- would split the JIT's trace, nor #, a call per message)
    local mt = getmetatable(v)
    local known = mt and rawget(mt, "__qhost_keys")
    local first = known and known[1]
    if first ~= nil and v[first] ~= nil then return true end
    return next(v) ~= nil
  end
  return true
end
