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
-- written as JSON at the checkpoint; collected values are made JSON when
-- they are added (their size counts toward the checkpoint's 64 MB bound,
-- and nothing can change them afterwards). The flush writes the changes; the
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

-- A key's record and a window are arrays rather than tables of named
-- fields: a message reads a few fields of each, and an array keeps them
-- together in memory (a key's record is touched once per message, for
-- thousands of keys, so that is most of what a message costs).
-- The record of a prefix:
local R_PREFIX = 1
local R_T, R_E, R_D, R_X = 2, 3, 4, 5          -- the timestamps above (UNREAD: not read yet; false: none)
local R_DIRTY_T, R_DIRTY_E, R_DIRTY_D, R_DIRTY_X = 6, 7, 8, 9
local R_TOUCHED = 10                           -- in self.touched
local R_WS, R_ORDER, R_DEAD = 11, 12, 13       -- windows (false: not loaded), see "Windows" below
local R_VS, R_VDEAD = 14, 15                   -- collected values (false: not loaded)
local R_DATA, R_DATA_DIRTY = 16, 17            -- count window data (UNREAD, false: none)
local UNREAD = setmetatable({}, { __tostring = function() return "UNREAD" end })
local DIRTY_OF = { [R_T] = R_DIRTY_T, [R_E] = R_DIRTY_E, [R_D] = R_DIRTY_D, [R_X] = R_DIRTY_X }
local TAG_OF = { [R_T] = "T", [R_E] = "E", [R_D] = "D", [R_X] = "X" }
-- A window: start, end, value (decoded; null for none), its JSON from the
-- database until decoded (false after), CLEAN | DIRTY, its place in the
-- record's order while among the interval's changes (false: not), and
-- whether the database has it.
local W_S, W_E, W_V, W_RAW, W_ST, W_POS, W_DB = 1, 2, 3, 4, 5, 6, 7
windowed.W_S, windowed.W_E = W_S, W_E
-- A collected value: id, counter, value (UNDECODED until read), its JSON
-- (made when it is added, as Quix stores it at once), CLEAN | DIRTY.
local I_ID, I_C, I_V, I_RAW, I_ST = 1, 2, 3, 4, 5
local UNDECODED = setmetatable({}, { __tostring = function() return "UNDECODED" end })

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
  rec = { prefix, UNREAD, UNREAD, UNREAD, UNREAD, false, false, false, false, false, false, false, false, false,
          false, UNREAD, false }
  self.recs[prefix] = rec
  self.rec_list[#self.rec_list + 1] = rec
  return rec
end

local function changed(self, rec, size)
  self.dirty = true
  self.changes_cache = nil
  self.bytes = self.bytes + 40 + #rec[R_PREFIX] + (size or 0)
end

-- Timestamps and indexes ----------------------------------------------------

local function meta(self, rec, field)
  local v = rec[field]
  if v == UNREAD then
    local what = TAG_OF[field]
    local raw = self.partition:get(what .. rec[R_PREFIX])
    v = raw and decode(raw, what .. " of a key") or false
    rec[field] = v
  end
  return v
end

local function set_meta(self, rec, field, value)
  rec[field] = value
  rec[DIRTY_OF[field]] = true
  changed(self, rec)
end

local FIELD_OF = { T = R_T, E = R_E, D = R_D, X = R_X }

-- The number stored under tag ("T", "E", "D", "X") for prefix, or nil.
function Tx:get_meta(prefix, tag)
  local v = meta(self, rec_of(self, prefix), FIELD_OF[tag])
  if v == false then return nil end
  return v
end

function Tx:set_meta(prefix, tag, value)
  set_meta(self, rec_of(self, prefix), FIELD_OF[tag], value)
end

-- Quix's get_latest_timestamp: the latest timestamp of the key's window
-- updates, 0 when none.
function Tx:get_latest_timestamp(prefix)
  local v = meta(self, rec_of(self, prefix), R_T)
  if not v then return 0 end
  return v
end

-- Quix's get_latest_expired (0 when none).
function Tx:get_latest_expired(prefix)
  local v = meta(self, rec_of(self, prefix), R_E)
  if not v then return 0 end
  return v
end

-- Windows ---------------------------------------------------------------------
-- A record's windows: rec[R_WS], the live ones sorted by (start, end) (see
-- W_S...); rec[R_ORDER], the interval's changed ones in the order set;
-- rec[R_DEAD], the deleted ones the database has (a window made and
-- deleted within the interval costs the changelog nothing).

local function load_windows(self, rec)
  local ws = rec[R_WS]
  if ws then return ws end
  ws = {}
  local prefix = rec[R_PREFIX]
  local want = 1 + #prefix + 18
  local items = self.partition:scan("W" .. prefix .. "|", "W" .. prefix .. "}")
  for i = 1, #items, 2 do
    local key = items[i]
    if #key == want then   -- not a longer key that starts the same (Quix's check)
      local _, s, e = parse_pair(key)
      ws[#ws + 1] = { s, e, null, items[i + 1], CLEAN, false, true }
    end
  end
  rec[R_WS], rec[R_ORDER], rec[R_DEAD] = ws, {}, {}
  return ws
end

local function touch(self, rec)
  if not rec[R_TOUCHED] then
    rec[R_TOUCHED] = true
    self.touched[#self.touched + 1] = rec
  end
end

-- The index in ws of (s, e), or nil and where it would go.
local function find(ws, s, e)
  local n = #ws
  local last = ws[n]
  -- the common cases, without a loop: the latest window, or a new one after it
  if not last then return nil, 1 end
  local ls = last[W_S]
  if ls == s and last[W_E] == e then return n end
  if s > ls or (s == ls and e > last[W_E]) then return nil, n + 1 end
  local lo, hi = 1, n
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    local w = ws[mid]
    local ws_, we = w[W_S], w[W_E]
    if ws_ == s and we == e then return mid end
    if ws_ < s or (ws_ == s and we < e) then lo = mid + 1 else hi = mid - 1 end
  end
  return nil, lo
end

-- A window's value (nil for null).
local function value_of(w)
  local raw = w[W_RAW]
  if raw then
    w[W_V], w[W_RAW] = decode(raw, "a window"), false
  end
  local v = w[W_V]
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
    w = { s, e, null, false, DIRTY, false, false }
    if at == #ws + 1 then ws[at] = w else table.insert(ws, at, w) end
  end
  if value == nil then value = null end
  w[W_V], w[W_RAW], w[W_ST] = value, false, DIRTY
  if not w[W_POS] then
    local order = rec[R_ORDER]
    local n = #order + 1
    order[n] = w
    w[W_POS] = n
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
  local latest = meta(self, rec, R_T)
  if not latest or timestamp > latest then latest = timestamp end
  set_meta(self, rec, R_T, latest)
end

-- Deletes the windows at i..j of the record's list.
local function delete_range(self, rec, i, j)
  local ws, dead = rec[R_WS], rec[R_DEAD]
  local gone = false
  for k = i, j do
    local w = ws[k]
    w[W_POS] = false
    if w[W_DB] then
      dead[#dead + 1] = w
      gone = true
    end
  end
  local n, count = #ws, j - i + 1
  for k = i, n do ws[k] = ws[k + count] end
  if gone then changed(self, rec) end
end

function Tx:delete_window(prefix, s, e)
  local rec = rec_of(self, prefix)
  touch(self, rec)
  local i = find(load_windows(self, rec), s, e)
  if i then delete_range(self, rec, i, i) end
end

-- The indexes i..j of the windows starting in (from, to], or nil.
local function window_range(ws, from, to)
  local n = #ws
  -- the common cases, without a loop: no window, or the first one is not due
  local first = ws[1]
  if not first or first[W_S] > to then return nil end
  local i = 1
  if first[W_S] <= from then
    i = 2
    while i <= n and ws[i][W_S] <= from do i = i + 1 end
    if i > n or ws[i][W_S] > to then return nil end
  end
  local j = i
  while j < n and ws[j + 1][W_S] <= to do j = j + 1 end
  return i, j
end

-- Quix's get_windows: the windows whose start is in (from, to], in time
-- order (backwards: the other way): a list of windows (W_S, W_E; the value
-- through windowed.value_of).
function Tx:get_windows(prefix, from, to, backwards)
  local ws = load_windows(self, rec_of(self, prefix))
  local list = {}
  local i, j = window_range(ws, from, to)
  if not i then return list end
  if backwards then
    for k = j, i, -1 do list[#list + 1] = ws[k] end
  else
    for k = i, j do list[#list + 1] = ws[k] end
  end
  return list
end

-- Quix's expire_windows: the windows of prefix starting in (the last
-- expired start, max_start] (a list of windows, nil when none), and with
-- collect the list of their collected values; marks the last of them
-- expired; with delete, deletes them (and the collected values before the
-- last one's start). end_inclusive: a window's values include those at its
-- end (sliding windows).
function Tx:expire_windows(prefix, max_start, delete, collect, end_inclusive)
  local rec = rec_of(self, prefix)
  local ws = load_windows(self, rec)
  if not ws[1] then return nil end
  local from = -1
  local last = meta(self, rec, R_E)
  if last and last > from then from = last end
  local i, j = window_range(ws, from, max_start)
  if not i then return nil end
  local windows = {}
  for k = i, j do windows[#windows + 1] = ws[k] end
  set_meta(self, rec, R_E, ws[j][W_S])
  local collected
  if collect then
    collected = {}
    for k, w in ipairs(windows) do
      collected[k] = self:get_from_collection(prefix, w[W_S], end_inclusive and w[W_E] + 1 or w[W_E])
    end
  end
  if delete then
    touch(self, rec)
    delete_range(self, rec, i, j)
    if collect then self:delete_from_collection(prefix, windows[#windows][W_S]) end
  end
  return windows, collected
end

-- Quix's delete_windows (sliding windows): deletes the windows starting in
-- (the last deleted start, max_start]; with delete_values, the collected
-- values before max_start.
function Tx:delete_windows(prefix, max_start, delete_values)
  local rec = rec_of(self, prefix)
  local ws = load_windows(self, rec)
  local from = -1
  local last = meta(self, rec, R_D)
  if last and last > from then from = last end
  local i, j = window_range(ws, from, max_start)
  if i then
    local last_deleted = ws[j][W_S]
    touch(self, rec)
    delete_range(self, rec, i, j)
    -- Quix's `if last_deleted__gt:`: a start of 0 is not recorded.
    if last_deleted ~= 0 then set_meta(self, rec, R_D, last_deleted) end
  end
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
-- window) for each.
local function each_window(self, fn)
  for _, rec in ipairs(self.touched) do
    local order = rec[R_ORDER]
    if order then
      for i = 1, #order do
        local w = order[i]
        if w[W_POS] == i then fn(rec[R_PREFIX], w) end
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
        if rec and rec[R_WS] then
          -- seen through the record: in the database and not changed
          local j = find(rec[R_WS], s, e)
          local w = j and rec[R_WS][j]
          if w and w[W_ST] == CLEAN then fn(prefix, w) end
        else
          fn(prefix, { s, e, null, items[i + 1], CLEAN, false, true })
        end
      end
    end
    if n < 10000 then break end
    lower = items[n - 1] .. "\0"
  end
end

-- Quix's expire_all_windows (closing_strategy = "partition"): the windows
-- of every key whose end is due at max_end, each as { start, end, value,
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
      if ends[w[W_E]] then found[#found + 1] = { prefix, w } end
    end)
  else
    each_window(self, function(prefix, w)
      if w[W_E] <= due[1] then found[#found + 1] = { prefix, w } end
    end)
  end
  for i, f in ipairs(found) do
    local prefix, w = f[1], f[2]
    local collected = collect and self:get_from_collection(prefix, w[W_S], w[W_E]) or nil
    out[i] = { w[W_S], w[W_E], value_of(w), collected, prefix }
  end
  for _, f in ipairs(found) do
    self:delete_window(f[1], f[2][W_S], f[2][W_E])
    if collect then self:delete_from_collection(f[1], f[2][W_S]) end
  end
  self:set_meta("", "E", due[#due])
  return out
end

-- Collected values --------------------------------------------------------------
-- rec[R_VS]: the live ones sorted by (id, counter) (see I_ID...);
-- rec[R_VDEAD]: the deleted ones.

local function load_values(self, rec)
  local vs = rec[R_VS]
  if vs then return vs end
  vs = {}
  local prefix = rec[R_PREFIX]
  local want = 1 + #prefix + 18
  local items = self.partition:scan("V" .. prefix .. "|", "V" .. prefix .. "}")
  for i = 1, #items, 2 do
    local key = items[i]
    if #key == want then
      local _, id, c = parse_pair(key)
      vs[#vs + 1] = { id, c, UNDECODED, items[i + 1], CLEAN }
    end
  end
  rec[R_VS], rec[R_VDEAD] = vs, {}
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
  local raw = encode(value, "a collected value")
  local item = { id, c, UNDECODED, raw, DIRTY }
  local n = #vs
  local last = vs[n]
  if not last or last[I_ID] < id or (last[I_ID] == id and last[I_C] < c) then
    vs[n + 1] = item
  else
    local at = n
    while at >= 1 and (vs[at][I_ID] > id or (vs[at][I_ID] == id and vs[at][I_C] > c)) do at = at - 1 end
    table.insert(vs, at + 1, item)
  end
  changed(self, rec, #raw)
  return c
end

local function item_value(item)
  local v = item[I_V]
  if v == UNDECODED then
    v = decode(item[I_RAW], "a collected value")
    item[I_V] = v
  end
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
    local id = item[I_ID]
    if id >= end_ then break end
    if id >= start then out[#out + 1] = item_value(item) end
  end
  return out
end

-- Quix's delete_from_collection: deletes the values with id in [start,
-- end_), start by default where the last deletion stopped.
function Tx:delete_from_collection(prefix, end_, start)
  local rec = rec_of(self, prefix)
  if start == nil then
    start = meta(self, rec, R_X)
    if not start or start == 0 then start = -1 end   -- Quix's `... or -1`
  end
  if start < 0 then start = 0 end
  if start > end_ then return end
  local vs = load_values(self, rec)
  local keep, dead, last_deleted = {}, rec[R_VDEAD], nil
  for i = 1, #vs do
    local item = vs[i]
    local id = item[I_ID]
    if id >= start and id < end_ then
      if last_deleted == nil or id > last_deleted then last_deleted = id end
      dead[#dead + 1] = item
    else
      keep[#keep + 1] = item
    end
  end
  if last_deleted ~= nil then
    rec[R_VS] = keep
    changed(self, rec)
    set_meta(self, rec, R_X, last_deleted)
  end
end

-- Count windows' data ------------------------------------------------------------

-- The count window data of prefix (a table the caller may change and
-- give back to set_data), or nil.
function Tx:get_data(prefix)
  local rec = rec_of(self, prefix)
  touch(self, rec)
  local d = rec[R_DATA]
  if d == UNREAD then
    local raw = self.partition:get("S" .. prefix)
    d = raw and decode(raw, "a count window") or false
    rec[R_DATA] = d
  end
  if d == false then return nil end
  return d
end

function Tx:set_data(prefix, data)
  local rec = rec_of(self, prefix)
  touch(self, rec)
  rec[R_DATA], rec[R_DATA_DIRTY] = data, true
  changed(self, rec)
end

-- The checkpoint ------------------------------------------------------------------

function Tx:empty()
  return not self.dirty
end

local META_FIELDS = { R_T, R_E, R_D, R_X }

-- The interval's changes as { key, JSON text } (text nil: deleted), what
-- the changelog gets; deletions of a key come before a new value of it.
function Tx:changes()
  if self.changes_cache then return self.changes_cache end
  local list = {}
  for _, rec in ipairs(self.rec_list) do
    local prefix = rec[R_PREFIX]
    for _, field in ipairs(META_FIELDS) do
      if rec[DIRTY_OF[field]] then
        list[#list + 1] = { TAG_OF[field] .. prefix, encode(rec[field], "a timestamp") }
      end
    end
    local ws = rec[R_WS]
    if ws then
      for _, w in ipairs(rec[R_DEAD]) do list[#list + 1] = { pair_key("W", prefix, w[W_S], w[W_E]) } end
      if #rec[R_ORDER] > 0 then
        for _, w in ipairs(ws) do
          if w[W_ST] == DIRTY then
            list[#list + 1] = { pair_key("W", prefix, w[W_S], w[W_E]), encode(w[W_V], "a window's value") }
          end
        end
      end
    end
    local vs = rec[R_VS]
    if vs then
      for _, item in ipairs(rec[R_VDEAD]) do
        if item[I_ST] == CLEAN then list[#list + 1] = { pair_key("V", prefix, item[I_ID], item[I_C]) } end
      end
      for _, item in ipairs(vs) do
        if item[I_ST] == DIRTY then
          list[#list + 1] = { pair_key("V", prefix, item[I_ID], item[I_C]), item[I_RAW] }
        end
      end
    end
    if rec[R_DATA_DIRTY] then
      local d = rec[R_DATA]
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
    rec[R_DIRTY_T], rec[R_DIRTY_E], rec[R_DIRTY_D], rec[R_DIRTY_X] = false, false, false, false
    rec[R_TOUCHED] = false
    local ws = rec[R_WS]
    if ws then
      if #rec[R_ORDER] > 0 then
        for j = 1, #ws do
          local w = ws[j]
          w[W_ST], w[W_POS], w[W_DB] = CLEAN, false, true
        end
        rec[R_ORDER] = {}
      end
      if #rec[R_DEAD] > 0 then rec[R_DEAD] = {} end
    end
    local vs = rec[R_VS]
    if vs then
      if #rec[R_VDEAD] > 0 then rec[R_VDEAD] = {} end
      for j = 1, #vs do vs[j][I_ST] = CLEAN end
    end
    rec[R_DATA_DIRTY] = false
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
  -- The sorted keys are keys[1..count], with count kept here and never read
  -- as #keys: Debian's LuaJIT (2.1.0-beta3 of 2022-03-20) can reuse a stale
  -- #keys inside a compiled trace after the table shrank through another
  -- closure's reference to it (the upstream fix "Fix alias analysis for
  -- table length forwarding", May 2022); position() then read past the end.
  local data, keys, count = {}, {}, 0
  local p = { data = data }
  local function position(k)   -- where k is, or would go, in keys
    local lo, hi = 1, count
    while lo <= hi do
      local mid = floor((lo + hi) / 2)
      if keys[mid] < k then lo = mid + 1 else hi = mid - 1 end
    end
    return lo
  end
  local function insert_at(at, k)
    for i = count, at, -1 do keys[i + 1] = keys[i] end
    keys[at] = k
    count = count + 1
  end
  local function remove_at(at)
    for i = at, count - 1 do keys[i] = keys[i + 1] end
    keys[count] = nil
    count = count - 1
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
        remove_at(position(k))
      end
    end
    for i = 1, #puts, 2 do
      local k = puts[i]
      if data[k] == nil then insert_at(position(k), k) end
      data[k] = puts[i + 1]
    end
  end
  return p
end

return windowed
