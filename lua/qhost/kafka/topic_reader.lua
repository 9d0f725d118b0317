-- qhost.kafka.topic_reader: reading a topic from its beginning to its end, and
-- writing key/value records to it. A StatefulSource restores its state with
-- read_to_end and persists it with write (qhost.sources.stateful); tests use
-- both to fill a topic and to read back what a run left in one.
-- Records are plain tables: { key =, value =, headers =, partition =,
-- offset =, timestamp = }; key and value are bytes (strings) or nil (a
-- Kafka null; a nil value is a tombstone in a compacted topic); headers are a
-- list of { name, value } pairs, as qhost.clients reads and writes them.
local ffi = require("ffi")
local clients = require("qhost.kafka.clients")
local config_scope = require("qhost.kafka.config_scope")
local host = require("qhost.host")

local topic_reader = {}

local PARTITION_EOF = -191    -- RD_KAFKA_RESP_ERR__PARTITION_EOF
local BATCH = 1000
local WAIT_NOTICE = 10   -- seconds without a record before on_wait hears of it

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

-- The consumer that reads: a manual assignment with explicit start offsets,
-- never a group member and never committing. With auto.offset.reset
-- "error" the host does not look up committed offsets on assign (a
-- second's wait), and a start that retention removed meanwhile is an error,
-- not a silent jump.
local function reader_config(config)
  local c = copy(config)
  c["group.id"] = c["group.id"] or "qhost-changelog-reader"
  c["enable.auto.commit"] = false
  c["enable.auto.offset.store"] = false
  c["auto.offset.reset"] = "error"
  c["enable.partition.eof"] = true
  c["fetch.wait.max.ms"] = c["fetch.wait.max.ms"] or 100
  return c
end

-- An admin handle on the cluster `config` points at: metadata and
-- watermarks asked of the broker, as a consumer only knows them after a
-- fetch. Its watermarks are the high watermarks (read_uncommitted): the end
-- of a partition includes the transactions still open. The last stable
-- offset (read_committed) would end the read before an open transaction,
-- and so before the committed records written after it: a recovery that
-- meets the open transaction of an instance that was killed would miss the
-- checkpoints its successor committed after it.
-- (Of `config`, the connection and security settings: config_scope.common.)
local function admin_for(config)
  local c = config_scope.common(config)
  c["isolation.level"] = "read_uncommitted"
  return clients.admin(c)
end

-- topic_reader.read_to_end(config, topic, opts) -> count | nil, err
-- Calls opts.on_record(record) for every record of `topic` from the
-- beginning of each partition to the end it had when the read started, in
-- offset order within a partition. `config` holds librdkafka consumer
-- properties (at least bootstrap.servers; group.id is only a label here).
-- Read as read_committed (librdkafka's default isolation.level), a
-- partition with an open transaction is read to its end once that
-- transaction is committed or aborted: a killed producer's, when the
-- broker aborts it after its transaction.timeout.ms.
-- opts: partitions = { 0, 1, ... } (default: all of the topic's),
--       from = { [partition] = offset } (where to start; default: the
--       beginning), timeout = 30 (seconds for the whole read),
--       on_record = fn(record),
--       on_wait = fn(text) (told every 10 s without a record: which
--       partitions, at which offset, short of which end).
-- err says which partition did not reach its end, or why it could not start.
function topic_reader.read_to_end(config, topic, opts)
  opts = opts or {}
  local timeout = opts.timeout or 30
  local on_record = opts.on_record or function() end
  local admin, aerr = admin_for(config)
  if not admin then return nil, aerr end
  -- Asked first, and of the whole cluster: a watermark query on a missing
  -- topic would have the broker auto-create it with its defaults.
  local count, cerr = admin:partitions(topic, timeout)
  if not count then admin:close(); return nil, string.format("topic '%s': %s", topic, cerr) end
  local partitions = opts.partitions
  if not partitions then
    partitions = {}
    for p = 0, count - 1 do partitions[#partitions + 1] = p end
  end
  local consumer, err = clients.consumer(reader_config(config))
  if not consumer then admin:close(); return nil, err end

  local ok, result, rerr = pcall(function()
    -- The end of each partition now: what the read must reach.
    local want, assignment, remaining = {}, {}, 0
    local started = host.monotonic()
    for _, p in ipairs(partitions) do
      local low, high = admin:watermarks(topic, p, timeout)
      -- A topic created a moment ago may not have its leaders yet.
      while not low and host.monotonic() - started < timeout do
        host.sleep(0.2)
        low, high = admin:watermarks(topic, p, timeout)
      end
      if not low then return nil, string.format("topic '%s' partition %d: %s", topic, p, high) end
      local start = math.max(low, opts.from and opts.from[p] or low)
      if high > start then
        want[p] = high
        remaining = remaining + 1
        assignment[#assignment + 1] = { topic = topic, partition = p, offset = start }
      end
    end
    if remaining == 0 then return 0 end
    local sok, serr = consumer:assign(assignment)
    if not sok then return nil, string.format("topic '%s': %s", topic, serr) end
    consumer:take_events()
    local count = 0
    local at = {}       -- partition -> the offset the read has reached
    local held = {}     -- partition -> true: at the broker's stable end, short of its end
    for _, a in ipairs(assignment) do at[a.partition] = a.offset end
    -- Which partitions are short of their end, where they are, and why
    -- when it is known.
    local function short()
      local left = {}
      for p in pairs(want) do left[#left + 1] = p end
      table.sort(left)
      for i, p in ipairs(left) do
        left[i] = string.format("%d (at offset %d of %d%s)", p, at[p], want[p],
          held[p] and ": behind a transaction still open, which a read_committed reader waits for" or "")
      end
      return table.concat(left, ", ")
    end
    local now = host.monotonic()
    local deadline, next_notice = now + timeout, now + WAIT_NOTICE
    while remaining > 0 do
      now = host.monotonic()
      if now > deadline then
        return nil, string.format("topic '%s': partitions %s not read to their end within %gs", topic, short(),
          timeout)
      end
      if now > next_notice then
        if opts.on_wait then opts.on_wait(string.format("topic '%s': still reading partitions %s", topic,
          short())) end
        next_notice = now + WAIT_NOTICE
      end
      local n, msgs = consumer:poll(BATCH, 100)
      for i = 0, n - 1 do
        local m = msgs[i]
        local p, offset = m.partition, tonumber(m.offset)
        if m.err == PARTITION_EOF then
          -- The broker's end: for a compacted or transactional topic the
          -- last offsets may hold no record we could see.
          if want[p] then at[p], held[p] = offset, offset < want[p] end
          if want[p] and offset >= want[p] then want[p] = nil; remaining = remaining - 1 end
        elseif m.err ~= 0 then
          return nil, string.format("topic '%s' partition %d: %s", topic, p, consumer:errstr(i))
        elseif want[p] then
          count = count + 1
          at[p], held[p], next_notice = offset + 1, false, now + WAIT_NOTICE
          on_record({
            key = m.key ~= nil and ffi.string(m.key, m.key_len) or nil,
            value = m.value ~= nil and ffi.string(m.value, m.value_len) or nil,
            headers = m.header_count > 0 and consumer:headers(i, m.header_count) or nil,
            partition = p, offset = offset, timestamp = tonumber(m.timestamp),
          })
          if offset >= want[p] - 1 then want[p] = nil; remaining = remaining - 1 end
        end
      end
    end
    return count
  end)
  consumer:close()
  admin:close()
  if not ok then error(result, 0) end   -- on_record raised: the caller's error
  return result, rerr
end

-- topic_reader.write(producer, topic, records, opts) -> true | nil, err
-- Produces each record ({ key, value, headers, partition, timestamp }) to
-- `topic` with a qhost.clients producer, then waits up to opts.timeout
-- (default 30) seconds until all are delivered. err names a record that
-- could not be queued, or what was not delivered (clients.deliver).
function topic_reader.write(producer, topic, records, opts)
  for _, r in ipairs(records) do
    local ok, err = producer:produce(topic, r.value, r.key, r.partition, r.timestamp, r.headers)
    if not ok then return nil, err end
  end
  return clients.deliver(producer, opts and opts.timeout or 30)
end

return topic_reader
