-- StatefulSource end to end: the state used in a run (its changelog records
-- read by the app itself), and a source that resumes across two runs.
-- Two runs need a broker that outlives them: QHOST_BROKER (real Kafka), or
-- in embedded mode an embedded broker held by this busted process, which
-- the runs use as their broker_address (topics made here, as its
-- CreateTopics is not served).
local H = require("helper")
local topic_reader = require("qhost.kafka.topic_reader")
local clients = require("qhost.kafka.clients")
local stateful = require("qhost.sources.stateful")

local lines_of = H.lines
local function start(dir, script, opts) return H.start_guarded(finally, dir, script, opts) end

describe("StatefulSource in a run #" .. H.mode, function()
  it("gets, sets, deletes and flushes; the changelog holds Quix's records", function()
    local dir = H.tmpdir()
    local group = H.unique("g")
    local name = H.unique("probe")
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local json = qhost.json
local Probe = qhost.sources.StatefulSource:extend("Probe")
function Probe:run()
  local s = self.state
  local out = { before = s:get("runs", 0), existed = s:exists("runs") }
  s:set("runs", out.before + 1)
  s:set("doc", { list = { 1, 2.5, "three" }, flag = false })
  s:set("gone", true)
  s:delete("gone")
  out.doc, out.gone, out.runs = s:get("doc"), s:exists("gone"), s:get("runs")
  self:produce{ key = "probe", value = json.encode(out) }
  self:flush()
end
local app = qhost.Application{ consumer_group = "]] .. group .. [[", auto_offset_reset = "earliest" }
local probe = Probe{ name = "]] .. name .. [[" }
local sdf = app:dataframe{ source = probe }
sdf = sdf:apply(function(v) return { probe = v } end)
local log = app:dataframe(app:topic(probe:changelog_topic(app.consumer_group).name, {
  key_deserializer = "json", value_deserializer = "json",
  config = qhost.TopicConfig{ extra_config = { ["cleanup.policy"] = "compact" } } }))
log = log:apply(function(v, key, _, headers)
  return { key = key, value = v == nil and "(tombstone)" or v, headers = headers }
end, { metadata = true })
local got = {}
for _, v in ipairs(app:run{ count = 4 }) do got[#got + 1] = json.encode(v) end
table.sort(got)
print(table.concat(got, "\n"))
]])
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    local headers = '"headers":[["__column_family__","default"],["__processed_tp_offsets__","null"]]'
    assert.are.same({   -- keys of a Lua table come out sorted
      '{' .. headers .. ',"key":"doc","value":{"flag":false,"list":[1,2.5,"three"]}}',
      '{' .. headers .. ',"key":"gone","value":"(tombstone)"}',
      '{' .. headers .. ',"key":"runs","value":1}',
      '{"probe":{"before":0,"doc":{"flag":false,"list":[1,2.5,"three"]},"existed":false,"gone":false,"runs":1}}',
    }, lines_of(r.stdout))
  end)

  it("fails the app, naming the source, when a state value cannot be stored", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local Bad = qhost.sources.StatefulSource:extend("Bad")
function Bad:run() self.state:set("f", { fn = print }) end
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[" }
app:add_source(Bad{ name = "bad" })
app:run()
]])
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("Bad 'bad' (pid ", 1, true), r.stderr)
    assert.truthy(r.stderr:find("app.lua:3: Bad 'bad': state:set(\"f\"): the value cannot be stored as JSON", 1, true),
      r.stderr)
  end)
end)

describe("StatefulSource across runs #" .. H.mode, function()
  local mock, broker
  lazy_setup(function()
    if H.mode == "kafka" then
      broker = H.broker
    else
      mock = assert(clients.mock_cluster(1))
      broker = mock:bootstraps()
    end
  end)
  lazy_teardown(function()
    if mock then mock:close() end
  end)

  local config = function() return { ["bootstrap.servers"] = broker } end

  -- How many messages `topic` holds (its end offsets), asked of the broker.
  local function count(topic)
    local admin = assert(clients.admin(config()))
    local total = 0
    local parts = admin:partitions(topic, 10)
    for p = 0, (parts or 0) - 1 do
      local low, high = admin:watermarks(topic, p, 10)
      if low then total = total + high end
    end
    admin:close()
    return total
  end

  local function values(topic)
    local list = {}
    assert(topic_reader.read_to_end(config(), topic, {
      on_record = function(r) list[#list + 1] = tonumber(r.value) end,
    }))
    return list
  end

  -- The state the changelog holds now, as a restore would see it.
  local function saved_state(group, name)
    local state = stateful.new_state("saved")
    local topic = "changelog__" .. group .. "--source-" .. name
    assert(topic_reader.read_to_end(config(), topic, { on_record = function(r) state:_apply(r) end }))
    return state
  end

  -- A counting source: produces next, next+1, ... and keeps `next` in its
  -- state, flushing every 7 messages.
  local function counter_app(dir, group, name)
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local host = require("qhost.host")
local Counter = qhost.sources.StatefulSource:extend("Counter")
function Counter:run()
  local n = self.state:get("next", 0)
  local unflushed = 0
  while self.running do
    self:produce{ key = "c", value = tostring(n) }
    n = n + 1
    self.state:set("next", n)
    unflushed = unflushed + 1
    if unflushed == 7 then self:flush(); unflushed = 0 end
    host.sleep(0.002)
  end
end
local app = qhost.Application{ broker_address = "]] .. broker .. [[", consumer_group = "]] .. group .. [[",
                               auto_create_topics = false }
app:add_source(Counter{ name = "]] .. name .. [[" })
app:run()
]])
    -- Made here, so that the runs only test resuming (the app creates them
    -- itself elsewhere in this file; the embedded broker here does not
    -- serve CreateTopics).
    local changelog_topic = "changelog__" .. group .. "--source-" .. name
    if mock then
      assert(mock:create_topic("source__" .. name, 1))
      assert(mock:create_topic(changelog_topic, 1))
    else
      local admin = assert(clients.admin(config()))
      assert(admin:create_topics({
        { name = "source__" .. name, num_partitions = 1, replication_factor = 1 },
        { name = changelog_topic, num_partitions = 1, replication_factor = 1,
          config = { ["cleanup.policy"] = "compact" } },
      }, 30))
      for _, t in ipairs({ "source__" .. name, changelog_topic }) do
        assert.is_true(H.eventually(function() return admin:partitions(t, 10) == 1 end, 30))
      end
      admin:close()
    end
  end

  local function run_until(dir, topic, at_least)
    local p = start(dir, "app.lua")
    assert.is_true(H.eventually(function() return count(topic) >= at_least end, 60), p:stderr())
    return p
  end

  it("continues exactly where a clean stop (SIGTERM) left it: every number once", function()
    local dir, group, name = H.tmpdir(), H.unique("g"), H.unique("counter")
    local topic = "source__" .. name
    counter_app(dir, group, name)

    local p = run_until(dir, topic, 30)
    p:signal("TERM")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local first = values(topic)
    assert.is_true(#first >= 30)
    for i, v in ipairs(first) do assert.are.equal(i - 1, v) end
    assert.are.equal(#first, saved_state(group, name):get("next"))

    p = run_until(dir, topic, #first + 30)
    p:signal("TERM")
    r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local all = values(topic)
    assert.is_true(#all >= #first + 30)
    for i, v in ipairs(all) do assert.are.equal(i - 1, v) end
    assert.are.equal(#all, saved_state(group, name):get("next"))
  end)

  it("after its process is killed, resumes from its last flush: nothing lost, the rest again", function()
    local dir, group, name = H.tmpdir(), H.unique("g"), H.unique("counter")
    local topic = "source__" .. name
    counter_app(dir, group, name)

    local p = run_until(dir, topic, 30)
    local children = H.children(p.pid)
    assert.are.equal(1, #children)
    os.execute("kill -KILL " .. children[1])
    local r = assert(p:wait(60))
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("Counter '" .. name .. "' (pid " .. children[1] .. ") was killed by SIGKILL", 1, true),
      r.stderr)
    local first = values(topic)
    for i, v in ipairs(first) do assert.are.equal(i - 1, v) end
    local resume = saved_state(group, name):get("next")
    assert.are.equal(0, resume % 7)               -- the state of a flush
    -- count >= 30 means the 29th number was produced, after the flush at 28;
    -- and what the state says was produced is in the topic.
    assert.is_true(resume >= 28 and resume <= #first)

    p = run_until(dir, topic, #first + 30)
    p:signal("TERM")
    r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local all = values(topic)
    for i = 1, #first do assert.are.equal(i - 1, all[i]) end
    for i = #first + 1, #all do assert.are.equal(resume + (i - #first - 1), all[i]) end
    assert.are.equal(resume + #all - #first, saved_state(group, name):get("next"))
  end)
end)

describe("examples/stateful_counter.lua #" .. H.mode, function()
  it("counts from 0 and ends at its limit", function()
    local dir = H.tmpdir()
    H.copy_example("stateful_counter.lua", dir)
    -- The example's fixed group and topics would collide on a shared broker.
    local text = H.read(dir .. "/stateful_counter.lua")
      :gsub('consumer_group = "stateful%-counter"', 'consumer_group = "' .. H.unique("g") .. '"')
      :gsub('name = "counter"', 'name = "' .. H.unique("counter") .. '"')
      :gsub("interval = 0%.1", "interval = 0")
    H.write(dir .. "/stateful_counter.lua", text)
    local p = start(dir, "stateful_counter.lua", { args = { "25" } })
    assert.is_true(H.eventually(function() return #lines_of(p:stdout()) >= 25 end, 60), p:stderr())
    p:signal("TERM")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local got = lines_of(r.stdout)
    assert.are.equal(25, #got)
    for i, line in ipairs(got) do assert.are.equal(string.format('{"value":{"n":%d}}', i - 1), line) end
  end)
end)
