-- qhost.runtime.state.manager: the app's state stores (Quix's
-- StateStoreManager). A store is named by the topic its dataframe consumes
-- and a store name ("default" for stateful functions); it has one database
-- per assigned partition under state_dir/<consumer_group>/<topic>--<store>/
-- <partition>, and a compacted changelog topic
-- changelog__<consumer_group>--<topic>--<store> with the topic's partition
-- count. On assignment each partition is recovered from its changelog
-- before any of its messages is processed; at each checkpoint the changes
-- go to the changelog (prepare) and, once the offsets are committed, to the
-- databases (flush); on a revoke the partition's databases are closed.
local codec = require("qhost.codec")
local log = require("qhost.log")
local state_mod = require("qhost.state")
local store_partition = require("qhost.runtime.state.partition")
local topic_reader = require("qhost.kafka.topic_reader")
local transaction = require("qhost.runtime.state.transaction")
local timestamped = require("qhost.runtime.state.timestamped")
local windowed = require("qhost.runtime.state.windowed")

local manager = {}

local Manager = {}
Manager.__index = Manager

manager.DEFAULT_STORE = "default"

-- The changelog topic's name (Quix's).
function manager.changelog_name(group, topic, store_name)
  return string.format("changelog__%s--%s--%s", group, topic, store_name)
end

-- manager.new{ app =, reader_config =, watermarks = fn(topic, p) -> high,
--   read_timeout = 120 }
-- reader_config: the consumer config a recovery reads changelogs with;
-- read_timeout: how long one changelog partition's read may take (under
-- exactly-once it may wait for a killed instance's open transaction).
function manager.new(opts)
  local app = opts.app
  return setmetatable({
    app = app, reader_config = opts.reader_config, watermarks = opts.watermarks,
    read_timeout = opts.read_timeout or 120,
    dir = app.state_dir .. "/" .. app.consumer_group,
    stores = {},       -- topic -> { [store_name] = changelog topic name }
    kinds = {},        -- topic -> { [store_name] = kind } for window and join stores
    feeds = {},        -- topic -> { other topic names } whose messages use its stores (a concat)
    open = {},         -- topic -> { [partition] = { [store_name] = { partition =, tx =, state = } } }
    committed = {},    -- topic -> { [partition] = where consuming started (the committed offset) }
  }, Manager)
end

-- Registers a store (at start, from the dataframes): its changelog topic
-- is created with the app's topics. kind "windowed": a window's store
-- (qhost.runtime.state.windowed transactions); { kind = "timestamped",
-- grace_ms =, keep_duplicates = }: a join's (qhost.runtime.state.timestamped).
function Manager:register(topic, store_name, kind, feeds)
  if feeds then self.feeds[topic] = feeds end
  self.stores[topic] = self.stores[topic] or {}
  self.kinds[topic] = self.kinds[topic] or {}
  self.kinds[topic][store_name] = (kind == "windowed" or type(kind) == "table") and kind or nil
  self.stores[topic][store_name] = self.app.use_changelog_topics
    and manager.changelog_name(self.app.consumer_group, topic, store_name) or false
end

function Manager:has_stores(topic)
  return self.stores[topic] ~= nil
end

-- The key prefix of a message key in the stores (Quix's): its bytes, or
-- the JSON text of a key that is not bytes.
function manager.prefix(key)
  if type(key) == "string" then return key end
  if key == nil then return "null" end
  return codec.json_encode(key) or tostring(key)
end

-- Wipes every local store of this consumer group (app:clear_state).
function Manager:clear_local()
  os.execute("rm -rf '" .. self.dir:gsub("'", "'\\''") .. "'")
end

local function path_of(self, topic, store_name, p)
  return string.format("%s/%s--%s/%d", self.dir, topic, store_name, p)
end

-- Brings one store partition up to its changelog's end. committed: topic
-- -> where consuming its partition p starts, i.e. what was committed.
local function recover(self, part, changelog, p, topic, committed)
  local from = part:changelog_offset() + 1
  local applied = part:recover(function(start, on_record)
    local n, err = topic_reader.read_to_end(self.reader_config, changelog, {
      partitions = { p }, from = { [p] = start }, timeout = self.read_timeout, on_record = on_record,
      on_wait = function(text) log.info("recovering the state of '%s' partition %d: %s", topic, p, text) end })
    if not n then error(string.format("cannot recover state from changelog '%s' partition %d: %s", changelog, p,
      err), 0) end
  end, committed, codec.json_decode)
  if applied > 0 or from > 0 then
    log.info("state of '%s' partition %d recovered from changelog '%s' (from offset %d): %d changes applied",
      topic, p, changelog, from, applied)
  end
end

-- Opens and recovers the stores of the assigned partitions, before any of
-- their messages is processed. partitions: { topic, partition, offset }
-- with offset where consuming starts.
function Manager:assign(partitions)
  local starts = {}   -- topic -> { [partition] = offset }
  for _, tp in ipairs(partitions) do
    starts[tp.topic] = starts[tp.topic] or {}
    starts[tp.topic][tp.partition] = tp.offset
  end
  for _, tp in ipairs(partitions) do
    local stores = self.stores[tp.topic]
    if stores then
      -- Changelog records name the offsets of every topic that feeds the
      -- store: a record of a checkpoint not committed for any is skipped.
      local committed = { [tp.topic] = tp.offset }
      for _, name in ipairs(self.feeds[tp.topic] or {}) do
        committed[name] = starts[name] and starts[name][tp.partition]
      end
      self.open[tp.topic] = self.open[tp.topic] or {}
      local entry = {}
      for store_name, changelog in pairs(stores) do
        local part = store_partition.open(path_of(self, tp.topic, store_name, tp.partition))
        if changelog then recover(self, part, changelog, tp.partition, tp.topic, committed) end
        local kind = self.kinds[tp.topic][store_name]
        if kind then
          local tx = kind == "windowed" and windowed.new(part) or timestamped.new(part, kind)
          entry[store_name] = { partition = part, tx = tx, changelog = changelog }
        else
          local tx = transaction.new(part)
          entry[store_name] = { partition = part, tx = tx, state = state_mod.new(tx), changelog = changelog }
        end
      end
      self.open[tp.topic][tp.partition] = entry
    end
  end
end

-- The State of a store for the message at topic/partition with this key.
function Manager:state(topic, partition, store_name, key_bytes)
  local parts = self.open[topic]
  local entry = parts and parts[partition]
  local s = entry and entry[store_name]
  if not s then error(string.format("no state store '%s' is open for topic '%s' partition %d", store_name, topic,
    partition), 0) end
  s.state:_scope(key_bytes)
  return s.state
end

-- The transaction of a window or join store for the messages of topic/partition.
function Manager:transaction(topic, partition, store_name)
  local parts = self.open[topic]
  local entry = parts and parts[partition]
  local s = entry and entry[store_name]
  if not s then error(string.format("no state store '%s' is open for topic '%s' partition %d", store_name, topic,
    partition), 0) end
  return s.tx
end

-- The stores of the partitions in `only` (topic -> { [p] = true }), or all.
local function each_store(self, only, fn)
  for topic, parts in pairs(self.open) do
    for p, entry in pairs(parts) do
      if not only or (only[topic] and only[topic][p]) then
        for _, s in pairs(entry) do fn(topic, p, s) end
      end
    end
  end
end

-- The __processed_tp_offsets__ header of a store partition's changelog
-- records (Quix's): the last offset processed of partition p of the
-- store's topic and of the topics feeding it, as JSON, or "null".
local function processed_offsets(offsets, topic, feeds, p)
  local parts = {}
  for _, name in ipairs({ topic, unpack(feeds or {}) }) do
    local next_offset = offsets[name] and offsets[name][p]
    if next_offset then parts[#parts + 1] = string.format("%s:%d", codec.json_encode(name), next_offset - 1) end
  end
  return #parts > 0 and "{" .. table.concat(parts, ",") .. "}" or "null"
end

-- Checkpoint, step 2: the changes go to the changelogs, each record with
-- the input offsets it came from (Quix's __processed_tp_offsets__).
-- offsets: topic -> { [partition] = next offset } of the checkpoint.
function Manager:prepare(producer, offsets, only)
  each_store(self, only, function(topic, p, s)
    if s.tx:empty() then return end
    if not s.changelog then
      -- use_changelog_topics = false: the store is the only copy, written
      -- now, before the offsets are committed, so that none is committed
      -- past what was stored (a full disk fails the checkpoint here). A
      -- crash between the two counts this checkpoint's messages twice in
      -- the state (at least once); it never loses them.
      local ok, err = pcall(s.tx.flush, s.tx, nil)
      if not ok then error("checkpoint aborted, nothing committed: " .. tostring(err), 0) end
      return
    end
    s.dirty = true
    local processed = processed_offsets(offsets, topic, self.feeds[topic], p)
    local headers = { { "__column_family__", "default" }, { "__processed_tp_offsets__", processed } }
    for _, change in ipairs(s.tx:changes()) do
      local ok, err = producer:produce(s.changelog, change[2], change[1], p, nil, headers)
      if not ok then error("checkpoint aborted, nothing committed: changelog: " .. err, 0) end
    end
  end)
end

-- Checkpoint, last step, after the offsets are committed: the changes go
-- to the databases with the changelog offset they now hold (the stores
-- without a changelog were written in prepare).
function Manager:flush(only)
  each_store(self, only, function(_, p, s)
    if not s.dirty then return end
    local high = self.watermarks(s.changelog, p)
    local ok, err = pcall(s.tx.flush, s.tx, high and high - 1 or nil)
    if not ok then
      error(string.format("checkpoint: offsets committed, but %s; the changes are in changelog '%s', and the "
        .. "next start recovers them", tostring(err), s.changelog), 0)
    end
    s.dirty = false
  end)
end

-- What the open transactions hold, in bytes (a checkpoint bounds it).
function Manager:pending_bytes()
  local n = 0
  each_store(self, nil, function(_, _, s) n = n + s.tx.bytes end)
  return n
end

-- The revoked partitions' stores are closed; what they did not flush is
-- dropped (their new owner processes those messages again).
function Manager:revoke(partitions)
  for _, tp in ipairs(partitions) do
    local parts = self.open[tp.topic]
    local entry = parts and parts[tp.partition]
    if entry then
      for _, s in pairs(entry) do
        s.tx:discard()
        s.partition:close()
      end
      parts[tp.partition] = nil
    end
  end
end

-- The sizes of the open store partitions (the metrics), ordered:
-- { { topic =, store =, partition =, keys =, bytes = }, ... }.
function Manager:sizes()
  local list = {}
  for topic, parts in pairs(self.open) do
    for p, entry in pairs(parts) do
      for store_name, s in pairs(entry) do
        local keys, bytes = s.partition:sizes()
        list[#list + 1] = { topic = topic, store = store_name, partition = p, keys = keys, bytes = bytes }
      end
    end
  end
  table.sort(list, function(a, b)
    if a.topic ~= b.topic then return a.topic < b.topic end
    if a.store ~= b.store then return a.store < b.store end
    return a.partition < b.partition
  end)
  return list
end

function Manager:close()
  for topic, parts in pairs(self.open) do
    for p in pairs(parts) do self:revoke({ { topic = topic, partition = p } }) end
  end
end

return manager
