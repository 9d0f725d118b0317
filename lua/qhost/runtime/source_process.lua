-- qhost.runtime.source_process: both ends of a source's process.
-- Parent side: spec(app, source, topic) builds what travels; start() spawns
-- the qhost binary on it. Child side: run(spec) rebuilds the instance, gives
-- it a producer and runs setup -> connect callbacks -> run -> cleanup as
-- Quix's SourceProcess does, reporting a failure with its traceback on the
-- report pipe before exiting non-zero.
local broker = require("qhost.runtime.broker")
local error_text = require("qhost.runtime.error_text")
local flow_control = require("qhost.runtime.flow_control")
local gc_pause = require("qhost.runtime.gc_pause")
local host = require("qhost.host")
local log = require("qhost.log")
local source_mod = require("qhost.sources.source")
local spawn = require("qhost.spawn")
local topic_mod = require("qhost.topic")
local transfer = require("qhost.runtime.transfer")

local M = {}

-- How the child finds the class again: the app script itself (re-run it;
-- app:run() hands over), a module in package.loaded, or a file by path.
-- A module that is the class comes before one that holds it: requiring
-- qhost.sources in the child does not define CSVSource (it is loaded when
-- first named), requiring qhost.sources.csv does.
local function locate(cls, script)
  local src = cls.__source or ""
  local file = src:sub(1, 1) == "@" and src:sub(2) or nil
  for name, mod in pairs(package.loaded) do
    if mod == cls then return { mode = "require", module = name } end
  end
  for name, mod in pairs(package.loaded) do
    if type(mod) == "table" and rawget(mod, cls.__name) == cls and name ~= "_G" then
      return { mode = "require", module = name }
    end
  end
  if file and script and file == script then return { mode = "script", file = file } end
  if file then return { mode = "file", file = file } end
  return nil
end

-- The serialized instance and everything the child needs. Raises, naming
-- the source and the field, when a field cannot travel. `flow_budget`: the
-- flow control budget when the app gives the source a region (see
-- qhost.flow_control), else nil.
function M.spec(app, src, topic, script, flow_budget)
  local cls = getmetatable(src)
  local fields = {}
  for k, v in pairs(src) do
    if not source_mod.RUNTIME_FIELDS[k] then fields[k] = v end
  end
  local where = locate(cls, script)
  if not where then
    error(string.format("%s: cannot tell which file defines class %s", source_mod.describe(src), cls.__name), 0)
  end
  -- A class defined in a busted spec cannot be loaded again in the new
  -- process: running the spec file there has no describe/it.
  if where.mode == "file" and package.loaded["busted"] then
    error(string.format("%s: class %s is defined in %s, which busted runs; a source process cannot load a "
      .. "spec file. Define the class in a module (a file that returns it, e.g. my_source.lua) and "
      .. "require it from the spec", source_mod.describe(src), cls.__name, where.file), 0)
  end
  -- Several classes may share a name (a factory, two modules): which of
  -- them, in the order they were defined, which the new process repeats.
  local class_index
  for i, c in ipairs(source_mod.classes[cls.__name] or {}) do
    if c == cls then class_index = i end
  end
  local spec = {
    class = cls.__name,
    class_index = class_index,
    class_source = cls.__source,
    where = where,
    fields = fields,
    topic = { name = topic.name, opts = topic.serializer_names },
    producer_config = broker.source_producer_config(app),
    -- What a source may need of the app (a StatefulSource's changelog, the
    -- KafkaReplicatorSource's checkpoints): set on it as _app_config.
    app = { consumer_group = app.consumer_group, consumer_config = broker.consumer_config(app),
            auto_offset_reset = app.auto_offset_reset, commit_interval = app.commit_interval,
            commit_every = app.commit_every },
    loglevel = log.level_name(),
    flow = flow_budget,
    package_path = package.path,
    package_cpath = package.cpath,
  }
  local text, err = transfer.encode(spec)
  if not text then
    -- Name the path relative to the instance, as the user wrote it.
    err = err:gsub("^field fields%.", "field ")
    error(string.format("%s: %s", source_mod.describe(src), err), 0)
  end
  return text
end

-- Spawns the child: `qhost run <script> <args>` (the script only matters
-- when the class lives in it), sharing `share_fd` (the flow control region)
-- when given. It is held: it gets ready, then waits for proc:release()
-- before setup and run. Returns the spawn handle or raises.
function M.start(src, spec_text, script, args, share_fd)
  local argv = { host.exe, "run", script or "-" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local proc, err = spawn.start{ argv = argv, env = {}, spec = spec_text, stdin_null = true, share_fd = share_fd,
    hold = true }
  if not proc then
    error(string.format("%s: cannot start its process: %s", source_mod.describe(src), err), 0)
  end
  return proc
end

-- Child side -----------------------------------------------------------------

local function find_class(spec)
  local where = spec.where
  require("qhost.sources")   -- registers the built-in sources' modules
  if where.mode == "require" then
    require(where.module)
  elseif where.mode == "file" then
    dofile(where.file)
  end
  local candidates = source_mod.classes[spec.class] or {}
  local cls = candidates[spec.class_index or #candidates]
  -- (defined again by the same file: the script did not take another path)
  if cls and spec.class_source and cls.__source ~= spec.class_source then return nil end
  return cls
end

-- Runs the user's callback chain. Returns nil or the error with traceback.
local function run_source(src)
  local function body()
    local ok, err = xpcall(function() src:setup() end, error_text.traceback)
    if ok then
      if src.on_client_connect_success then src.on_client_connect_success() end
    else
      -- Quix: without a failure callback, a failed setup is the source's end.
      if not src.on_client_connect_failure then error(err, 0) end
      src.on_client_connect_failure(err)
    end
    src:run()
  end
  -- A small heap making strings that die at once (qhost.runtime.gc_pause).
  local pacing = gc_pause.start(gc_pause.for_source_heap)
  local ok, err = xpcall(body, error_text.traceback)
  pacing:stop()
  local cleanup_ok, cleanup_err = xpcall(function() src:cleanup(not ok) end, error_text.traceback)
  if not ok then return err end
  if not cleanup_ok then return cleanup_err end
  return nil
end

-- Waits until the app releases this process (at once when it was not
-- held). False when it should not run: stopped (SIGTERM) or the app gone
-- first.
local function wait_for_release()
  while true do
    local released, err = spawn.child_wait_release(0.1)
    if released then return true end
    if released == nil then
      log.debug("not released: %s", err)
      return false
    end
    if host.stop_requested() > 0 then return false end
  end
end

-- Rebuilds and runs the source of `child` (qhost.runtime.main read its
-- spec and made its producer, or failed to: producer_error). Owns the
-- producer from here and closes it when it returns; a raise on the way (a
-- class file that does not load) leaves it to the process's exit, before
-- anything was produced. Returns the process exit code.
function M.run(child)
  local spec, producer = child.spec, child.producer
  log.set_level(spec.loglevel or "INFO")
  local describe = string.format("%s '%s'", spec.class, tostring(spec.fields.name))
  log.set_name("source " .. describe)
  spawn.child_watch_parent()
  if not producer then
    spawn.child_report(describe .. ": cannot create a producer: " .. tostring(child.producer_error))
    return 1
  end

  local cls = find_class(spec)
  if not cls then
    producer:close()
    spawn.child_report(describe .. ": class " .. spec.class .. " was not defined again in the source process")
    return 1
  end
  local src = setmetatable(spec.fields, cls)
  rawset(src, "producer_topic", topic_mod.new(spec.topic.name, spec.topic.opts))
  rawset(src, "_producer", producer)
  rawset(src, "_gate", flow_control.open_gate(spec.flow))
  rawset(src, "_started", true)
  rawset(src, "_app_config", spec.app)
  log.debug("started, producing to topic '%s'", spec.topic.name)
  if not wait_for_release() then
    producer:close()
    log.debug("ended before it ran")
    return 0
  end
  -- (only now: the app may have created the topic while this process got
  -- ready, and a lookup before that would mark it as missing)
  producer:prepare(spec.topic.name)
  if src._restore_state then
    -- A StatefulSource: its state comes back from the changelog before
    -- setup() and run(), as in Quix's SourceProcess (after the release:
    -- the app creates the changelog topic while its sources get ready).
    local ok, rerr = xpcall(function() src:_restore_state(spec.app) end, error_text.traceback)
    if not ok then
      producer:close()
      spawn.child_report(rerr)
      return 1
    end
  end
  local failure = run_source(src)
  producer:close()
  log.debug("peak RSS %s", M.peak_rss() or "?")
  if failure then
    spawn.child_report(failure)
    log.debug("failed")
    return 1
  end
  log.debug("ended")
  return 0
end

-- This process's peak resident memory ("12345 kB"), for the logs.
function M.peak_rss()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text:match("VmHWM:%s*(%d+ kB)")
end

return M
