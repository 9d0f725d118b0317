-- Lookup joins (sdf:join_lookup, qhost.lookups; Quix's
-- quixstreams/dataframe/joins/lookups/ and its test_lookup_sqlite.py):
-- SQLiteLookup with SQLiteLookupField and SQLiteLookupQueryField against a
-- SQLite file, the cache (ttl, least recently used, cache_info), `on`
-- (the key, a column, a function), and a lookup written in Lua.
local ffi = require("ffi")
local qhost = require("qhost")

local json = qhost.json
local L = qhost.lookups

-- The fixture is written with SQLite's own API (qhost's module only reads;
-- the host loads SQLite on first use, so the test loads it itself).
local sqlite3 = ffi.load("libsqlite3.so.0")
ffi.cdef[[
typedef struct sqlite3 sqlite3;
int sqlite3_open(const char *filename, sqlite3 **db);
int sqlite3_exec(sqlite3 *db, const char *sql, void *cb, void *arg, char **errmsg);
int sqlite3_close(sqlite3 *db);
]]

local function make_db(path, sql)
  local pdb = ffi.new("sqlite3 *[1]")
  assert(sqlite3.sqlite3_open(path, pdb) == 0)
  local rc = sqlite3.sqlite3_exec(pdb[0], sql, nil, nil, nil)
  sqlite3.sqlite3_close(pdb[0])
  assert(rc == 0, "fixture SQL failed")
end

local FIXTURE = [[
CREATE TABLE devices (id TEXT, name TEXT, model TEXT, version INTEGER, weight REAL);
INSERT INTO devices VALUES ('d1', 'Pump', 'P-100', 1, 2.5);
INSERT INTO devices VALUES ('d1', 'Pump', 'P-100', 2, 2.75);
INSERT INTO devices VALUES ('d2', 'Valve', NULL, 1, 0.5);
INSERT INTO devices VALUES ('7', 'Seven', 'S', 7, 7.0);
]]

local dir, db_path
setup(function()
  local p = io.popen("mktemp -d /tmp/qhost-lookups.XXXXXX")
  dir = p:read("*l")
  p:close()
  db_path = dir .. "/ref.db"
  make_db(db_path, FIXTURE)
end)
teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

local function enrich(lookup, fields, value, opts, key)
  local app = qhost.Application{}
  local sdf = app:dataframe(app:topic("input"))
  sdf = sdf:join_lookup(lookup, fields, opts)
  return json.encode(sdf:test(value, { key = key })[1])
end

describe("SQLiteLookup", function()
  it("sets a field to the first matching row (as an object of the columns) or the default", function()
    local lookup = L.SQLiteLookup{ path = db_path }
    local fields = { device = L.SQLiteLookupField{ table = "devices", columns = { "name", "model", "weight" }, on = "id" } }
    assert.are.equal('{"id":"d2","device":{"name":"Valve","model":null,"weight":0.5}}',
      enrich(lookup, fields, json.decode('{"id":"d2"}'), { on = "id" }))
    assert.are.equal('{"id":"zz","device":null}', enrich(lookup, fields, json.decode('{"id":"zz"}'), { on = "id" }))
    local with_default = { device = L.SQLiteLookupField{ table = "devices", columns = { "name" }, on = "id",
      default = { name = "unknown" } } }
    -- (a new lookup: the cache knows a result by field name and key only, as Quix's)
    assert.are.equal('{"id":"zz","device":{"name":"unknown"}}',
      enrich(L.SQLiteLookup{ path = db_path }, with_default, json.decode('{"id":"zz"}'), { on = "id" }))
  end)

  it("orders, and returns every row with first_match_only = false", function()
    local lookup = L.SQLiteLookup{ path = db_path }
    local latest = L.SQLiteLookupField{ table = "devices", columns = { "version" }, on = "id", order_by = "version",
      order_by_direction = "DESC" }
    local all = L.SQLiteLookupField{ table = "devices", columns = { "version" }, on = "id", order_by = "version",
      first_match_only = false }
    local none = L.SQLiteLookupField{ table = "devices", columns = { "version" }, on = "id", first_match_only = false }
    -- fields are set in the order of their names
    assert.are.equal('{"id":"d1","all":[{"version":1},{"version":2}],"latest":{"version":2}}',
      enrich(lookup, { latest = latest, all = all }, json.decode('{"id":"d1"}'), { on = "id" }))
    assert.are.equal('{"id":"nope","none":[]}', enrich(lookup, { none = none }, json.decode('{"id":"nope"}'),
      { on = "id" }))
  end)

  it("looks up the message key by default, or what a function of (value, key) returns", function()
    local lookup = L.SQLiteLookup{ path = db_path }
    local fields = { name = L.SQLiteLookupField{ table = "devices", columns = { "name" }, on = "id" } }
    assert.are.equal('{"name":{"name":"Valve"}}', enrich(lookup, fields, {}, nil, "d2"))
    assert.are.equal('{"n":7,"name":{"name":"Seven"}}', enrich(lookup, fields, { n = 7 },
      { on = function(value) return tostring(value.n) end }))
    -- a number looks up as a number: SQLite compares 7 and '7' by the column's affinity
    assert.are.equal('{"n":7,"name":{"name":"Seven"}}', enrich(lookup, fields, { n = 7 }, { on = "n" }))
  end)

  it("SQLiteLookupQueryField: any query, its :names from the value, rows as lists", function()
    local lookup = L.SQLiteLookup{ path = db_path }
    local q = L.SQLiteLookupQueryField{ query = "SELECT name, version FROM devices WHERE id = :id AND version >= :v "
      .. "ORDER BY version" }
    local qall = L.SQLiteLookupQueryField{ query = "SELECT version FROM devices WHERE id = :id", first_match_only = false }
    assert.are.equal('{"id":"d1","v":2,"a":[[1],[2]],"q":["Pump",2]}',
      enrich(lookup, { q = q, a = qall }, json.decode('{"id":"d1","v":2}'), { on = "id" }))
  end)

  it("caches each (field, key) for ttl seconds, least recently used out first", function()
    local lookup = L.SQLiteLookup{ path = db_path, cache_size = 2 }
    local f = L.SQLiteLookupField{ table = "devices", columns = { "name" }, on = "id" }
    local nocache = L.SQLiteLookupField{ table = "devices", columns = { "name" }, on = "id", ttl = 0 }
    local function look(id, fields)
      local value = { id = id }
      lookup:join(fields or { f = f }, id, value)
      return value
    end
    look("d1"); look("d1"); look("d2")
    assert.are.same({ hits = 1, misses = 2, size = 2, maxsize = 2 }, lookup:cache_info())
    look("d1")      -- d1 used last: d2 goes when 7 comes
    look("7")
    look("d1")
    assert.are.same({ hits = 3, misses = 3, size = 2, maxsize = 2 }, lookup:cache_info())
    look("d2")
    assert.are.same({ hits = 3, misses = 4, size = 2, maxsize = 2 }, lookup:cache_info())
    -- ttl = 0: always the database, never the cache
    look("d1", { n = nocache })
    assert.are.same({ hits = 3, misses = 4, size = 2, maxsize = 2 }, lookup:cache_info())
    -- a cached result is a copy: changing one message's field changes no other's
    local a = look("d2")
    a.f.name = "changed"
    assert.are.equal("Valve", look("d2").f.name)
  end)

  it("refuses a missing file, bad identifiers, '*', other fields, and reports a failing query", function()
    assert.has_error(function() L.SQLiteLookup{ path = dir .. "/missing.db" } end)
    assert.has_error(function() L.SQLiteLookupField{ table = "devices", columns = { "*" }, on = "id" } end)
    assert.has_error(function() L.SQLiteLookupField{ table = "devices", columns = { "a b" }, on = "id" } end)
    assert.has_error(function() L.SQLiteLookupField{ table = "devices", columns = { "a" }, on = "id",
      order_by_direction = "SIDEWAYS" } end)
    local lookup = L.SQLiteLookup{ path = db_path }
    local Other = L.BaseField:extend("Other")
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("input"))
    assert.has_error(function() sdf:join_lookup(lookup, { x = Other{} }) end)
    local bad = { x = L.SQLiteLookupField{ table = "nope", columns = { "a" }, on = "id" } }
    sdf = sdf:join_lookup(lookup, bad)
    local ok, err = pcall(sdf.test, sdf, { id = 1 }, { key = "k" })
    assert.is_false(ok)
    assert.truthy(err:find("no such table: nope", 1, true), err)
  end)
end)

describe("a lookup written in Lua (BaseLookup, BaseField)", function()
  it("gets the fields, the lookup key, and the value to set them in", function()
    local Prices = L.BaseLookup:extend("Prices")
    function Prices:join(fields, on, value, key, timestamp)
      for name, field in pairs(fields) do
        value[name] = self.table[on] * field.factor
      end
      value.seen = { key, timestamp }
    end
    local Price = L.BaseField:extend("Price")
    local lookup = Prices{ table = { apple = 2, pear = 3 } }
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("orders"))
    sdf = sdf:join_lookup(lookup, { price = Price{ factor = 10 } }, { on = "item" })
    local out = sdf:test({ item = "pear" }, { key = "k1", timestamp = 5 })
    assert.are.equal('{"item":"pear","price":30,"seen":["k1",5]}', json.encode(out[1]))
    -- the value must hold the column `on` names
    local ok, err = pcall(sdf.test, sdf, { other = 1 })
    assert.is_false(ok)
    assert.truthy(err:find('has no column "item"', 1, true), err)
    -- a lookup that does not define join says so
    local Lazy = L.BaseLookup:extend("Lazy")
    local lazy = app:dataframe(app:topic("x")):join_lookup(Lazy{}, {})
    ok, err = pcall(lazy.test, lazy, {})
    assert.is_false(ok)
    assert.truthy(err:find("Lazy: join(fields, on, value, key, timestamp, headers) is not implemented", 1, true), err)
  end)
end)
