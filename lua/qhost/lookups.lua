-- qhost.lookups: what sdf:join_lookup enriches messages with (Quix's
-- quixstreams/dataframe/joins/lookups/: base.py, sqlite.py).
--
-- A lookup (BaseLookup) has join(fields, on, value, key, timestamp,
-- headers): it sets each field of `fields` (a table of name -> field, a
-- BaseField) in the message's value, looking `on` up. Write your own with
-- BaseLookup:extend("Name") and BaseField:extend("Name").
--
-- SQLiteLookup{ path } looks up rows of a SQLite file (opened read-only,
-- through the host's qhost.sqlite) for SQLiteLookupField{ table, columns,
-- on, ... } (the row whose column `on` equals the lookup key) and
-- SQLiteLookupQueryField{ query } (any query, its :name parameters taken
-- from the message's value). As Quix's, each (field name, lookup key)
-- result is cached for the field's ttl seconds, in a least recently used
-- cache of cache_size entries; ttl <= 0 queries every time.
-- A Lua table has no order: the fields are set in the order of their names.
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")
local class = require("qhost.runtime.class")
local host = require("qhost.host")
local merge = require("qhost.joins.merge")

local null, array_mt, copy = codec.null, codec.array_mt, merge.copy

local lookups = {}

local construct, is_a = class.construct, class.is_a

local function extend(base, name)
  return class.subclass(base, name, construct)
end

-- BaseLookup ------------------------------------------------------------------

-- qhost.lookups.BaseLookup: the base of lookups. BaseLookup:extend("Name")
-- -> a class; Name{ ... } -> an instance keeping its options as fields
-- (init(opts) runs then).
local BaseLookup = setmetatable({ __name = "BaseLookup" }, { __call = construct })
BaseLookup.__index = BaseLookup
lookups.BaseLookup = BaseLookup

function BaseLookup:extend(name)
  return extend(self, name)
end

function BaseLookup:init() end

-- lookup:join(fields, on, value, key, timestamp, headers): sets the
-- fields in value (in place). A subclass defines it.
function BaseLookup:join(fields, on, value, key, timestamp, headers) -- luacheck: ignore
  error(self.__name .. ": join(fields, on, value, key, timestamp, headers) is not implemented", 2)
end

-- lookup:check_fields(fields, call): what sdf:join_lookup checks when it
-- is declared; raises at the user's line. A subclass may check more.
function BaseLookup:check_fields(fields, call)
  if type(fields) ~= "table" or getmetatable(fields) ~= nil then
    argcheck.fail("%s: fields must be a table of name = field (a qhost.lookups field), got %s", call, type(fields))
  end
  for name, field in pairs(fields) do
    if type(name) ~= "string" then
      argcheck.fail("%s: each field needs a name (name = field), got a %s key", call, type(name))
    end
    if not is_a(field, lookups.BaseField) then
      argcheck.fail("%s: field %q must be a qhost.lookups field (a BaseField), got %s", call, name, type(field))
    end
  end
end

function lookups.is_lookup(x) return is_a(x, BaseLookup) end

-- BaseField -------------------------------------------------------------------

-- qhost.lookups.BaseField: the base of fields, which describe what a
-- lookup sets and how. BaseField:extend("Name") -> a class.
local BaseField = setmetatable({ __name = "BaseField" }, { __call = construct })
BaseField.__index = BaseField
lookups.BaseField = BaseField

function BaseField:extend(name)
  return extend(self, name)
end

function BaseField:init() end

function lookups.is_field(x) return is_a(x, BaseField) end

-- SQLite fields -------------------------------------------------------------------

local FIELD_OPTIONS = argcheck.declare("SQLiteLookupField", { table = "string", columns = "table", on = "string",
  order_by = "string", order_by_direction = "string", ttl = "number", default = "any", first_match_only = "boolean" })
local QUERY_FIELD_OPTIONS = argcheck.declare("SQLiteLookupQueryField", { query = "string", ttl = "number",
  default = "any", first_match_only = "boolean" })

-- Table and column names go into the SQL text: only letters, digits and _
-- (Quix's check against injection).
local function identifier(call, what, name)
  if type(name) ~= "string" or not name:match("^[%w_]+$") then
    argcheck.fail("%s: %s must be an SQL identifier (letters, digits and _), got %s", call, what,
      type(name) == "string" and string.format("%q", name) or type(name))
  end
  return name
end

-- qhost.lookups.SQLiteLookupField{ table =, columns =, on =, order_by = "",
-- order_by_direction = "ASC", ttl = 60, default = nil, first_match_only = true }:
-- SELECT <columns> FROM <table> WHERE <on> = <the lookup key>
-- [ORDER BY <order_by> <direction>] [LIMIT 1]. The field's value: the
-- first row as an object of the columns (default when there is none), or
-- with first_match_only = false the list of every row's object.
local SQLiteLookupField = BaseField:extend("SQLiteLookupField")
lookups.SQLiteLookupField = SQLiteLookupField

function SQLiteLookupField:init(opts)
  local call = "SQLiteLookupField"
  argcheck.options(call, opts, FIELD_OPTIONS)
  identifier(call, "table", opts.table)
  identifier(call, "on", opts.on)
  local columns = opts.columns
  if type(columns) ~= "table" or #columns == 0 then argcheck.fail("%s: columns must be a list of column names", call) end
  for i, c in ipairs(columns) do
    if c == "*" then argcheck.fail("%s: '*' is not allowed in columns: name them", call) end
    identifier(call, "columns[" .. i .. "]", c)
  end
  self.order_by = opts.order_by or ""
  local direction = opts.order_by_direction or "ASC"
  direction = argcheck.one_of(call, "order_by_direction", direction:upper(), { "ASC", "DESC" })
  self.order_by_direction = direction
  if self.order_by ~= "" then identifier(call, "order_by", self.order_by) end
  self.ttl = opts.ttl or 60.0
  self.first_match_only = opts.first_match_only ~= false
  local sql = string.format("SELECT %s FROM %s WHERE %s = ?", table.concat(columns, ", "), opts.table, opts.on)
  if self.order_by ~= "" then sql = sql .. " ORDER BY " .. self.order_by .. " " .. direction end
  if self.first_match_only then sql = sql .. " LIMIT 1" end
  self._sql = sql
  self._row_mt = { __qhost_keys = { unpack(columns) } }
end

-- The query and its parameters for lookup key `on`.
function SQLiteLookupField:build_query(on)
  return self._sql, { on }
end

-- The field's value from the query's rows.
function SQLiteLookupField:result(rows)
  local columns, mt = self.columns, self._row_mt
  local function object(row)
    local out = {}
    for i = 1, #columns do out[columns[i]] = row[i] end
    return setmetatable(out, mt)
  end
  if self.first_match_only then
    if rows[1] then return object(rows[1]) end
    return self.default
  end
  local list = setmetatable({}, array_mt)
  for i, row in ipairs(rows) do list[i] = object(row) end
  return list
end

-- qhost.lookups.SQLiteLookupQueryField{ query =, ttl = 60, default = nil,
-- first_match_only = true }: any query; its :name parameters come from
-- the message's value (the lookup key only names the cached result). The
-- field's value: the first row as a list of its columns' values (default
-- when there is none), or the list of every row's.
local SQLiteLookupQueryField = BaseField:extend("SQLiteLookupQueryField")
lookups.SQLiteLookupQueryField = SQLiteLookupQueryField

function SQLiteLookupQueryField:init(opts)
  argcheck.options("SQLiteLookupQueryField", opts, QUERY_FIELD_OPTIONS)
  if type(opts.query) ~= "string" then argcheck.fail("SQLiteLookupQueryField: query is required") end
  self.ttl = opts.ttl or 60.0
  self.first_match_only = opts.first_match_only ~= false
end

function SQLiteLookupQueryField:build_query(_, value)
  return self.query, value
end

function SQLiteLookupQueryField:result(rows)
  for i = 1, #rows do setmetatable(rows[i], array_mt) end
  if self.first_match_only then
    if rows[1] then return rows[1] end
    return self.default
  end
  return setmetatable(rows, array_mt)
end

-- SQLiteLookup ------------------------------------------------------------------

local LOOKUP_OPTIONS = argcheck.declare("SQLiteLookup", { path = "string", cache_size = "integer" })

-- qhost.lookups.SQLiteLookup{ path =, cache_size = 1000 }: the file is
-- opened (read-only) now; a missing one raises here.
local SQLiteLookup = BaseLookup:extend("SQLiteLookup")
lookups.SQLiteLookup = SQLiteLookup

function SQLiteLookup:init(opts)
  argcheck.options("SQLiteLookup", opts, LOOKUP_OPTIONS)
  if type(opts.path) ~= "string" then argcheck.fail("SQLiteLookup: path is required") end
  local db, err = require("qhost.sqlite").open(opts.path)
  if not db then argcheck.fail("SQLiteLookup: %s", err) end
  self.cache_size = opts.cache_size or 1000
  self._db = db
  self._statements = {}   -- SQL text -> prepared statement
  -- the cache: key -> entry, entries in a list from least to most recently used
  self._cache = {}
  self._head = { }        -- sentinel: head._next is the least recently used
  self._head._next, self._head._prev = self._head, self._head
  self._size, self._hits, self._misses = 0, 0, 0
end

function SQLiteLookup:check_fields(fields, call)
  BaseLookup.check_fields(self, fields, call)
  for name, field in pairs(fields) do
    if not is_a(field, SQLiteLookupField) and not is_a(field, SQLiteLookupQueryField) then
      argcheck.fail("%s: field %q of an SQLiteLookup must be a SQLiteLookupField or a SQLiteLookupQueryField",
        call, name)
    end
  end
end

-- The cache key of (field name, lookup key): Python's tuple, so 1 and "1"
-- differ, and an int64 equals the number it holds.
local function cache_key(name, on)
  local t = type(on)
  if t == "string" then return name .. "\0s" .. on end
  if t == "number" then return name .. "\0n" .. string.format("%.17g", on) end
  if on == nil or on == null then return name .. "\0z" end
  if t == "boolean" then return name .. "\0n" .. (on and "1" or "0") end
  if t == "cdata" then
    local digits = tostring(on):match("^(-?%d+)U?LL$")
    if digits then
      local n = tonumber(digits)
      if n and n >= -2 ^ 53 and n <= 2 ^ 53 then return name .. "\0n" .. string.format("%.17g", n) end
      return name .. "\0n" .. digits
    end
  end
  error(string.format("SQLiteLookup: the lookup key of field %q is a %s: it must be a string, a number, a "
    .. "boolean or null", name, t), 0)
end

local function unlink(e)
  e._prev._next, e._next._prev = e._next, e._prev
end

local function link_last(head, e)
  local last = head._prev
  e._prev, e._next = last, head
  last._next, head._prev = e, e
end

-- Python's copy.copy of the result, deeper: a cached result never shares
-- a table with a message.
local function get_cached(self, key, ttl, now)
  local e = self._cache[key]
  if e and now - e.time < ttl then
    self._hits = self._hits + 1
    unlink(e)
    link_last(self._head, e)
    return true, copy(e.value)
  end
  return false
end

local function set_cached(self, key, value, now)
  local e = self._cache[key]
  if e then
    unlink(e)
  else
    e = { key = key }
    self._cache[key] = e
    self._size = self._size + 1
  end
  e.time, e.value = now, copy(value)
  link_last(self._head, e)
  if self._size > self.cache_size then
    local oldest = self._head._next
    unlink(oldest)
    self._cache[oldest.key] = nil
    self._size = self._size - 1
  end
end

local function run_query(self, field, on, value)
  local sql, params = field:build_query(on, value)
  local stmt = self._statements[sql]
  if not stmt then
    local err
    stmt, err = self._db:prepare(sql)
    if not stmt then error(string.format("SQLiteLookup %s: %s (%s)", self.path, err, sql), 0) end
    self._statements[sql] = stmt
  end
  local rows, err = stmt:query(params, field.first_match_only and 1 or 0)
  if not rows then error(string.format("SQLiteLookup %s: %s (%s)", self.path, err, sql), 0) end
  return field:result(rows)
end

local function sorted_names(fields)
  local names = {}
  for name in pairs(fields) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- lookup:join(fields, on, value, ...): sets value[name] for each field
-- (in the order of the names), from the cache or the database.
function SQLiteLookup:join(fields, on, value)
  if type(value) ~= "table" then
    error(string.format("SQLiteLookup: the value is a %s, not a table to set the fields in", type(value)), 0)
  end
  local now = host.monotonic()
  for _, name in ipairs(sorted_names(fields)) do
    local field = fields[name]
    local result
    if field.ttl <= 0 then
      result = run_query(self, field, on, value)
    else
      local key = cache_key(name, on)
      local hit
      hit, result = get_cached(self, key, field.ttl, now)
      if not hit then
        self._misses = self._misses + 1
        result = run_query(self, field, on, value)
        set_cached(self, key, result, now)
      end
    end
    if result == nil then result = null end
    value[name] = result
  end
end

-- lookup:cache_info() -> { hits =, misses =, size =, maxsize = } (Quix's).
function SQLiteLookup:cache_info()
  return { hits = self._hits, misses = self._misses, size = self._size, maxsize = self.cache_size }
end

-- lookup:close(): closes the database (also when the lookup is collected).
function SQLiteLookup:close()
  for _, stmt in pairs(self._statements) do stmt:close() end
  self._statements = {}
  self._db:close()
end

return lookups
