-- qhost.app: Application (API.md; behaviour as Quix's
-- quixstreams/app.py): holds the config, the topics, the dataframes and the
-- sources, and runs the loop: consume a batch, run each message through its
-- topic's pipeline, checkpoint (flush outputs, then commit), and supervise
-- the source processes.
local argcheck = require("qhost.runtime.argcheck")
local clients = require("qhost.kafka.clients")
local dataframe = require("qhost.dataframe")
local error_text = require("qhost.runtime.error_text")
local host = require("qhost.host")
local log = require("qhost.log")
local source_mod = require("qhost.sources.source")
local source_process = require("qhost.runtime.source_process")
local topic_mod = require("qhost.topic")
local transfer = require("qhost.runtime.transfer")

local app_mod = {}

-- Set by qhost.runtime.main in a spawned source process (its spec and
-- producer): app:run() then hands the process over to the source instead
-- of running the app.
app_mod.child = nil
-- The script being run and its args (for spawning sources), set by the runner.
app_mod.script = nil
app_mod.script_args = {}

local Application = {}
Application.__index = Application
Application.__name = "Application"

local function is_callback(v)
  return type(v) == "function" or "a function(err, row, logger) -> bool"
end

local OPTIONS = argcheck.declare("Application", {
  broker_address = "string", consumer_group = "string", auto_offset_reset = "string",
  commit_interval = "number", commit_every = "integer", processing_guarantee = "string",
  state_dir = "string", auto_create_topics = "boolean", consumer_extra_config = "table",
  producer_extra_config = "table", on_consumer_error = is_callback,
  on_processing_error = is_callback, on_producer_error = is_callback,
  on_message_processed = "function", loglevel = "string", use_changelog_topics = "boolean",
  metrics_port = "integer",
})

local function check_port(what, port)
  if not (port >= 1 and port <= 65535) then
    argcheck.fail("%s must be a port number (1-65535), got %s", what, tostring(port))
  end
end

-- QHOST_METRICS_PORT, for an app that does not set metrics_port.
local function env_metrics_port()
  local env = os.getenv("QHOST_METRICS_PORT")
  if env == nil or env == "" then return nil end
  local port = tonumber(env)
  if not (port and port % 1 == 0) then
    argcheck.fail("QHOST_METRICS_PORT must be a port number (1-65535), got %q", env)
  end
  check_port("QHOST_METRICS_PORT", port)
  return port
end

local function check_options(opts)
  argcheck.options("Application", opts, OPTIONS)
  if opts.auto_offset_reset then
    argcheck.one_of("Application", "auto_offset_reset", opts.auto_offset_reset, { "latest", "earliest", "error" })
  end
  local guarantee = opts.processing_guarantee
  if guarantee then
    argcheck.one_of("Application", "processing_guarantee", guarantee, { "at-least-once", "exactly-once" })
  end
  if opts.commit_interval and not (opts.commit_interval >= 0) then
    argcheck.fail("Application: commit_interval must be >= 0, got %s", tostring(opts.commit_interval))
  end
  if opts.commit_every and opts.commit_every < 0 then
    argcheck.fail("Application: commit_every must be >= 0, got %s", tostring(opts.commit_every))
  end
  if opts.metrics_port then check_port("Application: metrics_port", opts.metrics_port) end
  if opts.loglevel and not log.is_level(opts.loglevel) then
    argcheck.one_of("Application", "loglevel", opts.loglevel, { "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL" })
  end
end

-- qhost.Application{ ... } (every field optional; defaults of API.md)
function app_mod.Application(opts)
  opts = opts or {}
  if type(opts) ~= "table" then argcheck.fail("Application expects a table of options, got %s", type(opts)) end
  check_options(opts)
  local self = setmetatable({
    -- Every field exists (false for "none"): a misspelled one raises
    -- (argcheck.guard_methods below).
    broker_address = opts.broker_address or false,
    consumer_group = opts.consumer_group or "qhost-default",
    auto_offset_reset = opts.auto_offset_reset or "latest",
    commit_interval = opts.commit_interval or 5.0,
    commit_every = opts.commit_every or 0,
    processing_guarantee = opts.processing_guarantee or "at-least-once",
    state_dir = opts.state_dir or "state",
    use_changelog_topics = opts.use_changelog_topics ~= false,
    auto_create_topics = opts.auto_create_topics ~= false,
    consumer_extra_config = opts.consumer_extra_config or {},
    producer_extra_config = opts.producer_extra_config or {},
    on_consumer_error = opts.on_consumer_error or false,
    on_processing_error = opts.on_processing_error or false,
    on_producer_error = opts.on_producer_error or false,
    on_message_processed = opts.on_message_processed or false,
    loglevel = opts.loglevel or "INFO",
    metrics_port = opts.metrics_port or env_metrics_port() or false,
    _topics = {},          -- name -> Topic, every topic the app knows
    _dataframes = {},      -- StreamingDataFrames, in creation order
    _sources = {},         -- { source =, topic = } in add order
    _outputs = {},         -- name -> Topic produced to by to_topic
    _stores = {},          -- topic name -> { [store name] = true, "windowed" for a window's, a table for a join's }
    _store_feeds = {},     -- topic name -> { other topic names whose messages reach its stores (concat) }
    _joins = {},           -- { call =, left =, right =, where = } per join, checked at start (qhost.joins)
    _time_alignment = false,  -- joins or concatenated topics: consume in timestamp order (qhost.runtime.aligned)
    _mock = false,         -- the embedded broker, while the app runs on it
    _broker = false,       -- the bootstrap address in use
    _admin = false,        -- admin client, while running
    _stop_requested = false,
    _ran = false,          -- app:run was called (see the exit warning)
  }, Application)
  log.set_level(self.loglevel)
  app_mod.instances[self] = true
  return self
end

-- app:topic(name, opts) -> Topic (options of API.md)
function Application:topic(name, opts)
  local t = topic_mod.new(name, opts)
  self._topics[name] = t
  return t
end

function Application:_register_output(topic)
  self._outputs[topic.name] = topic
  self._topics[topic.name] = self._topics[topic.name] or topic
end

-- app:add_source(source, topic?) -> Topic
function Application:add_source(src, topic)
  if not source_mod.class_of(src) then
    argcheck.fail("app:add_source expects a Source instance (qhost.sources.Source or a subclass), got %s", type(src))
  end
  local name = source_mod.describe(src)
  for _, entry in ipairs(self._sources) do
    if entry.source == src then argcheck.fail("%s: this source is already added to the app", name) end
  end
  if topic == nil then
    topic = src:default_topic()
    if not topic_mod.is_topic(topic) then
      argcheck.fail("%s: default_topic() must return a Topic", name)
    end
  elseif not topic_mod.is_topic(topic) then
    argcheck.fail("%s: the topic must be a Topic (from app:topic), got %s", name, type(topic))
  end
  for _, entry in ipairs(self._sources) do
    if entry.topic.name == topic.name then
      argcheck.fail("%s: topic '%s' is already fed by %s", name, topic.name, source_mod.describe(entry.source))
    end
  end
  -- Refuse what cannot travel now, before any process starts.
  local fields = {}
  for k, v in pairs(src) do
    if not source_mod.RUNTIME_FIELDS[k] then fields[k] = v end
  end
  local ok, err = transfer.encode(fields)
  if not ok then argcheck.fail("%s: %s", name, err) end
  self._topics[topic.name] = self._topics[topic.name] or topic
  -- A StatefulSource keeps its state in a changelog topic, created with
  -- the app's other topics.
  if src.changelog_topic then
    local changelog = src:changelog_topic(self.consumer_group)
    self._topics[changelog.name] = self._topics[changelog.name] or changelog
  end
  table.insert(self._sources, { source = src, topic = topic })
  return topic
end

local DATAFRAME_OPTIONS = argcheck.declare("app:dataframe", { topic = "table", source = "table" })

-- app:dataframe(topic) or app:dataframe{ topic = t, source = s }
function Application:dataframe(arg)
  local topic, src
  if topic_mod.is_topic(arg) then
    topic = arg
  elseif type(arg) == "table" and getmetatable(arg) == nil then
    argcheck.options("app:dataframe", arg, DATAFRAME_OPTIONS)
    topic, src = arg.topic, arg.source
    if topic == nil and src == nil then argcheck.fail("app:dataframe expects a Topic or { topic =, source = }") end
  else
    argcheck.fail("app:dataframe expects a Topic or { topic =, source = }, got %s", type(arg))
  end
  if topic ~= nil and not topic_mod.is_topic(topic) then
    argcheck.fail("app:dataframe: topic must be a Topic (from app:topic)")
  end
  if src ~= nil then
    topic = self:add_source(src, topic)
  end
  -- As Quix's DataFrameRegistry: one dataframe per input topic.
  for _, other in ipairs(self._dataframes) do
    if other.topic.name == topic.name then
      argcheck.fail("app:dataframe: there is already a StreamingDataFrame using topic '%s' (branch that one "
        .. "instead: each operation called on a dataframe starts a branch)", topic.name)
    end
  end
  self._topics[topic.name] = self._topics[topic.name] or topic
  local sdf = dataframe.new(self, topic)
  table.insert(self._dataframes, sdf)
  return sdf
end

-- app:clear_state(): deletes this consumer group's local state stores
-- (state_dir/<consumer_group>), as Quix's. The changelog topics stay: the
-- next run rebuilds the stores from them. Call it before app:run().
function Application:clear_state()
  local dir = self.state_dir .. "/" .. self.consumer_group
  os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'")
  log.info("cleared the local state stores in %s", dir)
end

-- A stateful operation on `topic` uses the store `store_name` (kind
-- "windowed" for a window's store, { kind = "timestamped", ... } for a
-- join's: qhost.runtime.state.manager): its changelog topic (compacted, the
-- topic's partition count, as Quix's) is created with the app's other
-- topics. feeds: the names of topics concatenated into the dataframe,
-- whose messages use the store too.
function Application:_register_store(topic, store_name, kind, feeds)
  if feeds then
    local known = self._store_feeds[topic.name] or {}
    self._store_feeds[topic.name] = known
    for _, name in ipairs(feeds) do
      if not known[name] then known[name] = true; known[#known + 1] = name end
    end
  end
  self._stores[topic.name] = self._stores[topic.name] or {}
  if self._stores[topic.name][store_name] then return end
  self._stores[topic.name][store_name] = kind or true
  if self.use_changelog_topics then
    local name = require("qhost.runtime.state.manager").changelog_name(self.consumer_group, topic.name, store_name)
    self._topics[name] = topic_mod.new(name, {
      config = topic_mod.TopicConfig{ num_partitions = topic:num_partitions(),
        replication_factor = topic.config and topic.config.replication_factor or 1,
        extra_config = { ["cleanup.policy"] = "compact" } },
      key_serializer = "bytes", key_deserializer = "bytes",
      value_serializer = "bytes", value_deserializer = "bytes" })
    -- its partition count follows the topic's actual one (see broker)
    self._topics[name].derived_from = topic
  end
end

-- app:stop(): a graceful stop from inside a callback or a pipeline function.
function Application:stop()
  self._stop_requested = true
end

-- The run loop (qhost.runtime.loop) ----------------------------------------------

local RUN_OPTIONS = argcheck.declare("app:run",
  { count = "integer", timeout = "number", collect = "boolean", metadata = "boolean" })

-- app:run{ count, timeout, collect, metadata } -> outputs (see API.md)
function Application:run(opts)
  if app_mod.child then
    -- We are a spawned source process that re-ran the app script: hand over.
    -- It never comes back to the script: what follows app:run() is the
    -- app's alone, even when the script wraps app:run in pcall.
    io.stdout:flush()
    local ok, code = xpcall(source_process.run, error_text.traceback, app_mod.child)
    if not ok then
      require("qhost.spawn").child_report(code)
      code = 1
    end
    host.exit(code)
  end
  opts = argcheck.options("app:run", opts, RUN_OPTIONS)
  if opts.count and opts.count < 1 then argcheck.fail("app:run: count must be >= 1, got %d", opts.count) end
  if opts.timeout and not (opts.timeout > 0) then
    argcheck.fail("app:run: timeout must be > 0 seconds, got %s", tostring(opts.timeout))
  end
  if #self._dataframes == 0 and #self._sources == 0 then
    argcheck.fail("app:run: nothing to run (no dataframe and no source)")
  end
  self._ran = true
  local run = require("qhost.runtime.loop")
  return run(self, opts)
end

-- Apps made by this script, to warn about one that declared a pipeline but
-- never ran it (qhost.runtime.main, at the script's end).
app_mod.instances = setmetatable({}, { __mode = "k" })

function app_mod.warn_unrun()
  for app in pairs(app_mod.instances) do
    if not app._ran and (#app._dataframes > 0 or #app._sources > 0) then
      log.warning("the script declared %d dataframe(s) and %d source(s) but never called app:run(): "
        .. "nothing was consumed or produced", #app._dataframes, #app._sources)
    end
  end
end

argcheck.guard_methods(Application, "Application", "app")

app_mod.ApplicationClass = Application
return app_mod
