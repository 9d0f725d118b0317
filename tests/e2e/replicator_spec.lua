-- KafkaReplicatorSource end to end: copying a topic of another cluster with
-- every field, resuming from its checkpoint without duplicates, reading the
-- copy in a dataframe, and Quix's validation errors.
-- The other cluster ("source cluster"): with QHOST_BROKER set, a second real
-- Kafka started here (tests/kafka/kafka.sh); in embedded mode, an embedded
-- broker held by this busted process, which the app reaches over TCP like
-- any broker. The destination: QHOST_BROKER, or in embedded mode the app's
-- own embedded broker where nothing needs to outlive a run, else a second
-- embedded broker held here (topics made here: its CreateTopics is not
-- served).
local H = require("helper")
local qhost = require("qhost")
local topic_reader = require("qhost.kafka.topic_reader")
local clients = require("qhost.kafka.clients")
local topic_mod = require("qhost.topic")

local ROOT = os.getenv("QHOST_TEST_ROOT") or "."
local Replicator = qhost.sources.KafkaReplicatorSource

local lines_of = H.lines
local function start(dir, script, opts) return H.start_guarded(finally, dir, script, opts) end

describe("KafkaReplicatorSource #" .. H.mode, function()
  local src_broker, dest_broker         -- source cluster; destination that outlives runs
  local src_mock, dest_mock             -- embedded mode
  local kafka_dir                       -- kafka mode: the second broker's folder
  local src_producer

  lazy_setup(function()
    if H.mode == "kafka" then
      kafka_dir = H.tmpdir()
      local out = H.exec(string.format("%s/tests/kafka/kafka.sh start %s", ROOT, H.quote(kafka_dir)))
      src_broker = out:match("(127%.0%.0%.1:%d+)%s*$")
      assert(src_broker, "cannot start a second Kafka broker: " .. out)
      dest_broker = H.broker
    else
      src_mock = assert(clients.mock_cluster(1))
      dest_mock = assert(clients.mock_cluster(1))
      src_broker, dest_broker = src_mock:bootstraps(), dest_mock:bootstraps()
    end
    -- Idempotent: the tests compare the copy with the order they produced
    -- in, and a plain producer's retry (the first messages to a topic just
    -- created can meet a leader not ready yet) lands after the messages
    -- sent meanwhile (a CI run saw k0 last in partition 0).
    -- Compressed batches: the copy reads each record's headers, or that it
    -- has none, from the decompressed batch (host/kafka_consumer.c).
    src_producer = assert(clients.producer({ ["bootstrap.servers"] = src_broker, ["enable.idempotence"] = true,
                                             ["compression.type"] = "lz4" }))
  end)

  lazy_teardown(function()
    if src_producer then src_producer:close() end
    if src_mock then src_mock:close() end
    if dest_mock then dest_mock:close() end
    if kafka_dir then
      H.exec(string.format("%s/tests/kafka/kafka.sh stop %s", ROOT, H.quote(kafka_dir)))
    end
  end)

  local function create_topic(mock, broker, name, partitions)
    if mock then
      assert(mock:create_topic(name, partitions))
      return
    end
    local admin = assert(clients.admin({ ["bootstrap.servers"] = broker }))
    assert(admin:create_topics({ { name = name, num_partitions = partitions, replication_factor = 1 } }, 30))
    assert.is_true(H.eventually(function() return admin:partitions(name, 10) == partitions end, 30))
    admin:close()
  end

  local function source_topic(partitions)
    local name = H.unique("orig")
    create_topic(src_mock, src_broker, name, partitions)
    return name
  end

  -- Records i = first..last: partition i % 3, a key (none for i = 4), a
  -- JSON value (none for 5, raw bytes for 6), headers on even i (a name
  -- twice, and a null value), timestamps a second apart.
  local function records(first, last)
    local list = {}
    for i = first, last do
      local value = '{"i":' .. i .. '}'
      if i == 5 then value = nil elseif i == 6 then value = "\0\1\2\255raw" end
      list[#list + 1] = {
        key = i ~= 4 and ("k" .. i) or nil, value = value, partition = i % 3,
        timestamp = 1600000000000 + i * 1000,
        headers = i % 2 == 0 and { { "trace", "t" .. i }, { "trace", "again" }, { "nullh", nil } } or nil,
      }
    end
    return list
  end

  local function produce(topic, list)
    assert(topic_reader.write(src_producer, topic, list))
  end

  -- Every record of `topic` on `broker`, grouped by partition, in order,
  -- with the fields the copy must keep.
  local function read_all(broker, topic)
    local by_partition = {}
    assert(topic_reader.read_to_end({ ["bootstrap.servers"] = broker }, topic, {
      on_record = function(r)
        by_partition[r.partition] = by_partition[r.partition] or {}
        table.insert(by_partition[r.partition], { key = r.key, value = r.value, partition = r.partition,
                                                  timestamp = r.timestamp, headers = r.headers })
      end,
    }))
    return by_partition
  end

  local function count(broker, topic)
    local admin = assert(clients.admin({ ["bootstrap.servers"] = broker }))
    local total = 0
    for p = 0, (admin:partitions(topic, 10) or 0) - 1 do
      local low, high = admin:watermarks(topic, p, 10)
      if low then total = total + high end   -- a new topic may have no leader yet
    end
    admin:close()
    return total
  end

  local function committed(broker, group, topic, partitions)
    local consumer = assert(clients.consumer({ ["bootstrap.servers"] = broker, ["group.id"] = group }))
    local query = {}
    for p = 0, partitions - 1 do query[#query + 1] = { topic = topic, partition = p } end
    local list = assert(consumer:committed(query, 10))
    consumer:close()
    local offsets = {}
    for _, tp in ipairs(list) do offsets[tp.partition] = tp.offset end
    return offsets
  end

  -- A standalone app whose only source is the replicator.
  local function replicator_app(dir, opts)
    local broker_line = dest_mock and string.format('broker_address = %q, auto_create_topics = false,', dest_broker) or ""
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ %s consumer_group = %q, commit_interval = 0.5 }
local src = qhost.sources.KafkaReplicatorSource{ name = %q, topic = %q, broker_address = %q,
  auto_offset_reset = "earliest", consumer_poll_timeout = 0.2 }
%s
app:run()
]], broker_line, H.unique("g"), opts.name, opts.topic, src_broker,
      opts.add or "app:add_source(src)"))
  end

  it("copies partition, key, value bytes, headers and timestamp; resumes after a stop without duplicates", function()
    local topic = source_topic(3)
    local name = H.unique("rep")
    local dest = "source__" .. name
    if dest_mock then assert(dest_mock:create_topic(dest, 3)) end
    local first = records(0, 29)
    produce(topic, first)
    local dir = H.tmpdir()
    replicator_app(dir, { name = name, topic = topic })

    local p = start(dir, "app.lua")
    assert.is_true(H.eventually(function() return count(dest_broker, dest) >= 30 end, 60), p:stderr())
    p:signal("TERM")
    local r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local expected = { [0] = {}, {}, {} }
    for _, rec in ipairs(first) do table.insert(expected[rec.partition], rec) end
    assert.are.same(expected, read_all(dest_broker, dest))
    -- The checkpoint: the next offset of each source partition, in the
    -- group source-<name>-offsets on the destination (Quix's).
    assert.are.same({ [0] = 10, 10, 10 }, committed(dest_broker, "source-" .. name .. "-offsets", dest, 3))
    if not dest_mock then
      local admin = assert(clients.admin({ ["bootstrap.servers"] = dest_broker }))
      assert.are.equal(3, admin:partitions(dest, 10))   -- the default topic copies the count
      admin:close()
    end

    local more = records(30, 44)
    produce(topic, more)
    p = start(dir, "app.lua")
    assert.is_true(H.eventually(function() return count(dest_broker, dest) >= 45 end, 60), p:stderr())
    p:signal("TERM")
    r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    for _, rec in ipairs(more) do table.insert(expected[rec.partition], rec) end
    assert.are.same(expected, read_all(dest_broker, dest))
    assert.are.same({ [0] = 15, 15, 15 }, committed(dest_broker, "source-" .. name .. "-offsets", dest, 3))
  end)

  it("checkpoints while it runs (commit_interval): killed after one, it resumes from it", function()
    local topic = source_topic(3)
    local name = H.unique("rep")
    local dest = "source__" .. name
    local group = "source-" .. name .. "-offsets"
    create_topic(dest_mock, dest_broker, dest, 3)
    local first = records(0, 29)
    produce(topic, first)
    local dir = H.tmpdir()
    replicator_app(dir, { name = name, topic = topic })

    local p = start(dir, "app.lua")
    assert.is_true(H.eventually(function()
      local c = committed(dest_broker, group, dest, 3)
      return c[0] == 10 and c[1] == 10 and c[2] == 10
    end, 60), p:stderr())
    local children = H.children(p.pid)
    assert.are.equal(1, #children)
    os.execute("kill -KILL " .. children[1])
    local r = assert(p:wait(60))
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("was killed by SIGKILL", 1, true), r.stderr)

    local more = records(30, 38)
    produce(topic, more)
    p = start(dir, "app.lua")
    assert.is_true(H.eventually(function() return count(dest_broker, dest) >= 39 end, 60), p:stderr())
    p:signal("TERM")
    r = assert(p:wait(60))
    assert.are.equal(0, r.code, r.stderr)
    local expected = { [0] = {}, {}, {} }
    for _, list in ipairs({ first, more }) do
      for _, rec in ipairs(list) do table.insert(expected[rec.partition], rec) end
    end
    assert.are.same(expected, read_all(dest_broker, dest))
    assert.are.same({ [0] = 13, 13, 13 }, committed(dest_broker, group, dest, 3))
  end)

  it("feeds a dataframe that reads the copy with its deserializers, partition by partition", function()
    local topic = source_topic(3)
    local list = {}
    for i = 0, 8 do
      list[#list + 1] = { key = "k" .. i, value = '{"i":' .. i .. '}', partition = i % 3, timestamp = 1600000000000 + i }
    end
    produce(topic, list)
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local src = qhost.sources.KafkaReplicatorSource{ name = %q, topic = %q, broker_address = %q,
  auto_offset_reset = "earliest", key_deserializer = "string", value_deserializer = "json" }
local sdf = app:dataframe{ source = src }
sdf = sdf:apply(function(v, key, ts) return { i = v.i, key = key, ts = ts } end, { metadata = true })
local got = {}
for _, row in ipairs(app:run{ count = 9, metadata = true }) do
  got[#got + 1] = string.format("%%d %%s %%d %%d", row.i, row.key, row.ts, row._partition)
end
table.sort(got)
print(table.concat(got, "\n"))
]], H.unique("g"), H.unique("rep"), topic, src_broker))
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    local want = {}
    for i = 0, 8 do want[#want + 1] = string.format("%d k%d %d %d", i, i, 1600000000000 + i, i % 3) end
    assert.are.same(want, lines_of(r.stdout))
  end)

  it("fails when the source topic is not found", function()
    local dir = H.tmpdir()
    local name = H.unique("rep")
    local missing = H.unique("missing")
    replicator_app(dir, { name = name, topic = missing })
    if dest_mock then assert(dest_mock:create_topic("source__" .. name, 1)) end
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find(string.format("KafkaReplicatorSource '%s': source topic '%s' not found on %s",
      name, missing, src_broker), 1, true), r.stderr)
  end)

  it("fails when the source topic has more partitions than the destination", function()
    local dir = H.tmpdir()
    local name = H.unique("rep")
    local topic = source_topic(3)
    local dest = H.unique("narrow")
    replicator_app(dir, { name = name, topic = topic, add = string.format(
      "app:add_source(src, app:topic(%q, { config = qhost.TopicConfig{ num_partitions = 2 } }))", dest) })
    if dest_mock then assert(dest_mock:create_topic(dest, 2)) end
    local r = H.run(dir, "app.lua", { timeout = 60 })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find(string.format(
      "KafkaReplicatorSource '%s': source topic '%s' has more partitions (3) than destination topic '%s' (2)",
      name, topic, dest), 1, true), r.stderr)
  end)

  -- An app creates its topics before its sources start, so this is checked
  -- on the source itself, set up as its process would.
  it("fails when the destination topic is not found", function()
    local topic = source_topic(1)
    local src = Replicator{ name = "lost", topic = topic, broker_address = src_broker }
    rawset(src, "producer_topic", topic_mod.new("nowhere-" .. H.unique("dest")))
    rawset(src, "_app_config", { consumer_group = "g", consumer_config = { ["bootstrap.servers"] = dest_broker },
                                 commit_interval = 5, commit_every = 0 })
    local log = require("qhost.log")
    local level = log.level_name()
    log.set_level("WARNING")              -- not its "copying topic" line amid busted's
    local ok, err = pcall(src.setup, src)
    src:cleanup(true)
    log.set_level(level)
    assert.is_false(ok)
    assert.are.equal(string.format("KafkaReplicatorSource 'lost': destination topic '%s' not found on %s",
      src.producer_topic.name, dest_broker), err)
  end)

  it("has a default topic source__<name> with the source topic's partitions and the deserializers given", function()
    local topic = source_topic(3)
    local t = Replicator{ name = "copy", topic = topic, broker_address = src_broker,
                          key_deserializer = "string", value_deserializer = "double" }:default_topic()
    assert.are.equal("source__copy", t.name)
    assert.are.equal(3, t:num_partitions())
    assert.are.same({ key_serializer = "bytes", value_serializer = "bytes",
                      key_deserializer = "string", value_deserializer = "double" }, t.serializer_names)
    -- Not found: one partition (Quix), and setup reports it.
    local missing = Replicator{ name = "m", topic = H.unique("missing"), broker_address = src_broker }
    assert.are.equal(1, missing:default_topic():num_partitions())
  end)
end)

describe("KafkaReplicatorSource options", function()
  it("checks them, naming the source", function()
    local base = { name = "r", topic = "t", broker_address = "127.0.0.1:1" }
    local function with(extra)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(extra) do o[k] = v end
      return o
    end
    local r = Replicator(base)
    assert.are.equal("latest", r.auto_offset_reset)
    assert.are.equal("bytes", r.key_deserializer)
    assert.are.equal("json", r.value_deserializer)
    assert.are.equal(10, r.shutdown_timeout)
    assert.are.same({}, r.consumer_extra_config)
    assert.are.equal("source-r", r:source_consumer_group())
    assert.are.equal("source-r-offsets", r:target_consumer_group())
    assert.has_error(function() Replicator(with{ topic = false }) end,
      "KafkaReplicatorSource 'r': topic must be a string, got a boolean")
    assert.has_error(function() Replicator(with{ topic = "" }) end,
      "KafkaReplicatorSource 'r': topic must be the name of the topic to copy")
    assert.has_error(function() Replicator(with{ broker_address = "" }) end,
      "KafkaReplicatorSource 'r': broker_address must be the source cluster's host:port[,host:port]")
    assert.has_error(function() Replicator(with{ auto_offset_reset = "newest" }) end,
      'KafkaReplicatorSource \'r\': auto_offset_reset must be latest, earliest or error, got "newest"')
    assert.has_error(function() Replicator(with{ consumer_extra_config = "x" }) end,
      'KafkaReplicatorSource \'r\': consumer_extra_config must be a table, got the string "x"')
    assert.has_error(function() Replicator(with{ commit_every = -1 }) end,
      "KafkaReplicatorSource 'r': commit_interval and commit_every must be >= 0")
    assert.has_error(function() Replicator(with{ value_deserializer = "yaml" }) end,
      "KafkaReplicatorSource 'r' value_deserializer: unknown serializer \"yaml\" "
      .. "(json, string, str, bytes, int, integer, double)")
    assert.has_error(function() Replicator(with{ brokers = "x" }) end,
      'KafkaReplicatorSource \'r\': unknown option "brokers" (valid: auto_offset_reset, broker_address, '
      .. 'commit_every, commit_interval, consumer_extra_config, consumer_poll_timeout, key_deserializer, name, '
      .. 'on_client_connect_failure, on_client_connect_success, on_consumer_error, shutdown_timeout, topic, '
      .. 'value_deserializer)')
    assert.has_error(function() Replicator{ topic = "t", broker_address = "b" } end,
      "KafkaReplicatorSource: name must be a non-empty string")
  end)
end)
