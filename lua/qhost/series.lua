-- qhost.series: StreamingSeries, the column expressions of a dataframe
-- (Quix's quixstreams/dataframe/series.py). `sdf:col("x")` reads a field of
-- the value; arithmetic metamethods and the methods below build new
-- expressions; a Series is called with the value to evaluate it, so it can
-- stand wherever a function of the value can (filter, apply, set).
local codec = require("qhost.codec")

local series = {}

local Series = {}
Series.__index = Series
Series.__name = "StreamingSeries"

local function wrap(fn, name)
  return setmetatable({ fn = fn, name = name }, Series)
end

function series.is_series(x)
  return getmetatable(x) == Series
end

-- The function computing x from the value: a Series' own, or a constant.
local function getter(x)
  if series.is_series(x) then return x.fn end
  return function() return x end
end

local function describe(x)
  if series.is_series(x) then return x.name end
  return type(x) == "string" and string.format("%q", x) or tostring(x)
end

-- series.col(name) -> Series of value[name]
function series.col(name)
  if type(name) ~= "string" and type(name) ~= "number" then
    error("StreamingDataFrame:col expects a column name", 3)
  end
  return wrap(function(value)
    if type(value) ~= "table" then
      error(string.format("column %s: the value is a %s, not a table", describe(name), type(value)), 0)
    end
    return value[name]
  end, "col(" .. describe(name) .. ")")
end

function Series:__call(value)
  return self.fn(value)
end

function Series:__tostring()
  return "StreamingSeries " .. self.name
end

-- Arithmetic: either side may be a constant.
local function binary(symbol, op)
  return function(a, b)
    local fa, fb = getter(a), getter(b)
    return wrap(function(value) return op(fa(value), fb(value)) end,
      "(" .. describe(a) .. " " .. symbol .. " " .. describe(b) .. ")")
  end
end

Series.__add = binary("+", function(x, y) return x + y end)
Series.__sub = binary("-", function(x, y) return x - y end)
Series.__mul = binary("*", function(x, y) return x * y end)
Series.__div = binary("/", function(x, y) return x / y end)
Series.__mod = binary("%", function(x, y) return x % y end)
Series.__concat = binary("..", function(x, y) return x .. y end)
Series.__unm = function(a)
  local fa = a.fn
  return wrap(function(value) return -fa(value) end, "-" .. a.name)
end

local function method(name, op)
  Series[name] = function(self, other)
    local fs, fo = self.fn, getter(other)
    return wrap(function(value) return op(fs(value), fo(value)) end,
      self.name .. ":" .. name .. "(" .. describe(other) .. ")")
  end
end

local function is_null(x) return x == nil or x == codec.null end

method("eq", function(x, y) return x == y end)
method("ne", function(x, y) return x ~= y end)
method("lt", function(x, y) return x < y end)
method("le", function(x, y) return x <= y end)
method("gt", function(x, y) return x > y end)
method("ge", function(x, y) return x >= y end)
-- Logical and/or on truthiness (Quix's & and |).
method("and_", function(x, y) return (x and y) and true or false end)
method("or_", function(x, y) return (x or y) and true or false end)

-- contains: a substring of a string, an element of a list, or a key of an
-- object (Python's `in`).
function series.contains(container, item)
  if type(container) == "string" then
    return type(item) == "string" and container:find(item, 1, true) ~= nil
  elseif type(container) == "table" then
    if container[item] ~= nil and type(item) == "string" then return true end
    for i = 1, #container do if container[i] == item then return true end end
    return false
  end
  return false
end
method("contains", series.contains)

-- isin(list): the value is one of the list's items.
function Series:isin(list)
  if type(list) ~= "table" then error("StreamingSeries:isin expects a list", 2) end
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  local fs = self.fn
  return wrap(function(value) return set[fs(value)] == true end, self.name .. ":isin(...)")
end

function Series:isnull()
  local fs = self.fn
  return wrap(function(value) return is_null(fs(value)) end, self.name .. ":isnull()")
end

function Series:notnull()
  local fs = self.fn
  return wrap(function(value) return not is_null(fs(value)) end, self.name .. ":notnull()")
end

function Series:not_()
  local fs = self.fn
  return wrap(function(value) return not fs(value) end, self.name .. ":not_()")
end

function Series:abs()
  local fs = self.fn
  return wrap(function(value) return math.abs(fs(value)) end, self.name .. ":abs()")
end

-- apply(fn): fn of the series' result.
function Series:apply(fn)
  if type(fn) ~= "function" then error("StreamingSeries:apply expects a function", 2) end
  local fs = self.fn
  return wrap(function(value) return fn(fs(value)) end, self.name .. ":apply(fn)")
end

series.Series = Series
return series
