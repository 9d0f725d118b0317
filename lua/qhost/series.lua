-- qhost.series: StreamingSeries, the column expressions of a dataframe
-- (Quix's quixstreams/dataframe/series.py). `sdf:col("x")` reads a field of
-- the value; arithmetic metamethods and the methods below build new
-- expressions; a Series is called with the value to evaluate it, so it can
-- stand wherever a function of the value can (filter, apply, set).
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")
local pynum = require("qhost.runtime.pynum")
local truthy = require("qhost.runtime.pytruth")

local series = {}

local Series = {}
Series.__index = Series
Series.__name = "StreamingSeries"

-- `where` is the user's line that built the expression, for the errors it
-- raises while evaluating (which happen later, per message).
local function wrap(fn, name, where)
  return setmetatable({ fn = fn, name = name, where = where }, Series)
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
-- A missing field is an error of the message, as Quix's ColumnDoesNotExist:
-- a misspelt column fails loudly instead of reading as null (a field set to
-- qhost.json.null is there: isnull is true for it). sdf:contains(name)
-- tests whether a field is there.
function series.col(name)
  if type(name) ~= "string" and type(name) ~= "number" then
    argcheck.fail("StreamingDataFrame:col expects a column name, got %s", type(name))
  end
  local where = argcheck.where()
  return wrap(function(value)
    if type(value) ~= "table" then
      error(string.format("col(%s) (%s): the value is a %s, not a table", describe(name), where, type(value)), 0)
    end
    local x = value[name]
    if x == nil then
      error(string.format("col(%s) (%s): the value has no field %s", describe(name), where, describe(name)), 0)
    end
    return x
  end, "col(" .. describe(name) .. ")", where)
end

function Series:__call(value)
  return self.fn(value)
end

function Series:__tostring()
  return "StreamingSeries " .. self.name
end

local function is_null(x) return x == nil or x == codec.null end

local function is_number(x) return type(x) == "number" or type(x) == "cdata" end

-- Raises the error of an operation whose operand (a, valued x) is not what
-- it needs, naming the expression, the operand and the user's line.
local function bad_operand(expr, where, a, x, need)
  local what = x == nil and "missing (nil)" or x == codec.null and "null" or "a " .. type(x)
  error(string.format("%s (%s): %s is %s, not %s", expr, where, describe(a), what, need), 0)
end

-- Arithmetic: either side may be a constant.
local function binary(symbol, op, check, need)
  local divides = symbol == "/" or symbol == "%"
  return function(a, b)
    local fa, fb = getter(a), getter(b)
    local name = "(" .. describe(a) .. " " .. symbol .. " " .. describe(b) .. ")"
    local where = argcheck.where()
    return wrap(function(value)
      local x, y = fa(value), fb(value)
      if not check(x) then bad_operand(name, where, a, x, need) end
      if not check(y) then bad_operand(name, where, b, y, need) end
      if divides and y == 0 then error(string.format("%s (%s): division by zero", name, where), 0) end
      return op(x, y)
    end, name, where)
  end
end

local function is_text(x) return type(x) == "string" or type(x) == "number" end

-- Numbers as Python computes them (qhost.runtime.pynum): an int64 with a
-- fraction gives a float, `/` is true division, a division by zero raises.
Series.__add = binary("+", pynum.add, is_number, "a number")
Series.__sub = binary("-", pynum.sub, is_number, "a number")
Series.__mul = binary("*", pynum.mul, is_number, "a number")
Series.__div = binary("/", pynum.div, is_number, "a number")
Series.__mod = binary("%", pynum.mod, is_number, "a number")
Series.__concat = binary("..", function(x, y) return x .. y end, is_text, "a string or number")
Series.__unm = function(a)
  local fa = a.fn
  local name, where = "-" .. a.name, argcheck.where()
  return wrap(function(value)
    local x = fa(value)
    if not is_number(x) then bad_operand(name, where, a, x, "a number") end
    return -x
  end, name, where)
end

local function method(name, op, check, need)
  Series[name] = function(self, other)
    if not series.is_series(self) then
      argcheck.fail("StreamingSeries:%s: call it with a colon (series:%s(x))", name, name)
    end
    local fs, fo = self.fn, getter(other)
    local expr = self.name .. ":" .. name .. "(" .. describe(other) .. ")"
    local where = argcheck.where()
    if not check then
      return wrap(function(value) return op(fs(value), fo(value)) end, expr, where)
    end
    return wrap(function(value)
      local x, y = fs(value), fo(value)
      if not check(x, y) then
        if is_null(x) then bad_operand(expr, where, self, x, need) end
        if is_null(y) then bad_operand(expr, where, other, y, need) end
        error(string.format("%s (%s): cannot compare %s (a %s) with %s (a %s)", expr, where, describe(self),
          type(x), describe(other), type(y)), 0)
      end
      return op(x, y)
    end, expr, where)
  end
end

-- Ordering compares two numbers or two strings, as Python does.
local function comparable(x, y)
  return (is_number(x) and is_number(y)) or (type(x) == "string" and type(y) == "string")
end

-- Equality as Python's ==: numbers by value (an int64 and a double too),
-- lists and objects by their contents.
local function equal(x, y)
  if x == y then return true end
  local tx, ty = type(x), type(y)
  if tx == "cdata" or ty == "cdata" then return pynum.eq(x, y) end
  if tx ~= "table" or ty ~= "table" then return false end
  for k, v in pairs(x) do
    if not equal(v, y[k]) then return false end
  end
  for k in pairs(y) do
    if x[k] == nil then return false end
  end
  return true
end
series.equal = equal

method("eq", function(x, y) return equal(x, y) end)
method("ne", function(x, y) return not equal(x, y) end)
local ORDERED = "comparable (two numbers or two strings)"
method("lt", pynum.lt, comparable, ORDERED)
method("le", pynum.le, comparable, ORDERED)
method("gt", function(x, y) return pynum.lt(y, x) end, comparable, ORDERED)
method("ge", function(x, y) return pynum.le(y, x) end, comparable, ORDERED)

-- Logical and/or (Quix's & and |) as Python's `and`/`or`: lazy (the other
-- side is evaluated only when needed, so `a:notnull():and_(a:gt(5))` never
-- compares a null) and giving an operand, not a boolean.
local function logical(name, is_and)
  Series[name] = function(self, other)
    if not series.is_series(self) then
      argcheck.fail("StreamingSeries:%s: call it with a colon (series:%s(x))", name, name)
    end
    local fs, fo = self.fn, getter(other)
    return wrap(function(value)
      local x = fs(value)
      if truthy(x) ~= is_and then return x end
      return fo(value)
    end, self.name .. ":" .. name .. "(" .. describe(other) .. ")", argcheck.where())
  end
end
logical("and_", true)
logical("or_", false)

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

-- isin(list or Series of a list): the value is one of the list's items
-- (Python's `in`, with ==).
function Series:isin(list)
  local fs = self.fn
  if series.is_series(list) then
    local fl = list.fn
    return wrap(function(value)
      local x, l = fs(value), fl(value)
      if type(l) ~= "table" then return false end
      for i = 1, #l do if equal(x, l[i]) then return true end end
      return false
    end, self.name .. ":isin(" .. list.name .. ")")
  end
  if type(list) ~= "table" then argcheck.fail("StreamingSeries:isin expects a list, got %s", type(list)) end
  -- Strings and plain numbers are looked up; int64 and tables compared.
  local set, others = {}, {}
  for _, v in ipairs(list) do
    if type(v) == "string" or type(v) == "number" then set[v] = true else others[#others + 1] = v end
  end
  return wrap(function(value)
    local x = fs(value)
    if set[x] then return true end
    if type(x) == "cdata" and set[tonumber(x)] and pynum.eq(x, tonumber(x)) then return true end
    for i = 1, #others do if equal(x, others[i]) then return true end end
    return false
  end, self.name .. ":isin(...)")
end

function Series:isnull()
  local fs = self.fn
  return wrap(function(value) return is_null(fs(value)) end, self.name .. ":isnull()")
end

function Series:notnull()
  local fs = self.fn
  return wrap(function(value) return not is_null(fs(value)) end, self.name .. ":notnull()")
end

-- not_(): Python's `not` (Quix's ~): null, 0, "" and empty tables are false.
function Series:not_()
  local fs = self.fn
  return wrap(function(value) return not truthy(fs(value)) end, self.name .. ":not_()")
end

function Series:abs()
  local fs = self.fn
  local name, where = self.name .. ":abs()", argcheck.where()
  return wrap(function(value)
    local x = fs(value)
    if type(x) == "cdata" then return x < 0 and -x or x end
    if type(x) ~= "number" then bad_operand(name, where, self, x, "a number") end
    return math.abs(x)
  end, name, where)
end

-- apply(fn): fn of the series' result.
function Series:apply(fn)
  if type(fn) ~= "function" then argcheck.fail("StreamingSeries:apply expects a function, got %s", type(fn)) end
  local fs = self.fn
  return wrap(function(value) return fn(fs(value)) end, self.name .. ":apply(fn)")
end

series.Series = Series
return series
