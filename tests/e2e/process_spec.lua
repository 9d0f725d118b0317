-- The host and the source processes: CLI, failures, signals, class lookup,
-- to_topic and serializers through a real broker.
local H = require("helper")

describe("qhost CLI #" .. H.mode, function()
  it("prints its version and help", function()
    assert.truthy(H.exec(H.quote(H.qhost) .. " version"):find("^qhost %d+%.%d+%.%d+"))
    assert.truthy(H.exec(H.quote(H.qhost) .. " --help"):find("qhost run SCRIPT", 1, true))
  end)
  it("fails with a one-line reason for a missing script", function()
    local r = H.run(H.tmpdir(), "missing.lua")
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("^%d+%-%d+%-%d+ %d+:%d+:%d+ ERROR qhost%[%d+%]: cannot open missing.lua"), r.stderr)
    assert.truthy(r.stderr:find("stack traceback:", 1, true))
  end)
  it("passes script arguments in arg", function()
    local dir = H.tmpdir()
    H.write(dir .. "/args.lua", "print(arg[0], arg[1], arg[2], select('#', ...))")
    local r = H.run(dir, "args.lua", { args = { "one", "two words" } })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("args.lua\tone\ttwo words\t2\n", r.stdout)
  end)
  it("runs from an install made with make install PREFIX=...", function()
    local prefix = H.tmpdir()
    local root = os.getenv("QHOST_TEST_ROOT") or "."
    local out = H.exec(string.format("make -s -C %s install PREFIX=%s 2>&1; echo rc=$?", H.quote(root), H.quote(prefix)))
    assert.truthy(out:find("rc=0", 1, true), out)
    local dir = H.tmpdir()
    H.copy_example("standalone_source.lua", dir)
    H.write(dir .. "/input.csv", H.INPUT_CSV)
    local saved = H.qhost
    H.qhost = prefix .. "/bin/qhost"
    local r = H.run(dir, "standalone_source.lua")
    H.qhost = saved
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("CSVSource 'input.csv' %(pid %d+%) ended"), r.stderr)
  end)

  it("reports a script error with the file:line and traceback", function()
    local dir = H.tmpdir()
    H.write(dir .. "/bad.lua", "local x = nil\nlocal y = x.field\n")
    local r = H.run(dir, "bad.lua")
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("bad.lua:2: attempt to index", 1, true), r.stderr)
  end)
end)

local COUNTER = [[
local qhost = require("qhost")
local host = require("qhost.host")
local Counter = qhost.sources.Source:extend("Counter")
function Counter:run()
  local i = 0
  while self.running and i < self.limit do
    local msg = self:serialize{ key = tostring(i), value = { n = i } }
    self:produce{ key = msg.key, value = msg.value, headers = { { "h", "v" .. i } } }
    i = i + 1
    if self.pause then host.sleep(self.pause) end
  end
  if self.fail then error("counter failed on purpose") end
end
return Counter
]]

local function app_script(body)
  return [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[" }
]] .. body
end

describe("sources in their own process #" .. H.mode, function()
  it("runs a class defined in the app script, with headers and keys", function()
    local dir = H.tmpdir()
    local name = H.unique("counter")
    H.write(dir .. "/app.lua", app_script(COUNTER:gsub("return Counter\n$", "") .. [[
local sdf = app:dataframe{ source = Counter{ name = "]] .. name .. [[", limit = 20 } }
sdf = sdf:apply(function(v, key, ts, headers) return { n = v.n, key = key, h = headers[1][2] } end, { metadata = true })
for _, v in ipairs(app:run{ count = 20 }) do print(v.n, v.key, v.h) end
]]))
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(20, #lines)
    assert.are.equal("0\t0\tv0", lines[1])
    assert.are.equal("19\t19\tv19", lines[20])
  end)

  it("starts a source before the app's consumer, runs it after the first assignment, loses none", function()
    local dir = H.tmpdir()
    local name = H.unique("counter")
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[", loglevel = "DEBUG" }
]] .. COUNTER:gsub("return Counter\n$", "") .. [[
function Counter:setup() io.stderr:write("SETUP RAN\n") end
local sdf = app:dataframe{ source = Counter{ name = "]] .. name .. [[", limit = 50 } }
local out = app:run{ count = 50 }
print(#out, out[1].n, out[50].n)
]])
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    -- (auto_offset_reset is "latest": a message produced before the
    -- assignment's start was looked up would be skipped)
    assert.are.equal("50\t0\t49\n", r.stdout)
    local pname = name:gsub("%p", "%%%0")
    local held = r.stderr:find("Counter '" .. pname .. "' started %(pid %d+%), held until the app is ready")
    local consuming = r.stderr:find("consuming [^\n]* as group")
    local ready = r.stderr:find("source Counter '" .. pname .. "'%[%d+%]: started, producing to topic")
    local assigned = r.stderr:find("assigned %d+ partitions")
    local setup = r.stderr:find("SETUP RAN", 1, true)
    assert.truthy(held and consuming and ready and assigned and setup, r.stderr)
    -- Its process starts before the app makes its consumer (and its
    -- topics), so that its start-up overlaps the app's.
    assert.is_true(held < consuming, r.stderr)
    -- The app logs the assignment before it releases the source, which
    -- then runs setup: the order in the shared stderr is causal.
    assert.is_true(assigned < setup, r.stderr)
  end)

  it("delivers a message whose source then waits on its own, producing nothing more", function()
    -- The source's producer holds plain messages to hand them to librdkafka
    -- in batches (host/kafka_batch.c): one followed by a long wait in the
    -- source's own code must leave anyway. Here the source waits for the
    -- app to have seen it, so a message that waited for the next produce
    -- would never arrive.
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", app_script([[
local host = require("qhost.host")
local function exists(path) local f = io.open(path); if f then f:close() end; return f ~= nil end
local Pinger = qhost.sources.Source:extend("Pinger")
function Pinger:run()
  local msg = self:serialize{ key = "k", value = "ping" }
  self:produce{ key = msg.key, value = msg.value }
  local deadline = host.monotonic() + 60
  while not exists(self.mark) and host.monotonic() < deadline do host.sleep(0.01) end
  msg = self:serialize{ key = "k", value = exists(self.mark) and "pong" or "the app never saw ping" }
  self:produce{ key = msg.key, value = msg.value }
end
local mark = "]] .. dir .. [[/seen"
local sdf = app:dataframe{ source = Pinger{ name = "]] .. H.unique("pinger") .. [[", mark = mark } }
sdf = sdf:update(function(v) if v == "ping" then io.open(mark, "w"):close() end end)
for _, v in ipairs(app:run{ count = 2 }) do print(v) end
]]))
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("ping\npong\n", r.stdout)
  end)

  it("partitions a source's messages by key again once its topic of one partition gains more", function()
    -- A source's producer hands the messages for a topic of one partition
    -- to partition 0 without librdkafka's partitioner, until one run in 64
    -- through the partitioner sees more (host/kafka_batch.c). After the
    -- topic grows and librdkafka has the new count (its metadata refresh,
    -- every 100 ms here), at most 64 runs of 64 messages still go to 0;
    -- every message after them is on its key's partition.
    if H.mode ~= "kafka" then pending("a topic that gains partitions: real Kafka") return end
    local clients = require("qhost.kafka.clients")
    local topic_reader = require("qhost.kafka.topic_reader")
    local admin = assert(clients.admin({ ["bootstrap.servers"] = H.broker }))
    local topic = H.unique("grows")
    assert(admin:create_topics({ { name = topic, num_partitions = 1, replication_factor = 1 } }, 30))
    assert.is_true(H.eventually(function() return admin:partitions(topic, 10) == 1 end, 30))
    local dir = H.tmpdir()
    local FIRST, SECOND, LAG = 2000, 12000, 64 * 64
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local host = require("qhost.host")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[",
  producer_extra_config = { ["topic.metadata.refresh.interval.ms"] = 100 } }
local function exists(path) local f = io.open(path); if f then f:close() end; return f ~= nil end
local Keys = qhost.sources.Source:extend("Keys")
function Keys:burst(from, to)
  for i = from, to do
    local msg = self:serialize{ key = "k" .. i, value = i }
    self:produce{ key = msg.key, value = msg.value }
  end
  self:flush()
end
function Keys:run()
  self:burst(1, ]] .. FIRST .. [[)
  io.open(self.dir .. "/first", "w"):close()
  local deadline = host.monotonic() + 120
  while not exists(self.dir .. "/grown") and host.monotonic() < deadline do host.sleep(0.01) end
  self:burst(]] .. FIRST + 1 .. ", " .. SECOND .. [[)
end
local topic = app:topic("]] .. topic .. [[", { key_serializer = "string", value_serializer = "json" })
app:add_source(Keys{ name = "keys", dir = "]] .. dir .. [[" }, topic)
app:run()
]])
    local proc = H.start_guarded(finally, dir, "app.lua")
    assert.is_true(H.eventually(function() return H.read(dir .. "/first") ~= nil end, 60), proc:stderr())
    assert(admin:create_partitions(topic, 4, 30))
    assert.is_true(H.eventually(function() return admin:partitions(topic, 10) == 4 end, 30))
    -- (nothing shows when the source's producer has refreshed its metadata:
    -- twenty of its refresh intervals)
    H.sleep(2)
    H.write(dir .. "/grown", "")
    local r = proc:wait(120)
    assert.are.equal(0, r and r.code, r and r.stderr)
    local partition_of = {}
    assert(topic_reader.read_to_end({ ["bootstrap.servers"] = H.broker }, topic, {
      on_record = function(rec) partition_of[tonumber(rec.value)] = rec.partition end }))
    admin:close()
    local spread, misplaced = {}, {}
    for i = 1, SECOND do
      local p = partition_of[i]
      assert.is_not_nil(p, "message " .. i .. " is missing")
      if i <= FIRST then
        assert.are.equal(0, p)
      elseif i > FIRST + LAG then
        spread[p] = true
        local want = H.java_partition("k" .. i, 4)
        if p ~= want then misplaced[#misplaced + 1] = string.format("k%d on %d, not %d", i, p, want) end
      end
    end
    assert.are.same({}, misplaced)
    assert.is_true(spread[1] and spread[2] and spread[3])
  end)

  it("releases the sources of an app consuming from earliest as soon as their topics exist", function()
    -- A sink's setup comes after the topics are made and before the
    -- consumer: it waits for a file the source's setup writes. From
    -- "earliest" the source runs by then; from "latest" it waits for the
    -- first assignment, after the sink's setup.
    for _, reset in ipairs({ "earliest", "latest" }) do
      local dir = H.tmpdir()
      local name = H.unique("counter")
      H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local host = require("qhost.host")
local n, app = 0, nil
app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[", auto_offset_reset = "]] .. reset .. [[",
  on_message_processed = function() n = n + 1; if n == 30 then app:stop() end end }
]] .. COUNTER:gsub("return Counter\n$", "") .. [[
function Counter:setup() io.open("]] .. dir .. [[/ran", "w"):close() end
local Waiting = qhost.sinks.BaseSink:extend("Waiting")
function Waiting:setup()
  local deadline = host.monotonic() + (]] .. (reset == "earliest" and 60 or 2) .. [[)
  while not io.open("]] .. dir .. [[/ran") and host.monotonic() < deadline do host.sleep(0.01) end
  io.stderr:write(io.open("]] .. dir .. [[/ran") and "SOURCE RAN BEFORE\n" or "SOURCE HELD\n")
end
function Waiting:add() end
local sdf = app:dataframe{ source = Counter{ name = "]] .. name .. [[", limit = 30 } }
sdf:sink(Waiting{})
app:run()
print(n)
]])
      local r = H.run(dir, "app.lua")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("30\n", r.stdout, r.stderr)
      local want = reset == "earliest" and "SOURCE RAN BEFORE" or "SOURCE HELD"
      assert.truthy(r.stderr:find(want, 1, true), reset .. ": " .. r.stderr)
    end
  end)

  it("stops the held sources of a run that fails before it releases them", function()
    local dir = H.tmpdir()
    local name = H.unique("counter")
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[" }
]] .. COUNTER:gsub("return Counter\n$", "") .. [[
function Counter:setup() io.stderr:write("SETUP RAN\n") end
local Broken = qhost.sinks.BaseSink:extend("Broken")
function Broken:setup() error("the sink cannot open its file", 0) end
local sdf = app:dataframe{ source = Counter{ name = "]] .. name .. [[", limit = 50 } }
sdf:sink(Broken{})
local ok, err = pcall(app.run, app)
-- (the children of this process still alive, by /proc)
local pid = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
local children = io.open("/proc/self/task/" .. pid .. "/children"):read("*a")
print(ok, err, children == "" and "no children" or children)
]])
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("false\tthe sink cannot open its file\tno children\n", r.stdout)
    assert.truthy(r.stderr:find("Counter '" .. name:gsub("%p", "%%%0") .. "' started %(pid %d+%), held"), r.stderr)
    assert.falsy(r.stderr:find("SETUP RAN", 1, true), r.stderr)
  end)

  it("runs a class from a module found by require", function()
    local dir = H.tmpdir()
    local name = H.unique("counter")
    H.write(dir .. "/counter.lua", COUNTER)
    H.write(dir .. "/app.lua", app_script([[
package.path = "./?.lua;" .. package.path
local Counter = require("counter")
local sdf = app:dataframe{ source = Counter{ name = "]] .. name .. [[", limit = 10 } }
print(#app:run{ count = 10 })
]]))
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("10\n", r.stdout)
  end)

  it("runs a class from a file loaded by path", function()
    local dir = H.tmpdir()
    local name = H.unique("counter")
    H.write(dir .. "/lib_counter.lua", COUNTER)
    H.write(dir .. "/app.lua", app_script([[
local Counter = dofile("lib_counter.lua")
local sdf = app:dataframe{ source = Counter{ name = "]] .. name .. [[", limit = 10 } }
print(#app:run{ count = 10 })
]]))
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("10\n", r.stdout)
  end)

  it("fails the app with the source's name, pid and error when it raises", function()
    local dir = H.tmpdir()
    H.write(dir .. "/counter.lua", COUNTER)
    H.write(dir .. "/app.lua", app_script([[
package.path = "./?.lua;" .. package.path
local Counter = require("counter")
local sdf = app:dataframe{ source = Counter{ name = "failing", limit = 3, fail = true } }
sdf:print{ pretty = false }
app:run()
]]))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("ERROR qhost%[%d+%]: Counter 'failing' %(pid %d+%) failed with exit code 1: "
      .. "%./counter%.lua:12: counter failed on purpose"), r.stderr)
    assert.truthy(r.stderr:find("in function 'run'", 1, true), r.stderr)
  end)

  -- error({ code = 5 }) made the report itself fail ("bad argument to
  -- child_report"), and that internal error came back out of app:run in the
  -- source process, which then ran the script's lines below app:run().
  it("reports a source's table error as its JSON, and never runs the script past app:run() in the source", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", app_script([[
local Raiser = qhost.sources.Source:extend("Raiser")
function Raiser:run() error({ code = 5 }) end
app:dataframe{ source = Raiser{ name = "raiser" } }:print{ pretty = false }
local ok, err = pcall(app.run, app)
io.stderr:write("AFTER RUN\n")
print(ok, err)
]]))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("^false\tRaiser 'raiser' %(pid %d+%) failed with exit code 1: error object "
      .. '{"code":5}'), r.stdout)
    local _, after = r.stderr:gsub("AFTER RUN", "")
    assert.are.equal(1, after, r.stderr)
  end)

  it("runs the instance's own class when two source classes share a name", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", app_script([[
local function reader(text)   -- a factory: every class it makes is "Reader"
  local R = qhost.sources.Source:extend("Reader")
  function R:run() self:produce{ value = self:serialize{ value = text .. self.n }.value } end
  return R
end
local A = reader("from A ")
reader("from B ")
app:dataframe{ source = A{ name = "]] .. H.unique("a") .. [[", n = 1 } }:print{ pretty = false }
app:run{ count = 1, timeout = 20 }
]]))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal('{"value":"from A 1"}\n', r.stdout)
  end)

  it("refuses a source whose field cannot travel, before starting anything", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", app_script([[
local prefix = "k"
local src = qhost.sources.CSVSource{ path = "x.csv", name = "orders",
  key_extractor = function(row) return prefix .. row.id end }
app:dataframe{ source = src }
app:run()
]]))
    local r = H.run(dir, "app.lua")
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("CSVSource 'orders': field key_extractor is a function with upvalues (prefix)", 1, true),
      r.stderr)
    assert.falsy(r.stderr:find("started", 1, true))
  end)

  -- Starts an app printing what a never-ending Counter source produces
  -- (`define` may make a subclass of it, named `class`); returns the app's
  -- process once it printed 10 lines, and the pid of the source's process.
  local function start_counting(name, define, class)
    local dir = H.tmpdir()
    H.write(dir .. "/counter.lua", COUNTER)
    H.write(dir .. "/app.lua", app_script([[
package.path = "./?.lua;" .. package.path
local Counter = require("counter")
]] .. (define or "") .. [[
local sdf = app:dataframe{ source = ]] .. (class or "Counter") .. [[{ name = "]] .. H.unique(name)
      .. [[", limit = 1e9, pause = 0.01 } }
sdf:print{ pretty = false }
app:run()
]]))
    local p = H.start(dir, "app.lua")
    assert.is_true(H.eventually(function() return select(2, p:stdout():gsub("\n", "")) >= 10 end, 60), p:stderr())
    local children = H.children(p.pid)
    assert.are.equal(1, #children)
    return p, children[1]
  end

  it("stops sources and exits 0 on SIGTERM, leaving no process behind", function()
    local p, child = start_counting("slow")
    p:signal("TERM")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("stopped by signal 15", 1, true), r.stderr)
    assert.is_false(H.alive(child))
    -- Every line printed is a whole message, in order.
    local n = 0
    for line in r.stdout:gmatch("[^\n]+") do
      assert.are.equal(string.format('{"value":{"n":%d}}', n), line)
      n = n + 1
    end
  end)

  -- timeout(1), `kill -- -PGID` and systemd stop the whole process group:
  -- the source gets that SIGTERM and then the app's own. That is one stop,
  -- not a second signal that ends the source at once mid-cleanup.
  it("stops gracefully on a SIGTERM sent to the app and its source together (a process group)", function()
    local p, child = start_counting("group", [[
local Slow = Counter:extend("SlowCleanup")
function Slow:cleanup(failed)
  local until_t = os.clock() + 0.5   -- busy: the app's SIGTERM arrives meanwhile
  while os.clock() < until_t do end
  Counter.cleanup(self, failed)
  io.stderr:write("CLEANUP DONE\n")
end
]], "Slow")
    os.execute(string.format("kill -TERM %d %d", p.pid, child))
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("CLEANUP DONE", 1, true), r.stderr)
    assert.falsy(r.stderr:find("second stop signal", 1, true), r.stderr)
    assert.is_false(H.alive(child))
  end)

  it("kills a source that ignores running after shutdown_timeout", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", app_script([[
local host = require("qhost.host")
local Stubborn = qhost.sources.Source:extend("Stubborn")
function Stubborn:run()
  self:produce{ value = "1" }
  self:flush(30)
  while true do host.sleep(0.05) end
end
local sdf = app:dataframe{ source = Stubborn{ name = "]] .. H.unique("stubborn") .. [[", shutdown_timeout = 1 } }
sdf:print{ pretty = false }
app:run()
]]))
    local p = H.start(dir, "app.lua")
    assert.is_true(H.eventually(function() return p:stdout():find("\n") ~= nil end, 60), p:stderr())
    local children = H.children(p.pid)
    p:signal("INT")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("did not stop within shutdown_timeout=1s: killing it", 1, true), r.stderr)
    for _, pid in ipairs(children) do assert.is_false(H.alive(pid)) end
  end)
end)

describe("app:stop #" .. H.mode, function()
  it("stops the app gracefully from inside a pipeline function", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", app_script(COUNTER:gsub("return Counter\n$", "") .. [[
local seen = 0
local sdf = app:dataframe{ source = Counter{ name = "]] .. H.unique("c") .. [[", limit = 1e9, pause = 0.001 } }
sdf = sdf:update(function() seen = seen + 1; if seen == 5 then app:stop() end end)
app:run()
print("stopped after", seen)
]]))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    local n = tonumber(r.stdout:match("stopped after\t(%d+)"))
    assert.is_true(n ~= nil and n >= 5, r.stdout)
  end)
end)

describe("to_topic and serializers #" .. H.mode, function()
  it("sends values to another topic that a second dataframe reads", function()
    local dir = H.tmpdir()
    local out = H.unique("doubled")
    H.write(dir .. "/app.lua", app_script(COUNTER:gsub("return Counter\n$", "") .. [[
local out = app:topic("]] .. out .. [[", { value_serializer = "int", value_deserializer = "int",
                                             key_serializer = "string", key_deserializer = "string" })
local sdf = app:dataframe{ source = Counter{ name = "]] .. H.unique("c") .. [[", limit = 10 } }
sdf = sdf:filter(function(v) return v.n % 2 == 0 end):apply(function(v) return v.n * 100 end)
sdf:to_topic(out, { key = function(v) return "k" .. v end })
local second = app:dataframe(out)
second = second:apply(function(v, key) return key .. "=" .. v end, { metadata = true })
local got = {}
for _, v in ipairs(app:run{ count = 10 }) do if type(v) == "string" then got[#got + 1] = v end end
table.sort(got)
print(table.concat(got, " "))
]]))
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("k0=0 k200=200 k400=400 k600=600 k800=800\n", r.stdout)
  end)

  it("stops with the error of a failing pipeline function, naming topic, partition, offset and file:line", function()
    local dir = H.tmpdir()
    local name = H.unique("c")
    H.write(dir .. "/app.lua", app_script(COUNTER:gsub("return Counter\n$", "") .. [[
local sdf = app:dataframe{ source = Counter{ name = "]] .. name .. [[", limit = 10 } }
sdf = sdf:apply(function(v)
  if v.n == 3 then error("bad row " .. v.n) end
  return v
end)
app:run()
]]))
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("error processing the message at topic 'source__" .. name:gsub("%-", "%%-")
      .. "' partition 0 offset 3: app%.lua:%d+: bad row 3"), r.stderr)
  end)
end)

describe("the topics an app uses #" .. H.mode, function()
  -- (the embedded broker makes every topic the app declares, in memory)
  it("are kept when they exist, created with their config when missing, or refused when creating is off", function()
    if H.mode ~= "kafka" then pending("topics that exist before the app: real Kafka") return end
    local clients = require("qhost.kafka.clients")
    local admin = assert(clients.admin({ ["bootstrap.servers"] = H.broker }))
    local existing, missing = H.unique("t-old"), H.unique("t-new")
    assert(admin:create_topics({ { name = existing, num_partitions = 3, replication_factor = 1 } }, 30))
    assert.is_true(H.eventually(function() return admin:partitions(existing, 10) == 3 end, 30))
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[", loglevel = "DEBUG",
                               auto_create_topics = arg[1] == "create" }
local cfg = qhost.TopicConfig{ num_partitions = 2, replication_factor = 1 }
local old = app:topic("]] .. existing .. [[", { config = cfg })
local new = app:topic("]] .. missing .. [[", { config = cfg })
app:dataframe(old):to_topic(new)
app:run{ timeout = 1 }
print(old:num_partitions(), new:num_partitions())
]])
    local refused = H.run(dir, "app.lua", { args = { "no" } })
    assert.are.equal(1, refused.code)
    assert.truthy(refused.stderr:find("topic '" .. missing:gsub("%p", "%%%0") .. "' is not available on "
      .. H.broker:gsub("%p", "%%%0") .. ": unknown topic", 1), refused.stderr)
    assert.is_nil(admin:partitions(missing, 10))
    local r = H.run(dir, "app.lua", { args = { "create" } })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("3\t2\n", r.stdout)
    assert.truthy(r.stderr:find("topic '" .. existing:gsub("%p", "%%%0") .. "': exists"), r.stderr)
    assert.truthy(r.stderr:find("topic '" .. missing:gsub("%p", "%%%0") .. "': created"), r.stderr)
    assert.are.equal(2, admin:partitions(missing, 10))
    admin:close()
  end)
end)
