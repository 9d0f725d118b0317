-- qhost.log: the one logger. Writes "YYYY-mm-dd HH:MM:SS LEVEL name[pid]:
-- message" lines to stderr; stdout belongs to the pipeline's output. Source
-- processes set their name so every line says which source and pid it comes
-- from. The C side (librdkafka's lines, the host's own warnings) writes the
-- same lines through its logger (qh_log in host/hostlib.c), whose prefix and
-- level this module sets.
local host = require("qhost.host")
local kafka = require("qhost.kafka")

local log = {}

local LEVELS = { DEBUG = 10, INFO = 20, WARNING = 30, WARN = 30, ERROR = 40, CRITICAL = 50 }
local threshold = LEVELS.INFO
local prefix = "qhost[" .. host.getpid() .. "]"

-- Sets the level by name ("DEBUG".."ERROR"); raises on an unknown name.
function log.set_level(name)
  local level = LEVELS[string.upper(tostring(name))]
  if not level then
    error(string.format("unknown loglevel %q (DEBUG, INFO, WARNING, ERROR)", tostring(name)), 2)
  end
  threshold = level
  kafka.set_log_level(level)
end

function log.is_level(name)
  return LEVELS[string.upper(tostring(name))] ~= nil
end

function log.level_name()
  for name, value in pairs(LEVELS) do
    if value == threshold and name ~= "WARN" then return name end
  end
end

function log.enabled(level)
  return LEVELS[level] >= threshold
end

-- Names this process in every line, e.g. "source 'orders'".
function log.set_name(name)
  prefix = name .. "[" .. host.getpid() .. "]"
  kafka.set_log_prefix(prefix)
end

local function emit(level, fmt, ...)
  if LEVELS[level] < threshold then return end
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  -- One write per line: the C side's lines, from librdkafka's threads, go
  -- to the same stderr and must not land inside one of ours.
  io.stderr:write(os.date("%Y-%m-%d %H:%M:%S") .. " " .. level .. " " .. prefix .. ": " .. msg .. "\n")
end

-- Both log.info(fmt, ...) and log:info(fmt, ...) work: the error
-- callbacks get this module as their `logger`, and API.md's rule is
-- methods with a colon.
local function level_fn(level)
  return function(fmt, ...)
    if fmt == log then return emit(level, ...) end
    return emit(level, fmt, ...)
  end
end

log.debug = level_fn("DEBUG")
log.info = level_fn("INFO")
log.warning = level_fn("WARNING")
log.warn = log.warning
log.error = level_fn("ERROR")
log.critical = level_fn("CRITICAL")
log.exception = log.error

-- librdkafka's log_level for our level: its INFO chatter only at DEBUG.
function log.librdkafka_level()
  if threshold <= LEVELS.DEBUG then return 7 end
  if threshold <= LEVELS.WARNING then return 4 end
  return 3
end

return log
