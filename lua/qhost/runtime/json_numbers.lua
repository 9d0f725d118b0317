-- qhost.runtime.json_numbers: JSON numbers without a call into C, for the
-- hot paths where a value is often a plain number (state values, message
-- values): the same text and values as qhost.codec, on the cases where Lua
-- gets them exactly, and nil for the codec to handle the rest.
local byte, floor, tonumber, tostring = string.byte, math.floor, tonumber, tostring

local M = {}

-- M.text(v) -> the JSON text of the number v, or nil. An integral number
-- below 1e14 in size prints with tostring exactly as the encoder writes it
-- (0 aside: -0 prints "-0").
function M.text(v)
  if v == floor(v) and v > -1e14 and v < 1e14 and v ~= 0 then return tostring(v) end
  return nil
end

-- M.value(bytes) -> the number the JSON text bytes holds, or nil. A number
-- of at most 15 characters reads with tonumber as the decoder reads it
-- (never past 2^53, where the decoder keeps an int64; 0 aside, as "-0"
-- would read as -0). Texts that are not numbers give nil.
function M.value(bytes)
  local c = byte(bytes, 1)
  if #bytes > 15 or c == nil or not (c == 45 or (c >= 48 and c <= 57)) then return nil end
  local n = tonumber(bytes)
  if n == 0 then return nil end
  return n
end

return M
