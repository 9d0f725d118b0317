-- qhost.runtime.pipeline: compiles a dataframe's tree of operations (built
-- by qhost.dataframe) once into a chain of closures,
-- `process(value, key, timestamp, headers)`, which the loop calls per
-- message. Each node kind has a builder that wraps the closure of what
-- follows it; a node with several children copies the value for every
-- branch but the last, so no branch sees another's changes (as Quix).
-- What the closures need from the running app comes in `rt`:
--   rt.leaf(value, key, timestamp, headers)   every output (end of a branch)
--   rt.write(text)                           print's output
--   rt.produce(topic, value, key, timestamp, headers, fresh)
--   rt.add_sink(sink), rt.ctx (topic, partition, offset of the message)
--   rt.printer() -> the run's table printer, rt.now() -> seconds
--   rt.timed(node) -> node (only with metrics on): a stand-in whose user
--                         function is timed (qhost.runtime.metrics)
--   rt.state_of(store) -> fn(key) -> the State of that key in the store,
--                         for the message being processed
--   rt.window_tx(store) -> fn() -> the window store's transaction of the
--                         message's partition (qhost.runtime.state.windowed)
--   rt.join_tx(topic, store) -> fn() -> a join store's transaction of that
--                         topic in the message's partition
--                         (qhost.runtime.state.timestamped)
local codec = require("qhost.codec")
local printing = require("qhost.runtime.printing")
local truthy = require("qhost.runtime.pytruth")
local topic_mod = require("qhost.topic")

local null = codec.null

local pipeline = {}

-- Deep copy for branches: each branch gets a value of its own, so one
-- branch mutating it cannot change what another sees.
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return setmetatable(out, getmetatable(v))
end

local compile_node

-- Fresh values. A table the runtime made (a message's value decoded by the
-- JSON deserializer, a join's built-in merge, a window's result) holds
-- exactly the keys its metatable's order lists (qhost.codec's decoded
-- objects) until user code gets it and may add one. While a value is
-- fresh, the join's merge and the JSON writer (qhost.runtime.json_out)
-- need not check that, which costs them a `next` per key and message.
-- Each builder is told whether its input is fresh (its last argument);
-- fresh_output says whether what a node hands on is. Only the table
-- itself counts: tables inside it may be user code's.
local function fresh_output(node, fresh_in)
  local kind = node.kind
  if kind == "root" then return fresh_in end
  -- (a copy for a branch is as exact as the value)
  if kind == "to_topic" then return fresh_in and not node.key and not node.choose end
  if kind == "join" then return node.join:fresh_output(node.side, fresh_in) end
  if kind == "window" then return true end
  return false
end

local function compile_children(node, rt, fresh)
  local nexts = {}
  for i, child in ipairs(node.children) do nexts[i] = compile_node(child, rt, fresh) end
  if #nexts == 0 then return rt.leaf end
  if #nexts == 1 then return nexts[1] end
  local n = #nexts
  return function(value, key, timestamp, headers)
    for i = 1, n - 1 do nexts[i](deep_copy(value), key, timestamp, headers) end
    return nexts[n](value, key, timestamp, headers)
  end
end

local builders = {}

-- The node's function as the builder calls it, and whether with metadata.
-- A stateful function also gets the message key's State last (Quix's
-- signature): it is called with the metadata, given the state of the
-- message's key from rt.state_of(store).
local function callable(node, rt)
  local fn = node.fn
  if not node.stateful then return fn, node.metadata end
  local state_of = rt.state_of(node.store, node.store_topic)
  if node.metadata then
    return function(value, key, timestamp, headers)
      return fn(value, key, timestamp, headers, state_of(key))
    end, true
  end
  return function(value, key) return fn(value, state_of(key)) end, true
end

function builders.root(_, nxt) return nxt end

function builders.apply(node, nxt, rt)
  local expand = node.expand
  local fn, metadata = callable(node, rt)
  if expand then
    return function(value, key, timestamp, headers)
      local result
      if metadata then result = fn(value, key, timestamp, headers) else result = fn(value) end
      -- (an object, not a list: nothing would come out, silently)
      if type(result) ~= "table" or (result[1] == nil and next(result) ~= nil) then
        error(string.format("apply (expand=true, %s) must return a list, got %s", node.where,
          type(result) == "table" and "an object" or type(result)), 0)
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

function builders.update(node, nxt, rt)
  local fn, metadata = callable(node, rt)
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

-- A Series keeps the messages whose result Python finds true (Quix's
-- sdf[sdf["x"]]: null, 0 and "" are not); a function's result is Lua's
-- truth, except that JSON null (a truthy userdata in Lua) is false too.
local function lua_or_null(v) return v ~= nil and v ~= false and v ~= null end

function builders.filter(node, nxt, rt)
  local fn, metadata = callable(node, rt)
  local keep = node.series and truthy or lua_or_null
  if metadata then
    return function(value, key, timestamp, headers)
      if keep(fn(value, key, timestamp, headers)) then return nxt(value, key, timestamp, headers) end
    end
  end
  return function(value, key, timestamp, headers)
    if keep(fn(value)) then return nxt(value, key, timestamp, headers) end
  end
end

function builders.print(node, nxt, rt)
  local pretty, metadata, write = node.pretty, node.metadata, rt.write
  return function(value, key, timestamp, headers)
    write(printing.format(pretty, metadata, value, key, timestamp, headers))
    return nxt(value, key, timestamp, headers)
  end
end

function builders.to_topic(node, nxt, rt, fresh)
  local topic, choose, key_fn, produce, internal = node.topic, node.choose, node.key, rt.produce, node.internal
  -- (what produce gets: a key or topic function, user code, has had it)
  fresh = fresh_output(node, fresh)
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
    produce(t, value, out_key, timestamp, headers, fresh)
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
  local opts = node.opts
  local metadata = opts.metadata ~= false
  local columns = opts.columns
  if columns and metadata then
    columns = { "_key", "_timestamp", unpack(columns) }
  end
  local printer = rt.printer()
  printer:configure_live(opts.live, opts.live_slowdown)
  local shown = printer:add_table{ size = opts.size, title = opts.title, timeout = opts.timeout,
                                   columns = columns, column_widths = opts.column_widths }
  local row_of, now = require("qhost.runtime.table_printer").row_of, rt.now
  return function(value, key, timestamp, headers)
    local names, values = row_of(value, key, timestamp, metadata)
    shown:add_row(names, values, now())
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
  local problem_of = require("qhost.sources.source").timestamp_problem
  return function(value, key, timestamp, headers)
    local ts = fn(value, key, timestamp, headers)
    local problem = problem_of(ts)
    if problem then
      error(string.format("set_timestamp (%s) must return a whole number of milliseconds: the result %s",
        node.where, problem), 0)
    end
    return nxt(value, key, ts, headers)
  end
end

-- The headers a set_headers function gets: a list of its own (empty when
-- the message has none), as Quix's `list(headers) if headers else []`, so
-- appending to it changes no other branch's message.
local function headers_copy(headers)
  local out = {}
  if headers == nil then return out end
  for k, h in pairs(headers) do
    if type(h) == "table" then out[k] = { h[1], h[2] } else out[k] = h end
  end
  return out
end

function builders.set_headers(node, nxt)
  local fn = node.fn
  return function(value, key, timestamp, headers)
    return nxt(value, key, timestamp, fn(value, key, timestamp, headers_copy(headers)))
  end
end

-- A window (qhost.windows): the Window compiles itself.
function builders.window(node, nxt, rt)
  return node.window:_compile(nxt, rt)
end

-- A join's node (qhost.joins): the join compiles it.
function builders.join(node, nxt, rt, fresh)
  return node.join:compile(node.side, nxt, rt, fresh)
end

compile_node = function(node, rt, fresh)
  local nxt = compile_children(node, rt, fresh_output(node, fresh))
  if rt.timed and node.fn then node = rt.timed(node) end
  return builders[node.kind](node, nxt, rt, fresh)
end

-- pipeline.compile(sdf, rt, fresh) -> process(value, key, timestamp,
-- headers). rt provides leaf(value, key, timestamp, headers) called for
-- every output, write(text) for print, produce(topic, value, key,
-- timestamp, headers, fresh). fresh: the values process gets are fresh
-- (decoded by the JSON deserializer, no user code called on them since).
function pipeline.compile(sdf, rt, fresh)
  return compile_node(sdf.root, rt, fresh and true or false)
end

return pipeline
