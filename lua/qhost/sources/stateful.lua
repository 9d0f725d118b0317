-- qhost.sources.stateful: StatefulSource, a Source with a key/value state
-- that survives restarts (API.md "Sources"; behaviour as Quix's
-- StatefulSource in quixstreams/sources/base/source.py).
--
--   local MySrc = qhost.sources.StatefulSource:extend("MySrc")
--   function MySrc:run()
--     local n = self.state:get("next", 0)
--     while self.running do
--       self:produce{ value = tostring(n) }
--       n = n + 1
--       self.state:set("next", n)
--       if n % 100 == 0 then self:flush() end   -- data first, then the state
--     end
--   end
--
-- self.state: get(key, default), set(key, value), delete(key), exists(key).
-- Keys are strings. A value is anything qhost.json encodes: a UTF-8
-- string (binary bytes are refused: encode them, e.g. as hex), a finite
-- number, a boolean, qhost.json.null, or a table of these (keys 1..n make
-- an array, string keys an object; {} comes back as {}). It is stored as
-- its JSON text: get returns a fresh copy, so changing a table that get
-- returned changes the state only when it is set again; numbers come back
-- as doubles (integers are exact up to 2^53). A value that cannot be
-- encoded makes set raise, naming the key. set(key, nil) is refused:
-- delete(key) removes a key.
--
-- Changes are kept in the process until self:flush(), which first waits for
-- every produced message and only then writes the changes to the changelog
-- topic and waits for those: a crash can lose state changes made since the
-- last flush (the data is then produced again, at least once), but the
-- state never runs ahead of the data. A clean end (run returns, or SIGTERM)
-- flushes through cleanup(). Unlike Quix, the state object stays valid
-- across flushes.
--
-- The changelog is the compacted topic changelog__<consumer_group>--source-
-- <name> (one partition) on the app's broker, Quix's name and record format:
-- the key is the JSON of the state key, the value the JSON of the value (a
-- null value deletes), headers __column_family__=default and
-- __processed_tp_offsets__=null. The app creates it with its other topics
-- (Application:add_source asks changelog_topic()); the source's process
-- reads it from the beginning to its end before setup() and run().
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")
local topic_reader = require("qhost.kafka.topic_reader")
local clients = require("qhost.kafka.clients")
local log = require("qhost.log")
local source_mod = require("qhost.sources.source")
local topic_mod = require("qhost.topic")

local Source = source_mod.Source

local M = {}

local CF_HEADER = "__column_family__"
local OFFSETS_HEADER = "__processed_tp_offsets__"
local DEFAULT_CF = "default"
local RECORD_HEADERS = { { CF_HEADER, DEFAULT_CF }, { OFFSETS_HEADER, "null" } }

-- The state store --------------------------------------------------------
-- committed: key -> JSON text as in the changelog; pending: key -> JSON
-- text, or false for a delete, not yet written.

local State = {}
State.__index = State

-- M.new_state(owner) -> an empty state; `owner` names it in errors
-- ("MySrc 'ticks'").
function M.new_state(owner)
  return setmetatable({ _owner = owner or "state", _committed = {}, _pending = {}, _dirty = false }, State)
end

local function check_key(self, key, what)
  if type(key) ~= "string" then
    argcheck.fail("%s: state:%s: the key must be a string, got %s", self._owner, what, type(key))
  end
end

-- A key that is written must also encode as the JSON of the changelog key.
local function check_written_key(self, key, what)
  check_key(self, key, what)
  if not codec.json_encode(key) then
    argcheck.fail("%s: state:%s: the key must be UTF-8 text, got %q", self._owner, what, key)
  end
end

local function current(self, key)
  local text = self._pending[key]
  if text == nil then text = self._committed[key] end
  return text or nil   -- false (deleted) -> nil
end

-- state:get(key, default) -> the value, or default when the key is absent
function State:get(key, default)
  check_key(self, key, "get")
  local text = current(self, key)
  if text == nil then return default end
  local value, err = codec.json_decode(text)
  if err then error(string.format("%s: state key %q holds bad JSON: %s", self._owner, key, err), 2) end
  return value
end

-- state:set(key, value): value as described at the top of this file.
function State:set(key, value)
  check_written_key(self, key, "set")
  if value == nil then
    error(string.format("%s: state:set(%q, nil): use state:delete(key) to remove a key", self._owner, key), 2)
  end
  local text, err = codec.json_encode(value)
  if not text then
    error(string.format("%s: state:set(%q): the value cannot be stored as JSON: %s", self._owner, key, err), 2)
  end
  self._pending[key] = text
  self._dirty = true
end

function State:delete(key)
  check_written_key(self, key, "delete")
  self._pending[key] = false
  self._dirty = true
end

function State:exists(key)
  check_key(self, key, "exists")
  return current(self, key) ~= nil
end

-- The changelog records of the changes since the last commit, in key order
-- (deterministic output).
function State:_changes()
  local keys = {}
  for key in pairs(self._pending) do keys[#keys + 1] = key end
  table.sort(keys)
  local records = {}
  for i, key in ipairs(keys) do
    local text = self._pending[key]
    records[i] = { key = codec.json_encode(key), value = text or nil, headers = RECORD_HEADERS, partition = 0 }
  end
  return records
end

-- The changes are in the changelog: they become the committed state.
function State:_commit()
  for key, text in pairs(self._pending) do
    self._committed[key] = text or nil
  end
  self._pending = {}
  self._dirty = false
end

-- Replays one changelog record (bytes as read) into the committed state.
-- Records of another column family are not the source's state (Quix keeps
-- only "default" for sources). A key that is not a JSON string (a Quix
-- source may use other keys) is kept under its JSON text.
function State:_apply(record)
  if record.key == nil then return end
  for _, h in ipairs(record.headers or {}) do
    if h[1] == CF_HEADER and h[2] ~= DEFAULT_CF then return end
  end
  local key = codec.json_decode(record.key)
  if type(key) ~= "string" then key = record.key end
  self._committed[key] = record.value   -- nil: a tombstone deletes
end

M.State = State

-- StatefulSource -----------------------------------------------------------

local StatefulSource = Source:extend("StatefulSource")
M.StatefulSource = StatefulSource

-- Outside its process there is no state yet: say so rather than fail with
-- "attempt to index a nil value".
StatefulSource.state = setmetatable({}, {
  __index = function()
    error("StatefulSource: self.state exists only while the source runs in its process", 2)
  end,
})

-- The state's store name, as Quix's StatefulSource.store_name.
function StatefulSource:store_name()
  return "source-" .. self.name
end

-- changelog_topic(consumer_group) -> the Topic holding the state, for the
-- app to create with its other topics: changelog__<group>--source-<name>,
-- one partition, compacted (Quix's internal topic name and config).
function StatefulSource:changelog_topic(consumer_group)
  if type(consumer_group) ~= "string" or consumer_group == "" then
    error(source_mod.describe(self) .. ": changelog_topic needs the app's consumer group", 2)
  end
  return topic_mod.new("changelog__" .. consumer_group .. "--" .. self:store_name(), {
    key_serializer = "bytes", key_deserializer = "bytes",
    value_serializer = "bytes", value_deserializer = "bytes",
    config = topic_mod.TopicConfig{ num_partitions = 1, replication_factor = 1,
                                    extra_config = { ["cleanup.policy"] = "compact" } },
  })
end

-- Called in the source's process before setup(): reads the changelog to its
-- end into a fresh state and gives it to the instance as self.state.
-- app_config is what the app passes its sources (qhost.source_process):
-- { consumer_group =, consumer_config = }.
function StatefulSource:_restore_state(app_config)
  local describe = source_mod.describe(self)
  local topic = self:changelog_topic(app_config.consumer_group).name
  local state = M.new_state(describe)
  local count, err = topic_reader.read_to_end(app_config.consumer_config, topic, {
    partitions = { 0 },
    on_record = function(record) state:_apply(record) end,
  })
  if not count then
    if err:find("unknown topic$") then
      err = err .. " (an app creates it when the source is added: app:add_source or app:dataframe)"
    end
    error(string.format("%s: cannot restore its state from changelog topic '%s': %s", describe, topic, err), 0)
  end
  log.debug("state restored from '%s': %d records", topic, count)
  rawset(self, "_changelog", topic)
  rawset(self, "state", state)
end

-- self:flush(timeout): waits for every produced message, then commits the
-- state: writes its changes to the changelog and waits for them. Raises
-- naming the source when either does not complete within timeout seconds
-- (default shutdown_timeout), or when a delivery failed. After a stop
-- dropped messages (a full queue, see qhost.source) the state is not
-- committed: it may count them, and the next run must produce them again.
function StatefulSource:flush(timeout)
  local producer = rawget(self, "_producer")
  if not producer then
    error(source_mod.describe(self) .. ": produce/flush only work while the source runs in its process", 2)
  end
  timeout = timeout or self.shutdown_timeout
  local ok, err = clients.deliver(producer, timeout)
  if not ok then error(source_mod.describe(self) .. ": " .. err, 2) end
  local unsent = source_mod.unsent(self)
  if unsent then
    log.warning("%s: state not committed: %d messages were dropped at the stop (the producer's queue was full)",
      source_mod.describe(self), unsent)
    return
  end
  local state = rawget(self, "state")
  if state and state._dirty then
    ok, err = topic_reader.write(producer, rawget(self, "_changelog"), state:_changes(), { timeout = timeout })
    if not ok then error(source_mod.describe(self) .. ": cannot commit its state: " .. err, 2) end
    state:_commit()
  end
end

return M
