-- qhost.dataframe: StreamingDataFrame (API.md; behaviour as Quix's
-- quixstreams/dataframe/dataframe.py). Operations build a tree of nodes;
-- each returns a new dataframe on a new node, so two operations on one
-- dataframe make two branches. At run time the tree is compiled once into
-- a chain of closures, `process(value, key, timestamp, headers)`, that the
-- consume loop calls per message.
local codec = require("qhost.codec")
local series = require("qhost.series")
local sinks = require("qhost.sinks")
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
  if type(fn) ~= "function" and not series.is_series(fn) then
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

-- Columns ------------------------------------------------------------------

-- sdf:col("x") -> StreamingSeries of value.x (Quix's sdf["x"])
function SDF:col(name)
  return series.col(name)
end

-- sdf:contains("k") -> StreamingSeries: the value has the key k
function SDF:contains(key)
  return setmetatable({ fn = function(value)
    return type(value) == "table" and value[key] ~= nil
  end, name = "contains(" .. tostring(key) .. ")" }, series.Series)
end

local function need_table(value, op, where)
  if type(value) ~= "table" then
    error(string.format("%s (%s): the value is a %s, not a table", op, where, type(value)), 0)
  end
end

-- sdf:set("new", constant | Series | fn(value)): sets a field of the value
-- (Quix's sdf["new"] = ...).
function SDF:set(name, what)
  if type(name) ~= "string" then error("StreamingDataFrame:set expects a column name", 2) end
  local get
  if type(what) == "function" or series.is_series(what) then get = what
  else local constant = what; get = function() return constant end end
  local where = caller()
  return self:update(function(value)
    need_table(value, "set", where)
    value[name] = get(value)
  end)
end

local function column_list(cols, op)
  if type(cols) == "string" then return { cols } end
  if type(cols) ~= "table" or #cols == 0 then
    error(string.format("StreamingDataFrame:%s expects a column name or a list of them", op), 3)
  end
  return cols
end

-- sdf:select{ "a", "b" }: a new value with those fields, in that order.
function SDF:select(cols)
  cols = column_list(cols, "select")
  local order_mt = { __qhost_keys = cols }
  local where = caller()
  return self:apply(function(value)
    need_table(value, "select", where)
    local out = {}
    for i = 1, #cols do
      local k = cols[i]
      local v = value[k]
      if v == nil then error(string.format("select (%s): the value has no field %q", where, k), 0) end
      out[k] = v
    end
    return setmetatable(out, order_mt)
  end)
end

-- sdf:drop(cols, { errors = "raise" | "ignore" }): removes fields.
function SDF:drop(cols, opts)
  cols = column_list(cols, "drop")
  local errors = opts and opts.errors or "raise"
  if errors ~= "raise" and errors ~= "ignore" then
    error('StreamingDataFrame:drop: errors must be "raise" or "ignore"', 2)
  end
  local where = caller()
  return self:update(function(value)
    need_table(value, "drop", where)
    for i = 1, #cols do
      local k = cols[i]
      if value[k] == nil and errors == "raise" then
        error(string.format("drop (%s): the value has no field %q", where, k), 0)
      end
      value[k] = nil
    end
  end)
end

-- sdf:fill{ x = 0 } or sdf:fill("a", "b"): missing or null fields get the
-- default (null for names given alone), as Quix's fill(*columns, **mapping).
function SDF:fill(...)
  local defaults = {}
  for i = 1, select("#", ...) do
    local arg = select(i, ...)
    if type(arg) == "string" then defaults[arg] = codec.null
    elseif type(arg) == "table" then for k, v in pairs(arg) do defaults[k] = v end
    else error("StreamingDataFrame:fill expects column names or a table of defaults", 2) end
  end
  local where = caller()
  return self:update(function(value)
    need_table(value, "fill", where)
    for k, v in pairs(defaults) do
      local cur = value[k]
      if cur == nil or cur == codec.null then value[k] = v end
    end
  end)
end

-- sdf:set_timestamp(fn(value, key, timestamp, headers) -> ms)
function SDF:set_timestamp(fn)
  check_fn(fn, "set_timestamp")
  return derive(self, new_node("set_timestamp", { fn = fn, where = caller() }))
end

-- sdf:set_headers(fn(value, key, timestamp, headers) -> headers)
function SDF:set_headers(fn)
  check_fn(fn, "set_headers")
  return derive(self, new_node("set_headers", { fn = fn, where = caller() }))
end

-- sdf:group_by(column or fn(value), { name = }): re-keys the messages by
-- the column's (or fn's) value, Quix's group_by. Across partitions that
-- means going through Kafka: the messages are produced to the topic
-- repartition__<consumer_group>--<input topic>--<name> with the new key,
-- and the returned dataframe consumes it. An input of one partition is
-- re-keyed in process, as no message changes owner.
function SDF:group_by(by, opts)
  opts = opts or {}
  local name, key_of = opts.name, nil
  if type(by) == "string" then
    name = name or by
    key_of = function(value)
      if type(value) ~= "table" then error("group_by: the value is a " .. type(value) .. ", not a table", 0) end
      return value[by]
    end
  elseif type(by) == "function" then
    if type(name) ~= "string" then error("StreamingDataFrame:group_by with a function needs { name = }", 2) end
    key_of = by
  else
    error("StreamingDataFrame:group_by expects a column name or a function", 2)
  end
  if not self.app or self.topic:num_partitions() == 1 then
    return derive(self, new_node("rekey", { fn = key_of }))
  end
  local repartition = self.app:topic(
    string.format("repartition__%s--%s--%s", self.app.consumer_group, self.topic.name, name), {
      config = topic_mod.TopicConfig{ num_partitions = self.topic:num_partitions() },
      key_serializer = "json", key_deserializer = "json",
      value_serializer = "json", value_deserializer = "json",
    })
  -- The hand-over to the repartition topic is not an output of the app.
  derive(self, new_node("to_topic", { topic = repartition, key = key_of, internal = true }))
  return self.app:dataframe(repartition)
end

-- sdf:print{ pretty = true, metadata = false }
function SDF:print(opts)
  opts = opts or {}
  local pretty = opts.pretty
  if pretty == nil then pretty = true end
  return derive(self, new_node("print", { pretty = pretty, metadata = opts.metadata and true or false }))
end

-- sdf:print_table{ size = 5, title =, metadata = false, columns =, live_slowdown = 0.5 }
function SDF:print_table(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("StreamingDataFrame:print_table expects a table of options", 2) end
  return derive(self, new_node("print_table", { opts = opts }))
end

-- sdf:to_topic(topic, { key = fn(value) -> new key }); `topic` may also be
-- fn(value, key, timestamp, headers) -> Topic, choosing per message.
function SDF:to_topic(topic, opts)
  if type(topic) == "function" then
    opts = opts or {}
    if opts.key ~= nil and type(opts.key) ~= "function" then
      error("StreamingDataFrame:to_topic: key must be a function", 2)
    end
    return derive(self, new_node("to_topic", { choose = topic, key = opts.key, where = caller() }))
  end
  if not topic_mod.is_topic(topic) then
    error("StreamingDataFrame:to_topic expects a Topic (from app:topic) or a function returning one", 2)
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

-- sdf:sink(sink): hands every message to a sink (BaseSink and subclasses).
-- Terminal, as in Quix: it returns nothing to chain on.
function SDF:sink(sink)
  if not sinks.is_sink(sink) then
    error("StreamingDataFrame:sink expects a sink (qhost.sinks.BaseSink or a subclass)", 2)
  end
  derive(self, new_node("sink", { sink = sink }))
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
  local topic, choose, key_fn, produce, internal = node.topic, node.choose, node.key, rt.produce, node.internal
  return function(value, key, timestamp, headers)
    local out_key = key
    if key_fn then out_key = key_fn(value) end
    local t = topic
    if choose then
      t = choose(value, key, timestamp, headers)
      if not topic_mod.is_topic(t) then
        error(string.format("to_topic (%s): the topic function returned a %s, not a Topic", node.where, type(t)), 0)
      end
    end
    produce(t, value, out_key, timestamp, headers)
    if internal then return end
    return nxt(value, key, timestamp, headers)
  end
end

function builders.sink(node, nxt, rt)
  local sink, ctx = node.sink, rt.ctx
  rt.add_sink(sink)
  return function(value, key, timestamp, headers)
    sink:add(value, key, timestamp, headers, ctx.topic, ctx.partition, ctx.offset)
    return nxt(value, key, timestamp, headers)
  end
end

function builders.print_table(node, nxt, rt)
  local show = require("qhost.table_printer").new(node.opts, rt.write, rt.is_tty)
  return function(value, key, timestamp, headers)
    show(value, key, timestamp)
    return nxt(value, key, timestamp, headers)
  end
end

function builders.rekey(node, nxt)
  local fn = node.fn
  return function(value, key, timestamp, headers)
    return nxt(value, fn(value), timestamp, headers)
  end
end

function builders.set_timestamp(node, nxt)
  local fn = node.fn
  return function(value, key, timestamp, headers)
    local ts = fn(value, key, timestamp, headers)
    if type(ts) ~= "number" then
      error(string.format("set_timestamp (%s) must return a number of milliseconds, got %s", node.where, type(ts)), 0)
    end
    return nxt(value, key, ts, headers)
  end
end

function builders.set_headers(node, nxt)
  local fn = node.fn
  return function(value, key, timestamp, headers)
    return nxt(value, key, timestamp, fn(value, key, timestamp, headers))
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
    ctx = { topic = self.topic and self.topic.name or "test", partition = 0, offset = 0 },
    add_sink = function() end,
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
