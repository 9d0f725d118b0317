-- qhost.kafka.config_scope: which librdkafka properties belong to consumers
-- only and to producers only (librdkafka 2.0.2's CONFIGURATION.md, scopes C
-- and P). A handle given a property of the other kind warns about it, so a
-- client made from another client's settings (an admin from the app's
-- producer or a reader's consumer settings) keeps only what it can take:
-- the connection and security settings, which are common.
local config_scope = {}

local function set_of(words)
  local set = {}
  for name in words:gmatch("%S+") do set[name] = true end
  return set
end

config_scope.CONSUMER_ONLY = set_of([[group.id group.instance.id partition.assignment.strategy
  session.timeout.ms heartbeat.interval.ms group.protocol.type group.protocol group.remote.assignor
  coordinator.query.interval.ms max.poll.interval.ms enable.auto.commit auto.commit.enable
  auto.commit.interval.ms enable.auto.offset.store queued.min.messages queued.max.messages.kbytes
  fetch.wait.max.ms fetch.queue.backoff.ms fetch.message.max.bytes max.partition.fetch.bytes
  fetch.max.bytes fetch.min.bytes fetch.error.backoff.ms isolation.level enable.partition.eof
  check.crcs allow.auto.create.topics auto.offset.reset offset.store.path
  offset.store.sync.interval.ms offset.store.method consume.callback.max.messages]])

config_scope.PRODUCER_ONLY = set_of([[transactional.id transaction.timeout.ms enable.idempotence
  enable.gapless.guarantee queue.buffering.max.messages queue.buffering.max.kbytes
  queue.buffering.max.ms linger.ms message.send.max.retries retries retry.backoff.ms
  queue.buffering.backpressure.threshold compression.codec compression.type compression.level
  batch.num.messages batch.size delivery.report.only.error sticky.partitioning.linger.ms
  request.required.acks acks request.timeout.ms message.timeout.ms delivery.timeout.ms
  queuing.strategy produce.offset.report partitioner]])

-- config_scope.common(config) -> a copy of config without the properties
-- of either kind, nor qhost's own (qhost.*, which only its producer reads).
function config_scope.common(config)
  local out = {}
  for k, v in pairs(config or {}) do
    if not config_scope.CONSUMER_ONLY[k] and not config_scope.PRODUCER_ONLY[k] and not k:find("^qhost%.") then
      out[k] = v
    end
  end
  return out
end

return config_scope
