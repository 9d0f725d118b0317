-- qhost.runtime.state.partition: one store's data for one partition (Quix's
-- RocksDBStorePartition): a RocksDB database (qhost.store) in its own
-- folder, and the offset of its changelog partition that the database
-- holds, kept in the database's metadata so the two never disagree.
-- Recovery (recover) brings the database up to the changelog's end, and a
-- damaged database is rebuilt from the changelog.
local log = require("qhost.log")
local store = require("qhost.store")

local partition = {}

local Partition = {}
Partition.__index = Partition

local OFFSET_KEY = "changelog_offset"

-- partition.open(path) -> Partition. A database RocksDB reports damaged is
-- deleted and made again: its changelog has all of it.
function partition.open(path)
  os.execute("mkdir -p '" .. path:gsub("'", "'\\''") .. "'")
  local db, err = store.open(path)
  if not db and err:find("Corruption", 1, true) then
    log.warning("state store %s is damaged (%s): rebuilding it from its changelog", path, err)
    store.destroy(path)
    db, err = store.open(path)
  end
  if not db then error(err, 0) end
  return setmetatable({ db = db, path = path }, Partition)
end

function Partition:get(key)
  return self.db:get(key)
end

-- { k1, v1, k2, v2, ... } of the keys in [lower, upper), in key order
-- (reverse: the other way), at most limit pairs (nil or 0: all).
function Partition:scan(lower, upper, reverse, limit)
  return self.db:scan(lower, upper, reverse or false, limit or 0)
end

-- The changelog offset the database holds (-1: none yet).
function Partition:changelog_offset()
  local v = self.db:get_meta(OFFSET_KEY)
  return v and tonumber(v) or -1
end

-- Writes puts ({ k1, v1, ... }) and deletes ({ k, ... }) in one batch with
-- the changelog offset they bring the database to (nil: unchanged).
function Partition:write(puts, deletes, changelog_offset)
  local meta = changelog_offset and { OFFSET_KEY, string.format("%d", changelog_offset) } or nil
  local ok, err = self.db:write(puts, deletes, meta)
  if not ok then error(err, 0) end
end

function Partition:close()
  self.db:close()
end

-- partition:sizes() -> keys (RocksDB's estimate), bytes (its files and
-- memtables): what the metrics show of a store.
function Partition:sizes()
  local db = self.db
  local keys = tonumber(db:property("rocksdb.estimate-num-keys")) or 0
  local bytes = (tonumber(db:property("rocksdb.total-sst-files-size")) or 0)
    + (tonumber(db:property("rocksdb.cur-size-all-mem-tables")) or 0)
  return keys, bytes
end

-- Changelog records applied per database write during a recovery: a few
-- MB of values, so a large state recovers in bounded memory.
local RECOVERY_BATCH = 5000

-- partition:recover(read, committed): brings the database up to the end of
-- its changelog partition. read(from_offset, on_record) reads the changelog
-- partition from that offset to its end. A record is applied only when the
-- input messages it came from were committed (its __processed_tp_offsets__
-- header, Quix's rule): a checkpoint that produced its changelog but did
-- not commit is processed again, and must not count twice. committed maps
-- an input topic to its committed offset in this partition. Returns how
-- many records were applied.
function Partition:recover(read, committed, decode_json)
  local from = self:changelog_offset() + 1
  -- The last record of each key wins: a batch holds each key once.
  local latest, count, applied, last = {}, 0, 0, nil
  local DELETE = false
  local function flush_batch()
    if not last then return end
    local puts, deletes = {}, {}
    for key, value in pairs(latest) do
      if value == DELETE then deletes[#deletes + 1] = key
      else puts[#puts + 1] = key; puts[#puts + 1] = value end
    end
    self:write(puts, deletes, last)
    latest, count = {}, 0
  end
  read(from, function(record)
    last = record.offset
    local processed = nil
    for _, h in ipairs(record.headers or {}) do
      if h[1] == "__processed_tp_offsets__" and h[2] then processed = decode_json(h[2]) end
    end
    if type(processed) == "table" then
      for topic, offset in pairs(processed) do
        local c = committed[topic]
        if c ~= nil and offset >= c then return end   -- not committed: skipped
      end
    end
    applied = applied + 1
    if latest[record.key] == nil then count = count + 1 end
    latest[record.key] = record.value == nil and DELETE or record.value
    if count >= RECOVERY_BATCH then flush_batch() end
  end)
  flush_batch()
  return applied
end

return partition
