-- qhost.runtime.state.windowed: one checkpoint interval's changes to a
-- window store partition (Quix's WindowedRocksDBPartitionTransaction), the
-- layer the window algorithms (qhost.windows) work on.
--
-- What a window store holds, per message key (its prefix: the key's bytes,
-- or its JSON text, as qhost.runtime.state.manager.prefix), all in the
-- store's one column family, told apart by a first byte:
--   "W" prefix "|" start "|" end     a window's value (start and end 8-byte
--                                    big-endian, so a key's windows are in
--                                    time order for db:scan, as Quix's keys)
--   "V" prefix "|" id "|" counter    a collected value (id: the message
--                                    timestamp, or a count window's number)
--   "T" prefix    the latest timestamp a window of the key was updated with
--   "E" prefix    the start of the last window expired (prefix "": the end
--                 of the last windows a partition-wide close expired)
--   "D" prefix    the start of the last window deleted (sliding windows)
--   "X" prefix    the id of the last collected value deleted
--   "S" prefix    a count window's data (its open windows)
--   "C"           the partition's counter of collected values
-- Values are JSON, as Quix stores them. Everything goes through the
-- changelog as any store's changes do (qhost.runtime.state.manager), so
-- recovery needs nothing of its own.
--
-- In memory, each key touched in the interval has a record holding its
-- windows (loaded from the database with one scan on first use, and the
-- changes on top), its collected values (the same), and the timestamps
-- above; so a message costs no database read once its key was seen in the
-- interval. Window values and timestamps are kept as Lua values and
-- written as JSON at the checkpoint. The flush writes the changes; the
-- records stay as a cache of what the database holds (up to CACHED_KEYS
-- keys), so a key seen again costs no read either.
--
-- Quix's order of things is kept where it shows in the output: windows
-- come in time order; a partition-wide close visits first the keys changed
-- in this interval (in the order they were first touched, and each key's
-- changed windows in the order they were set), then the rest of the
-- database in key order.
local codec = require("qhost.codec")

local json_encode, json_decode, null, array_mt = codec.json_encode, codec.json_decode, codec.null, codec.array_mt
local floor = math.floor
local byte, char, sub = string.byte, string.char, string.sub

local windowed = {}

local Tx = {}
Tx.__index = Tx

local CLEAN, DIRTY = 1, 2
-- Records kept from one interval to the next (as a cache), at most.
local CACHED_KEYS = 100000

-- 8-byte big-endian of 0 <= n < 2^53 (Quix packs ">Q").
local function be64(n)
  if n < 0 or n ~= floor(n) then
    error(string.format("window store: cannot store %s as a key (a timestamp or id must be an integer >= 0)",
      tostring(n)), 0)
  end
  local hi = floor(n / 4294967296)
  local lo = n - hi * 4294967296
  return char(floor(hi / 16777216) % 256, floor(hi / 65536) % 256, floor(hi / 256) % 256, hi % 256,
    floor(lo / 16777216) % 256, floor(lo / 65536) % 256, floor(lo / 256) % 256, lo % 256)
end
windowed.be64 = be64

local function read64(s, at)
  local a, b, c, d, e, f, g, h = byte(s, at, at + 7)
  return (((a * 256 + b) * 256 + c) * 256 + d) * 4294967296 + ((e * 256 + f) * 256 + g) * 256 + h
end

-- A key of kind `tag` ("W" or "V") for prefix: tag prefix | a | b.
local function pair_key(tag, prefix, a, b)
  return tag .. prefix .. "|" .. be64(a) .. "|" .. be64(b)
end

-- The prefix, a and b of a pair key (nil when it is not one).
local function parse_pair(key)
  local n = #key
  if n < 18 then return nil end
  return sub(key, 2, n - 18), read64(key, n - 16), read64(key, n - 7)
end
windowed.parse_pair = parse_pair

local function decode(raw, what)
  local v, err = json_decode(raw)
  if err then error(string.format("window store: %s holds no JSON: %s", what, err), 0) end
  return v
end

local function encode(v, what)
  if v == nil then v = null end
  local text, err = json_encode(v)
  if not text then error(string.format("window store: %s cannot be stored as JSON: %s", what, err), 0) end
  return text
end

-- windowed.new(partition) -> a transaction. partition: a store partition
-- (qhost.runtime.state.partition, or windowed.memory_partition()) with
-- get(key), scan(lower, upper, reverse, limit) and write(puts, deletes,
-- changelog_offset).
function windowed.new(partition)
  local self = setmetatable({ partition = partition }, Tx)
  self:discard()
  return self
end

function Tx:discard()
  self.recs = {}          -- prefix -> record
  self.rec_list = {}      -- records, in creation order
  self.touched = {}       -- records whose windows were read or changed, in that order (Quix's cache order)
  self.counter = nil      -- the collected values' counter (nil: not read yet)
  self.counter_dirty = false
  self.dirty = false
  self.bytes = 0
  self.changes_cache = nil
end

-- The record of a prefix (made on first use).
local function rec_of(self, prefix)
  local rec = self.recs[prefix]
  if rec then return rec end
  -- T, E, D, X: the timestamps above (false: none stored); dT, ...: changed
  rec = { prefix = prefix, T = nil, E = nil, D = nil, X = nil, dT = false, dE = false, dD = false, dX = false }
  self.recs[prefix] = rec
  self.rec_list[#self.rec_list + 1] = rec
  return rec
end

local function changed(self, rec, n)
  self.dirty = true
  self.changes_cache = nil
  self.bytes = self.bytes + 40 + #rec.prefix + (n or 0)
end

-- Timestamps and indexes ----------------------------------------------------

-- The number stored under tag for prefix, or nil.
function Tx:get_meta(prefix, tag)
  local rec = rec_of(self, prefix)
  local v = rec[tag]
  if v == nil then
    local raw = self.partition:get(tag .. prefix)
    v = raw and decode(raw, tag .. " of a key") or false
    rec[tag] = v
  end
  if v == false then return nil end
  return v
end

local DIRTY_FLAG = { T = "dT", E = "dE", D = "dD", X = "dX" }

function Tx:set_meta(prefix, tag, value)
  local rec = rec_of(self, prefix)
  rec[tag] = value
  rec[DIRTY_FLAG[tag]] = true
  changed(self, rec)
end

-- Quix's get_latest_timestamp: the latest timestamp of the key's window
-- updates, 0 when none.
function Tx:get_latest_timestamp(prefix)
  local v = self:get_meta(prefix, "T")
  if not v then return 0 end
  return v
end

-- Quix's get_latest_expired (0 when none).
function Tx:get_latest_expired(prefix)
  local v = self:get_meta(prefix, "E")
  if not v then return 0 end
  return v
end

-- Windows ---------------------------------------------------------------------
-- A record's windows: rec.ws, the live ones sorted by (start, end), each
-- { s =, e =, v = (value, decoded), raw = (JSON from the database, until
-- decoded), st = CLEAN | DIRTY, pos = (its place in rec.order while it is
-- among the interval's changes), db = (the database has it) }; rec.dead,
-- the deleted ones the database has (a window made and deleted within the
-- interval costs the changelog nothing).

local function load_windows(self, rec)
  if rec.ws then return rec.ws end
  local ws = {}
  local prefix = rec.prefix
  local want = 1 + #prefix + 18
  local items = self.partition:scan("W" .. prefix .. "|", "W" .. prefix .. "}")
  for i = 1, #items, 2 do
    local key = items[i]
    if #key == want then   -- not a longer key that starts the same (Quix's check)
      local _, s, e = parse_pair(key)
      ws[#ws + 1] = { s = s, e = e, raw = items[i + 1], st = CLEAN, db = true }
    end
  end
  rec.ws, rec.order, rec.dead = ws, {}, {}
  return ws
end

local function touch(self, rec)
  if not rec.touched then
    rec.touched = true
    self.touched[#self.touched + 1] = rec
  end
end

-- The index in ws of (s, e), or nil and where it would go.
local function find(ws, s, e)
  local n = #ws
  local last = ws[n]
  -- the common cases, without a loop: the latest window, or a new one after it
  if not last then return nil, 1 end
  local ls = last.s
  if ls == s and last.e == e then return n end
  if s > ls or (s == ls and e > last.e) then return nil, n + 1 end
  local lo, hi = 1, n
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    local w = ws[mid]
    if w.s == s and w.e == e then return mid end
    if w.s < s or (w.s == s and w.e < e) then lo = mid + 1 else hi = mid - 1 end
  end
  return nil, lo
end

local function value_of(w)
  local v = w.v
  if v == nil and w.raw then
    v = decode(w.raw, "a window")
    w.v, w.raw = v, nil
  end
  if v == null then return nil end
  return v
end
windowed.value_of = value_of

-- The window's value, or nil (also for a window whose value is null).
function Tx:get_window(prefix, s, e)
  local rec = rec_of(self, prefix)
  touch(self, rec)
  local ws = load_windows(self, rec)
  local i = find(ws, s, e)
  if not i then return nil end
  return value_of(ws[i])
end

local function set_window(self, rec, s, e, value)
  local ws = load_windows(self, rec)
  local i, at = find(ws, s, e)
  local w
  if i then
    w = ws[i]
  else
    w = { s = s, e = e }
    table.insert(ws, at, w)
  end
  if value == nil then value = null end
  w.v, w.raw, w.st = value, nil, DIRTY
  if not w.pos then
    local order = rec.order
    order[#order + 1] = w
    w.pos = #order
  end
  changed(self, rec)
end

-- Quix's update_window: sets the value and moves the key's latest timestamp.
function Tx:update_window(prefix, s, e, value, timestamp)
  if timestamp < 0 then error("window store: the timestamp cannot be negative", 0) end
  if e <= s then error(string.format("window store: invalid window %d..%d", s, e), 0) end
  local rec = rec_of(self, prefix)
  touch(self, rec)
  set_window(self, rec, s, e, value)
  local latest = self:get_latest_timestamp(prefix)
  if timestamp > latest then latest = timestamp end
  self:set_meta(prefix, "T", latest)
end

local function delete_at(self, rec, i)
  local w = table.remove(rec.ws, i)
  w.pos = nil
  if w.db then
    rec.dead[#rec.dead + 1] = w
    changed(self, rec)
  end
end

function Tx:delete_window(prefix, s, e)
  local rec = rec_of(self, prefix)
  touch(self, rec)
  local ws = load_windows(self, rec)
  local i = find(ws, s, e)
  if i then delete_at(self, rec, i) end
end

-- Quix's get_windows: the windows whose start is in (from, to], in time
-- order (backwards: the other way): a list of the window records ({ s =,
-- e = }, value through windowed.value_of).
function Tx:get_windows(prefix, from, to, backwards)
  local rec = rec_of(self, prefix)
  local ws = load_windows(self, rec)
  local list = {}
  if backwards then
    for i = #ws, 1, -1 do
      local s = ws[i].s
      if s <= to then
        if s <= from then break end
        list[#list + 1] = ws[i]
      end
    end
  else
    for i = 1, #ws do
      local s = ws[i].s
      if s > to then break end
      if s > from then list[#list + 1] = ws[i] end
    end
  end
  return list
end

-- Whether the prefix has a window whose start is in (from, to] (no list made).
function Tx:has_windows(prefix, from, to)
  local ws = load_windows(self, rec_of(self, prefix))
  -- the common cases, without a loop: no window, or the first one is not due
  local first = ws[1]
  if not first or first.s > to then return false end
  if first.s > from then return true end
  for i = 2, #ws do
    local s = ws[i].s
    if s > to then return false end
    if s > from then return true end
  end
  return false
end

-- Quix's expire_windows: the windows of prefix starting in (the last
-- expired start, max_start], each as { s, e, value, collected }; marks the
-- last of them expired; with delete, deletes them (and the collected
-- values before the last one's start). end_inclusive: a window's values
-- include those at its end (sliding windows).
function Tx:expire_windows(prefix, max_start, delete, collect, end_inclusive)
  local from = -1
  local last = self:get_meta(prefix, "E")
  if last ~= nil and last > from then from = last end
  if not self:has_windows(prefix, from, max_start) then return nil end
  local windows = self:get_windows(prefix, from, max_start)
  self:set_meta(prefix, "E", windows[#windows].s)
  local out = {}
  for i, w in ipairs(windows) do
    local collected
    if collect then
      collected = self:get_from_collection(prefix, w.s, end_inclusive and w.e + 1 or w.e)
    end
    out[i] = { w.s, w.e, value_of(w), collected }
  end
  if delete then
    for _, w in ipairs(windows) do self:delete_window(prefix, w.s, w.e) end
    if collect then self:delete_from_collection(prefix, windows[#windows].s) end
  end
  return out
end

-- Quix's delete_windows (sliding windows): deletes the windows starting in
-- (the last deleted start, max_start]; with delete_values, the collected
-- values before max_start.
function Tx:delete_windows(prefix, max_start, delete_values)
  local from = -1
  local last = self:get_meta(prefix, "D")
  if last ~= nil and last > from then from = last end
  local last_deleted
  if self:has_windows(prefix, from, max_start) then
    for _, w in ipairs(self:get_windows(prefix, from, max_start)) do
      last_deleted = w.s
      self:delete_window(prefix, w.s, w.e)
    end
  end
  -- Quix's `if last_deleted__gt:`: a start of 0 is not recorded.
  if last_deleted and last_deleted ~= 0 then self:set_meta(prefix, "D", last_deleted) end
  if delete_values then self:delete_from_collection(prefix, max_start) end
end

-- windows_to_expire of Quix's partition-wide close: the window ends due,
-- from the last expired end (0: none yet) up to timestamp, step apart.
local function windows_to_expire(last_expired, timestamp, step)
  if last_expired == 0 then return { timestamp - timestamp % step } end
  local out = {}
  local nxt = last_expired + step
  while nxt <= timestamp do
    out[#out + 1] = nxt
    nxt = nxt + step
  end
  return out
end

-- Every window of the partition, as Quix's keys() goes: the records
-- touched in this interval (their changed windows, in the order set), then
-- the database in key order (what is not among those changes). fn(prefix,
-- window record) for each.
local function each_window(self, fn)
  for _, rec in ipairs(self.touched) do
    local order = rec.order
    if order then
      for i = 1, #order do
        local w = order[i]
        if w.pos == i then fn(rec.prefix, w) end
      end
    end
  end
  local lower, upper = "W", "X"
  while true do
    local items = self.partition:scan(lower, upper, false, 5000)
    local n = #items
    if n == 0 then break end
    for i = 1, n, 2 do
      local key = items[i]
      local prefix, s, e = parse_pair(key)
      if prefix then
        local rec = self.recs[prefix]
        if rec and rec.ws then
          -- seen through the record: in the database and not changed
          local j = find(rec.ws, s, e)
          local w = j and rec.ws[j]
          if w and w.st == CLEAN then fn(prefix, w) end
        else
          fn(prefix, { s = s, e = e, raw = items[i + 1], st = CLEAN, db = true })
        end
      end
    end
    if n < 10000 then break end
    lower = items[n - 1] .. "\0"
  end
end

-- Quix's expire_all_windows (closing_strategy = "partition"): the windows
-- of every key whose end is due at max_end, each as { s, e, value,
-- collected, prefix }; they are deleted.
function Tx:expire_all_windows(max_end, step, collect)
  local last_expired = self:get_latest_expired("")
  local due = windows_to_expire(last_expired, max_end, step)
  if #due == 0 then return nil end
  local out, found = {}, {}
  if last_expired ~= 0 then
    local ends = {}
    for _, e in ipairs(due) do
      be64(e)   -- as Quix's, a negative end (timestamps below grace_ms) is refused
      ends[e] = true
    end
    each_window(self, function(prefix, w)
      if ends[w.e] then found[#found + 1] = { prefix, w } end
    end)
  else
    each_window(self, function(prefix, w)
      if w.e <= due[1] then found[#found + 1] = { prefix, w } end
    end)
  end
  for i, f in ipairs(found) do
    local prefix, w = f[1], f[2]
    local collected = collect and self:get_from_collection(prefix, w.s, w.e) or nil
    out[i] = { w.s, w.e, value_of(w), collected, prefix }
  end
  for _, f in ipairs(found) do
    self:delete_window(f[1], f[2].s, f[2].e)
    if collect then self:delete_from_collection(f[1], f[2].s) end
  end
  self:set_meta("", "E", due[#due])
  return out
end

-- Collected values --------------------------------------------------------------
-- rec.vs: the live ones sorted by (id, counter), { id =, c =, v =, raw =,
-- st = }; rec.vdead: the deleted ones.

local function load_values(self, rec)
  if rec.vs then return rec.vs end
  local vs = {}
  local prefix = rec.prefix
  local want = 1 + #prefix + 18
  local items = self.partition:scan("V" .. prefix .. "|", "V" .. prefix .. "}")
  for i = 1, #items, 2 do
    local key = items[i]
    if #key == want then
      local _, id, c = parse_pair(key)
      vs[#vs + 1] = { id = id, c = c, raw = items[i + 1], st = CLEAN }
    end
  end
  rec.vs, rec.vdead = vs, {}
  return vs
end

local function next_counter(self)
  local c = self.counter
  if c == nil then
    local raw = self.partition:get("C")
    c = raw and decode(raw, "the counter") or -1
  end
  c = c + 1
  self.counter, self.counter_dirty = c, true
  return c
end

-- Quix's add_to_collection: keeps value under id (nil: the counter's
-- number); returns the counter.
function Tx:add_to_collection(prefix, value, id)
  local rec = rec_of(self, prefix)
  local vs = load_values(self, rec)
  local c = next_counter(self)
  if id == nil then id = c end
  be64(id)   -- Quix refuses a negative id here
  local item = { id = id, c = c, v = value == nil and null or value, st = DIRTY }
  local n = #vs
  local last = vs[n]
  if not last or last.id < id or (last.id == id and last.c < c) then
    vs[n + 1] = item
  else
    local at = n
    while at >= 1 and (vs[at].id > id or (vs[at].id == id and vs[at].c > c)) do at = at - 1 end
    table.insert(vs, at + 1, item)
  end
  changed(self, rec)
  return c
end

local function item_value(item)
  local v = item.v
  if v == nil then
    v = decode(item.raw, "a collected value")
    item.v, item.raw = v, nil
  end
  if v == null then return nil end
  return v
end

-- The collected values with max(start, 0) <= id < end_, in (id, counter)
-- order (a null value is qhost.json.null in the list).
function Tx:get_from_collection(prefix, start, end_)
  local vs = load_values(self, rec_of(self, prefix))
  local out = setmetatable({}, array_mt)
  if start < 0 then start = 0 end
  if start > end_ then return out end
  for i = 1, #vs do
    local item = vs[i]
    if item.id >= end_ then break end
    if item.id >= start then
      local v = item_value(item)
      if v == nil then v = null end
      out[#out + 1] = v
    end
  end
  return out
end

-- Quix's delete_from_collection: deletes the values with id in [start,
-- end_), start by default where the last deletion stopped.
function Tx:delete_from_collection(prefix, end_, start)
  local rec = rec_of(self, prefix)
  if start == nil then
    start = self:get_meta(prefix, "X")
    if start == nil or start == 0 then start = -1 end   -- Quix's `... or -1`
  end
  if start < 0 then start = 0 end
  if start > end_ then return end
  local vs = load_values(self, rec)
  local keep, last_deleted = {}, nil
  for i = 1, #vs do
    local item = vs[i]
    if item.id >= start and item.id < end_ then
      if last_deleted == nil or item.id > last_deleted then last_deleted = item.id end
      rec.vdead[#rec.vdead + 1] = item
    else
      keep[#keep + 1] = item
    end
  end
  if last_deleted ~= nil then
    rec.vs = keep
    changed(self, rec)
    self:set_meta(prefix, "X", last_deleted)
  end
end

-- Count windows' data ------------------------------------------------------------

-- The count window data of prefix (a table the caller may change and
-- give back to set_data), or nil.
function Tx:get_data(prefix)
  local rec = rec_of(self, prefix)
  touch(self, rec)
  local d = rec.data
  if d == nil then
    local raw = self.partition:get("S" .. prefix)
    d = raw and decode(raw, "a count window") or false
    rec.data = d
  end
  if d == false then return nil end
  return d
end

function Tx:set_data(prefix, data)
  local rec = rec_of(self, prefix)
  touch(self, rec)
  rec.data, rec.data_dirty = data, true
  changed(self, rec)
end

-- The checkpoint ------------------------------------------------------------------

function Tx:empty()
  return not self.dirty
end

local META_TAGS = { "T", "E", "D", "X" }

-- The interval's changes as { key, JSON text } (text nil: deleted), what
-- the changelog gets; deletions of a key come before a new value of it.
function Tx:changes()
  if self.changes_cache then return self.changes_cache end
  local list = {}
  for _, rec in ipairs(self.rec_list) do
    local prefix = rec.prefix
    for _, tag in ipairs(META_TAGS) do
      if rec[DIRTY_FLAG[tag]] then list[#list + 1] = { tag .. prefix, encode(rec[tag], "a timestamp") } end
    end
    if rec.dead then
      for _, w in ipairs(rec.dead) do list[#list + 1] = { pair_key("W", prefix, w.s, w.e) } end
      for _, w in ipairs(rec.ws) do
        if w.st == DIRTY then list[#list + 1] = { pair_key("W", prefix, w.s, w.e), encode(w.v, "a window's value") } end
      end
    end
    if rec.vdead then
      for _, item in ipairs(rec.vdead) do
        if item.st == CLEAN then list[#list + 1] = { pair_key("V", prefix, item.id, item.c) } end
      end
      for _, item in ipairs(rec.vs) do
        if item.st == DIRTY then
          list[#list + 1] = { pair_key("V", prefix, item.id, item.c), encode(item.v, "a collected value") }
        end
      end
    end
    if rec.data_dirty then
      local d = rec.data
      list[#list + 1] = { "S" .. prefix, d and encode(d, "a count window") or nil }
    end
  end
  if self.counter_dirty then list[#list + 1] = { "C", encode(self.counter, "the counter") } end
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
-- cache that spares the next interval its reads (unless there are too many
-- of them to keep).
function Tx:settle()
  local recs = self.rec_list
  if #recs > CACHED_KEYS then return self:discard() end
  for i = 1, #recs do
    local rec = recs[i]
    rec.dT, rec.dE, rec.dD, rec.dX = false, false, false, false
    rec.touched = false
    if rec.ws then
      if #rec.order > 0 then
        local ws = rec.ws
        for j = 1, #ws do ws[j].st, ws[j].pos, ws[j].db = CLEAN, nil, true end
        rec.order = {}
      end
      if #rec.dead > 0 then rec.dead = {} end
    end
    if rec.vs then
      if #rec.vdead > 0 then rec.vdead = {} end
      local vs = rec.vs
      for j = 1, #vs do vs[j].st = CLEAN end
    end
    rec.data_dirty = false
  end
  self.touched = {}
  self.counter_dirty = false
  self.dirty = false
  self.bytes = 0
  self.changes_cache = nil
end

-- A store partition in memory (sdf:test and the specs): get, scan over its
-- sorted keys, write.
function windowed.memory_partition()
  local data, keys = {}, {}
  local p = { data = data }
  local function position(k)
    local lo, hi = 1, #keys
    while lo <= hi do
      local mid = floor((lo + hi) / 2)
      if keys[mid] < k then lo = mid + 1 else hi = mid - 1 end
    end
    return lo
  end
  function p.get(_, k) return data[k] end
  function p.scan(_, lower, upper, reverse, limit)
    local out = {}
    local first, last = position(lower), position(upper) - 1
    local a, b, step = first, last, 1
    if reverse then a, b, step = last, first, -1 end
    for i = a, b, step do
      if limit and limit > 0 and #out >= 2 * limit then break end
      out[#out + 1] = keys[i]
      out[#out + 1] = data[keys[i]]
    end
    return out
  end
  function p.write(_, puts, deletes)
    for _, k in ipairs(deletes) do
      if data[k] ~= nil then
        data[k] = nil
        table.remove(keys, position(k))
      end
    end
    for i = 1, #puts, 2 do
      local k = puts[i]
      if data[k] == nil then table.insert(keys, position(k), k) end
      data[k] = puts[i + 1]
    end
  end
  return p
end

return windowed
