-- qhost.dataframe: StreamingDataFrame (API.md; behaviour as Quix's
-- quixstreams/dataframe/dataframe.py). Operations build a tree of nodes. As
-- in Quix, apply, filter, set_timestamp, set_headers, select and group_by
-- return a new dataframe on a new node, so two of them on one dataframe
-- make two branches; update, set, drop, fill, print, print_table and
-- to_topic are in place: they extend the dataframe they are called on (and
-- return it), so `sdf:print{}; sdf:to_topic(t)` is one branch. At run time
-- the tree is compiled once into a chain of closures,
-- `process(value, key, timestamp, headers)`, that the consume loop calls
-- per message.
local argcheck = require("qhost.runtime.argcheck")
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
  return setmetatable({ app = app or false, topic = topic, node = root, root = root }, SDF)
end

function dataframe.is_dataframe(value)
  return getmetatable(value) == SDF
end

-- A new branch: a new dataframe on `node`, a child of self's node.
-- feeds: the names of the other topics whose messages reach this dataframe
-- through a concat (or join_interval), or nil.
-- stream: after a group_by of a one-partition topic (re-keyed in process),
-- the prefix of the stores made from here on, so that they are not the
-- stores of the same names before the group_by (Quix's stream_id).
local function derive(self, node)
  table.insert(self.node.children, node)
  return setmetatable({ app = self.app, topic = self.topic, node = node, root = self.root,
    feeds = rawget(self, "feeds"), stream = rawget(self, "stream") }, SDF)
end

-- The name of a store made at this point of the dataframe.
function dataframe.store_name(sdf, name)
  local stream = rawget(sdf, "stream")
  return stream and (stream .. "--" .. name) or name
end

-- In place (Quix's _add_update): `node` extends self's branch, and self
-- moves on to it.
local function extend(self, node)
  table.insert(self.node.children, node)
  self.node = node
  return self
end

local APPLY_OPTIONS = argcheck.declare("sdf:apply", { stateful = "boolean", metadata = "boolean", expand = "boolean" })
local UPDATE_OPTIONS = argcheck.declare("sdf:update", { stateful = "boolean", metadata = "boolean" })
local FILTER_OPTIONS = argcheck.declare("sdf:filter", { stateful = "boolean", metadata = "boolean" })

local function check_fn(fn, op, opts, spec)
  if type(fn) ~= "function" and not series.is_series(fn) then
    argcheck.fail("StreamingDataFrame:%s expects a function (or a Series), got %s", op, type(fn))
  end
  opts = argcheck.options("StreamingDataFrame:" .. op, opts, spec or {})
  return opts
end

-- A stateful function uses the dataframe's "default" store (as Quix's),
-- registered with the app so its changelog topic is made with the others.
-- The store belongs to the dataframe's topic; messages of topics
-- concatenated into it use the store partition of the same number.
local function stateful_store(self, opts)
  if not opts.stateful then return nil end
  local store = dataframe.store_name(self, "default")
  local app = rawget(self, "app")
  if app then app:_register_store(self.topic, store, nil, rawget(self, "feeds")) end
  return store
end

-- sdf:apply(fn, { expand =, metadata = }) -> the values fn returns.
function SDF:apply(fn, opts)
  opts = check_fn(fn, "apply", opts, APPLY_OPTIONS)
  return derive(self, new_node("apply", { fn = fn, expand = opts.expand, metadata = opts.metadata,
    stateful = opts.stateful, store = stateful_store(self, opts), store_topic = self.topic.name,
    where = argcheck.where() }))
end

-- sdf:update(fn, { metadata = }): fn sees (and may mutate) the value; its
-- result is ignored and the value goes on. In place.
function SDF:update(fn, opts)
  opts = check_fn(fn, "update", opts, UPDATE_OPTIONS)
  return extend(self, new_node("update", { fn = fn, metadata = opts.metadata, stateful = opts.stateful,
    store = stateful_store(self, opts), store_topic = self.topic.name, where = argcheck.where() }))
end

-- sdf:filter(fn, { metadata = }): only values for which fn is true go on: a
-- function's result as Lua sees it, but JSON null is false too; a Series'
-- result as Python does (null, 0, "", empty tables are false), as Quix.
function SDF:filter(fn, opts)
  opts = check_fn(fn, "filter", opts, FILTER_OPTIONS)
  return derive(self, new_node("filter", { fn = fn, series = series.is_series(fn), metadata = opts.metadata,
    stateful = opts.stateful, store = stateful_store(self, opts), store_topic = self.topic.name,
    where = argcheck.where() }))
end

-- Columns ------------------------------------------------------------------

-- sdf:col("x") -> StreamingSeries of value.x (Quix's sdf["x"])
function SDF:col(name)
  return series.col(name)
end

-- sdf:contains("k") or sdf:contains{ "k1", "k2" } -> StreamingSeries: the
-- value has the key (all of the keys), as Quix's contains(key or keys).
function SDF:contains(key)
  local name, has
  if type(key) == "table" then
    local keys, names = key, {}
    for i, k in ipairs(keys) do names[i] = tostring(k) end
    name = "contains{" .. table.concat(names, ", ") .. "}"
    has = function(value)
      if type(value) ~= "table" then return false end
      for i = 1, #keys do if value[keys[i]] == nil then return false end end
      return true
    end
  else
    name = "contains(" .. tostring(key) .. ")"
    has = function(value) return type(value) == "table" and value[key] ~= nil end
  end
  return setmetatable({ fn = has, name = name, where = argcheck.where() }, series.Series)
end

local function need_table(value, op, where)
  if type(value) ~= "table" then
    error(string.format("%s (%s): the value is a %s, not a table", op, where, type(value)), 0)
  end
end

-- sdf:set("new", constant | Series | fn(value)): sets a field of the value
-- (Quix's sdf["new"] = ...). A result of nil sets JSON null, as Quix sets
-- None (a Lua table cannot hold nil: the field would vanish). In place.
function SDF:set(name, what)
  if type(name) ~= "string" then
    argcheck.fail("StreamingDataFrame:set expects a column name, got %s", type(name))
  end
  local get
  if type(what) == "function" or series.is_series(what) then get = what
  else local constant = what; get = function() return constant end end
  local where = argcheck.where()
  return extend(self, new_node("update", { where = where, fn = function(value)
    need_table(value, "set", where)
    local v = get(value)
    if v == nil then v = codec.null end
    value[name] = v
  end }))
end

-- Column names from a list or from several names.
local function column_list(op, first, ...)
  local cols = first
  if type(first) == "string" then cols = { first, ... } end
  if type(cols) ~= "table" or #cols == 0 then
    argcheck.fail("StreamingDataFrame:%s expects a column name or a list of them", op)
  end
  for i, c in ipairs(cols) do
    if type(c) ~= "string" then
      argcheck.fail("StreamingDataFrame:%s: column %d is a %s, not a name", op, i, type(c))
    end
  end
  return cols
end

-- sdf:select{ "a", "b" } (or select("a", "b")): a new value with those
-- fields, in that order.
function SDF:select(...)
  local cols = column_list("select", ...)
  local order_mt = { __qhost_keys = cols }
  local where = argcheck.where()
  return derive(self, new_node("apply", { where = where, fn = function(value)
    need_table(value, "select", where)
    local out = {}
    for i = 1, #cols do
      local k = cols[i]
      local v = value[k]
      if v == nil then error(string.format("select (%s): the value has no field %q", where, k), 0) end
      out[k] = v
    end
    return setmetatable(out, order_mt)
  end }))
end

local DROP_OPTIONS = argcheck.declare("sdf:drop", { errors = "string" })

-- sdf:drop(cols, { errors = "raise" | "ignore" }): removes fields. In place.
function SDF:drop(cols, opts)
  -- (an empty list drops nothing, as Quix's drop([]))
  if type(cols) == "table" and next(cols) == nil then
    argcheck.options("StreamingDataFrame:drop", opts, DROP_OPTIONS)
    return self
  end
  cols = column_list("drop", cols)
  opts = argcheck.options("StreamingDataFrame:drop", opts, DROP_OPTIONS)
  local errors = argcheck.one_of("StreamingDataFrame:drop", "errors", opts.errors or "raise", { "raise", "ignore" })
  local where = argcheck.where()
  return extend(self, new_node("update", { where = where, fn = function(value)
    need_table(value, "drop", where)
    for i = 1, #cols do
      local k = cols[i]
      if value[k] == nil and errors == "raise" then
        error(string.format("drop (%s): the value has no field %q", where, k), 0)
      end
      value[k] = nil
    end
  end }))
end

-- sdf:fill{ x = 0 } or sdf:fill("a", "b"): missing or null fields get the
-- default (null for names given alone), as Quix's fill(*columns, **mapping).
-- A value that is not a table goes on unchanged (as Quix's). In place.
function SDF:fill(...)
  local defaults = {}
  for i = 1, select("#", ...) do
    local arg = select(i, ...)
    if type(arg) == "string" then defaults[arg] = codec.null
    elseif type(arg) == "table" then for k, v in pairs(arg) do defaults[k] = v end
    else argcheck.fail("StreamingDataFrame:fill expects column names or a table of defaults, got %s", type(arg)) end
  end
  local where = argcheck.where()
  return extend(self, new_node("update", { where = where, fn = function(value)
    if type(value) ~= "table" then return end
    for k, v in pairs(defaults) do
      local cur = value[k]
      if cur == nil or cur == codec.null then value[k] = v end
    end
  end }))
end

-- sdf:set_timestamp(fn(value, key, timestamp, headers) -> ms)
function SDF:set_timestamp(fn)
  check_fn(fn, "set_timestamp")
  return derive(self, new_node("set_timestamp", { fn = fn, where = argcheck.where() }))
end

-- sdf:set_headers(fn(value, key, timestamp, headers) -> headers)
function SDF:set_headers(fn)
  check_fn(fn, "set_headers")
  return derive(self, new_node("set_headers", { fn = fn, where = argcheck.where() }))
end

local GROUP_BY_OPTIONS = argcheck.declare("sdf:group_by", {
  name = "string", key_serializer = "string|table", value_serializer = "string|table",
  key_deserializer = "string|table", value_deserializer = "string|table",
})

-- sdf:group_by(column or fn(value), { name =, key_serializer = "json", ... }):
-- re-keys the messages by the column's (or fn's) value, Quix's group_by.
-- Across partitions that means going through Kafka: the messages are
-- produced to the topic repartition__<consumer_group>--<input topic>--<name>
-- with the new key, and the returned dataframe consumes it. An input of one
-- partition is re-keyed in process, as no message changes owner.
function SDF:group_by(by, opts)
  opts = argcheck.options("StreamingDataFrame:group_by", opts, GROUP_BY_OPTIONS)
  local name, key_of = opts.name, nil
  local where = argcheck.where()
  if type(by) == "string" then
    name = name or by
    -- A missing column is an error of the message, as Quix's KeyError (a
    -- message re-keyed to no key would be lost to its key's windows).
    key_of = function(value)
      need_table(value, "group_by", where)
      local k = value[by]
      if k == nil then error(string.format("group_by (%s): the value has no field %q", where, by), 0) end
      return k
    end
  elseif type(by) == "function" then
    if type(name) ~= "string" then argcheck.fail("StreamingDataFrame:group_by with a function needs { name = }") end
    key_of = by
  else
    argcheck.fail("StreamingDataFrame:group_by expects a column name or a function, got %s", type(by))
  end
  local app = rawget(self, "app")
  if not app or self.topic:num_partitions() == 1 then
    local rekeyed = derive(self, new_node("rekey", { fn = key_of }))
    rekeyed.stream = dataframe.store_name(self, "groupby--" .. name)
    return rekeyed
  end
  local repartition_name = string.format("repartition__%s--%s--%s", app.consumer_group, self.topic.name, name)
  for _, other in ipairs(app._dataframes) do
    if other.topic.name == repartition_name then
      argcheck.fail("StreamingDataFrame:group_by: a group_by named %q already exists on topic '%s': give this "
        .. "one another { name = }", name, self.topic.name)
    end
  end
  local repartition = app:topic(repartition_name, {
      config = topic_mod.TopicConfig{ num_partitions = self.topic:num_partitions() },
      key_serializer = opts.key_serializer or "json", key_deserializer = opts.key_deserializer or "json",
      value_serializer = opts.value_serializer or "json", value_deserializer = opts.value_deserializer or "json",
    })
  -- As Quix: the repartition topic has the input's partition count, which
  -- the app learns from the broker at start for an existing topic.
  repartition.derived_from = self.topic
  -- The hand-over to the repartition topic is not an output of the app.
  derive(self, new_node("to_topic", { topic = repartition, key = key_of, internal = true }))
  return app:dataframe(repartition)
end

local PRINT_OPTIONS = argcheck.declare("sdf:print", { pretty = "boolean", metadata = "boolean" })

-- sdf:print{ pretty = true, metadata = false }. In place.
function SDF:print(opts)
  opts = argcheck.options("StreamingDataFrame:print", opts, PRINT_OPTIONS)
  local pretty = opts.pretty
  if pretty == nil then pretty = true end
  return extend(self, new_node("print", { pretty = pretty, metadata = opts.metadata and true or false }))
end

local PRINT_TABLE_OPTIONS = argcheck.declare("sdf:print_table", {
  size = "integer", title = "string", metadata = "boolean", timeout = "number", live = "boolean",
  live_slowdown = "number", columns = "table", column_widths = "table",
})

-- sdf:print_table{ size = 5, title =, metadata = true, timeout = 5, live = true,
-- live_slowdown = 0.5, columns =, column_widths = } (Quix's defaults; see
-- qhost.table_printer). In place.
function SDF:print_table(opts)
  opts = argcheck.options("StreamingDataFrame:print_table", opts, PRINT_TABLE_OPTIONS)
  if opts.size and opts.size < 1 then argcheck.fail("StreamingDataFrame:print_table: size must be >= 1") end
  if opts.columns and #opts.columns > 0 then column_list("print_table", opts.columns) end
  return extend(self, new_node("print_table", { opts = opts }))
end

local TO_TOPIC_OPTIONS = argcheck.declare("sdf:to_topic", { key = "function" })

-- sdf:to_topic(topic, { key = fn(value) -> new key }); `topic` may also be
-- fn(value, key, timestamp, headers) -> Topic, choosing per message. In place.
function SDF:to_topic(topic, opts)
  opts = argcheck.options("StreamingDataFrame:to_topic", opts, TO_TOPIC_OPTIONS)
  if type(topic) == "function" then
    return extend(self, new_node("to_topic", { choose = topic, key = opts.key, where = argcheck.where() }))
  end
  if not topic_mod.is_topic(topic) then
    argcheck.fail("StreamingDataFrame:to_topic expects a Topic (from app:topic) or a function returning one, got %s",
      type(topic))
  end
  local app = rawget(self, "app")
  if app then app:_register_output(topic) end
  return extend(self, new_node("to_topic", { topic = topic, key = opts.key }))
end

-- sdf:concat(other) -> one dataframe fed by both: the messages of each go
-- on through what follows (Quix's concat); those of different topics in
-- the order of their timestamps.
function SDF:concat(other)
  if not dataframe.is_dataframe(other) then
    argcheck.fail("StreamingDataFrame:concat expects a StreamingDataFrame, got %s", type(other))
  end
  if other.app ~= self.app then
    argcheck.fail("StreamingDataFrame:concat: both dataframes must belong to the same Application")
  end
  -- As Quix: dataframes of different topics are then consumed in
  -- timestamp order (qhost.runtime.aligned).
  local app = rawget(self, "app")
  if app and other.topic.name ~= self.topic.name then app._time_alignment = true end
  local node = new_node("root")
  table.insert(other.node.children, node)
  local joined = derive(self, node)
  local feeds = {}
  for _, list in ipairs({ rawget(self, "feeds") or {}, rawget(other, "feeds") or {}, { other.topic.name } }) do
    for _, name in ipairs(list) do
      if name ~= self.topic.name and not feeds[name] then feeds[name] = true; feeds[#feeds + 1] = name end
    end
  end
  joined.feeds = #feeds > 0 and feeds or nil
  return joined
end

-- sdf:sink(sink): hands every message to a sink (BaseSink and subclasses).
-- Terminal, as in Quix: it returns nothing to chain on, and the dataframe
-- it is called on stays where it was (a branch of its own).
function SDF:sink(sink)
  if not sinks.is_sink(sink) then
    argcheck.fail("StreamingDataFrame:sink expects a sink (qhost.sinks.BaseSink or a subclass), got %s", type(sink))
  end
  derive(self, new_node("sink", { sink = sink }))
end

-- Windows ------------------------------------------------------------------
-- sdf:tumbling_window{ ... } and the others make a window definition
-- (qhost.windows); its aggregation and final/current make the node.
for _, name in ipairs({ "tumbling_window", "hopping_window", "sliding_window", "tumbling_count_window",
                        "hopping_count_window", "sliding_count_window" }) do
  SDF[name] = function(self, opts)
    return require("qhost.windows")[name](self, opts)
  end
end

-- A window's node: one message in, its window results out (a new branch,
-- as Quix's _apply_window).
function dataframe._window_node(sdf, window, where)
  return derive(sdf, new_node("window", { window = window, store = window.name, where = where }))
end

-- Joins --------------------------------------------------------------------
-- sdf:join_asof(right, opts), sdf:join_interval(right, opts) and
-- sdf:join_lookup(lookup, fields, opts) are qhost.joins'.
for _, name in ipairs({ "join_asof", "join_interval", "join_lookup" }) do
  SDF[name] = function(self, ...)
    return require("qhost.joins")[name](self, ...)
  end
end

-- A join's node (qhost.joins) on sdf: a new branch, or in place.
function dataframe._join_node(sdf, join, side, in_place)
  local node = new_node("join", { join = join, side = side })
  if in_place then return extend(sdf, node) end
  return derive(sdf, node)
end

local TEST_OPTIONS = argcheck.declare("sdf:test",
  { key = "any", timestamp = "number", headers = "table", metadata = "boolean", topic = "table" })

-- sdf:test(value, { key =, timestamp =, headers =, metadata = }) -> outputs,
-- with no Kafka: the values reaching the ends of the pipeline (all of its
-- branches, as Quix's test), or with metadata = true tables { value =,
-- key =, timestamp =, headers = }. Messages sent to topics are listed in
-- the second result as { topic, key, value } (and timestamp, headers with
-- metadata = true). topic: a message of that topic (the other side of a
-- join), run through its dataframe's pipeline, as Quix's test(topic=).
function SDF:test(value, opts)
  opts = argcheck.options("StreamingDataFrame:test", opts, TEST_OPTIONS)
  local root = self.root
  if opts.topic then root = require("qhost.joins").test_root(self, opts.topic) end
  local outputs, produced = {}, {}
  local leaf
  if opts.metadata then
    leaf = function(v, k, ts, h) outputs[#outputs + 1] = { value = v, key = k, timestamp = ts, headers = h } end
  else
    -- A Lua list cannot hold nil: an output of nil (an apply that returned
    -- nothing; Quix's None, which its test lists) is listed as null.
    leaf = function(v)
      if v == nil then v = codec.null end
      outputs[#outputs + 1] = v
    end
  end
  local table_printer
  local rt = {
    ctx = { topic = opts.topic and opts.topic.name or self.topic and self.topic.name or "test", partition = 0,
            offset = 0 },
    add_sink = function() end,
    leaf = leaf,
    now = os.clock,
    printer = function()
      table_printer = table_printer or require("qhost.runtime.table_printer").new(function(text)
        io.stdout:write(text, "\n")
      end, false, nil)
      return table_printer
    end,
    write = function(text) io.stdout:write(text, "\n") end,
    produce = function(topic, v, k, ts, h)
      local msg = { topic = topic.name, key = k, value = v }
      if opts.metadata then msg.timestamp, msg.headers = ts, h end
      produced[#produced + 1] = msg
    end,
  }
  -- State lives in memory for tests, on the dataframe: a second test call
  -- sees what the first one stored, as a second message would.
  function rt.state_of(store_name)
    local stores = rawget(self.root, "test_state") or {}
    rawset(self.root, "test_state", stores)
    if not stores[store_name] then
      local data = {}
      local memory = { get = function(_, k) return data[k] end, write = function() end }
      stores[store_name] = { tx = require("qhost.runtime.state.transaction").new(memory), data = data }
    end
    local s = stores[store_name]
    local st = require("qhost.state").new(s.tx)
    return function(key)
      -- what the last call wrote is the database now
      for _, change in ipairs(s.tx:changes()) do s.data[change[1]] = change[2] end
      s.tx:discard()
      st:_scope(key == nil and "null" or type(key) == "string" and key or (codec.json_encode(key) or tostring(key)))
      return st
    end
  end
  -- Window stores live in memory too, one transaction per store that each
  -- call ends with a flush (as a checkpoint would).
  function rt.window_tx(store_name)
    local stores = rawget(self.root, "test_windows") or {}
    rawset(self.root, "test_windows", stores)
    if not stores[store_name] then
      local windowed = require("qhost.runtime.state.windowed")
      stores[store_name] = windowed.new(windowed.memory_partition())
    end
    local tx = stores[store_name]
    return function() return tx end
  end
  -- Join stores too (qhost.joins), kept on the dataframe with the others.
  rt.join_tx = require("qhost.joins").test_stores(self.root)
  local process = require("qhost.runtime.pipeline").compile({ root = root }, rt)
  process(value, opts.key, opts.timestamp or 0, opts.headers)
  for _, tx in pairs(rawget(self.root, "test_windows") or {}) do tx:flush() end
  for _, tx in pairs(rawget(self.root, "test_joins") or {}) do tx:flush() end
  if table_printer then table_printer:tick(rt.now(), true) end
  return outputs, produced
end

-- Misuse a Lua user makes easily gets an error that says what to write:
-- a dot instead of a colon (sdf.apply(f)) and a misspelled method.
argcheck.guard_methods(SDF, "StreamingDataFrame", "sdf")

dataframe.StreamingDataFrame = SDF
return dataframe
