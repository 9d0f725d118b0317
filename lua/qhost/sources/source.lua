-- qhost.sources.source: the Source base class (API.md "Sources"; behaviour as Quix's
-- quixstreams/sources/base/source.py). A source is a plain table of fields
-- whose class is found through its metatable; it runs in its own process
-- (qhost.source_process), where the provided methods produce to
-- self.producer_topic through the process's own producer.
local argcheck = require("qhost.runtime.argcheck")
local C = require("qhost.kafka.ffi")
local clients = require("qhost.kafka.clients")
local flow_size = require("qhost.runtime.flow_control").size
local log = require("qhost.log")
local topic_mod = require("qhost.topic")

local source = {}

-- Every class made by extend, by name: the child process finds the class of
-- the instance it rebuilds here, after loading the file that defines it.
local classes = {}
source.classes = classes

local Source = { __name = "Source" }
source.Source = Source

-- Fields the framework sets on an instance at run time; never serialized.
local RUNTIME_FIELDS = { producer_topic = true, _producer = true, _gate = true, _stopped = true,
                         _stop_seen = true, _started = true, state = true, _unsent = true }
source.RUNTIME_FIELDS = RUNTIME_FIELDS

local function is_running(self)
  if not rawget(self, "_started") or rawget(self, "_stopped") then return false end
  if C.qh_ffi_stop_requested() > 0 then
    -- SIGTERM from the supervisor: the user's stop() decides what stopping
    -- means (Quix calls it from the signal handler); called once.
    if not rawget(self, "_stop_seen") then
      rawset(self, "_stop_seen", true)
      self:stop()
    end
    return false
  end
  return true
end

local function make_index(cls)
  return function(self, key)
    if key == "running" then return is_running(self) end
    return cls[key]
  end
end

local class = require("qhost.runtime.class")
local construct = class.construct

-- Source:extend("Name") -> a new class. `Name` is for messages; the file
-- that calls extend is recorded so a spawned process can load it again.
function Source:extend(name)
  if type(name) ~= "string" or name == "" then
    error("Source:extend expects a class name string", 2)
  end
  local info = debug.getinfo(2, "S")
  local cls = { __name = name, __super = self, __source = info and info.source or "?" }
  cls.__index = make_index(cls)
  cls.__tostring = function(inst) return string.format("%s '%s'", name, tostring(rawget(inst, "name"))) end
  setmetatable(cls, { __index = self, __call = construct })
  classes[name] = classes[name] or {}
  table.insert(classes[name], cls)
  return cls
end

Source.__index = make_index(Source)
setmetatable(Source, { __call = construct })

-- The options every source takes (a source keeps any other field too).
argcheck.declare("Source", { name = "string", shutdown_timeout = "number", on_client_connect_success = "function",
                             on_client_connect_failure = "function" })

-- Checks the common options; subclasses that override init call
-- Source.init(self, opts) (or their parent's) first.
function Source:init(opts)
  local cls = getmetatable(self)
  if type(self.name) ~= "string" or self.name == "" then
    argcheck.fail("%s: name must be a non-empty string", cls.__name)
  end
  self.shutdown_timeout = opts.shutdown_timeout or 10
  if type(self.shutdown_timeout) ~= "number" or self.shutdown_timeout < 0 then
    argcheck.fail("%s '%s': shutdown_timeout must be a number of seconds", cls.__name, self.name)
  end
  for _, cb in ipairs({ "on_client_connect_success", "on_client_connect_failure" }) do
    if opts[cb] ~= nil and type(opts[cb]) ~= "function" then
      argcheck.fail("%s '%s': %s must be a function", cls.__name, self.name, cb)
    end
  end
end

-- The class of an instance made by Source or extend, or nil.
function source.class_of(value)
  if type(value) ~= "table" or not class.is_a(value, Source) then return nil end
  return getmetatable(value)
end

-- "CSVSource 'orders'": how messages name a source.
function source.describe(inst)
  local cls = getmetatable(inst)
  return string.format("%s '%s'", cls and cls.__name or "Source", tostring(rawget(inst, "name")))
end

-- Overridables -------------------------------------------------------------

function Source:run()
  error(source.describe(self) .. ": run() is not implemented", 2)
end

function Source:setup() end

-- Quix: a clean end flushes what was produced; a failed one does not wait.
function Source:cleanup(failed)
  if not failed then self:flush(self.shutdown_timeout / 2) end
end

function Source:stop()
  rawset(self, "_stopped", true)
end

-- The name of the topic a source produces to by default, checked as Kafka
-- checks topic names, with a hint to fix it (a CSVSource is named after its
-- file, which may hold spaces).
function source.default_topic_name(self)
  local name = "source__" .. tostring(self.name)
  local why = topic_mod.invalid_name(name)
  if why then
    argcheck.fail("%s: its default topic %q is not a valid Kafka topic name (%s): give the source a name = "
      .. "made of letters, digits, '.', '_' and '-', or pass a topic", source.describe(self), name, why)
  end
  return name
end

function Source:default_topic()
  return topic_mod.new(source.default_topic_name(self), {
    key_serializer = "bytes", key_deserializer = "bytes",
    value_serializer = "json", value_deserializer = "json",
  })
end

-- Provided -----------------------------------------------------------------

local function producer_of(self)
  local producer = rawget(self, "_producer")
  if not producer then
    argcheck.fail("%s", source.describe(self) .. ": produce/flush only work while the source runs in its process")
  end
  return producer
end

-- self:serialize{ key, value, headers, timestamp_ms } -> { key, value,
-- headers, timestamp } with key and value as bytes for producer_topic.
function Source:serialize(msg)
  local topic = rawget(self, "producer_topic")
  if not topic then error(source.describe(self) .. ": serialize needs producer_topic (run the source in an app)", 2) end
  local key, value, err = topic:serialize(msg.key, msg.value)
  if err then error(source.describe(self) .. ": " .. err, 2) end
  return { key = key, value = value, headers = msg.headers, timestamp = msg.timestamp_ms }
end

-- The stop came while the producer's queue was full (a broker that is gone
-- may never make room): this message, and any the source produces after it,
-- are dropped, and the source stops as it would at its next `running`.
-- Not a failure: the stop simply came before them. A StatefulSource does
-- not commit its state afterwards (its state may count them).
local function stopped_with_full_queue(self, err)
  log.warning("%s: stopping: %s; any message it produces from now on is dropped", source.describe(self), err)
  rawset(self, "_unsent", 1)
  if not rawget(self, "_stop_seen") then
    rawset(self, "_stop_seen", true)
    self:stop()
  end
end

-- Why a message timestamp is not one (Kafka's: whole milliseconds since
-- the epoch, not negative), or nil when it is. librdkafka would take 0 or
-- less as "now", and cut a fraction off, silently.
function source.timestamp_problem(ts)
  if type(ts) ~= "number" then return "is a " .. type(ts) .. ", not a number of milliseconds" end
  if ts ~= ts or ts < 0 or ts >= 2 ^ 63 or ts ~= math.floor(ts) then
    return string.format("%s is not a whole number of milliseconds since the epoch (0 or more)", tostring(ts))
  end
  return nil
end

-- Raises a produce error at the line of the source's code that called
-- produce (level 3: here, produce, its caller). A function of its own, not
-- a closure made per message.
local function bad_message(self, what, ...)
  error(string.format("%s: produce: " .. what, source.describe(self), ...), 3)
end

-- Queues a checked message: waits for the gate's credit (the embedded
-- broker), produces, and raises, at the line that called the caller
-- (level 3), when it cannot be queued or an earlier delivery failed.
-- value_len: value is the address of that many bytes (copied by produce).
local function send(self, producer, value, key, partition, timestamp, headers, value_len)
  local unsent = rawget(self, "_unsent")
  if unsent then rawset(self, "_unsent", unsent + 1); return end
  -- On the embedded broker, wait for the app's credit (qhost.flow_control).
  local gate = rawget(self, "_gate")
  if gate then
    local size = value_len and flow_size(key, nil, headers) + value_len or flow_size(key, value, headers)
    gate:admit(size, producer)
  end
  local ok, err, code = producer:produce(self.producer_topic.name, value, key, partition, timestamp, headers,
    value_len)
  if not ok then
    if code == clients.ERR_QUEUE_FULL and C.qh_ffi_stop_requested() > 0 then
      stopped_with_full_queue(self, err)
      return
    end
    error(source.describe(self) .. ": " .. err, 3)
  end
  local failures = producer:take_failures()
  if failures then error(source.describe(self) .. ": " .. clients.describe_failures(failures), 3) end
end

-- self:produce{ value, key, headers, partition, timestamp }: value and key
-- are bytes (strings). Raises on a bad message, or when this message cannot
-- be queued; and, this message queued, on an earlier message's failed
-- delivery (Quix raises it at the next produce).
function Source:produce(msg)
  local producer = producer_of(self)
  if msg.value ~= nil and type(msg.value) ~= "string" then
    bad_message(self, "value must be bytes (a string), got %s; use self:serialize{}", type(msg.value))
  end
  if msg.key ~= nil and type(msg.key) ~= "string" then
    bad_message(self, "key must be bytes (a string), got %s; use self:serialize{}", type(msg.key))
  end
  if msg.timestamp ~= nil then
    local problem = source.timestamp_problem(msg.timestamp)
    if problem then bad_message(self, "timestamp %s", problem) end
  end
  local partition = msg.partition
  if partition ~= nil and (type(partition) ~= "number" or partition < 0 or partition ~= math.floor(partition)) then
    bad_message(self, "partition must be a partition number (0 or more), got %s", tostring(partition))
  end
  if msg.headers ~= nil then
    local problem = clients.headers_problem(msg.headers)
    if problem then bad_message(self, "headers %s", problem) end
  end
  send(self, producer, msg.value, msg.key, partition, msg.timestamp, msg.headers)
end

-- source.produce_bytes(self, ptr, len): as self:produce{ value = <the len
-- bytes at ptr> }, for a built-in source whose values are in a C buffer (a
-- CSVSource's rows): no Lua string is made per message. ptr: a const char *
-- cdata, valid until this returns (the producer copies it).
function source.produce_bytes(self, ptr, len)
  send(self, producer_of(self), ptr, nil, nil, nil, nil, len)
end

-- self:flush(timeout): waits for every produced message; raises with the
-- count of unsent messages when the timeout passes, or with the failed
-- deliveries.
function Source:flush(timeout)
  local ok, err = clients.deliver(producer_of(self), timeout or self.shutdown_timeout)
  if not ok then error(source.describe(self) .. ": " .. err, 2) end
end

-- How many messages a stop dropped (see stopped_with_full_queue); nil when
-- none.
function source.unsent(self)
  return rawget(self, "_unsent")
end

return source
