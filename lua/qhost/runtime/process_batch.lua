-- qhost.runtime.process_batch: the per-message path. A polled batch is an
-- array of qh_msg structs (host/kafka.h) read through the FFI; for each
-- message it decodes key and value with its topic's deserializers (a JSON
-- value straight from librdkafka's buffer), runs the topic's compiled
-- pipeline, and marks the message done in the checkpoint. A message that
-- fails goes to its error callback (consumer or processing), which skips it
-- or stops the app. What it reads, ctx holds for the error messages and
-- the sinks (topic, partition, offset, key, value, ...).
-- On the embedded broker it also counts what it took per source topic (flow
-- control credit) and checks that offsets never jump (data the broker
-- dropped). An app that joins or concatenates topics processes in
-- timestamp order across them (process_batch.aligned, qhost.runtime.aligned).
local ffi = require("ffi")
local flow_control = require("qhost.runtime.flow_control")
local host = require("qhost.host")
local log = require("qhost.log")
local serializers = require("qhost.serializers")

local JSON = serializers.get("json", "json")
local json_decode_at = require("qhost.runtime.json_at").json_decode_at
local json_in = require("qhost.runtime.json_in")
local json_try, json_learn = json_in.try, json_in.learn
local json_hold, json_release = json_in.hold, json_in.release

local process_batch = {}

-- Raised by rt.produce when a stop ended the wait for room in a full
-- producer queue: the message was not produced, so it is not done either.
process_batch.STOPPING = setmetatable({}, { __tostring = function() return "stopping" end })

local PARTITION_EOF = -191
-- How long buffered messages may wait with none processed before the
-- aligned path warns (process_batch.aligned).
local STALL_WARN_S = 10

local function where(ctx)
  return string.format("topic '%s' partition %d offset %d", ctx.topic, ctx.partition, ctx.offset)
end
process_batch.where = where

-- The row an error callback gets (Quix passes the Row): what is known of
-- the message.
local function row_of(ctx)
  return { value = ctx.value, key = ctx.key, timestamp = ctx.timestamp, headers = ctx.headers,
           topic = ctx.topic, partition = ctx.partition, offset = ctx.offset }
end

-- process_batch.new(env) -> process(msgs, n) -> nil, or "stopping" when a
-- stop interrupted a message (that message and the rest are not done).
-- env: consumer, pipelines (topic -> { topic, process }), ctx, checkpoint,
-- policy, outputs, on_processed (or nil), embedded, flow (the flow control
-- counts: taken_messages, taken_bytes, regions), expected (topic ->
-- { [partition] = next offset }).
function process_batch.new(env)
  local consumer, pipelines, ctx = env.consumer, env.pipelines, env.ctx
  local checkpoint, policy, outputs = env.checkpoint, env.policy, env.outputs
  local on_processed, embedded, expected = env.on_processed, env.embedded, env.expected
  local regions, taken_messages, taken_bytes = env.flow.regions, env.flow.taken_messages, env.flow.taken_bytes

  -- Per topic, the shape its JSON values are tried with first
  -- (qhost.runtime.json_in); then the C decoder, whose call is written out
  -- at each place (see process_range) and whose result teaches the shape.
  local shapes, shape_list = {}, {}
  for name in pairs(pipelines) do
    shapes[name] = json_in.slot()
    shape_list[#shape_list + 1] = shapes[name]
  end
  -- Before each batch: objects a pipeline adds keys to are decoded with
  -- room for them from then on (json_in.adapt).
  local function adapt_shapes()
    for i = 1, #shape_list do json_in.adapt(shape_list[i]) end
  end

  -- The JSON value at vptr (vlen bytes) of topic tname -> value | nil, err:
  -- by the topic's shape, else by the C decoder.
  local function decode_json(tname, vptr, vlen)
    local shape = shapes[tname]
    local value = json_try(shape, vptr, vlen)
    if value ~= nil then return value end
    local verr
    value, verr = json_decode_at(tonumber(ffi.cast("uintptr_t", vptr)), tonumber(vlen))
    json_learn(shape, value)
    return value, verr
  end

  local topic_by_ptr = {}
  local function topic_name(ptr)
    local id = tonumber(ffi.cast("intptr_t", ptr))
    local name = topic_by_ptr[id]
    if not name then name = ffi.string(ptr); topic_by_ptr[id] = name end
    return name
  end

  -- Offsets on the embedded broker never jump unless it dropped data past
  -- its retention. Flow control keeps sources from causing that; anything
  -- else that does (a topic this app floods itself) stops the app.
  local function check_gap(topic, partition, offset)
    local exp = expected[topic]
    local want = exp and exp[partition]
    if want and offset > want then
      error(string.format("DATA LOST: the embedded broker dropped messages %d..%d of topic '%s' partition %d "
        .. "before this app read them (its retention is 5 MiB / 100,000 message sets per partition). "
        .. "Use a real Kafka (broker_address or QHOST_BROKER) for this volume.", want, offset - 1, topic,
        partition), 0)
    end
    if not exp then exp = {}; expected[topic] = exp end
    exp[partition] = offset + 1
  end

  local function count_taken(tname, m, headers)
    local size = flow_control.OVERHEAD + tonumber(m.value_len) + tonumber(m.key_len)
    if headers then
      for h = 1, #headers do
        local hv = headers[h][2]
        size = size + #headers[h][1] + (hv and #hv or 0)
      end
    end
    taken_messages[tname] = (taken_messages[tname] or 0) + 1
    taken_bytes[tname] = (taken_bytes[tname] or 0) + size
  end

  local function consumer_error(err, known)
    policy:handle("consumer", err, known and row_of(ctx) or nil)
  end

  -- One message that is an error event rather than data.
  local function error_event(m, i)
    ctx.stage = "consume"
    ctx.topic = m.topic ~= nil and topic_name(m.topic) or "?"
    ctx.partition, ctx.offset = m.partition, tonumber(m.offset)
    if m.err ~= PARTITION_EOF then   -- the end for now: not an error
      consumer_error(string.format("consumer error on %s: %s", where(ctx), consumer:errstr(i)), false)
    end
  end

  -- Whether the value at vptr is JSON for the topic's json deserializer,
  -- which decodes it straight from librdkafka's buffer (valid until the
  -- next poll): its bytes become a Lua string only when an error callback
  -- needs them.
  local function json_direct(tname, vptr)
    return vptr ~= nil and pipelines[tname].topic.value_deserializer == JSON
  end

  local function key_passes_bytes(tname)
    return serializers.passes_bytes(pipelines[tname].topic.key_deserializer)
  end

  -- One message, from its fields (the batch's path below and the aligned
  -- path share it): deserialize, run its topic's pipeline, mark it done.
  -- vptr/vlen: the value still in librdkafka's buffer (else vbytes).
  -- decoded: the value was decoded already (value, verr); vbytes then is
  -- its text only when an error callback may need it.
  local function process_one(tname, partition, offset, kbytes, vptr, vlen, vbytes, headers, timestamp, ts_type,
                             decoded, value, verr)
    local entry = pipelines[tname]
    local t = entry.topic
    local direct = json_direct(tname, vptr)
    if vptr ~= nil and not direct then vbytes = ffi.string(vptr, vlen) end
    ctx.stage, ctx.key, ctx.value, ctx.headers, ctx.timestamp = "deserialize", kbytes, vbytes, headers, timestamp
    local key, kerr = serializers.decode(t.key_deserializer, kbytes)
    if not kerr and not decoded then
      if direct then
        value, verr = decode_json(tname, vptr, vlen)
      else
        value, verr = serializers.decode(t.value_deserializer, vbytes)
      end
    end
    if kerr or verr then
      if direct then ctx.value = ffi.string(vptr, vlen) end
      consumer_error(string.format("cannot deserialize the %s of the message at %s: %s",
        kerr and "key" or "value", where(ctx), kerr or verr), true)
    else
      ctx.stage, ctx.key, ctx.value = "process", key, value
      if t.timestamp_extractor then
        timestamp = t.timestamp_extractor(value, headers, timestamp, ts_type)
        ctx.timestamp = timestamp
      end
      entry.process(value, key, timestamp, headers)
    end
    checkpoint:processed(tname, partition, offset)
    -- As Quix: a message a consumer error skipped was not processed.
    if on_processed and not (kerr or verr) then on_processed(tname, partition, offset) end
  end

  -- Runs messages first..n-1. Returns normally, or raises with ctx
  -- describing the message that failed (ctx.stage says where).
  local function process_range(msgs, first, n)
    for i = first, n - 1 do
      -- run{ count = N } stops after exactly the message that made the Nth
      -- output: the rest of the batch is not processed, so not committed.
      if outputs:reached() then return end
      local m = msgs[i]
      ctx.index = i
      if m.err ~= 0 then
        error_event(m, i)
      else
        local tname = topic_name(m.topic)
        local partition, offset = m.partition, tonumber(m.offset)
        ctx.topic, ctx.partition, ctx.offset, ctx.stage = tname, partition, offset, "consume"
        if embedded then check_gap(tname, partition, offset) end
        local kbytes = m.key ~= nil and ffi.string(m.key, m.key_len) or nil
        local headers = m.header_count > 0 and consumer:headers(i, m.header_count) or nil
        if regions[tname] then count_taken(tname, m, headers) end
        -- Decoded here, with the C decoder's call in the loop's own frame
        -- (decode_json written out): the JIT's trace after a call into C
        -- cannot return below the frame it began in ("NYI: return to lower
        -- frame"), which left the rest of process_one to the interpreter
        -- when the call was made there.
        local vptr, vlen = m.value, m.value_len
        if json_direct(tname, vptr) then
          local shape = shapes[tname]
          local value, verr = json_try(shape, vptr, vlen)
          if value == nil then
            value, verr = json_decode_at(tonumber(ffi.cast("uintptr_t", vptr)), tonumber(vlen))
            json_learn(shape, value)
          end
          -- (its text may be copied to the output until the message is done)
          json_hold(value, vptr, vlen)
          process_one(tname, partition, offset, kbytes, vptr, vlen, nil, headers, tonumber(m.timestamp),
            m.timestamp_type, true, value, verr)
          json_release()
        else
          process_one(tname, partition, offset, kbytes, vptr, vlen, nil, headers, tonumber(m.timestamp),
            m.timestamp_type)
        end
      end
    end
  end

  -- A message that failed in its pipeline goes to on_processing_error,
  -- which skips it (returns true) or ends the run; any other failure
  -- already went through its callback, and ends the run.
  local function failed(err)
    if ctx.stage ~= "process" then error(err, 0) end
    local text = string.format("error processing the message at %s: %s", where(ctx), tostring(err))
    policy:handle("processing", text, row_of(ctx))
    log.warning("skipped by on_processing_error: %s", where(ctx))
    -- As Quix: a message whose error was suppressed counts as processed.
    checkpoint:processed(ctx.topic, ctx.partition, ctx.offset)
    if on_processed then on_processed(ctx.topic, ctx.partition, ctx.offset) end
  end

  if env.aligned then return process_batch.aligned(env, {
    topic_name = topic_name, error_event = error_event, check_gap = check_gap, count_taken = count_taken,
    json_direct = json_direct, key_passes_bytes = key_passes_bytes, process_one = process_one, failed = failed,
    decode_json = decode_json, adapt_shapes = adapt_shapes })
  end

  -- The whole batch.
  return function(msgs, n)
    adapt_shapes()
    local first = 0
    while first < n do
      local ok, err = xpcall(process_range, debug.traceback, msgs, first, n)
      json_release()   -- (a message that raised left its value held)
      if ok then return nil end
      if err == process_batch.STOPPING then return "stopping" end
      failed(err)
      first = ctx.index + 1
    end
    return nil
  end
end

-- The aligned path (env.aligned: a qhost.runtime.aligned buffer, for apps
-- that join or concatenate topics): the batch's messages are copied into
-- the buffers; the consumer's watermarks and positions tell which
-- partitions are at their end; then the messages that may go are
-- processed in timestamp order. A batch of 0 messages is fed too (it
-- refreshes the watermarks, which may let buffered messages go).
function process_batch.aligned(env, f)
  local consumer, ctx, outputs, buffers = env.consumer, env.ctx, env.outputs, env.aligned
  local embedded, regions = env.embedded, env.flow.regions
  local can_pause = consumer.pause ~= nil and consumer.resume ~= nil
  local batch   -- the current batch: the buffers hold indexes into it until it is done

  -- A buffered message that must outlive the batch, as a table. A JSON
  -- value is decoded now, from the batch (decoding has no effects, so it
  -- may run before the messages ahead are processed): its text becomes a
  -- Lua string only when it fails to decode, for the error callback. Many
  -- messages wait (a join's other side not known to be at its end until
  -- the next poll: 42% of the join workload's), and each string made
  -- was interned, then swept.
  local function copy_out(i)
    if type(i) ~= "number" then return i end
    local m = batch[i]
    local tname = f.topic_name(m.topic)
    local vptr, vlen = m.value, m.value_len
    local item = { topic = tname, partition = m.partition, offset = tonumber(m.offset),
      timestamp = tonumber(m.timestamp), ts_type = m.timestamp_type,
      key = m.key ~= nil and ffi.string(m.key, m.key_len) or nil,
      headers = m.header_count > 0 and consumer:headers(i, m.header_count) or nil }
    if f.json_direct(tname, vptr) then
      item.decoded = true
      item.value, item.verr = f.decode_json(tname, vptr, vlen)
      -- the text, for an error callback: the value's error, or the key's
      if item.verr or not f.key_passes_bytes(tname) then item.raw = ffi.string(vptr, vlen) end
    elseif vptr ~= nil then
      item.raw = ffi.string(vptr, vlen)
    end
    return item
  end

  local function feed(msgs, n)
    batch = msgs
    for i = 0, n - 1 do
      local m = msgs[i]
      ctx.index = i
      if m.err ~= 0 then
        f.error_event(m, i)
      else
        local tname = f.topic_name(m.topic)
        local partition, offset = m.partition, tonumber(m.offset)
        ctx.topic, ctx.partition, ctx.offset, ctx.stage = tname, partition, offset, "consume"
        if embedded then f.check_gap(tname, partition, offset) end
        if regions[tname] then
          f.count_taken(tname, m, m.header_count > 0 and consumer:headers(i, m.header_count) or nil)
        end
        buffers:push(tname, partition, offset, tonumber(m.timestamp), i)
      end
    end
    -- What the last fetches said: the end of each partition, and where the
    -- consumer is (past any transaction markers, which a watermark counts).
    if consumer.positions then
      for _, tp in ipairs(consumer:positions(buffers:partitions()) or {}) do
        buffers:set_position(tp.topic, tp.partition, tp.offset)
        buffers:set_watermark(tp.topic, tp.partition, tp.high)
      end
    else
      buffers:each_partition(function(topic, partition)
        local _, high = consumer:watermarks(topic, partition)
        buffers:set_watermark(topic, partition, high)
      end)
    end
    if can_pause then
      local resume = buffers:resume_empty()
      if #resume > 0 then consumer:resume(resume) end
      local pause = buffers:pause_full()
      if #pause > 0 then consumer:pause(pause) end
    end
  end

  -- A message still in the batch (an index), or one copied out (a table).
  local function process_item(item)
    if type(item) == "number" then
      local m = batch[item]
      local tname = f.topic_name(m.topic)
      local partition, offset = m.partition, tonumber(m.offset)
      ctx.topic, ctx.partition, ctx.offset, ctx.stage = tname, partition, offset, "consume"
      local kbytes = m.key ~= nil and ffi.string(m.key, m.key_len) or nil
      local headers = m.header_count > 0 and consumer:headers(item, m.header_count) or nil
      return f.process_one(tname, partition, offset, kbytes, m.value, m.value_len, nil, headers,
        tonumber(m.timestamp), m.timestamp_type)
    end
    ctx.topic, ctx.partition, ctx.offset, ctx.stage = item.topic, item.partition, item.offset, "consume"
    return f.process_one(item.topic, item.partition, item.offset, item.key, nil, nil, item.raw, item.headers,
      item.timestamp, item.ts_type, item.decoded, item.value, item.verr)
  end

  -- run{ count = N } stops after exactly the message that made the Nth output.
  local handed = 0
  local function take(item)
    if outputs:reached() then return true end
    handed = handed + 1
    process_item(item)
    return outputs:reached()
  end
  local function drain() buffers:drain(take) end

  -- Messages that wait STALL_WARN_S and more with none handed out (the
  -- other topic's partition not known to be at its end) are named in a
  -- warning, at most every STALL_WARN_S: a join that stops moving says
  -- what it waits for rather than nothing.
  local now = env.now or host.monotonic
  local moved_at, warned_at = now(), -math.huge
  local function warn_if_stalled()
    local t = now()
    if handed > 0 or buffers:count() == 0 then
      handed, moved_at = 0, t
      return
    end
    if t - moved_at < STALL_WARN_S or t - warned_at < STALL_WARN_S then return end
    local why = buffers:waiting()
    if not why then return end
    warned_at = t
    log.warning("consuming in timestamp order: nothing could be processed for %d s: %s",
      math.floor(t - moved_at), why)
  end

  return function(msgs, n)
    f.adapt_shapes()
    feed(msgs, n)
    local result
    while true do
      local ok, err = xpcall(drain, debug.traceback)
      if ok then break end
      if err == process_batch.STOPPING then result = "stopping" break end
      f.failed(err)
    end
    warn_if_stalled()
    -- What waits in the buffers is copied out of the batch before the next
    -- poll releases it.
    buffers:replace(copy_out)
    return result
  end
end

return process_batch
