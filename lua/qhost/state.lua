-- qhost.state: the `state` a stateful function gets (Quix's State):
-- get(key, default), set(key, value), delete(key), exists(key), scoped to
-- the key of the message being processed, so two message keys never see
-- each other's state. Keys and values are anything JSON holds (tables in
-- key order, qhost.json.null, int64 exactly, NaN).
-- Stored as Quix stores them: the database key is the message key's bytes
-- (JSON text when the message key is not bytes), "|", then the JSON text of
-- the state key; the value is its JSON text.
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")
local json_numbers = require("qhost.runtime.json_numbers")

local state = {}

local State = {}
State.__index = State
State.__name = "State"

-- state.new(transaction) -> State; state:_scope(prefix) points it at one
-- message key's state (the runtime does it before each call).
function state.new(transaction)
  return setmetatable({ _tx = transaction, _prefix = "" }, State)
end

-- Per message: no string is made here, db_key joins prefix, "|" and the
-- state key in one concatenation.
function State:_scope(prefix)
  self._prefix = prefix
end

-- The JSON text of string state keys, which a function uses again for
-- every message ("count", "sum"): bounded, emptied when full.
local KEY_TEXT_MAX = 1024
local key_text, key_text_count = {}, 0

local function db_key(self, key, op)
  local text = key_text[key]
  if text == nil then
    local err
    text, err = codec.json_encode(key)
    if not text then argcheck.fail("state:%s: the key cannot be stored as JSON: %s", op, err) end
    if type(key) == "string" then
      if key_text_count >= KEY_TEXT_MAX then key_text, key_text_count = {}, 0 end
      key_text[key], key_text_count = text, key_text_count + 1
    end
  end
  return self._prefix .. "|" .. text
end

-- state:get(key, default) -> the value stored under key, or default.
function State:get(key, default)
  local bytes = self._tx:get(db_key(self, key, "get"))
  if bytes == nil then return default end
  -- numbers, the commonest state values, without a call into C
  local n = json_numbers.value(bytes)
  if n ~= nil then return n end
  local value, err = codec.json_decode(bytes)
  if err then error(string.format("state:get(%s): the stored value is not JSON: %s", tostring(key), err), 2) end
  return value
end

-- state:set(key, value): value must be something JSON holds; to remove a
-- key use state:delete (a Lua table cannot hold nil; qhost.json.null
-- stores a JSON null).
function State:set(key, value)
  if value == nil then
    argcheck.fail("state:set(%s, nil): use state:delete(key) to remove a key (or qhost.json.null to store null)",
      tostring(key))
  end
  local text = type(value) == "number" and json_numbers.text(value) or nil
  if text == nil then
    local err
    text, err = codec.json_encode(value)
    if not text then argcheck.fail("state:set(%s): the value cannot be stored as JSON: %s", tostring(key), err) end
  end
  self._tx:set(db_key(self, key, "set"), text)
end

function State:delete(key)
  self._tx:delete(db_key(self, key, "delete"))
end

function State:exists(key)
  return self._tx:exists(db_key(self, key, "exists"))
end

argcheck.guard_methods(State, "State", "state")

state.State = State
return state
