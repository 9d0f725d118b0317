-- qhost.runtime.transfer: turns a source's fields into Lua source text that rebuilds
-- them in a freshly spawned process, and back. What can travel (API.md):
-- strings, numbers, booleans, tables of these (no cycles), and functions
-- without upvalues (as LuaJIT bytecode: the child runs the same binary).
-- Anything else is refused with the field's path, before a process starts.
local codec = require("qhost.codec")

local transfer = {}

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function child_path(path, key)
  if is_identifier(key) then return path == "" and key or path .. "." .. key end
  return path .. "[" .. (type(key) == "string" and string.format("%q", key) or tostring(key)) .. "]"
end

local function upvalue_names(fn)
  local names = {}
  for i = 1, 255 do
    local name = debug.getupvalue(fn, i)
    if name == nil then break end
    names[#names + 1] = name
  end
  return names
end

-- JSON values travel with what makes them JSON: an array's marker and an
-- object's key order (the metatables qhost.codec gives decoded values).
-- Returns the text that closes the rebuilt table ("}" for a plain one,
-- "}, <metatable>)" after a "setmetatable(" opening), or nil for a
-- metatable that makes an object.
local function json_closing(mt)
  if mt == nil then return "}" end
  if mt == codec.array_mt then return '}, require("qhost.codec").array_mt)' end
  local keys = rawget(mt, "__qhost_keys")
  if type(keys) ~= "table" or next(mt, next(mt)) ~= nil then return nil end
  local names = {}
  for i, k in ipairs(keys) do
    if type(k) ~= "string" then return nil end
    names[i] = string.format("%q", k)
  end
  return "}, {__qhost_keys={" .. table.concat(names, ",") .. "}})"
end

-- Appends the Lua expression for `value` to `out`; returns nil, reason when
-- `value` cannot travel (reason names the field path).
local function emit(value, path, out, seen)
  local t = type(value)
  if t == "string" then
    out[#out + 1] = string.format("%q", value)
  elseif t == "number" then
    if value ~= value then out[#out + 1] = "0/0"
    elseif value == math.huge then out[#out + 1] = "math.huge"
    elseif value == -math.huge then out[#out + 1] = "-math.huge"
    else out[#out + 1] = string.format("%.17g", value) end
  elseif t == "boolean" or t == "nil" then
    out[#out + 1] = tostring(value)
  elseif value == codec.null then
    out[#out + 1] = 'require("qhost.codec").null'
  elseif t == "cdata" and codec.json_encode(value) then
    -- an int64 of a JSON value: rebuilt from its digits
    out[#out + 1] = string.format('require("qhost.codec").json_decode(%q)', codec.json_encode(value))
  elseif t == "function" then
    local names = upvalue_names(value)
    if #names > 0 then
      return nil, string.format("field %s is a function with upvalues (%s)", path, table.concat(names, ", "))
    end
    local ok, code = pcall(string.dump, value)
    if not ok then return nil, string.format("field %s is a C function", path) end
    out[#out + 1] = string.format("loadstring(%q)", code)
  elseif t == "table" then
    if seen[value] then return nil, string.format("field %s is part of a cycle", path) end
    local closing = json_closing(getmetatable(value))
    if not closing then
      return nil, string.format("field %s is a table with a metatable (an object)", path)
    end
    seen[value] = true
    out[#out + 1] = closing == "}" and "{" or "setmetatable({"
    for k, v in pairs(value) do
      local kt = type(k)
      if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
        return nil, string.format("field %s has a %s key", path, kt)
      end
      out[#out + 1] = "["
      emit(k, path, out, seen)
      out[#out + 1] = "]="
      local ok, err = emit(v, child_path(path, k), out, seen)
      if not ok then return nil, err end
      out[#out + 1] = ","
    end
    out[#out + 1] = closing
    seen[value] = nil
  else
    return nil, string.format("field %s is a %s", path, t)
  end
  return true
end


-- transfer.encode(fields) -> source text | nil, err. `fields` is a table of
-- named fields; err is "field <path> is ...".
function transfer.encode(fields)
  local out = { "return {" }
  local seen = { [fields] = true }
  for k, v in pairs(fields) do
    if type(k) ~= "string" then
      return nil, string.format("field [%s] has a %s key", tostring(k), type(k))
    end
    out[#out + 1] = string.format("[%q]=", k)
    local ok, err = emit(v, k, out, seen)
    if not ok then return nil, err end
    out[#out + 1] = ","
  end
  out[#out + 1] = "}"
  return table.concat(out)
end

-- transfer.decode(text) -> fields | nil, err
function transfer.decode(text)
  local chunk, err = loadstring(text, "=source spec")
  if not chunk then return nil, err end
  local ok, fields = pcall(chunk)
  if not ok then return nil, fields end
  return fields
end

return transfer
