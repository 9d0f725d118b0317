-- qhost.runtime.printing: the text `sdf:print` writes for one message: a
-- JSON object {"value":...} (and key, timestamp, headers with metadata),
-- compact on one line or indented. Printing is never fatal: what JSON
-- cannot hold as it is gets a printable form (see printable).
local codec = require("qhost.codec")

local printing = {}

local PRINT_KEYS_MT = { __qhost_keys = { "value", "key", "timestamp", "headers" } }
local VALUE_ONLY_MT = { __qhost_keys = { "value" } }

local function json_or_null(v)
  if v == nil then return codec.null end
  return v
end

-- printing.utf8_length_at(s, i) -> the length in bytes (1 to 4) of the
-- valid UTF-8 sequence at byte i of s, or 0 when none starts there
-- (a stray byte, a cut sequence, an overlong form, a surrogate, beyond
-- U+10FFFF).
function printing.utf8_length_at(s, i)
  local n, c = #s, s:byte(i)
  local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
    or (c >= 0xF0 and c <= 0xF4) and 4 or 0
  if len == 0 or i + len - 1 > n then return 0 end
  for j = i + 1, i + len - 1 do
    local b = s:byte(j)
    if b < 0x80 or b > 0xBF then return 0 end
  end
  if len >= 3 then
    local b2 = s:byte(i + 1)
    if (c == 0xE0 and b2 < 0xA0) or (c == 0xED and b2 > 0x9F) or (c == 0xF0 and b2 < 0x90)
      or (c == 0xF4 and b2 > 0x8F) then return 0 end
  end
  return len
end
local utf8_length_at = printing.utf8_length_at

-- Text that is not UTF-8 written as Python's bytes.decode("utf-8",
-- "backslashreplace") writes it: each byte of a bad sequence becomes the
-- four characters \xNN, so "\255ab" prints as "\\xffab" in JSON.
local function backslashreplace(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local len = utf8_length_at(s, i)
    if len > 0 then
      out[#out + 1] = s:sub(i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = string.format("\\x%02x", s:byte(i))
      i = i + 1
    end
  end
  return table.concat(out)
end

-- A copy of v that JSON can always hold: strings that are not UTF-8 as
-- above, values JSON has no form for (functions, userdata) as their
-- tostring text. Only taken when the plain encoding failed.
local function printable(v, depth)
  local t = type(v)
  if t == "string" then return backslashreplace(v) end
  if t == "number" or t == "boolean" or v == codec.null then return v end
  if t == "cdata" and codec.json_encode(v) then return v end
  if t ~= "table" or depth > 100 then return tostring(v) end
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" then k = backslashreplace(k) end
    out[k] = printable(x, depth + 1)
  end
  local mt = getmetatable(v)
  -- Keep the key order of a decoded object, unless a key had to change.
  if mt and mt.__qhost_keys then
    for _, k in ipairs(mt.__qhost_keys) do
      if type(k) == "string" and backslashreplace(k) ~= k then mt = nil break end
    end
  end
  return setmetatable(out, mt)
end

-- The text `print` writes for one message. Printing is never fatal: a
-- message JSON cannot hold as it is (a key of bytes that are not UTF-8,
-- say) is printed through `printable`.
function printing.format(pretty, metadata, value, key, timestamp, headers)
  local obj
  if metadata then
    obj = setmetatable({ value = json_or_null(value), key = json_or_null(key),
      timestamp = json_or_null(timestamp), headers = json_or_null(headers) }, PRINT_KEYS_MT)
  else
    obj = setmetatable({ value = json_or_null(value) }, VALUE_ONLY_MT)
  end
  local encode = pretty and codec.json_encode_pretty or codec.json_encode
  local text = encode(obj, 2)
  if text then return text end
  local err
  text, err = encode(printable(obj, 0), 2)
  if not text then text = string.format('{"print_error":"%s"}', tostring(err):gsub('[%c"\\]', "?")) end
  return text
end

return printing
