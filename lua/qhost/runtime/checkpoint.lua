-- qhost.runtime.checkpoint: the at-least-once guarantee (Quix's Checkpoint).
-- It owns the offsets processed since the last commit, per topic and
-- partition, and commits them only once everything those messages made is
-- safe, in Quix's order: the sinks flush what they were given for those
-- partitions; the state stores' changes go to their changelogs; the
-- producer delivers every output and changelog record (all of them, or
-- nothing is committed) and each failed delivery goes through
-- on_producer_error; the offsets are committed; last, the stores write the
-- changes (a crash before that leaves them in the changelog, applied at the
-- next recovery). A failure at any step raises and commits nothing: the
-- messages are processed again after a restart.
-- On a revoke the revoked partitions go through the same steps before they
-- are given up; what a sink still holds for them is dropped, never written
-- later by this instance. A failed delivery that on_producer_error does not
-- suppress stops the app, and no offset is committed after it (the message
-- whose output failed may be among those processed).
-- Uses: a consumer (commit), a producer (flush, take_failures), sinks
-- (flush, discard), the state manager (prepare, flush), an error policy
-- (qhost.runtime.error_policy): the specs run it on fakes of each.
local error_text = require("qhost.runtime.error_text")
local log = require("qhost.log")
local transaction = require("qhost.runtime.kafka_transaction")

local checkpoint = {}

local Checkpoint = {}
Checkpoint.__index = Checkpoint

-- How often a checkpoint that waits for the producer says so (seconds).
local WAIT_SLICE = 10

-- checkpoint.new{ consumer =, producer = fn() -> producer | nil, sinks =,
--   policy =, state = (the state manager, or nil), commit_interval =,
--   commit_every =, now = fn() -> seconds, flush_timeout = 300,
--   stopping = fn() -> true when a stop was asked (ends a wait early),
--   on_commit = fn(seconds) (told each commit's duration: the metrics) }
-- flush_timeout: how long a checkpoint waits for the producer to deliver
-- (as Quix: the consumer's max.poll.interval.ms, 300 s by default), through
-- a broker outage for instance; librdkafka retries meanwhile, and fails a
-- message only at its message.timeout.ms.
function checkpoint.new(opts)
  return setmetatable({
    consumer = opts.consumer, producer = opts.producer, sinks = opts.sinks or {}, policy = opts.policy,
    state = opts.state, exactly_once = opts.exactly_once,
    interval = opts.commit_interval or 5, every = opts.commit_every or 0, now = opts.now,
    flush_timeout = opts.flush_timeout or 300,
    stopping = opts.stopping or function() return false end,
    on_commit = opts.on_commit,
    offsets = {},        -- topic -> { [partition] = next offset to commit }
    count = 0,           -- messages since the last commit
    started = opts.now(),
    refused = nil,       -- why no commit may happen any more
  }, Checkpoint)
end

-- The message at topic/partition/offset is done (processed, or skipped by
-- an error callback): its partition may be committed past it.
function Checkpoint:processed(topic, partition, offset)
  local parts = self.offsets[topic]
  if not parts then parts = {}; self.offsets[topic] = parts end
  parts[partition] = offset + 1
  self.count = self.count + 1
end

-- Whether commit_interval or commit_every says it is time.
function Checkpoint:due(now)
  if self.count == 0 then return false end
  return self.interval == 0 or now - self.started >= self.interval
      or (self.every > 0 and self.count >= self.every)
end

local function quoted_key(key)
  if key == nil then return "null" end
  return '"' .. key:gsub("[^\32-\126]", function(c) return string.format("\\x%02x", c:byte()) end) .. '"'
end

-- Each delivery that failed since the last look goes to on_producer_error:
-- a suppressed one is logged with its topic, partition and key; one that is
-- not raises, and no commit happens from then on.
function Checkpoint:check_deliveries()
  local producer = self.producer()
  local failures = producer and producer:take_failures()
  if not failures then return end
  local texts = {}
  for i, f in ipairs(failures) do
    texts[i] = string.format("delivery to topic '%s' partition %d failed: %s (key %s%s)", f.topic, f.partition,
      f.error, quoted_key(f.key), f.key_truncated and "..." or "")
  end
  if failures.dropped and failures.dropped > 0 then
    texts[#texts + 1] = string.format("%d more deliveries failed (not listed)", failures.dropped)
  end
  for _, text in ipairs(texts) do
    if self.policy:suppressed("producer", text, nil) then
      log.warning("on_producer_error skipped a failed delivery: %s", text)
    else
      self.refused = text
      error(text, 0)
    end
  end
end

-- Waits for the producer to deliver everything, up to flush_timeout, in
-- slices: while the broker does not take the outputs (it is down), a
-- warning every WAIT_SLICE seconds says so; a stop asked meanwhile ends
-- the wait. Returns true, or nil and why.
function Checkpoint:deliver(producer)
  local waited, started = 0, self.now()
  while true do
    local slice = math.min(WAIT_SLICE, self.flush_timeout - waited)
    local ok, err = producer:flush(slice)
    waited = waited + slice
    if ok then
      if waited > WAIT_SLICE then log.info("checkpoint: the broker took the outputs after %.0f s", self.now() - started) end
      return true
    end
    if not err:find("timed out", 1, true) then return nil, err end
    if waited >= self.flush_timeout then return nil, string.format("%s within %g s", err, waited) end
    if self.stopping() then return nil, string.format("%s: stopped while waiting", err) end
    log.warning("checkpoint: %s messages not delivered after %d s: waiting for the broker (up to %g s, the "
      .. "consumer's max.poll.interval.ms)", err:match("(%d+) messages") or "some", waited, self.flush_timeout)
  end
end

-- The offsets to commit: all, or those of the partitions in `only`
-- (topic -> { [partition] = true }).
local function offsets_in(offsets, only)
  local list = {}
  for topic, parts in pairs(offsets) do
    for partition, offset in pairs(parts) do
      if not only or (only[topic] and only[topic][partition]) then
        list[#list + 1] = { topic = topic, partition = partition, offset = offset }
      end
    end
  end
  return list
end

-- checkpoint:commit(only): the steps above for every partition processed
-- since the last commit, or only those in `only`. Raises on a failure,
-- with nothing committed.
function Checkpoint:commit(only)
  if self.refused then
    error("nothing committed: a delivery failed and was not suppressed: " .. self.refused, 0)
  end
  local began = self.now()
  local list = offsets_in(self.offsets, only)
  for _, sink in ipairs(self.sinks) do
    for _, tp in ipairs(list) do
      local ok, err = xpcall(sink.flush, error_text.traceback, sink, tp.topic, tp.partition)
      if not ok then
        error(string.format("checkpoint aborted, nothing committed: %s failed to flush topic '%s' "
          .. "partition %d: %s", sink.__name or "sink", tp.topic, tp.partition, tostring(err)), 0)
      end
    end
  end
  -- The state's changes to their changelogs, delivered with the outputs.
  if self.state then self.state:prepare(self.producer(true), self.offsets, only) end
  local producer = self.producer()
  if producer then
    local ok, err = self:deliver(producer)
    if not ok then error("checkpoint aborted, nothing committed: the producer " .. err, 0) end
    self:check_deliveries()
  end
  if self.exactly_once then
    -- One Kafka transaction holds the outputs, the changelog records and
    -- the offsets: it commits whole, or aborts whole.
    transaction.commit(self.producer(true), self.consumer, list)
  elseif #list > 0 and self.consumer then
    local ok, err = self.consumer:commit(list)
    if not ok then
      err = tostring(err)
      -- The group gave this member's partitions away (no contact with the
      -- broker for session.timeout.ms, as in a long outage).
      if err:find("Unknown member", 1, true) or err:find("generation id is not valid", 1, true) then
        err = err .. " (this instance lost its partitions to the group after session.timeout.ms without the "
          .. "broker: their messages since the last commit are processed again after a restart)"
      end
      error("checkpoint: cannot commit offsets: " .. err, 0)
    end
    log.debug("checkpoint: committed %d partition offsets", #list)
  end
  -- Last, as Quix: the stores take the changes (a crash before this point
  -- leaves them in the changelog, applied at the next recovery).
  if self.state then self.state:flush(only) end
  for _, tp in ipairs(list) do self.offsets[tp.topic][tp.partition] = nil end
  if not only then
    self.offsets, self.count, self.started = {}, 0, self.now()
  end
  if self.on_commit then self.on_commit(self.now() - began) end
end

-- checkpoint:revoke(partitions, lost): before the partitions go to another
-- member, what was processed of them is committed (not when `lost`: the
-- group already gave them away); then nothing of them is kept here. Under
-- exactly-once the one open transaction holds every partition's work: it
-- is committed whole.
function Checkpoint:revoke(partitions, lost)
  local only = not self.exactly_once and {} or nil
  for _, tp in ipairs(partitions) do
    if only then
      only[tp.topic] = only[tp.topic] or {}
      only[tp.topic][tp.partition] = true
    end
  end
  if lost and self.exactly_once and self.producer() then
    transaction.abort(self.producer(), "partitions were lost to another member")
  end
  if not lost and not self.refused then
    local ok, err = pcall(self.commit, self, only)
    if not ok then
      log.warning("the revoked partitions could not be checkpointed (%s): their new owner processes their "
        .. "messages since the last checkpoint again", tostring(err))
    end
  end
  for _, tp in ipairs(partitions) do
    local parts = self.offsets[tp.topic]
    if parts then parts[tp.partition] = nil end
    for _, sink in ipairs(self.sinks) do sink:discard(tp.topic, tp.partition) end
  end
end

return checkpoint
