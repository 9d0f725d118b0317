-- qhost.runtime.aligned: consuming several topics in timestamp order
-- (Quix's InternalConsumerBuffer, quixstreams/internal_consumer/buffering.py),
-- for apps whose dataframes join or concatenate different topics: a join's
-- result depends on which side's message is processed first, so, as Quix,
-- the messages of the partitions with the same number are processed in the
-- order of their (Kafka) timestamps across topics.
--
-- The consumer's messages are copied into a buffer per topic partition;
-- partitions are grouped by number; a group hands out the message with the
-- smallest timestamp among its buffers' first messages, and waits (hands
-- out nothing) while one of its buffers is empty but its partition is not
-- known to be at its end (idle: everything up to the high watermark the
-- last fetch reported was consumed). A buffer that empties forgets its
-- watermark until the next feed, as Quix's, since more may have arrived.
-- Ties go to the topic assigned first (by name: the order the consumer
-- lists its assignment in, as Quix's dict of buffers keeps it).
-- A buffer holding max_size messages of a partition that has more to
-- fetch is paused (the consumer stops fetching it) and resumed once it is
-- not full any more, so a topic far ahead in time does not fill the memory.
-- Uses nothing but Lua: the caller feeds messages, watermarks and positions
-- (qhost.runtime.process_batch), and pauses and resumes what it is told to.
local aligned = {}

local Buffers = {}
Buffers.__index = Buffers

local UNKNOWN = -1001
local INF = math.huge

-- aligned.new{ max_size = 10000 } -> Buffers
function aligned.new(opts)
  return setmetatable({
    max_size = opts and opts.max_size or 10000,
    groups = {},        -- partition number -> group: a list of buffers, in assignment order
    numbers = {},       -- the partition numbers with a group, sorted
    by_tp = {},         -- topic -> { [partition] = buffer }
  }, Buffers)
end

-- b.unreplaced: the index of the first item pushed since the last
-- replace (nil: none), so that replace visits only those: a buffer can
-- hold thousands of messages for hundreds of batches (a topic ahead in
-- time), and every batch walking them all cost more than the batch.
local function new_buffer(topic, partition)
  return { topic = topic, partition = partition, head = 1, tail = 0, items = {}, ts = {}, next_ts = INF,
           max_offset = -1, high = UNKNOWN, paused = false, unreplaced = nil }
end

local function size(b) return b.tail - b.head + 1 end

-- The partition is at its end: every message up to the high watermark was taken.
local function idle(b)
  return b.high >= 0 and b.max_offset + 1 >= b.high
end

local function active(b)
  return b.high >= 0 and b.max_offset + 1 < b.high
end

-- buffers:assign(partitions): { topic =, partition =, offset = start } each;
-- offset (when >= 0) is where consuming starts, so a partition already at
-- its end is known idle at the first watermark.
function Buffers:assign(partitions)
  self.tp_list = nil
  local list = {}
  for _, tp in ipairs(partitions) do list[#list + 1] = tp end
  table.sort(list, function(a, b)
    if a.partition ~= b.partition then return a.partition < b.partition end
    return a.topic < b.topic
  end)
  for _, tp in ipairs(list) do
    local parts = self.by_tp[tp.topic]
    if not parts then parts = {}; self.by_tp[tp.topic] = parts end
    if not parts[tp.partition] then
      local b = new_buffer(tp.topic, tp.partition)
      parts[tp.partition] = b
      local group = self.groups[tp.partition]
      if not group then
        group = {}
        self.groups[tp.partition] = group
        self.numbers[#self.numbers + 1] = tp.partition
        table.sort(self.numbers)
      end
      group[#group + 1] = b
    end
    if tp.offset and tp.offset > 0 then
      local b = parts[tp.partition]
      if tp.offset - 1 > b.max_offset then b.max_offset = tp.offset - 1 end
    end
  end
end

-- buffers:partitions() -> { { topic =, partition = }, ... }: every buffer's
-- partition, for the consumer to write its position and watermark into
-- (consumer:positions(list)); the list and its tables are the buffers'
-- own, made again after an assign or a revoke.
function Buffers:partitions()
  local list = self.tp_list
  if list then return list end
  list = {}
  for _, number in ipairs(self.numbers) do
    for _, b in ipairs(self.groups[number]) do list[#list + 1] = { topic = b.topic, partition = b.partition } end
  end
  self.tp_list = list
  return list
end

-- buffers:revoke(partitions) -> the ones of them that were paused (to
-- resume before they go: the consumer would keep them paused). Their
-- buffers go, with the messages they held (not processed, so not
-- committed: their new owner processes them).
function Buffers:revoke(partitions)
  self.tp_list = nil
  local paused = {}
  for _, tp in ipairs(partitions) do
    local parts = self.by_tp[tp.topic]
    local b = parts and parts[tp.partition]
    if b then
      if b.paused then paused[#paused + 1] = { topic = b.topic, partition = b.partition } end
      parts[tp.partition] = nil
      local group = self.groups[tp.partition]
      for i = #group, 1, -1 do
        if group[i] == b then table.remove(group, i) end
      end
      if #group == 0 then
        self.groups[tp.partition] = nil
        for i = #self.numbers, 1, -1 do
          if self.numbers[i] == tp.partition then table.remove(self.numbers, i) end
        end
      end
    end
  end
  return paused
end

-- buffers:push(topic, partition, offset, timestamp, item): item is the
-- caller's (what pop gives back: a message, or where to find it). Raises
-- for a partition that is not assigned.
function Buffers:push(topic, partition, offset, timestamp, item)
  local parts = self.by_tp[topic]
  local b = parts and parts[partition]
  if not b then
    error(string.format("aligned consuming: a message of topic '%s' partition %d, which is not assigned",
      tostring(topic), partition), 0)
  end
  b.max_offset = offset
  local t = b.tail + 1
  b.items[t] = item
  b.ts[t] = timestamp
  b.tail = t
  if t == b.head then b.next_ts = timestamp end
  if not b.unreplaced then b.unreplaced = t end
end

-- buffers:replace(fn): each item pushed since the last replace and still
-- held becomes fn(item) (the caller copies what must outlive the
-- consumer's batch; what was replaced before is a copy already).
function Buffers:replace(fn)
  for _, number in ipairs(self.numbers) do
    for _, b in ipairs(self.groups[number]) do
      local from = b.unreplaced
      if from then
        local items = b.items
        if from < b.head then from = b.head end
        for t = from, b.tail do items[t] = fn(items[t]) end
        b.unreplaced = nil
      end
    end
  end
end

-- buffers:set_watermark(topic, partition, high): the high watermark the
-- consumer's last fetch of it reported (nil or < 0: not known).
function Buffers:set_watermark(topic, partition, high)
  local parts = self.by_tp[topic]
  local b = parts and parts[partition]
  if b then b.high = high or UNKNOWN end
end

-- buffers:set_position(topic, partition, offset): the next offset the
-- consumer hands out there (nil or <= 0: not known); what lies before it
-- was taken, messages or markers.
function Buffers:set_position(topic, partition, offset)
  local parts = self.by_tp[topic]
  local b = parts and parts[partition]
  if b and offset and offset > 0 and offset - 1 > b.max_offset then b.max_offset = offset - 1 end
end

-- buffers:each_partition(fn): fn(topic, partition) for every buffer (to
-- feed their watermarks).
function Buffers:each_partition(fn)
  for topic, parts in pairs(self.by_tp) do
    for partition in pairs(parts) do fn(topic, partition) end
  end
end

local function popleft(b)
  local h = b.head
  local item = b.items[h]
  b.items[h] = nil
  h = h + 1
  b.head = h
  if h > b.tail then
    -- empty: restart the ring, forget the watermark (more may have come)
    b.head, b.tail, b.next_ts, b.high, b.unreplaced = 1, 0, INF, UNKNOWN, nil
  else
    b.next_ts = b.ts[h]
    if h > 4096 and h > 2 * (b.tail - h) then
      -- what is left moves to the start (a buffer that never empties)
      local items, ts, n = b.items, b.ts, b.tail - h + 1
      for i = 1, n do
        items[i], ts[i] = items[h + i - 1], ts[h + i - 1]
        items[h + i - 1] = nil
      end
      b.head, b.tail = 1, n
      if b.unreplaced then b.unreplaced = math.max(1, b.unreplaced - (h - 1)) end
    end
  end
  return item
end

-- The next message of a group, or nil when it must wait (or is empty).
local function pop_group(group)
  local n = #group
  if n == 1 then
    local b = group[1]
    if b.tail < b.head then return nil end
    return popleft(b)
  end
  local best
  for i = 1, n do
    local b = group[i]
    if b.tail < b.head then
      if not idle(b) then return nil end
    elseif not best or b.next_ts < best.next_ts then
      best = b
    end
  end
  if not best then return nil end
  return popleft(best)
end

-- buffers:pop() -> the next item to process, or nil: none may go now.
-- The groups go in partition order, each until it must wait.
function Buffers:pop()
  local numbers, groups = self.numbers, self.groups
  for i = 1, #numbers do
    local msg = pop_group(groups[numbers[i]])
    if msg then return msg end
  end
  return nil
end

-- buffers:drain(fn) -> true when fn stopped it: hands each item that may go
-- now to fn(item), in order, until fn returns true. The same choice as pop,
-- with the common groups (one or two topics) written out: the JIT compiles
-- each group's loop as one trace with fn's work, which a loop inside a
-- helper returning the item would break.
function Buffers:drain(fn)
  local numbers, groups = self.numbers, self.groups
  for gi = 1, #numbers do
    local group = groups[numbers[gi]]
    local n = #group
    if n == 1 then
      local b = group[1]
      while b.head <= b.tail do
        if fn(popleft(b)) then return true end
      end
    elseif n == 2 then
      local b1, b2 = group[1], group[2]
      while true do
        local best
        if b1.tail < b1.head then
          if b2.tail < b2.head or not idle(b1) then break end
          best = b2
        elseif b2.tail < b2.head then
          if not idle(b2) then break end
          best = b1
        elseif b2.next_ts < b1.next_ts then
          best = b2
        else
          best = b1
        end
        if fn(popleft(best)) then return true end
      end
    else
      while true do
        local item = pop_group(group)
        if item == nil then break end
        if fn(item) then return true end
      end
    end
  end
  return false
end

-- buffers:pause_full() -> { { topic =, partition = }, ... } to pause: full
-- buffers of partitions with more to fetch, in groups of several topics.
function Buffers:pause_full()
  local out = {}
  for _, number in ipairs(self.numbers) do
    local group = self.groups[number]
    if #group > 1 then
      for _, b in ipairs(group) do
        if not b.paused and size(b) >= self.max_size and active(b) then
          b.paused = true
          out[#out + 1] = { topic = b.topic, partition = b.partition }
        end
      end
    end
  end
  return out
end

-- buffers:resume_empty() -> the paused partitions to resume: those no
-- longer full, or with nothing more to fetch.
function Buffers:resume_empty()
  local out = {}
  for _, number in ipairs(self.numbers) do
    for _, b in ipairs(self.groups[number]) do
      if b.paused and (not active(b) or size(b) < self.max_size) then
        b.paused = false
        out[#out + 1] = { topic = b.topic, partition = b.partition }
      end
    end
  end
  return out
end

-- buffers:waiting() -> nil, or a text naming each group that holds
-- messages but may hand none out, with the partition it waits for and what
-- is known of that partition's end (for the warning of an app whose join
-- does not move: process_batch.aligned).
function Buffers:waiting()
  local out = {}
  for _, number in ipairs(self.numbers) do
    local group = self.groups[number]
    local held, blocker = 0, nil
    for _, b in ipairs(group) do
      held = held + size(b)
      if not blocker and b.tail < b.head and not idle(b) then blocker = b end
    end
    if held > 0 and blocker then
      local known = blocker.high >= 0 and string.format("its end is %.0f", blocker.high) or "its end is not known yet"
      out[#out + 1] = string.format("%d message(s) of partition %d wait for %s[%d] (%s, consumed up to %.0f%s)",
        held, number, blocker.topic, blocker.partition, known, blocker.max_offset + 1,
        blocker.paused and ", paused" or "")
    end
  end
  if #out == 0 then return nil end
  return table.concat(out, "; ")
end

-- How many messages the buffers hold.
function Buffers:count()
  local n = 0
  for _, number in ipairs(self.numbers) do
    for _, b in ipairs(self.groups[number]) do n = n + size(b) end
  end
  return n
end

return aligned
