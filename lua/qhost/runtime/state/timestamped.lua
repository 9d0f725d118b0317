-- qhost.runtime.state.timestamped: one checkpoint interval's changes to a
-- timestamped store partition (Quix's TimestampedPartitionTransaction,
-- quixstreams/state/rocksdb/timestamped.py), the store of the joins
-- (qhost.joins): per message key, values by timestamp.
--
-- What it holds, per message key (its prefix: the key's bytes, or its JSON
-- text, as qhost.runtime.state.manager.prefix), in the store's one column
-- family, told apart by a first byte:
--   "J" prefix "|" ts c   a value (JSON), ts its timestamp and c a counter,
--                         both 8-byte big-endian: a key's values are in
--                         (timestamp, counter) order for db:scan, as Quix's
--                         keys. Without keep_duplicates c is 0 and a value
--                         replaces the one of the same timestamp; with it, c
--                         is the partition's counter and every value stays.
--   "M" prefix            the key's minimum eligible timestamp (JSON): the
--                         largest `timestamp - grace_ms` of its values so far
--   "C"                   the partition's counter (keep_duplicates)
-- Everything goes through the changelog as any store's changes do
-- (qhost.runtime.state.manager), so recovery needs nothing of its own.
--
-- Quix's semantics, kept exactly because they show in the output:
-- get_latest reads from the minimum eligible timestamp up; get_interval
-- does not look at it (values below it stay visible until the checkpoint
-- deletes them); the checkpoint (changes) first deletes, for each key that
-- got a value in the interval, every value below its minimum eligible
-- timestamp (Quix's _expire).
--
-- In memory, each key touched has a record holding the newest of its
-- values (those at or after rec.from; all of them when rec.from is 0),
-- loaded with one reverse scan on first use, with the interval's new
-- values among them; older values are read from the database when a query
-- reaches below rec.from. Within an interval nothing is deleted (only the
-- checkpoint expires), so the database and the record never disagree.
-- After a flush the records stay as a cache (up to CACHED_VALUES values).
local codec = require("qhost.codec")
local windowed = require("qhost.runtime.state.windowed")

local json_encode, json_decode, null = codec.json_encode, codec.json_decode, codec.null
local be64 = windowed.be64
local byte = string.byte

local timestamped = {}

local Tx = {}
Tx.__index = Tx

-- Values loaded per key on first use (newest first); more are read when a
-- query needs them.
local FIRST_LOAD = 64
-- Values kept from one interval to the next (as a cache), at most.
local CACHED_VALUES = 1000000
local INF = math.huge

local function read64(s, at)
  local a, b, c, d, e, f, g, h = byte(s, at, at + 7)
  return (((a * 256 + b) * 256 + c) * 256 + d) * 4294967296 + ((e * 256 + f) * 256 + g) * 256 + h
end

local function check_ts(ts)
  if type(ts) ~= "number" or ts < 0 or ts ~= math.floor(ts) then
    error(string.format("join store: cannot store a value at timestamp %s (a join needs message timestamps "
      .. "that are integers >= 0)", tostring(ts)), 0)
  end
end

local function value_key(prefix, ts, c)
  return "J" .. prefix .. "|" .. be64(ts) .. be64(c)
end

local function decode(raw)
  local v, err = json_decode(raw)
  if err then error("join store: a stored value holds no JSON: " .. err, 0) end
  return v
end

-- timestamped.new(partition, { grace_ms =, keep_duplicates = }) -> a
-- transaction. partition: a store partition (qhost.runtime.state.partition,
-- or windowed.memory_partition()) with get, scan, write.
function timestamped.new(partition, opts)
  local self = setmetatable({ partition = partition, grace = opts.grace_ms,
    keep_duplicates = opts.keep_duplicates and true or false }, Tx)
  self:discard()
  return self
end

function Tx:discard()
  self.recs = {}           -- prefix -> record
  self.rec_list = {}       -- records, in creation order
  self.cached = 0          -- values held by the records
  self.counter = nil       -- keep_duplicates' counter (nil: not read yet)
  self.counter_dirty = false
  self.dirty = false
  self.bytes = 0
  self.changes_cache = nil
end

-- The values of prefix with (ts, c) in [lo_ts, hi_ts) from the database, in
-- order (reverse: newest first), at most limit (nil: all): a list of items
-- { ts =, c =, raw =, db = true }.
local function db_items(self, prefix, lo_ts, hi_ts, reverse, limit)
  local base = "J" .. prefix .. "|"
  local want = #base + 16
  local lower = base .. be64(lo_ts)
  local upper = hi_ts == INF and ("J" .. prefix .. "}") or base .. be64(hi_ts)
  local out = {}
  while true do
    local remaining = limit and (limit - #out) or 0
    local items = self.partition:scan(lower, upper, reverse, remaining)
    local n = #items
    for i = 1, n, 2 do
      local key = items[i]
      -- not a longer key that starts the same (another message key's)
      if #key == want then
        out[#out + 1] = { ts = read64(key, want - 15), c = read64(key, want - 7), raw = items[i + 1], db = true }
      end
    end
    -- A limited scan filled partly by other keys' values goes on past them.
    if not limit or #out >= limit or n < 2 * remaining then break end
    if reverse then upper = items[n - 1] else lower = items[n - 1] .. "\0" end
  end
  return out
end

-- rec.last_ts and rec.last_v: the timestamp of the record's newest item
-- (-1: none) and, once decoded, its value. get_latest's common case (a
-- timestamp at or after the newest value) reads them on the record
-- itself: the items, each a table of its own, cost a join a cache miss or
-- two per message on state that outgrows the CPU's cache. Set again
-- wherever rec.items changes.
local function set_last(rec)
  local items = rec.items
  local last = items[#items]
  rec.last_ts = last and last.ts or -1
  rec.last_v = last and last.v
end

-- The record of a prefix, loaded on first use: rec.items (sorted by ts, c),
-- complete for ts >= rec.from.
local function rec_of(self, prefix)
  local rec = self.recs[prefix]
  if rec then return rec end
  local newest = db_items(self, prefix, 0, INF, true, FIRST_LOAD)
  local items, from = {}, 0
  if #newest >= FIRST_LOAD then
    -- The oldest timestamp loaded may have more values below: load from the next one.
    from = newest[#newest].ts + 1
  end
  for i = #newest, 1, -1 do
    local it = newest[i]
    if it.ts >= from then items[#items + 1] = it end
  end
  rec = { prefix = prefix, items = items, from = from, min = nil, dmin = false, updated = false, dead = {},
          last_ts = -1, last_v = nil }
  set_last(rec)
  self.recs[prefix] = rec
  self.rec_list[#self.rec_list + 1] = rec
  self.cached = self.cached + #items
  return rec
end

-- Makes rec complete for ts >= from (loading what the database has below
-- rec.from).
local function extend_down(self, rec, from)
  if from >= rec.from then return end
  local older = db_items(self, rec.prefix, from, rec.from, false)
  if #older > 0 then
    for i = 1, #rec.items do older[#older + 1] = rec.items[i] end
    rec.items = older
    self.cached = self.cached + #older
    set_last(rec)
  end
  rec.from = from
end

-- The key's minimum eligible timestamp (0 when none).
local function min_eligible(self, rec)
  local v = rec.min
  if v == nil then
    local raw = self.partition:get("M" .. rec.prefix)
    v = raw and decode(raw) or 0
    rec.min = v
  end
  return v
end

local function value_of(item)
  local v = item.v
  if v == nil then
    v = decode(item.raw)
    item.v = v
  end
  return v
end
timestamped.value_of = value_of

-- The index of the last item of items with (ts, c) <= (ts, INF), or 0.
local function last_at_or_before(items, ts)
  local n = #items
  local last = items[n]
  if not last or last.ts <= ts then return n end
  -- the common cases without a loop (a loop here splits the JIT's trace of
  -- the message): the one before the latest, or none before the first
  if n == 1 or items[1].ts > ts then return 0 end
  if items[n - 1].ts <= ts then return n - 1 end
  local lo, hi = 1, n
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if items[mid].ts <= ts then lo = mid + 1 else hi = mid - 1 end
  end
  return hi
end

-- Quix's get_latest: the value of prefix with the largest timestamp in
-- [the minimum eligible timestamp, timestamp], or nil. The value is the
-- store's own (decoded once and kept): the caller must not change it
-- (qhost.joins copies what it hands on).
function Tx:get_latest(prefix, timestamp)
  local rec = self.recs[prefix] or rec_of(self, prefix)
  local lower = rec.min
  if lower == nil then lower = min_eligible(self, rec) end
  if timestamp + 1 <= lower then return nil end
  local last_ts = rec.last_ts
  if timestamp >= last_ts and last_ts >= lower then
    -- the newest value (last_ts >= 0: there is one, so rec.from <= last_ts)
    local v = rec.last_v
    if v == nil then
      v = value_of(rec.items[#rec.items])
      rec.last_v = v
    end
    return v
  end
  local items = rec.items
  if timestamp >= rec.from then
    local i = last_at_or_before(items, timestamp)
    if i > 0 and items[i].ts >= lower then return value_of(items[i]) end
    if lower >= rec.from then return nil end
  end
  -- below what the record holds: the database
  local hi = timestamp + 1
  if hi > rec.from then hi = rec.from end
  local found = db_items(self, prefix, lower, hi, true, 1)
  if found[1] then return value_of(found[1]) end
  return nil
end

-- Quix's get_interval: the values of prefix with start <= timestamp < end_
-- (start below 0 counts as 0), in (timestamp, counter) order. The values
-- are the store's own, as get_latest's.
function Tx:get_interval(prefix, start, end_)
  if start < 0 then start = 0 end
  local out = {}
  if start > end_ then return out end
  local rec = rec_of(self, prefix)
  if start < rec.from then
    local hi = end_ < rec.from and end_ or rec.from
    for _, item in ipairs(db_items(self, prefix, start, hi, false)) do out[#out + 1] = value_of(item) end
  end
  local items = rec.items
  local i = last_at_or_before(items, start - 1) + 1
  while i <= #items do
    local item = items[i]
    if item.ts >= end_ then break end
    out[#out + 1] = value_of(item)
    i = i + 1
  end
  return out
end

local function next_counter(self)
  local c = self.counter
  if c == nil then
    local raw = self.partition:get("C")
    c = raw and decode(raw) or -1
  end
  c = c + 1
  self.counter, self.counter_dirty = c, true
  return c
end

-- Quix's set_for_timestamp: keeps value (as JSON, now: later changes to
-- the table do not reach the store) at timestamp, and moves the key's
-- minimum eligible timestamp to timestamp - grace_ms if that is later.
function Tx:set_for_timestamp(prefix, timestamp, value)
  check_ts(timestamp)
  if value == nil then value = null end
  local raw, err = json_encode(value)
  if not raw then error("join store: the value cannot be stored as JSON: " .. err, 0) end
  local rec = rec_of(self, prefix)
  if timestamp < rec.from then extend_down(self, rec, timestamp) end
  local c = self.keep_duplicates and next_counter(self) or 0
  local item = { ts = timestamp, c = c, raw = raw, dirty = true }
  local items = rec.items
  local i = last_at_or_before(items, timestamp)
  local same = items[i]
  if same and same.ts == timestamp and same.c == c then
    item.db = same.db
    items[i] = item
  else
    -- after the values of this timestamp with a smaller counter
    while i > 0 and items[i].ts == timestamp and items[i].c > c do i = i - 1 end
    table.insert(items, i + 1, item)
    self.cached = self.cached + 1
  end
  set_last(rec)
  local lower = timestamp - self.grace
  if lower < 0 then lower = 0 end
  if lower > min_eligible(self, rec) then
    rec.min, rec.dmin = lower, true
  end
  rec.updated = true
  self.dirty = true
  self.changes_cache = nil
  self.bytes = self.bytes + #raw + #prefix + 40
end

-- The checkpoint ------------------------------------------------------------

function Tx:empty()
  return not self.dirty
end

-- Quix's _expire: for each key that got a value in this interval, every
-- value below its minimum eligible timestamp is deleted.
local function expire(self)
  for _, rec in ipairs(self.rec_list) do
    if rec.updated then
      local min = min_eligible(self, rec)
      if rec.from > 0 and min > 0 then
        -- older values the record does not hold: deleted from the database
        local below = min < rec.from and min or rec.from
        for _, item in ipairs(db_items(self, rec.prefix, 0, below, false)) do rec.dead[#rec.dead + 1] = item end
      end
      local items, keep = rec.items, {}
      for _, item in ipairs(items) do
        if item.ts < min then
          if item.db then rec.dead[#rec.dead + 1] = item end
          self.cached = self.cached - 1
        else
          keep[#keep + 1] = item
        end
      end
      if #keep < #items then
        rec.items = keep
        set_last(rec)
      end
      -- every value below min is gone: the record holds all that is left
      if rec.from <= min then rec.from = 0 end
    end
  end
end

-- The interval's changes as { key, JSON text } (text nil: deleted), what
-- the changelog gets. The first call expires what is due.
function Tx:changes()
  if self.changes_cache then return self.changes_cache end
  expire(self)
  local list = {}
  for _, rec in ipairs(self.rec_list) do
    local prefix = rec.prefix
    for _, item in ipairs(rec.dead) do list[#list + 1] = { value_key(prefix, item.ts, item.c) } end
    if rec.updated then
      for _, item in ipairs(rec.items) do
        if item.dirty then list[#list + 1] = { value_key(prefix, item.ts, item.c), item.raw } end
      end
    end
    if rec.dmin then list[#list + 1] = { "M" .. prefix, json_encode(rec.min) } end
  end
  if self.counter_dirty then list[#list + 1] = { "C", json_encode(self.counter) } end
  self.changes_cache = list
  return list
end

-- Writes the changes to the database in one batch, with the changelog
-- offset it now holds, and starts a new interval.
function Tx:flush(changelog_offset)
  local puts, deletes = {}, {}
  for _, change in ipairs(self:changes()) do
    if change[2] == nil then
      deletes[#deletes + 1] = change[1]
    else
      puts[#puts + 1] = change[1]
      puts[#puts + 1] = change[2]
    end
  end
  self.partition:write(puts, deletes, changelog_offset)
  self:settle()
end

-- After a flush the records hold what the database holds: they stay, as a
-- cache that spares the next interval its reads (unless they hold too
-- many values).
function Tx:settle()
  if self.cached > CACHED_VALUES then return self:discard() end
  for _, rec in ipairs(self.rec_list) do
    if rec.updated then
      for _, item in ipairs(rec.items) do
        if item.dirty then item.dirty, item.db = nil, true end
      end
      rec.updated = false
    end
    if #rec.dead > 0 then rec.dead = {} end
    rec.dmin = false
  end
  self.counter_dirty = false
  self.dirty = false
  self.bytes = 0
  self.changes_cache = nil
end

-- For the specs: what the record of prefix holds (from, count).
function Tx:_record_info(prefix)
  local rec = self.recs[prefix]
  if not rec then return nil end
  return rec.from, #rec.items
end

return timestamped
