-- qhost.agg: the aggregations of windows (Quix's
-- quixstreams/dataframe/windows/aggregations.py), used by `window:agg{ ... }`
-- and behind `window:sum()`, `:mean()`, ...
--
-- An aggregator reduces the values of a window into a state (initialize,
-- agg) and turns that state into the window's result (result). A collector
-- keeps the values themselves (the window store holds them apart) and makes
-- the result from the list. The built-in classes are Quix's, name for name;
-- `Aggregator:extend(name)` and `Collector:extend(name)` make custom ones,
-- as subclassing Quix's Aggregator and Collector does.
--
-- Lua has no None: "no value" is nil (and qhost.json.null, JSON's null in a
-- message, counts as no value too, as None does in Python). A state that is
-- a table must be JSON (the store keeps it as JSON); the built-in classes
-- never modify a state or a value they are given, they make new ones.
local argcheck = require("qhost.runtime.argcheck")
local class = require("qhost.runtime.class")
local codec = require("qhost.codec")
local pynum = require("qhost.runtime.pynum")

local null = codec.null
-- Numbers as Python adds and compares them (an int64 with a float too).
local add, lt = pynum.add, pynum.lt

local agg = {}

-- The value an aggregator with a column reads from a message value.
local function column_of(self, new)
  local column = self.column
  if column == nil then
    if new == null then return nil end
    return new
  end
  if type(new) ~= "table" then
    error(string.format("%s(%q): the value is a %s, not a table with the column", self.__name, column,
      type(new)), 0)
  end
  local v = new[column]
  if v == null then return nil end
  return v
end
agg._column_of = column_of

-- Classes -------------------------------------------------------------------

local function construct(cls, ...)
  local self = setmetatable({}, cls)
  self:init(...)
  return self
end

local function extend(base, name)
  return class.subclass(base, name, construct)
end

-- qhost.agg.Aggregator: the base of aggregators (Quix's Aggregator).
-- Aggregator:extend("Name") -> a class; Name(column) -> an aggregator.
-- A subclass defines initialize(), agg(old, new, timestamp) and
-- result(state); state_suffix() names its state in the store.
local Aggregator = setmetatable({ __name = "Aggregator" }, { __call = construct })
Aggregator.__index = Aggregator
agg.Aggregator = Aggregator

function Aggregator:extend(name)
  return extend(self, name)
end

-- Aggregator(column): column nil aggregates the whole value.
function Aggregator:init(column)
  if column ~= nil and type(column) ~= "string" then
    argcheck.fail("%s expects a column name (a string) or nothing, got %s", self.__name, type(column))
  end
  self.column = column
end

-- The key of this aggregation's state in the window's value (with the
-- result name before it): the class name, and the column (Quix's).
function Aggregator:state_suffix()
  if self.column == nil then return self.__name end
  return self.__name .. "/" .. self.column
end

function Aggregator:initialize() return nil end

function Aggregator:agg(old, new, timestamp) -- luacheck: ignore
  error(self.__name .. ": agg(old, new, timestamp) is not implemented", 2)
end

function Aggregator:result(state) return state end

-- qhost.agg.Collector: the base of collectors (Quix's Collector):
-- Collector:extend("Name"); a subclass defines result(items).
local Collector = setmetatable({ __name = "Collector" }, { __call = construct })
Collector.__index = Collector
agg.Collector = Collector

function Collector:extend(name)
  return extend(self, name)
end

function Collector:init(column)
  if column ~= nil and type(column) ~= "string" then
    argcheck.fail("%s expects a column name (a string) or nothing, got %s", self.__name, type(column))
  end
  self.column = column
end

function Collector:result(items) -- luacheck: ignore
  error(self.__name .. ": result(items) is not implemented", 2)
end

function agg.is_aggregator(x) return class.is_a(x, Aggregator) end
function agg.is_collector(x) return class.is_a(x, Collector) end

-- Built in ------------------------------------------------------------------
-- Each is marked builtin: its states need no copy (see qhost.windows).

local function builtin(name, base)
  local cls = extend(base or Aggregator, name)
  cls._builtin = true
  agg[name] = cls
  return cls
end

-- Count(column): the number of values (with the column: that are not null).
local Count = builtin("Count")
function Count:initialize() return 0 end
function Count:agg(old, new)
  if column_of(self, new) == nil then return old end
  return old + 1
end

-- Sum(column)
local Sum = builtin("Sum")
function Sum:initialize() return 0 end
function Sum:agg(old, new)
  new = column_of(self, new)
  if new == nil then return old end
  return add(old, new)
end

-- Mean(column): the state is { sum, count } (Quix's tuple); no value -> null.
local Mean = builtin("Mean")
function Mean:initialize() return { 0, 0 } end
function Mean:agg(old, new)
  new = column_of(self, new)
  if new == nil then return old end
  return { add(old[1], new), old[2] + 1 }
end
function Mean:result(state)
  if state[2] == 0 then return nil end
  return tonumber(state[1]) / state[2]   -- a float, also of an int64 sum (Python's /)
end

-- Max(column), Min(column): Python's max/min keep the first of equals.
local Max = builtin("Max")
function Max:agg(old, new)
  new = column_of(self, new)
  if new == nil then return old end
  if old == nil then return new end
  if lt(old, new) then return new end
  return old
end

local Min = builtin("Min")
function Min:agg(old, new)
  new = column_of(self, new)
  if new == nil then return old end
  if old == nil then return new end
  if lt(new, old) then return new end
  return old
end

-- Earliest(column), Latest(column): the value with the smallest (largest)
-- timestamp; the state is { value, timestamp }.
local Earliest = builtin("Earliest")
function Earliest:agg(old, new, timestamp)
  new = column_of(self, new)
  if new == nil then return old end
  if old == nil or timestamp < old[2] then return { new, timestamp } end
  return old
end
function Earliest:result(state)
  if state == nil then return nil end
  return state[1]
end

local Latest = builtin("Latest")
function Latest:agg(old, new, timestamp)
  new = column_of(self, new)
  if new == nil then return old end
  if old == nil or timestamp >= old[2] then return { new, timestamp } end
  return old
end
Latest.result = Earliest.result

-- First(column), Last(column): by processing order. First keeps a first
-- null (as Quix's).
local First = builtin("First")
function First:agg(old, new)
  new = column_of(self, new)
  if old == nil then return new end
  return old
end

local Last = builtin("Last")
function Last:agg(old, new)
  new = column_of(self, new)
  if new == nil then return old end
  return new
end

-- Reduce(reducer, initializer): initializer(value) starts the state with a
-- window's first value, reducer(state, value) adds the next ones. User
-- code: its states are copied through JSON, as Quix stores them.
local Reduce = extend(Aggregator, "Reduce")
agg.Reduce = Reduce
function Reduce:init(reducer, initializer)
  if type(reducer) ~= "function" then
    argcheck.fail("Reduce expects reducer, a function(state, value), got %s", type(reducer))
  end
  if type(initializer) ~= "function" then
    argcheck.fail("Reduce expects initializer, a function(value), got %s", type(initializer))
  end
  self.reducer, self.initializer = reducer, initializer
end
function Reduce:agg(old, new)
  if old == nil then return self.initializer(new) end
  return self.reducer(old, new)
end

-- Collect(column): the list of the window's values (or of their column).
local Collect = extend(Collector, "Collect")
Collect._builtin = true
agg.Collect = Collect
function Collect:result(items) return items end

-- What `qhost.agg` holds: the classes (the rest here is for qhost.windows).
agg.public = {}
for _, name in ipairs({ "Aggregator", "Collector", "Count", "Sum", "Mean", "Min", "Max", "First", "Last", "Earliest",
                        "Latest", "Reduce", "Collect" }) do
  agg.public[name] = agg[name]
end

return agg
