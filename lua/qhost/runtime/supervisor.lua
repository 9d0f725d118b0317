-- qhost.runtime.supervisor: the app's side of its source processes (as Quix's
-- SourceManager): starts each (with its flow control region, when the app
-- gives it one), notices how each ended, and stops them (SIGTERM,
-- shutdown_timeout, then SIGKILL).
local flow_control = require("qhost.runtime.flow_control")
local host = require("qhost.host")
local log = require("qhost.log")
local source_mod = require("qhost.sources.source")
local source_process = require("qhost.runtime.source_process")

local supervisor = {}

local Supervisor = {}
Supervisor.__index = Supervisor

function supervisor.new(app, entries)
  local list = {}
  for i, e in ipairs(entries) do list[i] = { source = e.source, topic = e.topic, region = e.region } end
  return setmetatable({ app = app, entries = list }, Supervisor)
end

-- Starts every source's process, held: each gets ready (its script, class
-- and producer) but runs only after release_all. The app starts them first
-- and releases them once nothing they produce can be missed (see
-- qhost.runtime.loop), so that their start overlaps the app's.
-- Every spec is built first: a field that cannot travel raises before any
-- process starts.
function Supervisor:start_all(script, args)
  local specs = {}
  for i, e in ipairs(self.entries) do
    specs[i] = source_process.spec(self.app, e.source, e.topic, script, e.region and flow_control.BUDGET or nil)
  end
  for i, e in ipairs(self.entries) do
    e.proc = source_process.start(e.source, specs[i], script, args, e.region and e.region.fd or nil)
    e.pid = e.proc:pid()
    log.info("%s started (pid %d), held until the app is ready, producing to topic '%s'",
      source_mod.describe(e.source), e.pid, e.topic.name)
  end
end

-- Lets held sources run (nothing for the others).
function Supervisor:release_all()
  for _, e in ipairs(self.entries) do
    if e.proc and not e.status then e.proc:release() end
  end
end

local function failure_text(e, status)
  local how
  if status.signal then
    how = string.format("was killed by %s", status.signame or ("signal " .. status.signal))
  else
    how = string.format("failed with exit code %d", status.code)
  end
  local report = status.report or ""
  if report == "" then report = "(no error reported)" end
  return string.format("%s (pid %d) %s: %s", source_mod.describe(e.source), e.pid, how, report)
end

-- Reaps ended sources. Returns the text of the first failure (a source
-- that raised, or died by a signal we did not send), or nil.
function Supervisor:poll()
  local failure
  for _, e in ipairs(self.entries) do
    if e.proc and not e.status then
      local status = e.proc:poll()
      if status then
        e.status = status
        local clean = status.code == 0 or (e.terminated and status.signal == 15)
        if clean then
          log.info("%s (pid %d) ended", source_mod.describe(e.source), e.pid)
        else
          e.failed = true
          failure = failure or failure_text(e, status)
        end
      end
    end
  end
  return failure
end

-- What the metrics show of each source: { { name =, alive =, failures =,
-- restarts = } } in add order. A source is never restarted: one that fails
-- stops the app.
function Supervisor:report()
  local list = {}
  for i, e in ipairs(self.entries) do
    list[i] = { name = e.source.name or source_mod.describe(e.source), alive = e.proc ~= nil and not e.status,
      failures = e.failed and 1 or 0, restarts = 0 }
  end
  return list
end

function Supervisor:alive()
  local n = 0
  for _, e in ipairs(self.entries) do
    if e.proc and not e.status then n = n + 1 end
  end
  return n
end

-- Stops every live source: SIGTERM, wait
-- up to its shutdown_timeout, then SIGKILL. Returns the first failure text.
function Supervisor:stop_all()
  local deadline = {}
  local now = host.monotonic()
  for _, e in ipairs(self.entries) do
    if e.proc and not e.status then
      e.terminated = true
      e.proc:signal("TERM")
      deadline[e] = now + (e.source.shutdown_timeout or 10)
    end
  end
  local failure
  while self:alive() > 0 do
    failure = failure or self:poll()
    now = host.monotonic()
    for e, at in pairs(deadline) do
      if not e.status and now >= at then
        log.warning("%s (pid %d) did not stop within shutdown_timeout=%gs: killing it",
          source_mod.describe(e.source), e.pid, e.source.shutdown_timeout or 10)
        e.killed = true
        e.proc:signal("KILL")
        deadline[e] = math.huge
      end
    end
    if self:alive() > 0 then host.sleep(0.01) end
  end
  failure = failure or self:poll()
  -- Our own SIGKILL after the timeout is how Quix stops a stuck source,
  -- not a failure of it.
  if failure then
    for _, e in ipairs(self.entries) do
      if e.killed and e.failed then e.failed = false end
    end
  end
  for _, e in ipairs(self.entries) do
    if e.failed and not e.killed then return failure_text(e, e.status) end
  end
  return nil
end

return supervisor
