-- qhost.runtime.loop: what app:run does. Connect to the broker (or start
-- the embedded one) and create the topics; compile each dataframe into its
-- pipeline; then consume a batch, process it (qhost.runtime.process_batch),
-- take the consumer's rebalance events, checkpoint when due
-- (qhost.runtime.checkpoint), and supervise the source processes, until a
-- stop. A clean stop stops the sources, checkpoints what was processed and
-- closes the clients.
local aligned_mod = require("qhost.runtime.aligned")
local broker = require("qhost.runtime.broker")
local checkpoint_mod = require("qhost.runtime.checkpoint")
local transaction_mod = require("qhost.runtime.kafka_transaction")
local clients = require("qhost.kafka.clients")
local error_policy = require("qhost.runtime.error_policy")
local flow_control = require("qhost.runtime.flow_control")
local gc_pause = require("qhost.runtime.gc_pause")
local host = require("qhost.host")
local log = require("qhost.log")
local metrics_mod = require("qhost.runtime.metrics")
local outputs_mod = require("qhost.runtime.outputs")
local pipeline = require("qhost.runtime.pipeline")
local state_manager = require("qhost.runtime.state.manager")
local process_batch = require("qhost.runtime.process_batch")
local serializers = require("qhost.serializers")
local supervisor = require("qhost.runtime.supervisor")
local C = require("qhost.kafka.ffi")

local BATCH = 1000
local POLL_MS = 100
-- State held in memory before a checkpoint writes it out, at most (bytes).
local STATE_PENDING_MAX = 16 * 1024 * 1024
-- Start offsets of an assignment are looked up within this (seconds).
local RESOLVE_TIMEOUT = 30
local RECOVERY_TIMEOUT = 120   -- seconds for one changelog partition's read
-- The last checkpoint of a stop waits this long for the producer.
local FINAL_FLUSH_TIMEOUT = 10

local JSON = serializers.get("json", "json")
-- librdkafka's names of the reset to the start of a partition.
local FROM_EARLIEST = { earliest = true, smallest = true, beginning = true }

-- What the compiled pipelines need from the running app (see
-- qhost.runtime.pipeline): outputs, print, to_topic, sinks, print_table.
local function make_runtime(ctx, outputs, producer_of, policy)
  local rt = { ctx = ctx, is_tty = host.isatty(1), now = host.monotonic, sinks = {}, leaf = outputs.leaf }
  local seen = {}
  function rt.add_sink(sink)
    if not seen[sink] then seen[sink] = true; rt.sinks[#rt.sinks + 1] = sink end
  end
  function rt.printer()
    rt.table_printer = rt.table_printer
      or require("qhost.runtime.table_printer").new(rt.write, rt.is_tty, host.term_width(1))
    return rt.table_printer
  end
  local stdout = io.stdout
  function rt.write(text)
    local ok, err = stdout:write(text, "\n")
    if not ok then error("print: cannot write to stdout: " .. tostring(err), 0) end
  end
  -- An output that cannot be sent fails its message (on_processing_error);
  -- one the producer refuses goes to on_producer_error; a stop during the
  -- wait for queue room ends the batch with the message not done.
  function rt.produce(topic, value, key, timestamp, headers, fresh)
    -- The value may be an address in an encoder's buffer
    -- (qhost.runtime.json_out): produced (copied) before the next output
    -- is encoded.
    local kb, vb, vlen, err = topic:serialize_out(key, value, fresh)
    if err then error(err, 0) end
    local ok, perr, code = producer_of():produce(topic.name, vb, kb, nil, timestamp, headers, vlen)
    if ok then return end
    if code == clients.ERR_QUEUE_FULL and C.qh_ffi_stop_requested() > 0 then error(process_batch.STOPPING, 0) end
    policy:handle("producer", perr, { value = value, key = key, timestamp = timestamp, headers = headers,
      topic = topic.name })
  end
  return rt
end

-- The consumer of every topic with a dataframe. On the embedded broker no
-- other member can join the group: it takes every partition at once rather
-- than wait out the mock's slow group join. Rebalances are handled here,
-- after each batch (the consumer defers them: see host/kafka.h).
local function open_consumer(app, pipelines)
  local names = {}
  for name in pairs(pipelines) do names[#names + 1] = name end
  table.sort(names)
  if #names == 0 then return nil end
  local config = broker.consumer_config(app)
  config["qhost.rebalance"] = "deferred"
  local consumer, err = clients.consumer(config)
  if not consumer then error("cannot create the consumer: " .. err, 0) end
  log.info("consuming %s as group '%s' from %s", table.concat(names, ", "), app.consumer_group, app._broker)
  if not app._mock then
    local ok, serr = consumer:subscribe(names)
    if not ok then error("cannot consume " .. table.concat(names, ", ") .. ": " .. serr, 0) end
    return consumer, nil
  end
  local all = {}
  for _, name in ipairs(names) do
    for p = 0, pipelines[name].topic:num_partitions() - 1 do all[#all + 1] = { topic = name, partition = p } end
  end
  return consumer, all
end

-- A store that messages of concatenated topics reach is used by each of
-- them in the partition of the same number: the topics must be
-- co-partitioned (as joins check; the range assignor then gives partitions
-- of the same number to the same member).
local function check_store_feeds(app)
  for topic, feeds in pairs(app._store_feeds) do
    local n = app._topics[topic]:num_partitions()
    for _, name in ipairs(feeds) do
      local m = app._topics[name]:num_partitions()
      if m ~= n then
        error(string.format("the state after a concat of topics '%s' (%d partitions) and '%s' (%d partitions) "
          .. "cannot be kept: state is per key within partitions of the same number, so both topics need the "
          .. "same partition count", topic, n, name, m), 0)
      end
    end
  end
end

-- The state stores of the app's stateful operations (nil when none), and
-- rt.state_of for the pipelines. On the embedded broker the changelogs and
-- committed offsets live only as long as the process: a state_dir left by
-- an earlier run no longer matches them, and is cleared.
local function open_state(app, ctx, rt, recovery_timeout)
  if next(app._stores) == nil then return nil end
  local state = state_manager.new{ app = app, reader_config = broker.consumer_config(app),
    read_timeout = recovery_timeout,
    watermarks = function(topic, p)
      local low, high = app._admin:watermarks(topic, p, 10)
      if not low then
        -- The store keeps the changelog offset it had: the next recovery
        -- reads a little more of the changelog, nothing is lost.
        log.warning("changelog '%s' partition %d: its end offset is unknown (%s): the store keeps its older "
          .. "changelog offset", topic, p, tostring(high))
        return nil
      end
      return high
    end }
  if app._mock then
    log.info("embedded broker: the state stores in %s/%s start empty (the changelogs and offsets of an "
      .. "earlier run were in that run's memory)", app.state_dir, app.consumer_group)
    state:clear_local()
  end
  for topic, stores in pairs(app._stores) do
    for store_name, kind in pairs(stores) do state:register(topic, store_name, kind, app._store_feeds[topic]) end
  end
  local prefix = state_manager.prefix
  -- store_topic: the topic the store belongs to, when the messages of other
  -- topics reach it through a concat (they use its partition of the same
  -- number: the topics are co-partitioned, checked at start).
  function rt.state_of(store_name, store_topic)
    if store_topic then
      return function(key) return state:state(store_topic, ctx.partition, store_name, prefix(key)) end
    end
    return function(key) return state:state(ctx.topic, ctx.partition, store_name, prefix(key)) end
  end
  function rt.window_tx(store_name, store_topic)
    if store_topic then
      return function() return state:transaction(store_topic, ctx.partition, store_name) end
    end
    return function() return state:transaction(ctx.topic, ctx.partition, store_name) end
  end
  -- A join's store of a topic (either side's) in the message's partition
  -- (the sides are co-partitioned: qhost.joins).
  function rt.join_tx(topic_name, store_name)
    return function() return state:transaction(topic_name, ctx.partition, store_name) end
  end
  return state
end

-- The metrics endpoint (metrics_port), first: a port it cannot have fails
-- the start before anything else happens.
local function start_metrics(app)
  if not app.metrics_port then return nil end
  local metrics, err = metrics_mod.start(app.metrics_port)
  if not metrics then error(string.format("metrics_port %d: %s", app.metrics_port, err), 0) end
  log.info("serving /metrics, /health and /ready on port %d", app.metrics_port)
  return metrics
end

-- The sources' supervisor with every source started held (see run below).
-- Sources feeding a topic this app consumes on the embedded broker get a
-- flow control region (qhost.runtime.flow_control).
local function start_held_sources(app)
  local consumed = {}
  for _, sdf in ipairs(app._dataframes) do consumed[sdf.topic.name] = true end
  local flow = { regions = {}, taken_messages = {}, taken_bytes = {} }
  local entries = {}
  for i, e in ipairs(app._sources) do
    entries[i] = { source = e.source, topic = e.topic }
    if app._mock and consumed[e.topic.name] then
      local region, ferr = flow_control.new_region()
      if not region then error(ferr, 0) end
      flow.regions[e.topic.name], entries[i].region = region, region
    end
  end
  local sources = supervisor.new(app, entries)
  local app_mod = require("qhost.app")
  sources:start_all(app_mod.script, app_mod.script_args)
  return flow, sources
end

local run

local function run_app(app, opts)
  local metrics = start_metrics(app)
  broker.connect(app)
  if app.processing_guarantee == "exactly-once" and app._mock then
    broker.close(app)
    error('processing_guarantee = "exactly-once" needs a real Kafka (broker_address or QHOST_BROKER): the '
      .. "embedded broker accepts Kafka transactions but isolates nothing (aborted outputs stay visible), so it "
      .. "cannot give that guarantee", 0)
  end
  -- The sources start first, held: a source's process start (exec, script,
  -- class, producer) overlaps the app's own (topics, clients, state, group
  -- join) rather than follow it. A run that fails before it released them
  -- stops them, and they end without having run.
  local flow, sources = start_held_sources(app)
  local ok, result = xpcall(run, function(err)
    log.debug("%s", debug.traceback(tostring(err), 2))
    return err
  end, app, opts, metrics, flow, sources)
  if not ok then
    sources:stop_all()
    error(result, 0)
  end
  return result
end

function run(app, opts, metrics, flow, sources)
  broker.prepare_topics(app)
  -- What joins need of their topics (same partition count), now known.
  if #app._joins > 0 then require("qhost.joins").check_topics(app) end
  check_store_feeds(app)
  -- An app that consumes nothing, or consumes from "earliest" (each
  -- partition from its first message or its committed offset), cannot miss
  -- a message of its sources: they run as soon as their topics exist, while
  -- the app makes its clients and joins its group. From "latest" (or
  -- "error") they wait for its first assignment.
  if #app._dataframes == 0 or FROM_EARLIEST[broker.consumer_config(app)["auto.offset.reset"]] then
    sources:release_all()
  end
  -- Under exactly-once the producer's transactions start before any output.
  if app.processing_guarantee == "exactly-once" then log.info("exactly-once: outputs, changelogs and offsets "
    .. "commit together in Kafka transactions") end
  local embedded = app._mock and true or false
  local ctx = { topic = "", partition = 0, offset = 0 }
  local outputs = outputs_mod.new(opts, ctx)
  local policy = error_policy.new(app, metrics and function(kind) metrics:error(kind) end)

  -- The producer of to_topic outputs and changelogs: made on first use;
  -- under exactly-once, transactional, in a transaction from the start.
  local exactly_once = app.processing_guarantee == "exactly-once"
  local producer
  local function producer_of()
    if not producer then
      local config = broker.producer_config(app)
      if exactly_once then config["transactional.id"] = transaction_mod.new_id(app.consumer_group) end
      local err
      producer, err = clients.producer(config, { flush_reports_failures = false })
      if not producer then error("cannot create the producer: " .. err, 0) end
      if exactly_once then transaction_mod.start(producer) end
    end
    return producer
  end
  local rt = make_runtime(ctx, outputs, producer_of, policy)
  if metrics then rt.timed = function(node) return metrics:timed(node) end end
  -- Under exactly-once, the committed offsets of a partition and the end of
  -- its changelogs wait behind the open transaction of an instance that
  -- died, until the broker aborts it (transaction.timeout.ms, then its next
  -- check): the start-up and each recovery read wait that long.
  local open_transaction_wait = exactly_once
    and (tonumber(app.producer_extra_config["transaction.timeout.ms"]) or 60000) / 1000 + 30 or 0
  local resolve_timeout = math.max(RESOLVE_TIMEOUT, open_transaction_wait)
  local recovery_timeout = math.max(RECOVERY_TIMEOUT, open_transaction_wait + 30)
  local state = open_state(app, ctx, rt, recovery_timeout)
  local pipelines = {}
  for _, sdf in ipairs(app._dataframes) do
    -- Values decoded by the JSON deserializer are fresh (qhost.runtime.pipeline)
    -- unless a timestamp extractor (user code) gets them first.
    local t = sdf.topic
    local fresh = t.value_deserializer == JSON and not t.timestamp_extractor
    pipelines[t.name] = { topic = t, process = pipeline.compile(sdf, rt, fresh) }
  end
  for _, sink in ipairs(rt.sinks) do sink:setup() end
  for name in pairs(app._outputs) do producer_of():prepare(name) end

  local consumer, manual = open_consumer(app, pipelines)
  local checkpoint = checkpoint_mod.new{ consumer = consumer,
    producer = function(create) return create and producer_of() or producer end,
    sinks = rt.sinks, policy = policy, state = state, exactly_once = exactly_once,
    commit_interval = app.commit_interval, commit_every = app.commit_every,
    -- (how long a checkpoint waits for the broker: as Quix, max.poll.interval.ms)
    flush_timeout = (tonumber(app.consumer_extra_config["max.poll.interval.ms"]) or 300000) / 1000,
    stopping = function() return C.qh_ffi_stop_requested() > 0 end,
    now = host.monotonic, on_commit = metrics and function(seconds) metrics:checkpointed(seconds) end }

  if metrics then
    metrics:attach{ consumer = consumer, producer = function() return producer end, state = state, sources = sources }
  end

  local expected = {}   -- topic -> { [partition] = next offset }, for the gap check
  -- Joins and concatenated topics are processed in timestamp order (as Quix).
  local buffers = app._time_alignment and aligned_mod.new() or nil
  local process = consumer and process_batch.new{ consumer = consumer, pipelines = pipelines, ctx = ctx,
    checkpoint = checkpoint, policy = policy, outputs = outputs, on_processed = app.on_message_processed or nil,
    embedded = embedded, flow = flow, expected = expected, aligned = buffers }

  -- run{ timeout = S } counts from the last message, or from the last
  -- assignment (and its state recovery), as Quix refreshes it; the first
  -- assignment of a group may take a while (a member that died is only
  -- evicted after its session timeout): as Quix, it gets 60 s more.
  local last_message = host.monotonic() + 60

  -- An assignment starts where each partition's committed offset (or the
  -- reset) says, looked up within resolve_timeout; sources still held run
  -- from the first one on, so none of their messages can come before a
  -- "latest" start.
  local function assign(partitions, manual_assign)
    if metrics then
      metrics:set_ready(false, string.format("assigning %d partitions and recovering their state", #partitions))
      -- Looking up the starts and reading each store's changelog have their
      -- own bounds (resolve_timeout, recovery_timeout a read): /health holds that long.
      local reads = 0
      for _, tp in ipairs(partitions) do
        for _ in pairs(app._stores[tp.topic] or {}) do reads = reads + 1 end
      end
      metrics:beat(metrics.health_timeout + resolve_timeout + (recovery_timeout + 10) * reads)
    end
    local resolved, err = consumer:resolve_start(partitions, resolve_timeout)
    if not resolved then error("cannot start consuming the assigned partitions: " .. err, 0) end
    local ok, aerr
    -- Their state is brought up to date before any of their messages.
    if state then state:assign(resolved) end
    if buffers then buffers:assign(resolved) end
    if manual_assign then ok, aerr = consumer:assign(resolved) else ok, aerr = consumer:finish_assign(resolved) end
    if not ok then error("cannot assign partitions: " .. tostring(aerr), 0) end
    for _, tp in ipairs(resolved) do
      log.debug("assigned %s [%d] from offset %s", tp.topic, tp.partition, tostring(tp.offset))
      expected[tp.topic] = expected[tp.topic] or {}
      expected[tp.topic][tp.partition] = tp.offset >= 0 and tp.offset or nil
    end
    log.info("assigned %d partitions", #resolved)
    if metrics then
      metrics:assigning(resolved)
      metrics:set_ready(true)
    end
    last_message = host.monotonic()
    sources:release_all()
  end

  local function revoke(ev)
    log.info("revoked %d partitions%s", #ev.partitions, ev.lost and " (lost)" or "")
    checkpoint:revoke(ev.partitions, ev.lost)
    if state then state:revoke(ev.partitions) end
    if buffers then
      local paused = buffers:revoke(ev.partitions)
      if #paused > 0 then consumer:resume(paused) end
    end
    for _, tp in ipairs(ev.partitions) do
      if expected[tp.topic] then expected[tp.topic][tp.partition] = nil end
    end
    local ok, err = consumer:finish_revoke(ev.partitions)
    if not ok then error("cannot give up the revoked partitions: " .. tostring(err), 0) end
  end

  local function report_taken()
    for tname, n in pairs(flow.taken_messages) do
      flow.regions[tname]:consumed(n, flow.taken_bytes[tname])
      flow.taken_messages[tname], flow.taken_bytes[tname] = nil, nil
    end
  end

  local function take_client_errors(client, what)
    local errors = client:take_errors()
    if not errors then return end
    if errors.fatal then error("the " .. what .. " failed: " .. errors.last, 0) end
    log.warning("%s: %s", what, errors.last)
  end

  local function loop()
    if manual then assign(manual, true) end
    if metrics and not consumer then metrics:set_ready(true) end
    local batch_max = app.commit_interval == 0 and 1 or BATCH
    while C.qh_ffi_stop_requested() == 0 and not app._stop_requested do
      if metrics then metrics:tick() end
      if consumer then
        local n, msgs = consumer:poll(batch_max, POLL_MS)
        if metrics and n > 0 then metrics:count_batch(msgs, n) end
        -- (buffered messages may go once the watermarks say so)
        if n > 0 or buffers then
          if n > 0 then last_message = host.monotonic() end
          local stopping = process(msgs, n)
          report_taken()
          io.stdout:flush()
          if stopping then break end
        end
        for _, ev in ipairs(consumer:take_events()) do
          if ev.type == "assign" then assign(ev.partitions) else revoke(ev) end
        end
        take_client_errors(consumer, "consumer")
        local now = host.monotonic()
        checkpoint:check_deliveries()
        if checkpoint:due(now) or (state and state:pending_bytes() > STATE_PENDING_MAX) then checkpoint:commit() end
        if rt.table_printer then rt.table_printer:tick(now) end
        if outputs:reached() or outputs:timed_out(now, last_message) then break end
      else
        host.sleep(0.02)
      end
      if producer then
        producer:poll(0)
        take_client_errors(producer, "producer")
      end
      -- A failed source stops the app with the source's own report.
      local failure = sources:poll()
      if failure then return failure end
      if not consumer and sources:alive() == 0 then break end
    end
  end

  local pacing = gc_pause.start()
  local ok, stop_reason = xpcall(loop, debug.traceback)
  pacing:stop()
  if metrics then
    metrics:set_ready(false, "stopping")
    -- Stopping the sources (their shutdown_timeout) and the last checkpoint
    -- have their own bounds.
    local longest = 0
    for _, e in ipairs(app._sources) do longest = math.max(longest, e.source.shutdown_timeout or 10) end
    metrics:beat(metrics.health_timeout + longest + FINAL_FLUSH_TIMEOUT)
  end
  -- What print_table collected is shown before the app ends.
  if rt.table_printer then pcall(rt.table_printer.tick, rt.table_printer, host.monotonic(), true) end

  -- Graceful stop: sources first (they may still be producing), then the
  -- last checkpoint, then the clients. What was processed is committed even
  -- when the run ends with an error: only fully processed messages are.
  local source_failure = sources:stop_all()
  stop_reason = stop_reason or source_failure
  checkpoint.flush_timeout = FINAL_FLUSH_TIMEOUT
  local cok, cerr = pcall(checkpoint.commit, checkpoint)
  if not cok then
    log.error("final checkpoint failed: %s", tostring(cerr))
    stop_reason = stop_reason or cerr
  end
  if state then state:close() end
  if consumer then consumer:close() end
  if producer then producer:close() end
  for _, region in pairs(flow.regions) do region:close() end
  broker.close(app)
  if metrics then metrics:close() end
  io.stdout:flush()
  if stop_reason then error(stop_reason, 0) end
  if C.qh_ffi_stop_requested() > 0 then
    log.info("stopped by signal %d: sources stopped, offsets committed", select(2, host.stop_requested()))
  end
  return outputs.list
end

return run_app
