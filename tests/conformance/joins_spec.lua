-- Conformance with Quix Streams, joins on a real Kafka: a left and a right
-- topic of 2 partitions (6 keys; event times interleaved across the topics,
-- some messages late; some right values empty) through the same join
-- pipelines in Quix (apps/joins.py) and qhost (apps/joins.lua): join_asof
-- inner with keep-left; join_asof left with a merge function and a grace;
-- join_interval inner and outer with backward and forward bounds;
-- join_lookup against one SQLite file. Every case's output topic must hold
-- the same records per key, in order: key, value (compared as JSON values,
-- key order included) and timestamp.
-- Needs QHOST_BROKER (a real Kafka) and QHOST_QUIX_PYTHON (a Python with
-- quixstreams, tests/quix-venv.sh makes one).
local ffi = require("ffi")
local H = require("helper")
local compare = dofile((os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/compare.lua")

local HERE = (os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/apps/"
local PYTHON = os.getenv("QHOST_QUIX_PYTHON")

local CASES = { "asof-inner", "asof-left", "interval-inner", "interval-outer", "lookup" }

-- The inputs. Left: {"l","v","s","dev"} at even times base + 100 i (every
-- 11th 1.5 s late); right: {"r","s"} (every 13th {}) at odd times
-- base + 230 i + 1 (every 7th 1 s late): no two messages of the two topics
-- have the same timestamp, so the order across topics is the timestamps'.
local FILL = [[
local qhost = require("qhost")
local app = qhost.Application{}
local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  local keys = { "a", "b", "c", "d", "e", "f" }
  for i = 1, self.n do
    local k, ts, value
    if self.side == "left" then
      k = keys[(i * 7) % 6 + 1]
      ts = self.base + i * 100
      if i % 11 == 0 then ts = ts - 1500 end
      value = string.format('{"l":%d,"v":%d,"s":"L%d","dev":"d%d"}', i, (i * 37) % 100, i, i % 5)
    else
      k = keys[(i * 5) % 6 + 1]
      ts = self.base + i * 230 + 1
      if i % 7 == 0 then ts = ts - 1000 end
      value = i % 13 == 0 and "{}" or string.format('{"r":%d,"s":"R%d"}', i, i)
    end
    self:produce{ key = k, value = value, timestamp = ts }
  end
end
app:add_source(Fill{ name = arg[1], side = arg[2], n = tonumber(arg[3]), base = tonumber(arg[4]) },
  app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = 2 } }))
app:run()
]]

-- The lookup's reference data, written with SQLite's own API (loaded here:
-- the host loads SQLite only when a lookup is first used).
local sqlite3 = ffi.load("libsqlite3.so.0")
ffi.cdef[[
typedef struct sqlite3 sqlite3;
int sqlite3_open(const char *filename, sqlite3 **db);
int sqlite3_exec(sqlite3 *db, const char *sql, void *cb, void *arg, char **errmsg);
int sqlite3_close(sqlite3 *db);
]]
local REFERENCE = [[
CREATE TABLE devices (id TEXT, name TEXT, model TEXT, rev INTEGER);
INSERT INTO devices VALUES ('d1', 'Pump', 'P-100', 3), ('d2', 'Valve', NULL, 1), ('d3', 'Fan', 'F-9', 2);
CREATE TABLE devices_history (id TEXT, rev INTEGER, note TEXT);
INSERT INTO devices_history VALUES ('d1', 1, 'a'), ('d1', 3, 'c'), ('d1', 2, 'b'), ('d2', 1, 'x');
CREATE TABLE sites (device TEXT, site TEXT, rack INTEGER);
INSERT INTO sites VALUES ('d1', 'north', 0), ('d1', 'south', 2), ('d2', 'east', 1), ('d3', 'west', 0);
]]

local function make_db(path)
  local pdb = ffi.new("sqlite3 *[1]")
  assert(sqlite3.sqlite3_open(path, pdb) == 0)
  local rc = sqlite3.sqlite3_exec(pdb[0], REFERENCE, nil, nil, nil)
  sqlite3.sqlite3_close(pdb[0])
  assert(rc == 0, "the reference data's SQL failed")
end

describe("conformance with Quix Streams #" .. H.mode, function()
  it("joins: as-of, interval and lookup cases give the same records per key (key, value, timestamp)", function()
    if H.mode ~= "kafka" or not PYTHON then pending("needs a real Kafka and Quix Streams") return end
    local dir = H.tmpdir()
    local left, right = H.unique("conf-join-l"), H.unique("conf-join-r")
    local base = (math.floor(os.time() / 60) - 10) * 60000
    H.write(dir .. "/fill.lua", FILL)
    for _, side in ipairs({ { left, "left", 300 }, { right, "right", 120 } }) do
      local r = H.run(dir, "fill.lua", { args = { side[1], side[2], tostring(side[3]), string.format("%d", base) },
        timeout = 120 })
      assert.are.equal(0, r.code, r.stderr)
    end
    local db = dir .. "/reference.db"
    make_db(db)

    local quix_out, qhost_out = H.unique("conf-join-quix"), H.unique("conf-join-qhost")
    local cmd = string.format("cd %s && PYTHONWARNINGS=ignore timeout -s KILL 240 %s %s %s %s %s %s %s %s %s 2>&1; "
      .. "echo rc=$?", H.quote(dir), H.quote(PYTHON), H.quote(HERE .. "joins.py"), H.broker, left, right, quix_out,
      H.unique("g-quix"), H.quote(dir .. "/quix-state"), H.quote(db))
    local out = H.exec(cmd)
    assert.truthy(out:find("rc=0\n$"), out)
    local r = H.run(dir, HERE .. "joins.lua", { args = { H.broker, left, right, qhost_out, H.unique("g-qhost"),
      dir .. "/qhost-state", db }, timeout = 240 })
    assert.are.equal(0, r.code, r.stderr)

    for _, case in ipairs(CASES) do
      local keys, records = compare.topics(case, quix_out .. "-" .. case, qhost_out .. "-" .. case)
      assert.are.equal(6, keys, case .. ": keys")
      assert.is_true(records >= 30, case .. ": only " .. records .. " records")
    end
  end)
end)
