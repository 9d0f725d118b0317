-- qhost.runtime.pynum: arithmetic and comparisons of JSON numbers as Python
-- does them, for the Series operators and the aggregations (Quix's
-- semantics). Numbers are Lua numbers (doubles), or int64 cdata for the
-- integers beyond 2^53 that decoding keeps exact. LuaJIT's own operators
-- on int64 differ from Python's: a double operand is truncated to an
-- integer (1.5 + 10LL is 11LL, 1LL == 1.5 is true, 10LL < 1e19 is false),
-- `/` divides as integers, `%` takes the sign of the dividend, and a
-- division by zero gives garbage. Here:
-- - two doubles: Lua's operators (Lua's % is Python's);
-- - an int64 and a double that is not an integer in int64's range: the
--   int64 becomes a double (Python's int with float gives a float);
-- - otherwise exact int64 arithmetic (overflow wraps: Python's ints have no
--   bound, beyond 2^63 they differ);
-- - `/` always divides as doubles (Python's true division);
-- - a division or modulo by zero raises, as Python's ZeroDivisionError.
local ffi = require("ffi")

local floor, tonumber, type = math.floor, tonumber, type
local int64 = ffi.typeof("int64_t")

local M = {}

local INT64_MIN, INT64_MAX = -2 ^ 63, 2 ^ 63

-- Whether double d converts to int64 exactly.
local function integral(d)
  return d == floor(d) and d >= INT64_MIN and d < INT64_MAX
end

-- x and y as one kind: both doubles, or both int64 (cdata).
local function common(x, y)
  if type(x) == "cdata" then
    if type(y) == "cdata" then return x, y end
    if integral(y) then return x, int64(y) end
    return tonumber(x), y
  end
  -- y is the cdata
  if integral(x) then return int64(x), y end
  return x, tonumber(y)
end

function M.add(x, y)
  if type(x) == "number" and type(y) == "number" then return x + y end
  x, y = common(x, y)
  return x + y
end

function M.sub(x, y)
  if type(x) == "number" and type(y) == "number" then return x - y end
  x, y = common(x, y)
  return x - y
end

function M.mul(x, y)
  if type(x) == "number" and type(y) == "number" then return x * y end
  x, y = common(x, y)
  return x * y
end

local function zero_division(what)
  error(what .. " by zero", 0)
end

function M.div(x, y)
  if y == 0 then zero_division("division") end
  return tonumber(x) / tonumber(y)
end

-- Python's %: the result has the sign of the divisor.
function M.mod(x, y)
  if y == 0 then zero_division("modulo") end
  if type(x) == "number" and type(y) == "number" then return x % y end
  x, y = common(x, y)
  if type(x) == "number" then return x % y end
  local r = x % y   -- C's remainder: the sign of x
  if r ~= 0 and (r < 0) ~= (y < 0) then r = r + y end
  return r
end

function M.eq(x, y)
  if type(x) ~= "cdata" and type(y) ~= "cdata" then return x == y end
  if type(x) == "cdata" and type(y) == "cdata" then return x == y end
  -- one int64 and something else
  local other = type(x) == "cdata" and y or x
  if type(other) ~= "number" then return false end
  x, y = common(x, y)
  return x == y
end

-- (two strings compare as Lua and Python do: by bytes)
function M.lt(x, y)
  if type(x) ~= "cdata" and type(y) ~= "cdata" then return x < y end
  x, y = common(x, y)
  return x < y
end

function M.le(x, y)
  if type(x) ~= "cdata" and type(y) ~= "cdata" then return x <= y end
  x, y = common(x, y)
  return x <= y
end

return M
