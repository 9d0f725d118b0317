-- Timestamp-ordered consuming across topics (qhost.runtime.aligned, Quix's
-- InternalConsumerBuffer): what joins and concatenated topics need.
local aligned = require("qhost.runtime.aligned")

local function msg(topic, partition, offset, timestamp)
  return { topic = topic, partition = partition, offset = offset, timestamp = timestamp }
end

local Buffers = getmetatable(aligned.new())
local push = Buffers.push
-- push(m) for the specs: the message table is the item
local function with_msgs(b)
  b.push = function(self, m) return push(self, m.topic, m.partition, m.offset, m.timestamp, m) end
  return b
end

local function drain(b)
  local out = {}
  while true do
    local m = b:pop()
    if not m then return out end
    out[#out + 1] = m.topic .. m.offset
  end
end

describe("aligned consuming", function()
  it("hands out the messages of partitions with the same number in timestamp order across topics", function()
    local b = with_msgs(aligned.new())
    b:assign({ { topic = "r", partition = 0, offset = 0 }, { topic = "l", partition = 0, offset = 0 } })
    for i, ts in ipairs({ 10, 20, 30 }) do b:push(msg("l", 0, i - 1, ts)) end
    for i, ts in ipairs({ 5, 25 }) do b:push(msg("r", 0, i - 1, ts)) end
    b:set_watermark("l", 0, 3)
    b:set_watermark("r", 0, 2)
    assert.are.same({ "r0", "l0", "l1", "r1" }, drain(b))
    -- r is empty: more may have come since its watermark (Quix forgets it);
    -- the next feed's watermark says r is at its end
    b:set_watermark("r", 0, 2)
    assert.are.same({ "l2" }, drain(b))
  end)

  it("waits while a partition is empty but has more to fetch, or its end is not known", function()
    local b = with_msgs(aligned.new())
    b:assign({ { topic = "l", partition = 0, offset = 0 }, { topic = "r", partition = 0, offset = 0 } })
    b:push(msg("l", 0, 0, 10))
    assert.are.same({}, drain(b))              -- r: no watermark yet
    b:set_watermark("r", 0, 1)                 -- r has one message to come
    assert.are.same({}, drain(b))
    b:push(msg("r", 0, 0, 50))
    b:set_watermark("l", 0, 1)
    assert.are.same({ "l0" }, drain(b))
    b:set_watermark("l", 0, 1)
    assert.are.same({ "r0" }, drain(b))
    -- a partition whose consuming starts at its end is idle at once
    local c = with_msgs(aligned.new())
    c:assign({ { topic = "l", partition = 0, offset = 0 }, { topic = "r", partition = 0, offset = 7 } })
    c:push(msg("l", 0, 0, 10))
    c:set_watermark("r", 0, 7)
    assert.are.same({ "l0" }, drain(c))
  end)

  it("names, for each group that must wait, the partition it waits for and what is known of its end", function()
    local b = with_msgs(aligned.new())
    b:assign({ { topic = "l", partition = 0, offset = 0 }, { topic = "r", partition = 0, offset = 0 },
      { topic = "l", partition = 1, offset = 0 }, { topic = "r", partition = 1, offset = 0 } })
    assert.is_nil(b:waiting())                 -- nothing held
    b:push(msg("l", 0, 0, 10))
    b:push(msg("l", 0, 1, 11))
    assert.are.equal("2 message(s) of partition 0 wait for r[0] (its end is not known yet, consumed up to 0)",
      b:waiting())
    b:set_watermark("r", 0, 5)
    b:set_position("r", 0, 3)
    b:push(msg("l", 1, 0, 12))
    assert.are.equal("2 message(s) of partition 0 wait for r[0] (its end is 5, consumed up to 3); "
      .. "1 message(s) of partition 1 wait for r[1] (its end is not known yet, consumed up to 0)", b:waiting())
    b:set_position("r", 0, 5)                  -- r[0] at its end: partition 0 may go
    assert.are.equal("1 message(s) of partition 1 wait for r[1] (its end is not known yet, consumed up to 0)",
      b:waiting())
    b:push(msg("r", 1, 0, 5))                  -- r[1] holds a message: nothing waits
    assert.is_nil(b:waiting())
  end)

  it("counts what the consumer's position passed (transaction markers) as taken", function()
    local b = with_msgs(aligned.new())
    b:assign({ { topic = "l", partition = 0, offset = 0 }, { topic = "r", partition = 0, offset = 0 } })
    b:push(msg("r", 0, 0, 1))
    b:push(msg("l", 0, 0, 10))
    b:set_watermark("r", 0, 2)   -- offset 1 is a commit marker, never a message
    b:set_watermark("l", 0, 1)
    assert.are.same({ "r0" }, drain(b))
    b:set_watermark("r", 0, 2)
    b:set_position("r", 0, 2)
    assert.are.same({ "l0" }, drain(b))
  end)

  it("keeps groups of different numbers apart, and gives ties to the topic first by name", function()
    local b = with_msgs(aligned.new())
    b:assign({ { topic = "b", partition = 1, offset = 0 }, { topic = "a", partition = 1, offset = 0 },
               { topic = "a", partition = 0, offset = 0 } })
    b:push(msg("b", 1, 0, 5))
    b:push(msg("a", 1, 0, 5))
    b:push(msg("a", 0, 0, 100))
    for _, tp in ipairs({ { "a", 0 }, { "a", 1 }, { "b", 1 } }) do b:set_watermark(tp[1], tp[2], 1) end
    assert.are.same({ "a0", "a0" }, drain(b))
    b:set_watermark("a", 1, 1)
    assert.are.same({ "b0" }, drain(b))
  end)

  it("drain hands out what pop would, in the same order, until told to stop; replace swaps what waits", function()
    local function fill(b)
      b:assign({ { topic = "l", partition = 0, offset = 0 }, { topic = "r", partition = 0, offset = 0 },
                 { topic = "l", partition = 1, offset = 0 }, { topic = "x", partition = 2, offset = 0 },
                 { topic = "y", partition = 2, offset = 0 }, { topic = "z", partition = 2, offset = 0 } })
      for i, ts in ipairs({ 10, 30, 50 }) do b:push(msg("l", 0, i - 1, ts)) end
      for i, ts in ipairs({ 20, 40 }) do b:push(msg("r", 0, i - 1, ts)) end
      b:push(msg("l", 1, 0, 5))
      b:push(msg("x", 2, 0, 9)); b:push(msg("y", 2, 0, 8)); b:push(msg("z", 2, 0, 7))
      for _, tp in ipairs({ { "l", 0, 3 }, { "r", 0, 3 }, { "l", 1, 1 }, { "x", 2, 1 }, { "y", 2, 1 }, { "z", 2, 1 } }) do
        b:set_watermark(tp[1], tp[2], tp[3])
      end
    end
    local a, b = with_msgs(aligned.new()), with_msgs(aligned.new())
    fill(a); fill(b)
    local popped = drain(a)
    local got = {}
    assert.is_false(b:drain(function(m) got[#got + 1] = m.topic .. m.offset end))
    assert.are.same(popped, got)
    assert.are.same({ "l0", "r0", "l1", "r1", "l0", "z0" }, got)   -- r empty, its end unknown again: l2 waits
    -- stopped by fn: the rest stays
    local c = with_msgs(aligned.new())
    fill(c)
    local n = 0
    assert.is_true(c:drain(function() n = n + 1; return n == 2 end))
    assert.are.equal(7, c:count())
    c:replace(function(m) return { topic = m.topic, offset = m.offset + 100 } end)
    assert.are.same({ "l101", "r101", "l100", "z100" }, drain(c))
  end)

  it("replace swaps only what was pushed since the last replace, across a ring restart and a compaction", function()
    local b = with_msgs(aligned.new())
    b:assign({ { topic = "l", partition = 0, offset = 0 }, { topic = "r", partition = 0, offset = 0 } })
    local calls = 0
    -- a copy says how many times it was made (a copy of a copy: twice)
    local function copy(m)
      calls = calls + 1
      return { topic = m.topic, offset = m.offset, timestamp = m.timestamp, copies = (m.copies or 0) + 1 }
    end
    for i = 1, 6000 do b:push(msg("l", 0, i - 1, i)) end
    b:push(msg("r", 0, 0, 4500.5))
    b:replace(copy)
    assert.are.equal(6001, calls)
    b:replace(copy)
    assert.are.equal(6001, calls)   -- nothing new
    for i = 6001, 6010 do b:push(msg("l", 0, i - 1, i)) end
    -- l goes up to r's timestamp, then r; r is then empty with its end
    -- unknown: l waits. Past 4096 popped, l's ring moves its rest to the start.
    local seen = {}
    assert.is_false(b:drain(function(m) seen[#seen + 1] = m; return false end))
    assert.are.equal(4501, #seen)
    b:replace(copy)
    assert.are.equal(6011, calls)   -- the 10 pushed since
    b:set_watermark("r", 0, 1)
    assert.is_false(b:drain(function(m) seen[#seen + 1] = m; return false end))
    assert.are.equal(6011, #seen)
    for i, m in ipairs(seen) do
      assert.are.equal(1, m.copies, "copies of " .. m.topic .. m.offset)
      local before = seen[i - 1]
      if before and m.topic == "l" and before.topic == "l" then assert.are.equal(before.offset + 1, m.offset) end
    end
    -- emptied: the ring restarts at 1; what is pushed then is replaced
    for i = 1, 3 do b:push(msg("r", 0, i, 10000 + i)) end
    b:replace(copy)
    assert.are.equal(6014, calls)
    -- one more (the 4th place) not replaced before the buffer empties: the
    -- next one, in the 1st place again, still is
    b:push(msg("r", 0, 4, 10004))
    b:set_watermark("l", 0, 6010)
    assert.is_false(b:drain(function() return false end))
    b:push(msg("r", 0, 5, 10005))
    b:replace(copy)
    assert.are.equal(6015, calls)
  end)

  it("pauses a full buffer with more to fetch, resumes it when it drains, and forgets revoked partitions", function()
    local b = with_msgs(aligned.new{ max_size = 2 })
    b:assign({ { topic = "l", partition = 0, offset = 0 }, { topic = "r", partition = 0, offset = 0 } })
    for i = 0, 2 do b:push(msg("l", 0, i, 100 + i)) end
    b:set_watermark("l", 0, 10)
    b:set_watermark("r", 0, 5)
    assert.are.same({ { topic = "l", partition = 0 } }, b:pause_full())
    assert.are.same({}, b:pause_full())
    b:push(msg("r", 0, 0, 1))
    assert.are.same({ "r0" }, drain(b))        -- r is empty with more to come: l waits
    assert.are.equal(3, b:count())
    assert.are.same({}, b:revoke({ { topic = "r", partition = 0 } }))
    assert.are.same({ "l0", "l1", "l2" }, drain(b))
    assert.are.same({ { topic = "l", partition = 0 } }, b:resume_empty())
    assert.has_error(function() b:push(msg("r", 0, 1, 2)) end)
    -- a paused partition revoked is handed back, to be resumed before it goes
    for i = 3, 5 do b:push(msg("l", 0, i, 200 + i)) end
    b:set_watermark("l", 0, 10)
    b:assign({ { topic = "r", partition = 0, offset = 0 } })
    assert.are.same({ { topic = "l", partition = 0 } }, b:pause_full())
    assert.are.same({ { topic = "l", partition = 0 } }, b:revoke({ { topic = "l", partition = 0 } }))
  end)
end)
