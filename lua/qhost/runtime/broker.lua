-- qhost.runtime.broker: which Kafka an app talks to, and how its clients
-- are configured. With no broker_address (nor QHOST_BROKER) it starts the
-- embedded broker (librdkafka's mock cluster, in this process's memory);
-- it creates the app's topics (or checks they exist), and builds the
-- librdkafka configs of the app's producer and consumer (its source
-- processes get the same).
local clients = require("qhost.kafka.clients")
local config_scope = require("qhost.kafka.config_scope")
local host = require("qhost.host")
local log = require("qhost.log")

local broker = {}

local function merge(into, from)
  for k, v in pairs(from) do into[k] = v end
  return into
end

-- broker.connect(app): sets app._broker (the bootstrap address) and, for
-- the embedded broker, app._mock.
function broker.connect(app)
  local address = app.broker_address or os.getenv("QHOST_BROKER")
  if address == "" then address = nil end
  if not address then
    local mock, err = clients.mock_cluster(1)
    if not mock then error("cannot start the embedded broker: " .. err, 0) end
    app._mock = mock
    address = mock:bootstraps()
    log.info("no broker configured (broker_address or QHOST_BROKER): using the embedded broker at %s "
      .. "(in memory, gone when this process exits)", address)
  end
  app._broker = address
end

function broker.producer_config(app)
  local config = {
    ["bootstrap.servers"] = app._broker,
    ["log_level"] = log.librdkafka_level(),
    -- The Java client's partitioner, as Quix uses: same key, same partition.
    ["partitioner"] = "murmur2_random",
    -- As Quix's default: a request the broker fails and librdkafka retries
    -- could otherwise land after the ones sent behind it (a partition's
    -- messages out of order, e.g. the first batch to a topic whose leader
    -- is not known yet), or twice.
    ["enable.idempotence"] = true,
    -- librdkafka queues up to 1 GB of messages by default: a checkpoint
    -- interval of large state changes would sit in this process's memory.
    -- 64 MB keeps every partition's batches full; a produce beyond it
    -- waits for deliveries (QUEUE_FULL is retried after a poll).
    ["queue.buffering.max.kbytes"] = 65536,
  }
  return merge(config, app.producer_extra_config)
end

-- A source process's producer: the app's, holding fewer messages. A
-- source that reads faster than the broker takes its messages (a CSV file)
-- keeps its producer's queue full; at librdkafka's 100,000 messages a CSV
-- source's process grew to 45 MB (each queued message costs some 250 bytes
-- besides its bytes). 30,000 still fills the batches in flight (1 MB each,
-- 5 at a time) with messages of 150 bytes; a produce beyond it waits for
-- deliveries. producer_extra_config can set it otherwise.
-- It also holds a source's plain messages and hands them to librdkafka 64
-- at a time, within 4 ms (qhost.produce.batch, host/kafka_batch.c):
-- per message, librdkafka's own produce call costs a tenth of a source's
-- CPU, most of which it spends once per call. (false in
-- producer_extra_config turns it off.)
function broker.source_producer_config(app)
  local config = broker.producer_config(app)
  if app.producer_extra_config["queue.buffering.max.messages"] == nil then
    config["queue.buffering.max.messages"] = 30000
  end
  if app.producer_extra_config["qhost.produce.batch"] == nil then
    config["qhost.produce.batch"] = true
  end
  return config
end

-- The admin client's properties: as Quix's TopicAdmin, the connection and
-- security settings of producer_extra_config (not its producer-only ones,
-- which the admin does not take). Its watermarks are high watermarks
-- (read_uncommitted), not the last stable offset: a store records the
-- changelog offset it holds as the changelog's end after its checkpoint
-- committed, and the end of a changelog with an open transaction is past it.
function broker.admin_config(app)
  -- (the app's broker address wins over one in the extra config, as in Quix)
  return merge(config_scope.common(app.producer_extra_config), { ["bootstrap.servers"] = app._broker,
    ["log_level"] = log.librdkafka_level(), ["isolation.level"] = "read_uncommitted" })
end

function broker.consumer_config(app)
  local config = {
    ["bootstrap.servers"] = app._broker,
    ["group.id"] = app.consumer_group,
    ["auto.offset.reset"] = app.auto_offset_reset,
    ["enable.auto.commit"] = false,
    ["enable.auto.offset.store"] = false,
    ["log_level"] = log.librdkafka_level(),
    ["fetch.wait.max.ms"] = 100,
    -- As Quix: partitions of the same number of every topic go to the same
    -- member, which joins need (librdkafka's default lists "range" first).
    ["partition.assignment.strategy"] = "range",
    -- Prefetching, bounded small: the queue is most of a consuming app's
    -- memory (each message also costs about 250 bytes of librdkafka's own).
    -- librdkafka 2.0.2 stops fetching at either bound and looks again only
    -- when its broker thread next wakes (up to 1 s later); the consumer
    -- wakes it once the queue is down to half (host/kafka_consumer.c,
    -- wake_fetch), so the next fetch overlaps the work on the rest. The
    -- benchmark pipeline (150-byte messages) ran as fast with 10,000
    -- messages and 2 MB as with 250,000 and 32 MB, in 30 MB instead of 150;
    -- and as fast with 1 MB, in 3.5 MB less: unless fetch.max.bytes is
    -- set, librdkafka also makes the byte bound (at least message.max.bytes,
    -- 1 MB) the largest fetch response, so the buffers that queued messages
    -- hold are smaller and fewer.
    ["queued.min.messages"] = 10000,
    ["queued.max.messages.kbytes"] = 1024,
  }
  -- Exactly-once: only what committed transactions wrote is read, as Quix.
  if app.processing_guarantee == "exactly-once" then config["isolation.level"] = "read_committed" end
  if app._mock then
    -- The mock answers an empty fetch only after fetch.wait.max.ms, even
    -- when data arrives meanwhile: with sources held to a budget ahead of
    -- the app (qhost.runtime.flow_control), that wait is their pause; keep
    -- it short.
    config["fetch.wait.max.ms"] = 5
    -- The mock waits session.timeout.ms - 1 s before completing a join.
    config["session.timeout.ms"] = 6000
    config["heartbeat.interval.ms"] = 500
  end
  return merge(config, app.consumer_extra_config)
end

-- A topic made a moment ago is listed before its partitions take writes.
-- A source released right after this wrote to it at once, and about one
-- run in ten (7 of 72 runs of a test on real Kafka) its first message was
-- missing from the topic while its delivery had been reported and the
-- source ended cleanly; with this wait, none in 40. (How librdkafka's
-- idempotent producer came to report it delivered was not traced: its
-- first request refused, the ones after it taken, is the likely way.)
-- So each partition of the new topic `name` must have its leader answer
-- for it (its end offset) before the app goes on: all partitions in one
-- request per leader, again for those that did not answer, up to 10 s.
local function wait_until_leaders_answer(app, admin, name)
  local waiting = {}
  for partition = 0, app._topics[name].actual_partitions - 1 do waiting[#waiting + 1] = partition end
  local deadline = host.monotonic() + 10
  while true do
    local ends, failures = admin:end_offsets(name, waiting, 1)   -- or nil, the request's error
    local still = {}
    for _, partition in ipairs(waiting) do
      if not (ends and ends[partition]) then still[#still + 1] = partition end
    end
    if #still == 0 then return end
    if host.monotonic() >= deadline then
      local why = ends and (failures[still[1]] or "no answer") or failures
      error(string.format("topic '%s' partition %d is not ready on %s: %s", name, still[1], app._broker, why), 0)
    end
    waiting = still
    host.sleep(0.02)
  end
end

-- Creates the topics `names` that are missing (when auto_create_topics)
-- and waits until each is known, recording its actual partition count on
-- its Topic.
local function create_and_check(app, admin, names)
  if #names == 0 then return end
  -- One metadata request says which exist; only the others are created (a
  -- CreateTopics round trip through the controller is the slowest step of
  -- a start-up, and for a topic that exists it does nothing).
  local counts, merr = admin:partitions(names, 30)
  if not counts then error(string.format("cannot read the topics' metadata from %s: %s", app._broker, merr), 0) end
  local missing, created = {}, {}
  for _, name in ipairs(names) do
    if counts[name] then log.debug("topic '%s': exists", name) else missing[#missing + 1] = name end
  end
  if app.auto_create_topics and #missing > 0 then
    local specs = {}
    for _, name in ipairs(missing) do
      local t = app._topics[name]
      specs[#specs + 1] = {
        name = name, num_partitions = t:num_partitions(),
        replication_factor = t.config and t.config.replication_factor or 1,
        config = t.config and t.config.extra_config or nil,
      }
    end
    local results, cerr = admin:create_topics(specs, 30)
    if not results then error(cerr, 0) end
    for name, what in pairs(results) do log.debug("topic '%s': %s", name, what) end
    created = missing
  end
  for _, name in ipairs(names) do
    local count, perr = counts[name], "unknown topic"
    -- A topic created a moment ago may not be in the metadata yet.
    local deadline = host.monotonic() + 10
    while not count and app.auto_create_topics and perr == "unknown topic" and host.monotonic() < deadline do
      count, perr = admin:partitions(name, 30)
      if not count then host.sleep(0.1) end
    end
    if not count then
      error(string.format("topic '%s' is not available on %s: %s", name, app._broker, perr), 0)
    end
    app._topics[name].actual_partitions = count
  end
  for _, name in ipairs(created) do wait_until_leaders_answer(app, admin, name) end
end

-- broker.prepare_topics(app): creates every topic the app uses (when
-- auto_create_topics) or checks they exist; keeps the admin client in
-- app._admin. Topics derived from another (changelogs, repartition
-- topics) come second, with that topic's actual partition count, as Quix
-- makes them; an existing one with another count is refused.
function broker.prepare_topics(app)
  local own, derived = {}, {}
  for name, t in pairs(app._topics) do
    if t.derived_from then derived[#derived + 1] = name else own[#own + 1] = name end
  end
  table.sort(own)
  table.sort(derived)
  local admin, err = clients.admin(broker.admin_config(app))
  if not admin then error("cannot create an admin client: " .. err, 0) end
  app._admin = admin
  if app._mock then
    for _, list in ipairs({ own, derived }) do
      for _, name in ipairs(list) do
        local t = app._topics[name]
        if t.derived_from then t.actual_partitions = t.derived_from:num_partitions() end
        local ok, merr = app._mock:create_topic(name, t:num_partitions())
        if not ok then error(string.format("cannot create topic '%s' on the embedded broker: %s", name, merr), 0) end
      end
    end
    return
  end
  create_and_check(app, admin, own)
  for _, name in ipairs(derived) do
    local t = app._topics[name]
    t.config.num_partitions = t.derived_from:num_partitions()
  end
  create_and_check(app, admin, derived)
  for _, name in ipairs(derived) do
    local t = app._topics[name]
    if t.actual_partitions ~= t.derived_from:num_partitions() then
      error(string.format("topic '%s' has %d partitions, but '%s' (which it belongs to) has %d: delete it, "
        .. "or use another consumer_group", name, t.actual_partitions, t.derived_from.name,
        t.derived_from:num_partitions()), 0)
    end
  end
end

-- broker.close(app): the admin client and the embedded broker, if any.
function broker.close(app)
  if app._admin then app._admin:close(); app._admin = false end
  if app._mock then app._mock:close(); app._mock = false end
end

return broker
