-- qhost.runtime.error_text: the text of any error value. Lua code may raise
-- a table (error({ code = 5 })) or an object with __tostring; a report
-- needs text, and a bare "table: 0x..." says nothing.
local codec = require("qhost.codec")

local M = {}

-- M.text(err) -> a string: the error itself, its __tostring, or the JSON of
-- a table ("error object {"code":5}").
function M.text(err)
  if type(err) == "string" then return err end
  local mt = getmetatable(err)
  if type(mt) == "table" and mt.__tostring then return tostring(err) end
  if type(err) == "table" then
    local ok, json = pcall(codec.json_encode, err)
    if ok and json then return "error object " .. json end
  end
  return "error object " .. tostring(err)
end

-- M.traceback(err): an xpcall handler, the text and where it was raised.
function M.traceback(err)
  return debug.traceback(M.text(err), 2)
end

return M
