-- qhost.runtime.metrics: what an app with metrics_port shows operations
-- (docs/operations.md): the Prometheus text of /metrics, and the heartbeat
-- and readiness behind /health and /ready. The HTTP server is host/metrics.c
-- (libmicrohttpd, its own thread): it answers from the last text handed to
-- it, so a scrape never waits for the loop and the loop never waits for a
-- scrape. The loop calls tick() every iteration; about once a second tick
-- renders the text from the counters and publishes it (a copy, in C).
-- Counting stays off the per-message path's C calls: count_batch adds a
-- polled batch's messages to plain Lua numbers, user functions are timed on
-- one call in SAMPLE_EVERY (two clock reads per 16 calls), and everything
-- else (deliveries, positions and end offsets, store sizes, sources) is
-- read when the text is rendered.
local ffi = require("ffi")
local host = require("qhost.host")
local kafka = require("qhost.kafka")

ffi.cdef[[
double qh_ffi_metrics_now(void);
]]
local C = ffi.C
local band = require("bit").band

local metrics = {}

-- One call in this many (a power of two) of each user function is timed;
-- its time counts this many times.
metrics.SAMPLE_EVERY = 16
-- Seconds between two renderings of the text.
metrics.PUBLISH_INTERVAL = 1
-- The checkpoint duration histogram's upper bounds (seconds).
metrics.BUCKETS = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 }
-- /health answers 503 once the loop has not beaten for this long (seconds).
-- A loop iteration polls for at most 0.1 s, and a checkpoint waits for the
-- producer 30 s at most: a minute without one is a stuck loop.
metrics.DEFAULT_HEALTH_TIMEOUT = 60

-- metrics.health_timeout() -> seconds: QHOST_HEALTH_TIMEOUT, else the default.
function metrics.health_timeout()
  local env = os.getenv("QHOST_HEALTH_TIMEOUT")
  local n = env and tonumber(env)
  if env and env ~= "" and not (n and n > 0) then
    error(string.format("QHOST_HEALTH_TIMEOUT must be a number of seconds > 0, got %q", env), 0)
  end
  return n or metrics.DEFAULT_HEALTH_TIMEOUT
end

local Metrics = {}
Metrics.__index = Metrics

-- metrics.new() -> the counters and their text, without a server (tests).
function metrics.new()
  return setmetatable({
    server = false,
    health_timeout = metrics.DEFAULT_HEALTH_TIMEOUT,
    consumed = {},          -- topic -> { [partition] = messages }
    by_ptr = {},            -- the host's topic name pointer -> consumed[topic]
    errors = {},            -- kind -> count
    functions = {},         -- label -> { calls =, seconds = } (seconds of sampled calls)
    function_order = {},    -- labels in compile order
    checkpoints = { count = 0, sum = 0, buckets = {} },
    starts = {},            -- topic -> { [partition] = start offset } of the assignment
    assigned = 0,           -- partitions assigned
    ready = false,
    started_at = host.time_ms() / 1000,
    next_publish = 0,
    attached = {},
  }, Metrics)
end

-- metrics.start(port) -> Metrics serving on port | nil, err
function metrics.start(port)
  local server, err = require("qhost.metrics").start(port)
  if not server then return nil, err end
  local self = metrics.new()
  self.server = server
  self.health_timeout = metrics.health_timeout()
  -- Until the loop runs, connecting and making topics have their own
  -- bounds: /health holds for two minutes, or the health timeout if longer.
  server:beat(math.max(self.health_timeout, 120))
  server:set_ready(false, "starting: connecting to the broker")
  return self
end

-- What the rendering reads, once the loop has it: consumer (positions()),
-- producer (a function returning the producer or nil: it is made on first
-- use), state (the state manager: sizes()), sources (the supervisor:
-- report()). Any may be absent.
function Metrics:attach(parts)
  for k, v in pairs(parts) do self.attached[k] = v end
end

-- The hot path ------------------------------------------------------------------

-- Adds a polled batch (qh_msg array 0..n-1) to the consumed counts.
function Metrics:count_batch(msgs, n)
  local by_ptr = self.by_ptr
  for i = 0, n - 1 do
    local m = msgs[i]
    if m.err == 0 then
      local id = tonumber(ffi.cast("intptr_t", m.topic))
      local counts = by_ptr[id]
      if not counts then
        local name = ffi.string(m.topic)
        counts = self.consumed[name] or {}
        self.consumed[name], by_ptr[id] = counts, counts
      end
      local p = m.partition
      counts[p] = (counts[p] or 0) + 1
    end
  end
end

-- metrics:timed(node) -> node, or a stand-in for it whose fn is timed: the
-- pipeline's compiler (qhost.runtime.pipeline) passes every node with a
-- user function. The label is the operation and where the user wrote it.
function Metrics:timed(node)
  local label = string.format("%s %s", node.kind, node.where or "?")
  local slot = self.functions[label]
  if not slot then
    slot = { calls = 0, seconds = 0 }
    self.functions[label] = slot
    self.function_order[#self.function_order + 1] = label
  end
  local fn, mask, now = node.fn, metrics.SAMPLE_EVERY - 1, C.qh_ffi_metrics_now
  -- Five arguments: the most a user function gets (a stateful function
  -- with metadata: value, key, timestamp, headers, state); one result: all
  -- the pipeline uses, whether the call is timed or not.
  local timed = function(a, b, c, d, e)
    local calls = slot.calls + 1
    slot.calls = calls
    if band(calls, mask) ~= 1 then return (fn(a, b, c, d, e)) end
    local t0 = now()
    local r = fn(a, b, c, d, e)
    slot.seconds = slot.seconds + (now() - t0)
    return r
  end
  return setmetatable({ fn = timed }, { __index = node })
end

-- Events -------------------------------------------------------------------------

-- A checkpoint took `seconds`.
function Metrics:checkpointed(seconds)
  local cp = self.checkpoints
  cp.count, cp.sum = cp.count + 1, cp.sum + seconds
  for i, le in ipairs(metrics.BUCKETS) do
    if seconds <= le then cp.buckets[i] = (cp.buckets[i] or 0) + 1 end
  end
end

-- An error went to its callback (kind: consumer, processing, producer).
function Metrics:error(kind)
  self.errors[kind] = (self.errors[kind] or 0) + 1
end

-- The loop is alive for `grace` more seconds (default: the health timeout).
function Metrics:beat(grace)
  if self.server then self.server:beat(grace or self.health_timeout) end
end

function Metrics:set_ready(ready, reason)
  self.ready = ready and true or false
  if self.server then self.server:set_ready(ready, reason) end
end

-- An assignment is being taken (partitions with their start offsets).
function Metrics:assigning(partitions)
  for _, tp in ipairs(partitions) do
    self.starts[tp.topic] = self.starts[tp.topic] or {}
    self.starts[tp.topic][tp.partition] = tp.offset
  end
end

-- The loop's every iteration: a heartbeat, and the text when it is due.
function Metrics:tick()
  local now = C.qh_ffi_metrics_now()
  self:beat()
  if now >= self.next_publish then
    self.next_publish = now + metrics.PUBLISH_INTERVAL
    self:publish()
  end
end

function Metrics:publish()
  if self.server then self.server:publish(self:render()) end
end

function Metrics:close()
  if self.server then self.server:close() end
  self.server = false
end

-- The text ------------------------------------------------------------------------

local function escape(v)
  return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function number(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v % 1 == 0 and v > -1e15 and v < 1e15 then return string.format("%d", v) end
  -- Times since the epoch keep their milliseconds; the rest 9 digits.
  if v >= 1e6 or v <= -1e6 then return string.format("%.3f", v) end
  return string.format("%.9g", v)
end

-- A writer of metric families: family(name, type, help) then sample(name,
-- labels, value) with labels a list of { name, value } pairs.
local function writer()
  local out = {}
  local w = {}
  function w.family(name, mtype, help)
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " " .. mtype
  end
  function w.sample(name, labels, value)
    local text = name
    if labels and #labels > 0 then
      local parts = {}
      for i, l in ipairs(labels) do parts[i] = l[1] .. '="' .. escape(l[2]) .. '"' end
      text = text .. "{" .. table.concat(parts, ",") .. "}"
    end
    out[#out + 1] = text .. " " .. number(value)
  end
  function w.text() return table.concat(out, "\n") .. "\n" end
  return w
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- Per topic and partition counts as samples, in order.
local function per_partition(w, name, counts)
  for _, topic in ipairs(sorted_keys(counts)) do
    for _, p in ipairs(sorted_keys(counts[topic])) do
      w.sample(name, { { "topic", topic }, { "partition", p } }, counts[topic][p])
    end
  end
end

-- The process's resident memory in bytes (Linux), or nil.
local function rss_bytes()
  local f = io.open("/proc/self/status", "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local kb = text:match("VmRSS:%s*(%d+)%s*kB")
  return kb and tonumber(kb) * 1024 or nil
end

function Metrics:render()
  local w = writer()
  local a = self.attached

  w.family("qhost_build_info", "gauge", "The qhost build: its version, LuaJIT's and librdkafka's (always 1).")
  w.sample("qhost_build_info", { { "version", host.version }, { "luajit", jit.version },
    { "librdkafka", kafka.librdkafka_version } }, 1)
  w.family("qhost_start_time_seconds", "gauge", "When the app started running, in seconds since the epoch.")
  w.sample("qhost_start_time_seconds", nil, self.started_at)
  w.family("process_cpu_seconds_total", "counter", "CPU time of the app process (user and system, every thread).")
  w.sample("process_cpu_seconds_total", nil, os.clock())
  local rss = rss_bytes()
  if rss then
    w.family("process_resident_memory_bytes", "gauge", "Resident memory of the app process.")
    w.sample("process_resident_memory_bytes", nil, rss)
  end
  w.family("qhost_ready", "gauge", "1 once the assigned partitions are recovered and consumed (as /ready).")
  w.sample("qhost_ready", nil, self.ready and 1 or 0)

  w.family("qhost_messages_consumed_total", "counter", "Messages the app consumed, per topic and partition.")
  per_partition(w, "qhost_messages_consumed_total", self.consumed)

  local producer = a.producer and a.producer()
  local produced = {}
  for _, d in ipairs(producer and producer:delivered() or {}) do
    produced[d.topic] = produced[d.topic] or {}
    produced[d.topic][d.partition] = d.count
  end
  w.family("qhost_messages_produced_total", "counter",
    "Messages the app's producer delivered (acknowledged by the broker), per topic and partition: outputs and "
    .. "changelogs.")
  per_partition(w, "qhost_messages_produced_total", produced)

  w.family("qhost_processing_errors_total", "counter",
    "Errors that went to on_consumer_error, on_processing_error or on_producer_error (kind), suppressed or not.")
  for _, kind in ipairs({ "consumer", "processing", "producer" }) do
    w.sample("qhost_processing_errors_total", { { "kind", kind } }, self.errors[kind] or 0)
  end

  if a.consumer then
    local lag, assigned = {}, 0
    for _, tp in ipairs(a.consumer:positions() or {}) do
      assigned = assigned + 1
      local at = tp.offset
      if not (at >= 0) then at = self.starts[tp.topic] and self.starts[tp.topic][tp.partition] or -1 end
      if tp.high and at >= 0 then
        lag[tp.topic] = lag[tp.topic] or {}
        lag[tp.topic][tp.partition] = math.max(0, tp.high - at)
      end
    end
    self.assigned = assigned
    w.family("qhost_partitions_assigned", "gauge", "Partitions assigned to the app's consumer.")
    w.sample("qhost_partitions_assigned", nil, assigned)
    w.family("qhost_consumer_lag", "gauge",
      "Messages behind the partition's end offset (from the broker's last fetch response), per assigned partition.")
    per_partition(w, "qhost_consumer_lag", lag)
  end

  local cp = self.checkpoints
  w.family("qhost_checkpoint_duration_seconds", "histogram",
    "Checkpoints (flush sinks, changelogs and outputs, commit offsets, write the stores) and how long each took.")
  for i, le in ipairs(metrics.BUCKETS) do
    w.sample("qhost_checkpoint_duration_seconds_bucket", { { "le", number(le) } }, cp.buckets[i] or 0)
  end
  w.sample("qhost_checkpoint_duration_seconds_bucket", { { "le", "+Inf" } }, cp.count)
  w.sample("qhost_checkpoint_duration_seconds_sum", nil, cp.sum)
  w.sample("qhost_checkpoint_duration_seconds_count", nil, cp.count)

  if #self.function_order > 0 then
    w.family("qhost_user_function_calls_total", "counter", "Calls of each pipeline function (operation file:line).")
    for _, label in ipairs(self.function_order) do
      w.sample("qhost_user_function_calls_total", { { "function", label } }, self.functions[label].calls)
    end
    w.family("qhost_user_function_seconds_total", "counter",
      string.format("Time spent in each pipeline function, estimated: one call in %d is timed.", metrics.SAMPLE_EVERY))
    for _, label in ipairs(self.function_order) do
      w.sample("qhost_user_function_seconds_total", { { "function", label } },
        self.functions[label].seconds * metrics.SAMPLE_EVERY)
    end
  end

  local report = a.sources and a.sources:report() or {}
  if #report > 0 then
    local alive = 0
    for _, s in ipairs(report) do if s.alive then alive = alive + 1 end end
    w.family("qhost_sources_alive", "gauge", "Source processes running.")
    w.sample("qhost_sources_alive", nil, alive)
    w.family("qhost_source_up", "gauge", "1 while the source's process runs.")
    for _, s in ipairs(report) do w.sample("qhost_source_up", { { "source", s.name } }, s.alive and 1 or 0) end
    w.family("qhost_source_restarts_total", "counter",
      "Restarts of the source's process (qhost does not restart a source: a failed one stops the app).")
    for _, s in ipairs(report) do w.sample("qhost_source_restarts_total", { { "source", s.name } }, s.restarts) end
    w.family("qhost_source_failures_total", "counter", "Times the source's process failed (raised or was killed).")
    for _, s in ipairs(report) do w.sample("qhost_source_failures_total", { { "source", s.name } }, s.failures) end
  end

  local sizes = a.state and a.state:sizes() or {}
  if #sizes > 0 then
    w.family("qhost_state_store_keys", "gauge", "Keys in the state store's partition (RocksDB's estimate).")
    for _, s in ipairs(sizes) do
      w.sample("qhost_state_store_keys", { { "topic", s.topic }, { "store", s.store }, { "partition", s.partition } },
        s.keys)
    end
    w.family("qhost_state_store_bytes", "gauge", "Bytes of the state store's partition (files and memtables).")
    for _, s in ipairs(sizes) do
      w.sample("qhost_state_store_bytes", { { "topic", s.topic }, { "store", s.store }, { "partition", s.partition } },
        s.bytes)
    end
  end
  return w.text()
end

return metrics
