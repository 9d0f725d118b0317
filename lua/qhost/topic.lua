-- qhost.topic: TopicConfig and Topic, as Quix's app.topic() makes them:
-- a name, serializers for key and value both ways, the config used when the
-- topic is created, and an optional timestamp extractor.
local argcheck = require("qhost.runtime.argcheck")
local serializers = require("qhost.serializers")

local topic = {}

local TopicConfig = {}
TopicConfig.__index = TopicConfig
TopicConfig.__name = "TopicConfig"

local function check_count(value, field, default)
  if value == nil then return default end
  if type(value) ~= "number" or value < 1 or value % 1 ~= 0 then
    argcheck.fail("TopicConfig: %s must be a positive integer, got %s", field, tostring(value))
  end
  return value
end

local CONFIG_OPTIONS = argcheck.declare("TopicConfig",
  { num_partitions = "integer", replication_factor = "integer", extra_config = "table" })

-- TopicConfig{ num_partitions = 1, replication_factor = 1, extra_config = {} }
function topic.TopicConfig(opts)
  opts = argcheck.options("TopicConfig", opts, CONFIG_OPTIONS)
  local extra = opts.extra_config or {}
  for k, v in pairs(extra) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean") then
      argcheck.fail("TopicConfig: extra_config holds topic properties (names to strings, numbers or booleans), "
        .. "got %s = %s", tostring(k), type(v))
    end
  end
  return setmetatable({
    num_partitions = check_count(opts.num_partitions, "num_partitions", 1),
    replication_factor = check_count(opts.replication_factor, "replication_factor", 1),
    extra_config = extra,
  }, TopicConfig)
end

function topic.is_config(value)
  return getmetatable(value) == TopicConfig
end

local Topic = {}
Topic.__index = Topic
Topic.__name = "Topic"

local OPTIONS = argcheck.declare("app:topic", {
  value_deserializer = "string|table", key_deserializer = "string|table", value_serializer = "string|table",
  key_serializer = "string|table", config = "table", timestamp_extractor = "function",
})

-- Kafka's rule for topic names (its Topic.validate): at most 249 of
-- [a-zA-Z0-9._-], and not "." or "..". Returns nil or why not.
function topic.invalid_name(name)
  if type(name) ~= "string" or name == "" then return "a topic name is a non-empty string" end
  if #name > 249 then return "it is longer than 249 characters" end
  if name == "." or name == ".." then return "'.' and '..' are reserved" end
  local bad = name:match("[^%w%._%-]")
  if bad then
    return string.format("it contains %q; Kafka allows only letters, digits, '.', '_' and '-'", bad)
  end
  return nil
end

-- topic.new(name, opts) -> Topic; the options and defaults of app:topic().
function topic.new(name, opts)
  if type(name) ~= "string" or name == "" then
    argcheck.fail("app:topic: the topic name must be a non-empty string, got %s", type(name))
  end
  local why = topic.invalid_name(name)
  if why then argcheck.fail("app:topic(%q): not a valid Kafka topic name: %s", name, why) end
  opts = argcheck.options(string.format("app:topic(%q)", name), opts, OPTIONS)
  if opts.config ~= nil and not topic.is_config(opts.config) then
    argcheck.fail("app:topic(%q): config must be a TopicConfig{...}", name)
  end
  local what = "topic '" .. name .. "'"
  local self = setmetatable({
    name = name,
    config = opts.config,           -- nil: the broker's default on creation
    timestamp_extractor = opts.timestamp_extractor,
    serializer_names = {
      value_deserializer = opts.value_deserializer or "json",
      key_deserializer = opts.key_deserializer or "bytes",
      value_serializer = opts.value_serializer or "json",
      key_serializer = opts.key_serializer or "bytes",
    },
  }, Topic)
  self.value_deserializer = serializers.get(self.serializer_names.value_deserializer, what .. " value_deserializer")
  self.key_deserializer = serializers.get(self.serializer_names.key_deserializer, what .. " key_deserializer")
  self.value_serializer = serializers.get(self.serializer_names.value_serializer, what .. " value_serializer")
  self.key_serializer = serializers.get(self.serializer_names.key_serializer, what .. " key_serializer")
  return self
end

function topic.is_topic(value)
  return getmetatable(value) == Topic
end

-- The partition count to create the topic with.
-- The topic's partition count: the broker's once the app has looked at
-- the topic (an existing topic keeps its own), else its TopicConfig's.
function Topic:num_partitions()
  return self.actual_partitions or self.config and self.config.num_partitions or 1
end

-- The key's bytes, or nil, err naming the topic. A nil key is no key,
-- whatever the serializer (as Quix).
local function key_bytes(self, key)
  if key == nil then return nil end
  local kb, err = serializers.encode(self.key_serializer, key)
  if err then return nil, string.format("topic '%s': cannot serialize key: %s", self.name, err) end
  return kb
end

local function value_failure(self, err)
  return string.format("topic '%s': cannot serialize value: %s", self.name, err)
end

-- Serializes a message for this topic: returns key bytes, value bytes, or
-- nil, nil, err naming the topic and which half failed.
function Topic:serialize(key, value)
  local kb, kerr = key_bytes(self, key)
  if kerr then return nil, nil, kerr end
  local vb, verr = serializers.encode(self.value_serializer, value)
  if verr then return nil, nil, value_failure(self, verr) end
  return kb, vb
end

-- Topic:serialize_out(key, value, fresh) -> key bytes, value bytes, value
-- length | nil, nil, nil, err: as serialize, for the run loop's produce:
-- the value may be an address in an encoder's buffer
-- (serializers.encode_out), to be produced before the next serialize_out.
-- fresh: value is fresh (qhost.runtime.pipeline).
function Topic:serialize_out(key, value, fresh)
  local kb, kerr = key_bytes(self, key)
  if kerr then return nil, nil, nil, kerr end
  local vb, vlen, verr = serializers.encode_out(self.value_serializer, value, fresh)
  if verr then return nil, nil, nil, value_failure(self, verr) end
  return kb, vb, vlen
end

function Topic:__tostring()
  return "Topic('" .. self.name .. "')"
end

topic.Topic = Topic
return topic
