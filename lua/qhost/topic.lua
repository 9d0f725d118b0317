-- qhost.topic: TopicConfig and Topic, as Quix's app.topic() makes them:
-- a name, serializers for key and value both ways, the config used when the
-- topic is created, and an optional timestamp extractor.
local serializers = require("qhost.serializers")

local topic = {}

local TopicConfig = {}
TopicConfig.__index = TopicConfig
TopicConfig.__name = "TopicConfig"

local function check_count(value, field, default)
  if value == nil then return default end
  if type(value) ~= "number" or value < 1 or value % 1 ~= 0 then
    error(string.format("TopicConfig: %s must be a positive integer, got %s", field, tostring(value)), 4)
  end
  return value
end

-- TopicConfig{ num_partitions = 1, replication_factor = 1, extra_config = {} }
function topic.TopicConfig(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("TopicConfig expects a table of options", 2) end
  local extra = opts.extra_config or {}
  if type(extra) ~= "table" then error("TopicConfig: extra_config must be a table", 2) end
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

local OPTION_NAMES = {
  value_deserializer = true, key_deserializer = true, value_serializer = true,
  key_serializer = true, config = true, timestamp_extractor = true,
}

-- topic.new(name, opts) -> Topic; the options and defaults of app:topic().
function topic.new(name, opts)
  if type(name) ~= "string" or name == "" then
    error("app:topic: the topic name must be a non-empty string", 3)
  end
  opts = opts or {}
  for key in pairs(opts) do
    if not OPTION_NAMES[key] then
      error(string.format("app:topic(%q): unknown option %q", name, tostring(key)), 3)
    end
  end
  if opts.config ~= nil and not topic.is_config(opts.config) then
    error(string.format("app:topic(%q): config must be a TopicConfig{...}", name), 3)
  end
  if opts.timestamp_extractor ~= nil and type(opts.timestamp_extractor) ~= "function" then
    error(string.format("app:topic(%q): timestamp_extractor must be a function", name), 3)
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
function Topic:num_partitions()
  return self.config and self.config.num_partitions or 1
end

-- Serializes a message for this topic: returns key bytes, value bytes, or
-- nil, nil, err naming the topic and which half failed.
function Topic:serialize(key, value)
  local kb, kerr = serializers.encode(self.key_serializer, key)
  if kerr then return nil, nil, string.format("topic '%s': cannot serialize key: %s", self.name, kerr) end
  local vb, verr = serializers.encode(self.value_serializer, value)
  if verr then return nil, nil, string.format("topic '%s': cannot serialize value: %s", self.name, verr) end
  return kb, vb
end

function Topic:__tostring()
  return "Topic('" .. self.name .. "')"
end

topic.Topic = Topic
return topic
