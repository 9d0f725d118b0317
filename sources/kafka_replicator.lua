-- KafkaReplicatorSource: copies a topic of another Kafka cluster to the
-- app's broker, message by message with the same partition, key, value,
-- headers and timestamp (API.md; behaviour as Quix's
-- quixstreams/sources/core/kafka/kafka.py and checkpoint.py).
--
--   KafkaReplicatorSource{ name, topic, broker_address,
--     auto_offset_reset = "latest", consumer_extra_config = {},
--     consumer_poll_timeout = 1.0, shutdown_timeout = 10,
--     key_deserializer = "bytes", value_deserializer = "json",
--     commit_interval = <the app's>, commit_every = <the app's>,
--     on_consumer_error = fn(err, row, logger) -> true to skip }
--
-- Key and value bytes are copied as they are; the deserializers only set
-- how the app reads the default topic, source__<name>, which gets the
-- source topic's partition count (asked of the source cluster when the
-- source is added to the app).
--
-- Progress is checkpointed on the destination cluster as Quix does it:
-- the offsets of the consumer group source-<name>-offsets, committed for
-- the destination topic's partitions (partition p holds the next offset of
-- source partition p). A checkpoint first waits until every copied message
-- is delivered, then commits; one is taken every commit_interval seconds or
-- commit_every messages, and a last one when the source stops cleanly. A
-- restart resumes from the checkpoint: after a clean stop nothing is copied
-- twice; after a crash, what was copied since the last checkpoint is copied
-- again (at-least-once). Partitions without a checkpoint start at
-- auto_offset_reset.
--
-- Unlike Quix, the source partitions are assigned to this one source
-- process rather than shared through the group source-<name> on the source
-- cluster: two replicators with the same name would both copy everything.
-- processing_guarantee = "exactly-once" is not applied here (at-least-once).
local argcheck = require("qhost.runtime.argcheck")
local ffi = require("ffi")
local C = require("qhost.kafka.ffi")
local clients = require("qhost.kafka.clients")
local config_scope = require("qhost.kafka.config_scope")
local flow_control = require("qhost.runtime.flow_control")
local host = require("qhost.host")
local log = require("qhost.log")
local serializers = require("qhost.serializers")
local Source = require("qhost.sources.source").Source
local topic_mod = require("qhost.topic")

local KafkaReplicatorSource = Source:extend("KafkaReplicatorSource")

local PARTITION_EOF = -191
local BATCH = 500
local REQUEST_TIMEOUT = 30         -- seconds, for metadata and committed offsets
local CHECKPOINT_FLUSH_TIMEOUT = 60

local function fail(self, fmt, ...)
  error(string.format("KafkaReplicatorSource '%s': " .. fmt, tostring(self.name), ...), 0)
end

local OPTIONS = argcheck.declare("KafkaReplicatorSource", {
  name = "string", topic = "string", broker_address = "string", auto_offset_reset = "string",
  consumer_extra_config = "table", consumer_poll_timeout = "number", commit_interval = "number",
  commit_every = "number", key_deserializer = "string", value_deserializer = "string",
  on_consumer_error = "function", shutdown_timeout = "number", on_client_connect_success = "function",
  on_client_connect_failure = "function",
})

function KafkaReplicatorSource:init(opts)
  if getmetatable(self) == KafkaReplicatorSource then
    argcheck.options(string.format("KafkaReplicatorSource '%s'", tostring(opts.name)), opts, OPTIONS)
  end
  Source.init(self, opts)
  local name = self.name
  if type(self.topic) ~= "string" or self.topic == "" then
    argcheck.fail("KafkaReplicatorSource '%s': topic must be the name of the topic to copy", name)
  end
  if type(self.broker_address) ~= "string" or self.broker_address == "" then
    argcheck.fail("KafkaReplicatorSource '%s': broker_address must be the source cluster's host:port[,host:port]",
      name)
  end
  self.auto_offset_reset = self.auto_offset_reset or "latest"
  local reset = self.auto_offset_reset
  if reset ~= "latest" and reset ~= "earliest" and reset ~= "error" then
    argcheck.fail("KafkaReplicatorSource '%s': auto_offset_reset must be latest, earliest or error, "
      .. "got %q", name, tostring(reset))
  end
  self.consumer_extra_config = self.consumer_extra_config or {}
  self.consumer_poll_timeout = self.consumer_poll_timeout or 1.0
  self.key_deserializer = self.key_deserializer or "bytes"
  self.value_deserializer = self.value_deserializer or "json"
  if (self.commit_interval or 0) < 0 or (self.commit_every or 0) < 0 then
    argcheck.fail("KafkaReplicatorSource '%s': commit_interval and commit_every must be >= 0", name)
  end
  for _, field in ipairs({ "key_deserializer", "value_deserializer" }) do
    if type(self[field]) ~= "string" then
      argcheck.fail("KafkaReplicatorSource '%s': %s must be a serializer name", name, field)
    end
    local ok, err = pcall(serializers.get, self[field], string.format("KafkaReplicatorSource '%s' %s", name, field))
    if not ok then argcheck.fail("%s", (err:gsub("^[^:]*:%d+: ", ""))) end
  end
end

-- Names as Quix's: the group on the source cluster, and the group on the
-- destination whose offsets are the checkpoints.
function KafkaReplicatorSource:source_consumer_group()
  return "source-" .. self.name
end

function KafkaReplicatorSource:target_consumer_group()
  return "source-" .. self.name .. "-offsets"
end

local function merge(into, from)
  for k, v in pairs(from or {}) do into[k] = v end
  return into
end

local function source_cluster_config(self)
  return merge({
    ["bootstrap.servers"] = self.broker_address,
    ["log_level"] = log.librdkafka_level(),
  }, self.consumer_extra_config)
end

-- The partition count of `topic` on the cluster of `config` (a consumer's
-- properties: its connection and security settings serve the admin handle
-- too); nil, err ("unknown topic" when it does not exist).
local function partitions_of(config, topic)
  local admin, err = clients.admin(config_scope.common(config))
  if not admin then return nil, err end
  local count, perr = admin:partitions(topic, REQUEST_TIMEOUT)
  admin:close()
  return count, perr
end

-- source__<name>, with as many partitions as the source topic (Quix: the
-- source topic's config; one partition when it is not found, which setup()
-- then reports). Runs in the app process when the source is added.
function KafkaReplicatorSource:default_topic()
  local count, err = partitions_of(source_cluster_config(self), self.topic)
  if not count then
    if err ~= "unknown topic" then
      fail(self, "cannot read topic '%s' on %s: %s", self.topic, self.broker_address, err)
    end
    count = 1
  end
  return topic_mod.new("source__" .. self.name, {
    key_serializer = "bytes", value_serializer = "bytes",
    key_deserializer = self.key_deserializer, value_deserializer = self.value_deserializer,
    config = topic_mod.TopicConfig{ num_partitions = count, replication_factor = 1 },
  })
end

-- In the source's process ----------------------------------------------------

local function app_config(self)
  local cfg = rawget(self, "_app_config")
  if not cfg then fail(self, "runs only in an app (its process gets the app's settings)") end
  return cfg
end

-- Quix's _validate_topics: both topics exist, and the destination has at
-- least the source's partitions (messages keep their partition).
local function validate_topics(self)
  local count, err = partitions_of(source_cluster_config(self), self.topic)
  if not count then
    if err == "unknown topic" then fail(self, "source topic '%s' not found on %s", self.topic, self.broker_address) end
    fail(self, "cannot read source topic '%s' on %s: %s", self.topic, self.broker_address, err)
  end
  local dest = self.producer_topic.name
  local target = app_config(self).consumer_config
  local dcount, derr = partitions_of(target, dest)
  if not dcount then
    if derr == "unknown topic" then
      fail(self, "destination topic '%s' not found on %s", dest, target["bootstrap.servers"])
    end
    fail(self, "cannot read destination topic '%s': %s", dest, derr)
  end
  if count > dcount then
    fail(self, "source topic '%s' has more partitions (%d) than destination topic '%s' (%d)",
      self.topic, count, dest, dcount)
  elseif count < dcount then
    log.warning("source topic '%s' has fewer partitions (%d) than destination topic '%s' (%d)",
      self.topic, count, dest, dcount)
  end
  return count
end

function KafkaReplicatorSource:setup()
  local app = app_config(self)
  self._commit_interval = self.commit_interval or app.commit_interval or 5.0
  self._commit_every = self.commit_every or app.commit_every or 0
  log.info("copying topic '%s' from %s to '%s' (source group '%s', checkpoints in group '%s', "
    .. "auto_offset_reset %s, commit_interval %gs, commit_every %d)", self.topic, self.broker_address,
    self.producer_topic.name, self:source_consumer_group(), self:target_consumer_group(),
    self.auto_offset_reset, self._commit_interval, self._commit_every)

  local err
  self._source_consumer, err = clients.consumer(merge({
    ["bootstrap.servers"] = self.broker_address,
    ["group.id"] = self:source_consumer_group(),
    ["auto.offset.reset"] = self.auto_offset_reset,
    ["enable.auto.commit"] = false,
    ["enable.auto.offset.store"] = false,
    ["fetch.wait.max.ms"] = 100,
    ["log_level"] = log.librdkafka_level(),
  }, self.consumer_extra_config))
  if not self._source_consumer then fail(self, "cannot create the source cluster's consumer: %s", err) end
  self._target_consumer, err = clients.consumer(merge(merge({}, app.consumer_config),
    { ["group.id"] = self:target_consumer_group() }))
  if not self._target_consumer then fail(self, "cannot create the destination cluster's consumer: %s", err) end

  local count = validate_topics(self)

  -- Start each source partition at its checkpoint (Quix's on_assign).
  local dest = self.producer_topic.name
  local query = {}
  for p = 0, count - 1 do query[#query + 1] = { topic = dest, partition = p } end
  local committed, cerr = self._target_consumer:committed(query, REQUEST_TIMEOUT)
  if not committed then fail(self, "cannot read its checkpoint (group '%s'): %s", self:target_consumer_group(), cerr) end
  local assignment = {}
  for _, tp in ipairs(committed) do
    local offset = tp.offset >= 0 and tp.offset or nil
    log.debug("source partition %d starts at %s", tp.partition, offset and tostring(offset) or self.auto_offset_reset)
    assignment[#assignment + 1] = { topic = self.topic, partition = tp.partition, offset = offset }
  end
  local ok, aerr = self._source_consumer:assign(assignment)
  if not ok then fail(self, "cannot consume topic '%s': %s", self.topic, aerr) end
  self._source_consumer:take_events()
  self._offsets = {}        -- source partition -> last offset copied, since the last checkpoint
  self._uncommitted = 0
  self._checkpoint_at = host.monotonic()
end

-- The checkpoint (Quix's Checkpoint.commit): everything copied is delivered
-- first, then the next offset of each source partition is committed.
function KafkaReplicatorSource:_commit_checkpoint(timeout)
  if next(self._offsets) then
    local ok, err = clients.deliver(self._producer, timeout or CHECKPOINT_FLUSH_TIMEOUT)
    if not ok then fail(self, "checkpoint: %s", err) end
    local list = {}
    for partition, offset in pairs(self._offsets) do
      list[#list + 1] = { topic = self.producer_topic.name, partition = partition, offset = offset + 1 }
    end
    ok, err = self._target_consumer:commit(list)
    if not ok then fail(self, "checkpoint: cannot commit offsets: %s", err) end
    log.debug("checkpoint: %d partitions", #list)
  end
  self._offsets = {}
  self._uncommitted = 0
  self._checkpoint_at = host.monotonic()
end

local function checkpoint_due(self)
  if self._uncommitted == 0 then return false end
  if self._commit_every > 0 and self._uncommitted >= self._commit_every then return true end
  return host.monotonic() - self._checkpoint_at >= self._commit_interval
end

local function consumer_error(self, text, row)
  if self.on_consumer_error and self.on_consumer_error(text, row, log) then
    log.warning("skipped by on_consumer_error: %s", text)
    return
  end
  fail(self, "%s", text)
end

-- Copies one polled message; returns true when a checkpoint is due now
-- (commit_every reached, or commit_interval 0: after every message), and
-- true second when a stop ended the copy instead.
local function copy(self, consumer, i, m)
  local value = m.value ~= nil and ffi.string(m.value, m.value_len) or nil
  local key = m.key ~= nil and ffi.string(m.key, m.key_len) or nil
  local headers = m.header_count > 0 and consumer:headers(i, m.header_count) or nil
  -- On the embedded broker, wait for the app's credit (qhost.flow_control).
  local gate = rawget(self, "_gate")
  if gate then gate:admit(flow_control.size(key, value, headers), self._producer) end
  local ok, err, code = self._producer:produce(self.producer_topic.name, value, key,
    m.partition, m.timestamp > 0 and tonumber(m.timestamp) or nil, headers)
  if not ok then
    if code == clients.ERR_QUEUE_FULL and C.qh_ffi_stop_requested() > 0 then
      -- The stop came while the queue was full: this message is not
      -- copied, nor marked copied; the source stops here, and its last
      -- checkpoint covers what was delivered.
      log.warning("KafkaReplicatorSource '%s': stopping: %s", tostring(self.name), err)
      self:stop()
      return false, true
    end
    fail(self, "%s", err)
  end
  -- This message is queued; an earlier one's failed delivery ends the copy
  -- (Quix raises it at the next produce), before any checkpoint counts it.
  local failures = self._producer:take_failures()
  if failures then fail(self, "%s", clients.describe_failures(failures)) end
  self._offsets[m.partition] = tonumber(m.offset)
  self._uncommitted = self._uncommitted + 1
  return self._commit_interval == 0 or (self._commit_every > 0 and self._uncommitted >= self._commit_every)
end

function KafkaReplicatorSource:run()
  local consumer = self._source_consumer
  local poll_ms = math.floor(self.consumer_poll_timeout * 1000)
  while self.running do
    self._producer:poll(0)
    local n, msgs = consumer:poll(BATCH, poll_ms)
    for i = 0, n - 1 do
      local m = msgs[i]
      if m.err == 0 then
        local due, stopped = copy(self, consumer, i, m)
        if stopped then break end
        if due then self:_commit_checkpoint() end
      elseif m.err ~= PARTITION_EOF then
        consumer_error(self, string.format("consumer error on topic '%s' partition %d: %s", self.topic,
          m.partition, consumer:errstr(i)), nil)
      end
    end
    local errors = consumer:take_errors()
    if errors then
      if errors.fatal then fail(self, "source cluster consumer: %s", errors.last) end
      log.warning("source cluster consumer: %s", errors.last)
    end
    if checkpoint_due(self) then self:_commit_checkpoint() end
  end
end

-- A clean end takes a last checkpoint (Quix: on the revoke of close());
-- a failed one does not, so nothing undelivered is marked copied.
function KafkaReplicatorSource:cleanup(failed)
  local ok, err = true, nil
  if not failed and self._offsets then
    ok, err = pcall(self._commit_checkpoint, self, self.shutdown_timeout / 2)
  end
  if self._source_consumer then self._source_consumer:close() end
  if self._target_consumer then self._target_consumer:close() end
  if not ok then error(err, 0) end
end

return KafkaReplicatorSource
