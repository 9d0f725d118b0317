-- qhost.dataframe: StreamingDataFrame (API.md; behaviour as Quix's
-- quixstreams/dataframe/dataframe.py). Operations build a tree of nodes;
-- each returns a new dataframe on a new node, so two operations on one
-- dataframe make two branches. At run time the tree is compiled once into
-- a chain of closures, `process(value, key, timestamp, headers)`, that the
-- consume loop calls per message.
local codec = require("qhost.codec")
local topic_mod = require("qhost.topic")

local dataframe = {}

local SDF = {}
SDF.__index = SDF
SDF.__name = "StreamingDataFrame"

local function new_node(kind, fields)
  local node = fields or {}
  node.kind = kind
  node.children = {}
  return node
end

-- dataframe.new(app, topic) -> StreamingDataFrame on a fresh root.
function dataframe.new(app, topic)
  local root = new_node("root")
  return setmetatable({ app = app, topic = topic, node = root, root = root }, SDF)
end

function dataframe.is_dataframe(value)
  return getmetatable(value) == SDF
end

local function derive(self, node)
  table.insert(self.node.children, node)
  return setmetatable({ app = self.app, topic = self.topic, node = node, root = self.root }, SDF)
end

-- Where the user called us, for error messages ("app.lua:12").
local function caller()
  local info = debug.getinfo(3, "Sl")
  return info and string.format("%s:%d", info.short_src, info.currentline or 0) or "?"
end

local function check_fn(fn, op, opts)
  if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn) and getmetatable(fn).__call) then
    error(string.format("StreamingDataFrame:%s expects a function, got %s", op, type(fn)), 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("StreamingDataFrame:%s: options must be a table", op), 3)
  end
  opts = opts or {}
  if opts.stateful then
    error(string.format("StreamingDataFrame:%s: stateful functions are not supported yet", op), 3)
  end
  return opts
end

-- sdf:apply(fn, { expand =, metadata = }) -> the values fn returns.
function SDF:apply(fn, opts)
  opts = check_fn(fn, "apply", opts)
  return derive(self, new_node("apply", { fn = fn, expand = opts.expand, metadata = opts.metadata, where = caller() }))
end

-- sdf:update(fn, { metadata = }): fn sees (and may mutate) the value; its
-- result is ignored and the value goes on.
function SDF:update(fn, opts)
  opts = check_fn(fn, "update", opts)
  return derive(self, new_node("update", { fn = fn, metadata = opts.metadata, where = caller() }))
end

-- sdf:filter(fn, { metadata = }): only values for which fn is truthy go on.
function SDF:filter(fn, opts)
  opts = check_fn(fn, "filter", opts)
  return derive(self, new_node("filter", { fn = fn, metadata = opts.metadata, where = caller() }))
end

-- sdf:print{ pretty = true, metadata = false }
function SDF:print(opts)
  opts = opts or {}
  local pretty = opts.pretty
  if pretty == nil then pretty = true end
  return derive(self, new_node("print", { pretty = pretty, metadata = opts.metadata and true or false }))
end

-- sdf:to_topic(topic, { key = fn(value) -> new key })
function SDF:to_topic(topic, opts)
  if not topic_mod.is_topic(topic) then
    error("StreamingDataFrame:to_topic expects a Topic (from app:topic)", 2)
  end
  opts = opts or {}
  if opts.key ~= nil and type(opts.key) ~= "function" then
    error("StreamingDataFrame:to_topic: key must be a function", 2)
  end
  if self.app then self.app:_register_output(topic) end
  return derive(self, new_node("to_topic", { topic = topic, key = opts.key }))
end

-- sdf:concat(other) -> one dataframe fed by both: the messages of each go
-- on through what follows, in the order each arrives (Quix's concat).
function SDF:concat(other)
  if not dataframe.is_dataframe(other) then
    error("StreamingDataFrame:concat expects a StreamingDataFrame", 2)
  end
  if other.app ~= self.app then
    error("StreamingDataFrame:concat: both dataframes must belong to the same Application", 2)
  end
  local node = new_node("root")
  table.insert(other.node.children, node)
  return derive(self, node)
end

-- Compiling -----------------------------------------------------------------

local PRINT_KEYS_MT = { __qhost_keys = { "value", "key", "timestamp", "headers" } }
local VALUE_ONLY_MT = { __qhost_keys = { "value" } }

local function json_or_null(v)
  if v == nil then return codec.null end
  return v
end

-- The text `print` writes for one message.
function dataframe.format_print(pretty, metadata, value, key, timestamp, headers)
  local obj
  if metadata then
    obj = setmetatable({ value = json_or_null(value), key = json_or_null(key),
      timestamp = json_or_null(timestamp), headers = json_or_null(headers) }, PRINT_KEYS_MT)
  else
    obj = setmetatable({ value = json_or_null(value) }, VALUE_ONLY_MT)
  end
  local text, err
  if pretty then text, err = codec.json_encode_pretty(obj, 2)
  else text, err = codec.json_encode(obj) end
  if not text then error("print: cannot encode the message as JSON: " .. err, 0) end
  return text
end

-- Deep copy for branches: each branch gets a value of its own, so one
-- branch mutating it cannot change what another sees.
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return setmetatable(out, getmetatable(v))
end

local compile_node

local function compile_children(node, rt)
  local nexts = {}
  for i, child in ipairs(node.children) do nexts[i] = compile_node(child, rt) end
  if #nexts == 0 then return rt.leaf end
  if #nexts == 1 then return nexts[1] end
  local n = #nexts
  return function(value, key, timestamp, headers)
    for i = 1, n - 1 do nexts[i](deep_copy(value), key, timestamp, headers) end
    return nexts[n](value, key, timestamp, headers)
  end
end

local builders = {}

function builders.root(_, nxt) return nxt end

function builders.apply(node, nxt)
  local fn, expand, metadata = node.fn, node.expand, node.metadata
  if expand then
    return function(value, key, timestamp, headers)
      local result
      if metadata then result = fn(value, key, timestamp, headers) else result = fn(value) end
      if type(result) ~= "table" then
        error(string.format("apply (expand=true, %s) must return a list, got %s", node.where, type(result)), 0)
      end
      for i = 1, #result do nxt(result[i], key, timestamp, headers) end
    end
  end
  if metadata then
    return function(value, key, timestamp, headers)
      return nxt(fn(value, key, timestamp, headers), key, timestamp, headers)
    end
  end
  return function(value, key, timestamp, headers)
    return nxt(fn(value), key, timestamp, headers)
  end
end

function builders.update(node, nxt)
  local fn, metadata = node.fn, node.metadata
  if metadata then
    return function(value, key, timestamp, headers)
      fn(value, key, timestamp, headers)
      return nxt(value, key, timestamp, headers)
    end
  end
  return function(value, key, timestamp, headers)
    fn(value)
    return nxt(value, key, timestamp, headers)
  end
end

function builders.filter(node, nxt)
  local fn, metadata = node.fn, node.metadata
  if metadata then
    return function(value, key, timestamp, headers)
      if fn(value, key, timestamp, headers) then return nxt(value, key, timestamp, headers) end
    end
  end
  return function(value, key, timestamp, headers)
    if fn(value) then return nxt(value, key, timestamp, headers) end
  end
end

function builders.print(node, nxt, rt)
  local pretty, metadata, write = node.pretty, node.metadata, rt.write
  return function(value, key, timestamp, headers)
    write(dataframe.format_print(pretty, metadata, value, key, timestamp, headers))
    return nxt(value, key, timestamp, headers)
  end
end

function builders.to_topic(node, nxt, rt)
  local topic, key_fn, produce = node.topic, node.key, rt.produce
  return function(value, key, timestamp, headers)
    local out_key = key
    if key_fn then out_key = key_fn(value) end
    produce(topic, value, out_key, timestamp, headers)
    return nxt(value, key, timestamp, headers)
  end
end

compile_node = function(node, rt)
  local nxt = compile_children(node, rt)
  return builders[node.kind](node, nxt, rt)
end

-- dataframe.compile(sdf, rt) -> process(value, key, timestamp, headers).
-- rt provides leaf(value, key, timestamp, headers) called for every output,
-- write(text) for print, produce(topic, value, key, timestamp, headers).
function dataframe.compile(sdf, rt)
  return compile_node(sdf.root, rt)
end

-- sdf:test(value, { key, timestamp, headers }) -> outputs, with no Kafka:
-- a list of the values reaching the ends of the pipeline. Messages sent to
-- topics are listed in the second result as { topic, key, value }.
function SDF:test(value, opts)
  opts = opts or {}
  local outputs, produced = {}, {}
  local rt = {
    leaf = function(v) outputs[#outputs + 1] = v end,
    write = function(text) io.stdout:write(text, "\n") end,
    produce = function(topic, v, k)
      produced[#produced + 1] = { topic = topic.name, key = k, value = v }
    end,
  }
  local process = dataframe.compile(self, rt)
  process(value, opts.key, opts.timestamp or 0, opts.headers)
  return outputs, produced
end

dataframe.StreamingDataFrame = SDF
return dataframe
