-- qhost.runtime.loop: Application:run's loop. Consume a batch, run each message
-- through its topic's pipeline, checkpoint (flush the producer, then store
-- and commit the offsets of what was processed), supervise the sources.
-- The per-message path reads the batch through the FFI (qh_msg structs) so
-- it compiles into one trace.
local ffi = require("ffi")
local clients = require("qhost.kafka.clients")
local dataframe = require("qhost.dataframe")
local flow_control = require("qhost.runtime.flow_control")
local host = require("qhost.host")
local log = require("qhost.log")
local serializers = require("qhost.serializers")
local supervisor = require("qhost.runtime.supervisor")

local C = require("qhost.kafka.ffi")
local JSON = serializers.get("json", "json")
local json_decode_at = require("qhost.codec").json_decode_at

local BATCH = 1000
local POLL_MS = 100


-- One pipeline per input topic (app:dataframe allows one dataframe each).
local function compile_pipelines(app, rt)
  local by_topic = {}
  for _, sdf in ipairs(app._dataframes) do
    by_topic[sdf.topic.name] = { topic = sdf.topic, process = dataframe.compile(sdf, rt) }
  end
  return by_topic
end

local function where(ctx)
  return string.format("topic '%s' partition %d offset %d", ctx.topic, ctx.partition, ctx.offset)
end

-- The row of an error callback (Quix passes the Row, or None for consumer
-- errors): what we know of the message.
local function row_of(ctx)
  return { value = ctx.value, key = ctx.key, timestamp = ctx.timestamp, headers = ctx.headers,
           topic = ctx.topic, partition = ctx.partition, offset = ctx.offset }
end

return function(app, opts)
  local count_limit = opts.count
  local idle_timeout = opts.timeout
  local collect = opts.collect
  if collect == nil then collect = (count_limit ~= nil or idle_timeout ~= nil) end
  local with_metadata = opts.metadata

  app:_connect()
  app:_prepare_topics()

  local embedded = app._mock and true or false
  local outputs, output_count = {}, 0
  local ctx = { topic = "", partition = 0, offset = 0 }
  local stop_reason     -- an error text that ends the run with a raise

  -- Producer for to_topic (created on first use, flushed at checkpoints).
  local producer
  local function get_producer()
    if not producer then
      local err
      producer, err = clients.producer(app:producer_config())
      if not producer then error("cannot create the producer: " .. err, 0) end
    end
    return producer
  end

  local function producer_failed(err)
    if app.on_producer_error and app.on_producer_error(err, nil, log) then return end
    error(err, 0)
  end

  local rt = { ctx = ctx, is_tty = host.isatty(1) }
  local sink_list, sink_seen = {}, {}
  function rt.add_sink(sink)
    if not sink_seen[sink] then sink_seen[sink] = true; sink_list[#sink_list + 1] = sink end
  end
  function rt.leaf(value, key, timestamp, headers)
    output_count = output_count + 1
    if collect then
      if with_metadata then
        local row = {}
        if type(value) == "table" then for k, v in pairs(value) do row[k] = v end
        else row._value = value end
        row._key, row._timestamp, row._headers = key, timestamp, headers
        row._topic, row._partition, row._offset = ctx.topic, ctx.partition, ctx.offset
        outputs[#outputs + 1] = row
      else
        outputs[#outputs + 1] = value
      end
    end
  end
  rt.now = host.monotonic
  -- print_table's tables, shared by the whole pipeline (created on first use).
  local table_printer
  function rt.printer()
    table_printer = table_printer or require("qhost.runtime.table_printer").new(rt.write, rt.is_tty, host.term_width(1))
    return table_printer
  end
  local stdout = io.stdout
  function rt.write(text)
    local ok, err = stdout:write(text, "\n")
    if not ok then error("print: cannot write to stdout: " .. tostring(err), 0) end
  end
  function rt.produce(topic, value, key, timestamp, headers)
    local kb, vb, err = topic:serialize(key, value)
    if err then error(err, 0) end
    local ok, perr = get_producer():produce(topic.name, vb, kb, nil, timestamp, headers)
    if not ok then producer_failed(perr) end
  end

  local pipelines = compile_pipelines(app, rt)
  for _, sink in ipairs(sink_list) do sink:setup() end
  if next(app._outputs) then
    local p = get_producer()
    for name in pairs(app._outputs) do p:prepare(name) end
  end

  local consumer
  local topic_names = {}
  for name in pairs(pipelines) do topic_names[#topic_names + 1] = name end
  table.sort(topic_names)
  if #topic_names > 0 then
    local err
    consumer, err = clients.consumer(app:_consumer_config())
    if not consumer then error("cannot create the consumer: " .. err, 0) end
    local ok, serr
    if embedded then
      -- The embedded broker lives in this process: no other member can
      -- join the group, so take every partition at once rather than wait
      -- out the mock's slow group join (session.timeout.ms - 1 s).
      local all = {}
      for _, name in ipairs(topic_names) do
        for p = 0, pipelines[name].topic:num_partitions() - 1 do
          all[#all + 1] = { topic = name, partition = p }
        end
      end
      ok, serr = consumer:assign(all)
    else
      ok, serr = consumer:subscribe(topic_names)
    end
    if not ok then error("cannot consume " .. table.concat(topic_names, ", ") .. ": " .. serr, 0) end
    log.info("consuming %s as group '%s' from %s", table.concat(topic_names, ", "), app.consumer_group, app._broker)
  end

  -- On the embedded broker, each source feeding a topic this app consumes
  -- gets a flow control region: it may only run a budget ahead of what the
  -- app has taken from its consumer (qhost.flow_control).
  local flow_regions = {}   -- topic -> Region
  local entries = {}
  for i, e in ipairs(app._sources) do
    entries[i] = { source = e.source, topic = e.topic }
    if embedded and pipelines[e.topic.name] then
      local region, ferr = flow_control.new_region()
      if not region then error(ferr, 0) end
      flow_regions[e.topic.name] = region
      entries[i].region = region
    end
  end
  local sources = supervisor.new(app, entries)
  local standalone = consumer == nil
  -- What each batch took of each source's topic, counted as the source counts.
  local taken_messages, taken_bytes = {}, {}
  local function report_taken()
    for tname, n in pairs(taken_messages) do
      flow_regions[tname]:consumed(n, taken_bytes[tname])
      taken_messages[tname], taken_bytes[tname] = nil, nil
    end
  end

  -- Offsets: next offset to commit and next expected, per topic/partition.
  local processed = {}     -- topic -> { [partition] = next offset }
  local expected = {}      -- topic -> { [partition] = next offset we should see }
  local dirty = false
  local since_checkpoint = 0
  local last_checkpoint = host.monotonic()

  -- Sinks take what was processed since the last checkpoint, per topic
  -- partition; a failing flush raises here, before anything is committed.
  local function flush_sinks()
    for _, sink in ipairs(sink_list) do
      for topic, parts in pairs(processed) do
        for partition in pairs(parts) do
          local ok, err = xpcall(sink.flush, debug.traceback, sink, topic, partition)
          if not ok then
            error(string.format("checkpoint aborted, nothing committed: %s failed to flush topic '%s' "
              .. "partition %d: %s", sink.__name or "sink", topic, partition, tostring(err)), 0)
          end
        end
      end
    end
  end

  local function checkpoint()
    if producer then
      local ok, err = producer:flush(30)
      if not ok then producer_failed(err) end
    end
    if dirty then flush_sinks() end
    if consumer and dirty then
      local list = {}
      for topic, parts in pairs(processed) do
        for partition, offset in pairs(parts) do
          list[#list + 1] = { topic = topic, partition = partition, offset = offset }
        end
      end
      local ok, err = consumer:store_offsets(list)
      if ok then ok, err = consumer:commit() end
      if not ok then error("checkpoint: cannot commit offsets: " .. err, 0) end
      log.debug("checkpoint: committed %d partition offsets", #list)
    end
    dirty = false
    since_checkpoint = 0
    last_checkpoint = host.monotonic()
  end

  -- After an assignment the partitions carry their start offsets (the host
  -- resolved them: committed, or the end under "latest"); they are where
  -- the next message of each partition must be.
  local function on_assign(partitions)
    for _, tp in ipairs(partitions) do
      log.debug("assigned %s [%d] from offset %s", tp.topic, tp.partition, tostring(tp.offset))
      expected[tp.topic] = expected[tp.topic] or {}
      expected[tp.topic][tp.partition] = tp.offset >= 0 and tp.offset or nil
    end
  end

  local function on_revoke(partitions)
    for _, tp in ipairs(partitions) do
      if processed[tp.topic] then processed[tp.topic][tp.partition] = nil end
      if expected[tp.topic] then expected[tp.topic][tp.partition] = nil end
    end
  end

  local function handle_events()
    for _, ev in ipairs(consumer:take_events()) do
      if ev.type == "assign" then
        log.info("assigned %d partitions", #ev.partitions)
        on_assign(ev.partitions)
        if not sources.started then sources:start_all(require("qhost.app").script, require("qhost.app").script_args) end
      else
        log.info("revoked %d partitions", #ev.partitions)
        on_revoke(ev.partitions)
      end
    end
  end

  local function consumer_error(err, ctx_known)
    if app.on_consumer_error and app.on_consumer_error(err, ctx_known and row_of(ctx) or nil, log) then
      return
    end
    error(err, 0)
  end

  -- Data loss on the embedded broker: it drops the oldest data of a
  -- partition past its retention, and offsets then jump. Flow control keeps
  -- sources from causing that; anything else that does (another producer
  -- writing faster than this app reads) stops the app with an error.
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

  local topic_by_ptr = {}
  local function topic_name(ptr)
    local id = tonumber(ffi.cast("intptr_t", ptr))
    local name = topic_by_ptr[id]
    if not name then name = ffi.string(ptr); topic_by_ptr[id] = name end
    return name
  end

  local on_processed = app.on_message_processed

  -- Runs messages first..n-1 of the batch. Returns normally, or raises
  -- with ctx describing the message that failed (ctx.stage says where).
  local function process_range(msgs, first, n)
    for i = first, n - 1 do
      -- run{ count = N } stops after exactly the message that made the Nth
      -- output: the rest of the batch is not processed, so not committed.
      if count_limit and output_count >= count_limit then return end
      local m = msgs[i]
      ctx.index = i
      if m.err ~= 0 then
        ctx.stage = "consume"
        ctx.topic = m.topic ~= nil and topic_name(m.topic) or "?"
        ctx.partition, ctx.offset = m.partition, tonumber(m.offset)
        local code = m.err
        -- -191 is _PARTITION_EOF: not an error, just the end for now.
        if code ~= -191 then
          consumer_error(string.format("consumer error on %s: %s", where(ctx), consumer:errstr(i)), false)
        end
      else
        local tname = topic_name(m.topic)
        local partition, offset = m.partition, tonumber(m.offset)
        ctx.topic, ctx.partition, ctx.offset = tname, partition, offset
        if embedded then
          ctx.stage = "consume"
          check_gap(tname, partition, offset)
        end
        local entry = pipelines[tname]
        local t = entry.topic
        local kbytes = m.key ~= nil and ffi.string(m.key, m.key_len) or nil
        -- A JSON value is decoded straight from librdkafka's buffer (valid
        -- until the next poll): its bytes become a Lua string only when an
        -- error callback needs them.
        local json_direct = m.value ~= nil and t.value_deserializer == JSON
        local vbytes = (m.value ~= nil and not json_direct) and ffi.string(m.value, m.value_len) or nil
        local headers = m.header_count > 0 and consumer:headers(i, m.header_count) or nil
        if flow_regions[tname] then
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
        local timestamp = tonumber(m.timestamp)
        ctx.stage, ctx.key, ctx.value, ctx.headers, ctx.timestamp = "deserialize", kbytes, vbytes, headers, timestamp
        local key, kerr = serializers.decode(t.key_deserializer, kbytes)
        local value, verr
        if not kerr then
          if json_direct then
            value, verr = json_decode_at(tonumber(ffi.cast("uintptr_t", m.value)), tonumber(m.value_len))
          else
            value, verr = serializers.decode(t.value_deserializer, vbytes)
          end
        end
        if kerr or verr then
          if json_direct then ctx.value = ffi.string(m.value, m.value_len) end
          consumer_error(string.format("cannot deserialize the %s of the message at %s: %s",
            kerr and "key" or "value", where(ctx), kerr or verr), true)
        else
          ctx.stage, ctx.key, ctx.value = "process", key, value
          if t.timestamp_extractor then
            timestamp = t.timestamp_extractor(value, headers, timestamp, m.timestamp_type)
            ctx.timestamp = timestamp
          end
          entry.process(value, key, timestamp, headers)
        end
        local parts = processed[tname]
        if not parts then parts = {}; processed[tname] = parts end
        parts[partition] = offset + 1
        dirty = true
        since_checkpoint = since_checkpoint + 1
        -- As Quix: a message a consumer error skipped was not processed.
        if on_processed and not (kerr or verr) then on_processed(tname, partition, offset) end
      end
    end
  end

  -- Runs the whole batch; a failing message goes to its error callback,
  -- which skips it (returns true) or ends the run.
  local function process_batch(msgs, n)
    local first = 0
    while first < n do
      local ok, err = xpcall(process_range, debug.traceback, msgs, first, n)
      if ok then return end
      local i = ctx.index
      if ctx.stage ~= "process" then error(err, 0) end   -- already went through its callback
      local text = string.format("error processing the message at %s: %s", where(ctx), tostring(err))
      if not (app.on_processing_error and app.on_processing_error(text, row_of(ctx), log)) then
        error(text, 0)
      end
      log.warning("skipped by on_processing_error: %s", where(ctx))
      local parts = processed[ctx.topic] or {}
      processed[ctx.topic] = parts
      parts[ctx.partition] = ctx.offset + 1
      -- As Quix: a message whose error was suppressed counts as processed.
      if on_processed then on_processed(ctx.topic, ctx.partition, ctx.offset) end
      dirty = true
      first = i + 1
    end
  end

  local function loop()
    if standalone then sources:start_all(require("qhost.app").script, require("qhost.app").script_args) end
    local last_message = host.monotonic()
    local batch_max = app.commit_interval == 0 and 1 or BATCH
    while true do
      if C.qh_ffi_stop_requested() > 0 or app._stop_requested then break end
      if consumer then
        local n, msgs = consumer:poll(batch_max, POLL_MS)
        handle_events()
        if n > 0 then
          last_message = host.monotonic()
          process_batch(msgs, n)
          report_taken()
          io.stdout:flush()
        end
        local errors = consumer:take_errors()
        if errors then
          if errors.fatal then error("the consumer failed: " .. errors.last, 0) end
          log.warning("consumer: %s", errors.last)
        end
        local now = host.monotonic()
        if dirty and (app.commit_interval == 0 or now - last_checkpoint >= app.commit_interval
                      or (app.commit_every > 0 and since_checkpoint >= app.commit_every)) then
          checkpoint()
        end
        if table_printer then table_printer:tick(now) end
        if count_limit and output_count >= count_limit then break end
        if idle_timeout and now - last_message >= idle_timeout then break end
      else
        host.sleep(0.02)
      end
      if producer then
        producer:poll(0)
        local perrors = producer:take_errors()
        if perrors then
          if perrors.fatal then error("the producer failed: " .. perrors.last, 0) end
          log.warning("producer: %s", perrors.last)
        end
      end
      local failure = sources:poll()
      if failure then
        stop_reason = failure
        break
      end
      if standalone and sources:alive() == 0 then break end
    end
  end

  local ok, err = xpcall(loop, debug.traceback)
  if not ok then stop_reason = err end
  -- What print_table collected is shown before the app ends.
  if table_printer then pcall(table_printer.tick, table_printer, host.monotonic(), true) end

  -- Graceful stop: sources first (they may still be producing), then the
  -- last checkpoint, then the clients. What was processed is committed even
  -- when the run ends with an error: only fully processed messages are.
  local source_failure = sources:stop_all()
  stop_reason = stop_reason or source_failure
  local cok, cerr = pcall(checkpoint)
  if not cok then
    log.error("final checkpoint failed: %s", tostring(cerr))
    stop_reason = stop_reason or cerr
  end
  if consumer then consumer:close() end
  if producer then producer:close() end
  for _, region in pairs(flow_regions) do region:close() end
  if app._admin then app._admin:close(); app._admin = false end
  if app._mock then app._mock:close(); app._mock = false end
  io.stdout:flush()
  if stop_reason then error(stop_reason, 0) end
  if C.qh_ffi_stop_requested() > 0 then
    log.info("stopped by signal %d: sources stopped, offsets committed", select(2, host.stop_requested()))
  end
  return outputs
end
