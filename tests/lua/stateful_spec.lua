-- StatefulSource and its state in isolation: the state API, what flush
-- writes to the changelog and in which order, and restoring from a
-- changelog (replayed records, and a real read on an in-process embedded
-- broker). qhost.changelog's read and write are covered with it.
local qhost = require("qhost")
local topic_reader = require("qhost.kafka.topic_reader")
local clients = require("qhost.kafka.clients")
local stateful = require("qhost.sources.stateful")

local StatefulSource = qhost.sources.StatefulSource
local json = qhost.json

local Counter = StatefulSource:extend("StatefulCounter")
function Counter:run() end

-- A producer that records what it is asked, in order.
local function fake_producer(opts)
  opts = opts or {}
  local p = { calls = {} }
  function p:produce(topic, value, key, partition, timestamp, headers)
    self.calls[#self.calls + 1] = { "produce", topic = topic, value = value, key = key,
                                    partition = partition, timestamp = timestamp, headers = headers }
    return true
  end
  function p:flush(timeout)
    self.calls[#self.calls + 1] = { "flush", timeout = timeout }
    if opts.fail_flush then return nil, "flush timed out: 3 messages not delivered" end
    return true
  end
  return p
end

-- An instance as its process sets it up: a producer and a restored (here
-- empty) state.
local function running(name, producer)
  local src = Counter{ name = name }
  rawset(src, "_producer", producer)
  rawset(src, "_changelog", src:changelog_topic("group").name)
  rawset(src, "state", stateful.new_state(tostring(src)))
  return src
end

describe("StatefulSource state", function()
  local state
  before_each(function() state = stateful.new_state("StatefulCounter 's'") end)

  it("get returns the default for an absent key, and nil without one", function()
    assert.are.equal(5, state:get("missing", 5))
    assert.is_nil(state:get("missing"))
    assert.is_false(state:exists("missing"))
  end)

  it("set then get returns the value; exists is true", function()
    state:set("n", 41)
    state:set("s", "text")
    state:set("b", false)
    assert.are.equal(41, state:get("n", 0))
    assert.are.equal("text", state:get("s"))
    assert.are.equal(false, state:get("b", true))
    assert.is_true(state:exists("n"))
    assert.is_true(state:exists("b"))
  end)

  it("stores tables as JSON: get returns a fresh copy", function()
    local position = { file = "a.csv", line = 10, seen = { 1, 2, 3 } }
    state:set("pos", position)
    position.line = 99                     -- not set again: the state keeps 10
    local got = state:get("pos")
    assert.are.same({ file = "a.csv", line = 10, seen = { 1, 2, 3 } }, got)
    got.line = 50
    assert.are.equal(10, state:get("pos").line)
    state:set("empty", {})
    assert.are.same({}, state:get("empty"))
  end)

  it("stores JSON null, distinct from an absent key", function()
    state:set("nothing", json.null)
    assert.is_true(state:exists("nothing"))
    assert.are.equal(json.null, state:get("nothing", "default"))
  end)

  it("delete removes a key; deleting an absent key is fine", function()
    state:set("k", 1)
    state:delete("k")
    assert.is_false(state:exists("k"))
    assert.are.equal("d", state:get("k", "d"))
    state:delete("never")
    assert.is_false(state:exists("never"))
    state:set("k", 2)
    assert.are.equal(2, state:get("k"))
  end)

  it("refuses keys that are not strings, naming the source", function()
    assert.has_error(function() state:set(1, "x") end,
      "StatefulCounter 's': state:set: the key must be a string, got number")
    assert.has_error(function() state:get({}) end,
      "StatefulCounter 's': state:get: the key must be a string, got table")
    assert.has_error(function() state:delete(nil) end,
      "StatefulCounter 's': state:delete: the key must be a string, got nil")
    assert.has_error(function() state:exists(true) end,
      "StatefulCounter 's': state:exists: the key must be a string, got boolean")
    local ok, err = pcall(state.set, state, "\255", 1)
    assert.is_false(ok)
    assert.truthy(err:find("StatefulCounter 's': state:set: the key must be UTF-8 text", 1, true), err)
  end)

  it("refuses nil and values that are not JSON, keeping the old value", function()
    state:set("k", 1)
    assert.has_error(function() state:set("k", nil) end,
      'StatefulCounter \'s\': state:set("k", nil): use state:delete(key) to remove a key')
    local ok, err = pcall(state.set, state, "k", { f = print })
    assert.is_false(ok)
    assert.truthy(err:find('StatefulCounter \'s\': state:set("k"): the value cannot be stored as JSON: ', 1, true), err)
    assert.is_false(pcall(state.set, state, "k", { 1, nil, 3 }))
    assert.are.equal(1, state:get("k"))
    -- NaN is JSON as Python writes it (Quix stores it the same way).
    state:set("k", 0 / 0)
    local nan = state:get("k")
    assert.is_true(nan ~= nan)
  end)
end)

describe("StatefulSource", function()
  it("names its changelog topic as Quix: changelog__<group>--source-<name>, compacted, one partition", function()
    local t = Counter{ name = "ticks" }:changelog_topic("my-group")
    assert.are.equal("changelog__my-group--source-ticks", t.name)
    assert.are.equal(1, t:num_partitions())
    assert.are.same({ ["cleanup.policy"] = "compact" }, t.config.extra_config)
    assert.are.equal("bytes", t.serializer_names.value_serializer)
    assert.are.equal("source-ticks", Counter{ name = "ticks" }:store_name())
  end)

  it("is a Source: default topic, travel, and a clear error for state outside its process", function()
    local src = Counter{ name = "ticks", every = 3 }
    assert.are.equal("source__ticks", src:default_topic().name)
    assert.are.equal(Counter, require("qhost.sources.source").class_of(src))
    assert.truthy(require("qhost.runtime.transfer").encode({ name = src.name, every = src.every }))
    assert.has_error(function() return src.state:get("x") end,
      "StatefulSource: self.state exists only while the source runs in its process")
  end)

  it("flush waits for the data first, then writes each change once, then waits for it", function()
    local producer = fake_producer()
    local src = running("ticks", producer)
    src.state:set("next", 7)
    src.state:set("pos", { line = 3 })
    src.state:delete("old")
    src:flush(4)
    local topic = "changelog__group--source-ticks"
    local headers = { { "__column_family__", "default" }, { "__processed_tp_offsets__", "null" } }
    assert.are.same({
      { "flush", timeout = 4 },
      { "produce", topic = topic, key = '"next"', value = "7", partition = 0, headers = headers },
      { "produce", topic = topic, key = '"old"', value = nil, partition = 0, headers = headers },
      { "produce", topic = topic, key = '"pos"', value = '{"line":3}', partition = 0, headers = headers },
      { "flush", timeout = 4 },
    }, producer.calls)
    -- Nothing changed since: the next flush only waits for the data.
    producer.calls = {}
    src:flush()
    assert.are.same({ { "flush", timeout = 10 } }, producer.calls)
    -- The last value of a key is written, once.
    producer.calls = {}
    src.state:set("next", 8)
    src.state:set("next", 9)
    src:flush()
    assert.are.equal(3, #producer.calls)
    assert.are.equal("9", producer.calls[2].value)
    assert.are.equal(9, src.state:get("next"))
  end)

  it("does not write the state when the data is not delivered", function()
    local producer = fake_producer{ fail_flush = true }
    local src = running("ticks", producer)
    src.state:set("next", 7)
    assert.has_error(function() src:flush(1) end,
      "StatefulCounter 'ticks': flush timed out: 3 messages not delivered")
    assert.are.same({ { "flush", timeout = 1 } }, producer.calls)
    assert.are.equal(7, src.state:get("next"))   -- still pending, written by the next flush
    assert.is_true(src.state._dirty)
  end)

  it("cleanup after a clean run flushes the state; after a failure it does not", function()
    local producer = fake_producer()
    local src = running("ticks", producer)
    src.state:set("next", 1)
    src:cleanup(true)
    assert.are.same({}, producer.calls)
    src:cleanup(false)
    assert.are.equal(3, #producer.calls)
    assert.are.equal('"next"', producer.calls[2].key)
  end)

  it("flush outside its process raises", function()
    assert.has_error(function() Counter{ name = "x" }:flush() end,
      "StatefulCounter 'x': produce/flush only work while the source runs in its process")
  end)
end)

describe("StatefulSource restore", function()
  local function record(key, value, cf)
    local headers = cf and { { "__column_family__", cf }, { "__processed_tp_offsets__", "null" } } or nil
    return { key = key, value = value, headers = headers }
  end

  it("replays records in order: last write wins, a null value deletes", function()
    local state = stateful.new_state("s")
    for _, r in ipairs({
      record('"a"', "1", "default"), record('"b"', '{"x":[1,2]}', "default"),
      record('"a"', "2", "default"), record('"c"', '"gone"', "default"),
      record('"c"', nil, "default"), record('"d"', "true"),          -- no headers: ours too
      record('"e"', "5", "other-cf"),                                 -- another column family
      record(nil, "ignored"),                                         -- no key
      record("5", '"number key"', "default"),                          -- not a string: raw JSON text
    }) do state:_apply(r) end
    assert.are.equal(2, state:get("a"))
    assert.are.same({ x = { 1, 2 } }, state:get("b"))
    assert.is_false(state:exists("c"))
    assert.is_true(state:get("d"))
    assert.is_false(state:exists("e"))
    assert.are.equal("number key", state:get("5"))
    assert.is_false(state._dirty)
  end)

  describe("from a broker", function()
    local mock, broker, producer
    lazy_setup(function()
      mock = assert(clients.mock_cluster(1))
      broker = mock:bootstraps()
      producer = assert(clients.producer({ ["bootstrap.servers"] = broker }))
    end)
    lazy_teardown(function()
      if producer then producer:close() end
      if mock then mock:close() end
    end)

    local function app_config(group)
      return { consumer_group = group, consumer_config = { ["bootstrap.servers"] = broker } }
    end

    it("reads the changelog to its end, then flushes new changes that a second restore sees", function()
      local src = Counter{ name = "restored" }
      local topic = src:changelog_topic("g1").name
      assert(mock:create_topic(topic, 1))
      local headers = { { "__column_family__", "default" }, { "__processed_tp_offsets__", "null" } }
      local records = {}
      for i = 1, 50 do records[#records + 1] = { key = '"n"', value = tostring(i), headers = headers, partition = 0 } end
      records[#records + 1] = { key = '"tmp"', value = '"x"', headers = headers, partition = 0 }
      records[#records + 1] = { key = '"tmp"', value = nil, headers = headers, partition = 0 }
      records[#records + 1] = { key = '"pos"', value = '{"file":"a","line":4}', headers = headers, partition = 0 }
      assert(topic_reader.write(producer, topic, records))

      src:_restore_state(app_config("g1"))
      assert.are.equal(50, src.state:get("n"))
      assert.is_false(src.state:exists("tmp"))
      assert.are.same({ file = "a", line = 4 }, src.state:get("pos"))

      -- The restored instance flushes through its own producer.
      rawset(src, "_producer", producer)
      src.state:set("n", 51)
      src.state:delete("pos")
      src:flush()
      local again = Counter{ name = "restored" }
      again:_restore_state(app_config("g1"))
      assert.are.equal(51, again.state:get("n"))
      assert.is_false(again.state:exists("pos"))
    end)

    it("starts empty from an empty changelog", function()
      local src = Counter{ name = "fresh" }
      assert(mock:create_topic(src:changelog_topic("g2").name, 1))
      src:_restore_state(app_config("g2"))
      assert.is_false(src.state:exists("n"))
      assert.are.equal(0, src.state:get("n", 0))
    end)

    it("keeps state per consumer group and source name", function()
      local a, b = Counter{ name = "a" }, Counter{ name = "b" }
      for _, t in ipairs({ a:changelog_topic("g3"), b:changelog_topic("g3"), a:changelog_topic("g4") }) do
        assert(mock:create_topic(t.name, 1))
      end
      assert(topic_reader.write(producer, a:changelog_topic("g3").name, { { key = '"who"', value = '"a in g3"', partition = 0 } }))
      a:_restore_state(app_config("g3"))
      b:_restore_state(app_config("g3"))
      local a4 = Counter{ name = "a" }
      a4:_restore_state(app_config("g4"))
      assert.are.equal("a in g3", a.state:get("who"))
      assert.is_false(b.state:exists("who"))
      assert.is_false(a4.state:exists("who"))
    end)

    it("fails naming the source and the topic when the changelog is missing", function()
      local src = Counter{ name = "nowhere" }
      local ok, err = pcall(src._restore_state, src, app_config("g5"))
      assert.is_false(ok)
      assert.truthy(err:find("StatefulCounter 'nowhere': cannot restore its state from changelog topic "
        .. "'changelog__g5--source-nowhere': ", 1, true), err)
    end)
  end)
end)

describe("changelog", function()
  local mock, broker, producer
  lazy_setup(function()
    mock = assert(clients.mock_cluster(1))
    broker = mock:bootstraps()
    producer = assert(clients.producer({ ["bootstrap.servers"] = broker }))
  end)
  lazy_teardown(function()
    if producer then producer:close() end
    if mock then mock:close() end
  end)

  it("writes records with every field and reads each partition to its end, in order", function()
    assert(mock:create_topic("cl-three", 3))
    local records = {}
    for i = 0, 29 do
      records[#records + 1] = { key = "k" .. i, value = (i % 7 == 0) and nil or ("v" .. i), partition = i % 3,
                                timestamp = 1700000000000 + i, headers = { { "h", "x" .. i }, { "null", nil } } }
    end
    assert(topic_reader.write(producer, "cl-three", records))
    local got = {}
    local count = assert(topic_reader.read_to_end({ ["bootstrap.servers"] = broker }, "cl-three", {
      on_record = function(r) got[#got + 1] = r end,
    }))
    assert.are.equal(30, count)
    local by_partition = { [0] = {}, {}, {} }
    for _, r in ipairs(got) do table.insert(by_partition[r.partition], r) end
    for p = 0, 2 do
      assert.are.equal(10, #by_partition[p])
      for j, r in ipairs(by_partition[p]) do
        local i = (j - 1) * 3 + p
        assert.are.equal(j - 1, r.offset)
        assert.are.equal("k" .. i, r.key)
        assert.are.equal((i % 7 == 0) and nil or ("v" .. i), r.value)
        assert.are.equal(1700000000000 + i, r.timestamp)
        assert.are.same({ { "h", "x" .. i }, { "null", nil } }, r.headers)
      end
    end
    -- Only some partitions, and an empty topic.
    local n = assert(topic_reader.read_to_end({ ["bootstrap.servers"] = broker }, "cl-three", { partitions = { 1 } }))
    assert.are.equal(10, n)
    assert(mock:create_topic("cl-empty", 2))
    assert.are.equal(0, assert(topic_reader.read_to_end({ ["bootstrap.servers"] = broker }, "cl-empty")))
  end)

  it("returns nil, err for a missing topic", function()
    local n, err = topic_reader.read_to_end({ ["bootstrap.servers"] = broker }, "cl-missing", { timeout = 5 })
    assert.is_nil(n)
    assert.are.equal("topic 'cl-missing': unknown topic", err)
  end)

  it("passes an error raised by on_record through", function()
    assert(mock:create_topic("cl-raise", 1))
    assert(topic_reader.write(producer, "cl-raise", { { key = "a", value = "1", partition = 0 } }))
    assert.has_error(function()
      topic_reader.read_to_end({ ["bootstrap.servers"] = broker }, "cl-raise", {
        on_record = function() error("stop here", 0) end,
      })
    end, "stop here")
  end)
end)
