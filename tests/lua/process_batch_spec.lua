-- qhost.runtime.process_batch's aligned path (apps that join or concatenate
-- topics) with real qh_msg structs and fakes of the consumer and the rest:
-- messages that wait past their batch are copied out of it (a JSON value
-- decoded there), and are processed later with the same results and the
-- same error rows as messages processed straight from a batch.
local ffi = require("ffi")
require("qhost.kafka.ffi")   -- the qh_msg struct
local aligned = require("qhost.runtime.aligned")
local process_batch = require("qhost.runtime.process_batch")
local log = require("qhost.log")
local serializers = require("qhost.serializers")

-- A batch of messages of topic name: { key, value, offset, timestamp } each.
-- Returns the qh_msg array and what keeps its memory alive (and lets the test
-- overwrite it, as librdkafka reuses it after the next poll).
local function batch_of(name, list)
  local keep = { topic = ffi.new("char[?]", #name + 1, name) }
  local msgs = ffi.new("qh_msg[?]", #list)
  for i, m in ipairs(list) do
    local k = ffi.new("char[?]", #m[1] + 1, m[1])
    local v = ffi.new("char[?]", #m[2] + 1, m[2])
    keep[#keep + 1], keep[#keep + 2] = k, v
    local msg = msgs[i - 1]
    msg.topic, msg.key, msg.key_len, msg.value, msg.value_len = keep.topic, k, #m[1], v, #m[2]
    msg.offset, msg.timestamp, msg.partition = m[3], m[4], 0
  end
  return msgs, keep
end

-- Overwrites every byte of the batch's keys and values.
local function scribble(keep)
  for _, buf in ipairs(keep) do ffi.fill(buf, ffi.sizeof(buf), 0x7b) end
end

local function harness(key_deserializer, now)
  local got = { values = {}, errors = {}, processed = {} }
  local positions = { { topic = "R", partition = 0, offset = 0, high = 5 } }
  local topic = { value_deserializer = serializers.get("json", "value"), key_deserializer = key_deserializer }
  local buffers = aligned.new{ max_size = 100 }
  buffers:assign({ { topic = "L", partition = 0, offset = 0 }, { topic = "R", partition = 0, offset = 0 } })
  local env = {
    consumer = { positions = function() return positions end },
    pipelines = {
      L = { topic = topic, process = function(value, key, timestamp)
        got.values[#got.values + 1] = { value = value, key = key, timestamp = timestamp }
      end },
      R = { topic = topic, process = function() end },
    },
    ctx = {},
    checkpoint = { processed = function(_, t, p, o) got.processed[#got.processed + 1] = o end },
    policy = { handle = function(_, kind, err, row)
      got.errors[#got.errors + 1] = { kind = kind, err = err, value = row and row.value, key = row and row.key }
    end },
    outputs = { reached = function() return false end },
    embedded = false,
    flow = { regions = {}, taken_messages = {}, taken_bytes = {} },
    expected = {},
    aligned = buffers,
    now = now,
  }
  return process_batch.new(env), got, positions
end

local MESSAGES = {
  { '"k"', '{"a":1}', 0, 10 },
  { '"k"', '{"a":', 1, 20 },       -- not JSON
  { '{bad', '{"b":2}', 2, 30 },    -- a key that is not JSON
  { '"k"', '{"c":3}', 3, 40 },
}

describe("process_batch, aligned", function()
  for _, case in ipairs({ { "straight from the batch", false }, { "after waiting past it", true } }) do
    it("processes messages and reports bad ones with their bytes, " .. case[1], function()
      local process, got, positions = harness(serializers.get("json", "key"))
      local msgs, keep = batch_of("L", MESSAGES)
      if case[2] then
        -- R is behind (position unknown, 5 messages): L's messages wait
        assert.is_nil(process(msgs, 4))
        assert.are.same({}, got.values)
        scribble(keep)
        positions[1].offset = 5
        assert.is_nil(process(ffi.new("qh_msg[0]"), 0))
      else
        positions[1].offset = 5
        assert.is_nil(process(msgs, 4))
      end
      assert.are.same({ { value = { a = 1 }, key = "k", timestamp = 10 }, { value = { c = 3 }, key = "k", timestamp = 40 } },
        got.values)
      assert.are.equal(2, #got.errors)
      assert.are.equal("consumer", got.errors[1].kind)
      assert.truthy(got.errors[1].err:find("cannot deserialize the value of the message at topic 'L' partition 0 "
        .. "offset 1: invalid JSON", 1, true), got.errors[1].err)
      assert.are.equal('{"a":', got.errors[1].value)
      assert.truthy(got.errors[2].err:find("cannot deserialize the key of the message at topic 'L' partition 0 "
        .. "offset 2", 1, true), got.errors[2].err)
      assert.are.equal("{bad", got.errors[2].key)
      assert.are.equal('{"b":2}', got.errors[2].value)
      assert.are.same({ 0, 1, 2, 3 }, got.processed)
    end)
  end

  it("reports a value that is not JSON with its bytes after waiting, when the key is bytes", function()
    local process, got, positions = harness(serializers.get("bytes", "key"))
    local msgs, keep = batch_of("L", { { "k", '{"a":', 0, 10 }, { "k", '{"a":2}', 1, 20 } })
    assert.is_nil(process(msgs, 2))
    scribble(keep)
    positions[1].offset = 5
    assert.is_nil(process(ffi.new("qh_msg[0]"), 0))
    assert.are.same({ { value = { a = 2 }, key = "k", timestamp = 20 } }, got.values)
    assert.are.equal('{"a":', got.errors[1].value)
  end)

  it("warns, naming what they wait for, when buffered messages wait 10 s with none processed", function()
    local t = 0
    local process, got, positions = harness(serializers.get("json", "key"), function() return t end)
    local warnings, warning = {}, log.warning
    log.warning = function(fmt, ...) warnings[#warnings + 1] = string.format(fmt, ...) end
    local ok, err = pcall(function()
      local msgs = batch_of("L", { { '"k"', '{"a":1}', 0, 10 } })
      local none = ffi.new("qh_msg[0]")
      assert.is_nil(process(msgs, 1))          -- R at 0 of 5: L's message waits
      t = 9.5
      process(none, 0)
      assert.are.same({}, warnings)
      t = 10.5
      process(none, 0)
      assert.are.same({ "consuming in timestamp order: nothing could be processed for 10 s: "
        .. "1 message(s) of partition 0 wait for R[0] (its end is 5, consumed up to 0)" }, warnings)
      t = 15
      process(none, 0)
      assert.are.equal(1, #warnings)           -- at most every 10 s
      t = 21
      process(none, 0)
      assert.are.equal(2, #warnings)
      positions[1].offset = 5                  -- R is at its end: the message goes
      process(none, 0)
      assert.are.same({ { value = { a = 1 }, key = "k", timestamp = 10 } }, got.values)
      t = 60
      process(none, 0)
      assert.are.equal(2, #warnings)           -- nothing waits
    end)
    log.warning = warning
    assert(ok, err)
  end)
end)

-- The straight path: a JSON value decoded from the batch is held while its
-- message is processed (qhost.runtime.json_in.hold), so that the output
-- encoder may copy its text; never after, not even after a message that
-- raised.
describe("process_batch, straight from the batch", function()
  local json_in = require("qhost.runtime.json_in")
  local json_out = require("qhost.runtime.json_out")

  local function encoded(v)
    local address, len = json_out.encode(v, false)
    return ffi.string(ffi.cast("const char *", address), len)
  end

  it("holds a decoded value while its message is processed, and releases it after, raised or not", function()
    local outputs, kept, held_after = {}, {}, {}
    local env = {
      consumer = {},
      pipelines = { T = { topic = { value_deserializer = serializers.get("json", "value"),
                                    key_deserializer = serializers.get("bytes", "key") },
        process = function(value)
          if value.fail then error("bad message") end
          value.total = value.q * 2
          outputs[#outputs + 1] = encoded(value)
          kept[#kept + 1] = value
        end } },
      ctx = {},
      checkpoint = { processed = function() end },
      policy = { handle = function() end },   -- skips a failed message
      outputs = { reached = function() return false end },
      embedded = false,
      flow = { regions = {}, taken_messages = {}, taken_bytes = {} },
      expected = {},
    }
    local process = process_batch.new(env)
    local list, want = {}, {}
    for i = 0, 9 do
      list[#list + 1] = { "k", string.format('{"id":%d,"q":%d,"fail":%s}', i, i + 1, i == 9 and "true" or "false"),
        i, 100 + i }
      if i < 9 then want[#want + 1] = string.format('{"id":%d,"q":%d,"fail":false,"total":%d}', i, i + 1, 2 * (i + 1)) end
    end
    local msgs, keep = batch_of("T", list)
    local copied = json_out.copied
    assert.is_nil(process(msgs, #list))
    assert.are.same(want, outputs)
    -- the shape was learned from the first messages; the later ones were copied
    assert.is_true(json_out.copied - copied >= 4, (json_out.copied - copied) .. " copied")
    -- the last message raised: nothing is held after the batch
    assert.is_nil(json_in.source.t)
    held_after[1] = kept[#kept]
    scribble(keep)   -- librdkafka reuses the batch's memory after the next poll
    assert.are.equal(want[#want], encoded(held_after[1]))
  end)
end)
