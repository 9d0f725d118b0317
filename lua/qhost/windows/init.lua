-- qhost.windows: windowed aggregations (Quix's quixstreams/dataframe/windows/:
-- definitions.py, base.py). A dataframe's window method
-- (sdf:tumbling_window{ ... }, ...) makes a window definition; an
-- aggregation on it (:sum(), :agg{ ... }, ...) makes a Window; :final{ } or
-- :current() puts the Window into the dataframe as a node that takes one
-- message in and gives zero or more window results out, each with the
-- message's key, the window's start as timestamp, and no headers.
--
-- The algorithms are Quix's, one file each: qhost.windows.fixed (tumbling
-- and hopping), qhost.windows.sliding, qhost.windows.count. They work on a
-- window store (qhost.runtime.state.windowed) of the message's partition.
--
-- A window's result has Quix's keys in Quix's order: {"start","end","value"}
-- for one aggregation; with agg{ ... }, the aggregation names, then the
-- collection names, then "start" and "end". A Lua table has no order, so
-- the names of agg{ ... } come sorted within each group (Quix keeps the
-- order of its keyword arguments).
local agg = require("qhost.agg")
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")
local log = require("qhost.log")

local null = codec.null
local json_encode, json_decode = codec.json_encode, codec.json_decode

local windows = {}

-- What a window result holds --------------------------------------------------

-- A copy of v that shares nothing with the store (downstream code may
-- change what it gets; the store keeps using its own values).
local function detach(v)
  if type(v) ~= "table" then
    if v == nil then return null end
    return v
  end
  local out = {}
  for k, x in pairs(v) do out[k] = detach(x) end
  return setmetatable(out, getmetatable(v))
end
windows.detach = detach

-- v through JSON, as Quix stores a value: what user code made (reduce,
-- custom aggregators, triggers) cannot change a stored value afterwards,
-- and what JSON cannot hold fails at once.
local function through_json(v, what)
  if v == nil then return nil end
  local text, err = json_encode(v)
  if not text then error(string.format("%s cannot be stored as JSON: %s", what, err), 0) end
  local copy = json_decode(text)
  if copy == null then return nil end
  return copy
end
windows.through_json = through_json

local SINGLE_KEYS = { __qhost_keys = { "start", "end", "value" } }

-- Whether op is of one of qhost.agg's own classes (a subclass of one is
-- user code: its states are copied as user code's are).
local function is_builtin(op)
  return rawget(getmetatable(op), "_builtin") == true
end

-- The operations of a Window on its values (Quix's
-- SingleAggregationWindowMixin and MultiAggregationWindowMixin):
-- initialize(), aggregate_value(state, value, timestamp), collect_value(value),
-- results(aggregated, collected, start, end); aggregate and collect say
-- whether it has aggregators and collectors.
local function single_ops(op)
  local ops = {}
  if agg.is_aggregator(op) then
    ops.aggregate, ops.collect = true, false
    function ops.initialize() return op:initialize() end
    function ops.aggregate_value(state, value, timestamp) return op:agg(state, value, timestamp) end
    if getmetatable(op) == agg.Mean then
      -- in place (see multi_ops)
      local column_of = agg._column_of
      function ops.aggregate_into(state, value)
        local v = column_of(op, value)
        if v == nil then return state end
        state[1], state[2] = state[1] + v, state[2] + 1
        return state
      end
    end
    function ops.results(aggregated, _, s, e)
      return setmetatable({ start = s, ["end"] = e, value = detach(op:result(aggregated)) }, SINGLE_KEYS)
    end
    ops.builtin = is_builtin(op)
  else
    ops.aggregate, ops.collect = false, true
    function ops.initialize() return nil end
    function ops.aggregate_value() return nil end
    function ops.results(_, collected, s, e)
      return setmetatable({ start = s, ["end"] = e, value = detach(op:result(collected)) }, SINGLE_KEYS)
    end
    ops.builtin = is_builtin(op)
  end
  function ops.collect_value(value) return value end
  return ops
end

local function multi_ops(aggregators, collectors)
  local ops = { aggregate = #aggregators > 0, collect = #collectors > 0, builtin = true }
  local keys = {}
  for _, a in ipairs(aggregators) do
    keys[#keys + 1] = a.name
    if not is_builtin(a.op) then ops.builtin = false end
  end
  local collect_all, columns = false, {}
  local seen = {}
  for _, c in ipairs(collectors) do
    keys[#keys + 1] = c.name
    if not is_builtin(c.op) then ops.builtin = false end
    local column = c.op.column
    if column == nil then collect_all = true
    elseif not seen[column] then seen[column] = true; columns[#columns + 1] = column end
  end
  keys[#keys + 1] = "start"
  keys[#keys + 1] = "end"
  local order = { __qhost_keys = keys }
  local n = #aggregators

  -- initialize and aggregate_value run per message: they are made as
  -- straight-line code for these aggregators (no loop over them, which
  -- would split the JIT's trace of the message). aggregate_into(state, ...)
  -- is aggregate_value changing state itself (for windows whose states are
  -- their own, see qhost.windows.fixed): every new value is computed
  -- before any is set, so a failing aggregator leaves the state as it was.
  local agg_keys, agg_ops = {}, {}
  for i, a in ipairs(aggregators) do agg_keys[i], agg_ops[i] = a.key, a.op end
  if n <= 12 then   -- (LuaJIT allows 60 upvalues per function)
    local src = { "local keys, ops, null, column_of = ..." }
    for i = 1, n do
      src[#src + 1] = string.format("local k%d, op%d = keys[%d], ops[%d]", i, i, i, i)
      src[#src + 1] = string.format("local init%d, agg%d = op%d.initialize, op%d.agg", i, i, i, i)
    end
    src[#src + 1] = "local function initialize()\n  local state = {}\n  local v"
    for i = 1, n do
      src[#src + 1] = string.format("  v = init%d(op%d)\n  if v == nil then v = null end\n  state[k%d] = v", i, i, i)
    end
    src[#src + 1] = "  return state\nend"
    local compute = { "  local old" }
    for i = 1, n do
      compute[#compute + 1] = string.format("  old = state[k%d]\n  if old == nil then old = init%d(op%d) elseif "
        .. "old == null then old = nil end\n  local v%d = agg%d(op%d, old, value, timestamp)\n  if v%d == nil then "
        .. "v%d = null end", i, i, i, i, i, i, i, i)
    end
    compute = table.concat(compute, "\n")
    src[#src + 1] = "local function aggregate_value(state, value, timestamp)\n" .. compute .. "\n  local out = {}"
    for i = 1, n do src[#src + 1] = string.format("  out[k%d] = v%d", i, i) end
    src[#src + 1] = "  return out\nend"
    -- In place, a Mean's { sum, count } is updated rather than made anew
    -- (its new numbers computed with the others', set with them).
    local into, commit = { "  local old" }, {}
    for i = 1, n do
      if getmetatable(agg_ops[i]) == agg.Mean then
        into[#into + 1] = string.format("  local m%d = state[k%d]\n  if m%d == nil or m%d == null then m%d = "
          .. "init%d(op%d) end\n  local n%d = column_of(op%d, value)\n  local s%d, c%d\n  if n%d ~= nil then "
          .. "s%d, c%d = m%d[1] + n%d, m%d[2] + 1 end", i, i, i, i, i, i, i, i, i, i, i, i, i, i, i, i, i)
        commit[#commit + 1] = string.format("  if n%d ~= nil then m%d[1], m%d[2] = s%d, c%d end\n  state[k%d] = m%d",
          i, i, i, i, i, i, i)
      else
        into[#into + 1] = string.format("  old = state[k%d]\n  if old == nil then old = init%d(op%d) elseif "
          .. "old == null then old = nil end\n  local v%d = agg%d(op%d, old, value, timestamp)\n  if v%d == nil then "
          .. "v%d = null end", i, i, i, i, i, i, i, i)
        commit[#commit + 1] = string.format("  state[k%d] = v%d", i, i)
      end
    end
    src[#src + 1] = "local function aggregate_into(state, value, timestamp)\n" .. table.concat(into, "\n")
    src[#src + 1] = table.concat(commit, "\n")
    src[#src + 1] = "  return state\nend\nreturn initialize, aggregate_value, aggregate_into"
    local chunk = assert(loadstring(table.concat(src, "\n"), "=window aggregations"))
    ops.initialize, ops.aggregate_value, ops.aggregate_into = chunk(agg_keys, agg_ops, null, agg._column_of)
  else
    function ops.initialize()
      local state = {}
      for i = 1, n do
        local v = agg_ops[i]:initialize()
        if v == nil then v = null end
        state[agg_keys[i]] = v
      end
      return state
    end
    function ops.aggregate_value(state, value, timestamp)
      local out = {}
      for i = 1, n do
        local old = state[agg_keys[i]]
        if old == nil then old = agg_ops[i]:initialize() elseif old == null then old = nil end
        local v = agg_ops[i]:agg(old, value, timestamp)
        if v == nil then v = null end
        out[agg_keys[i]] = v
      end
      return out
    end
  end

  function ops.collect_value(value)
    if collect_all then return value end
    if type(value) ~= "table" then
      error(string.format("collect: the value is a %s, not a table with the columns to collect", type(value)), 0)
    end
    local out = {}
    for _, column in ipairs(columns) do
      local v = value[column]
      if v == nil then error(string.format("collect: the value has no column %q", column), 0) end
      out[column] = v
    end
    return out
  end

  function ops.results(aggregated, collected, s, e)
    local out = {}
    for i = 1, n do
      local a = aggregators[i]
      local v = aggregated and aggregated[a.key]
      if v == nil then v = a.op:initialize() elseif v == null then v = nil end
      out[a.name] = detach(a.op:result(v))
    end
    if #collectors > 0 then
      local by_column = {}
      for _, column in ipairs(columns) do
        local list = {}
        for i, item in ipairs(collected) do
          local v = item[column]
          if v == nil then error(string.format("collect: a collected value has no column %q", column), 0) end
          list[i] = v
        end
        by_column[column] = list
      end
      for _, c in ipairs(collectors) do
        local items = c.op.column == nil and collected or by_column[c.op.column]
        out[c.name] = detach(c.op:result(items))
      end
    end
    out.start, out["end"] = s, e
    return setmetatable(out, order)
  end
  return ops
end

-- Window ----------------------------------------------------------------------

local Window = {}
Window.__index = Window
Window.__name = "Window"

-- Logs (or hands to on_late) a message too late for a window (Quix's
-- _on_expired_window). ctx: the message's topic, partition, offset.
local function late(win, ctx, value, key, timestamp, late_by, s, e)
  local to_log = true
  if win.on_late then
    to_log = win.on_late(value, key, timestamp, late_by, s, e, win.name, ctx.topic, ctx.partition, ctx.offset)
  end
  if to_log then
    log.warning("Skipping window processing for the closed window timestamp_ms=%s window=(%s, %s) late_by_ms=%s "
      .. "store_name=%s partition=%s[%s] offset=%s", tostring(timestamp), tostring(s), tostring(e),
      tostring(late_by), win.name, tostring(ctx.topic), tostring(ctx.partition), tostring(ctx.offset))
  end
end
windows.late = late

local FINAL_OPTIONS = argcheck.declare("window:final", { closing_strategy = "string" })
local CURRENT_OPTIONS = argcheck.declare("window:current", { closing_strategy = "string" })

local function closing_strategy(self, call, opts)
  local strategy = opts.closing_strategy
  if strategy == nil then return "key" end
  if self.kind == "count" then
    argcheck.fail("%s: count windows take no closing_strategy (their windows close when full)", call)
  end
  argcheck.one_of(call, "closing_strategy", strategy, { "key", "partition" })
  if self.kind == "sliding" and strategy ~= "key" then
    argcheck.fail("%s: sliding windows only support the \"key\" closing strategy", call)
  end
  return strategy
end

-- The window as a node of its dataframe (Quix's _apply_window): its store
-- is registered with the app, named as Quix names it.
local function apply(self, mode, strategy)
  local sdf = self.sdf
  local app = rawget(sdf, "app")
  if app then
    local stores = app._stores[sdf.topic.name]
    if stores and stores[self.name] then
      argcheck.fail("%s: this window range and type combination already exists on topic '%s' (store %q); "
        .. "to use this window, give it a unique { name = }", self.definition, sdf.topic.name, self.name)
    end
    app:_register_store(sdf.topic, self.name, "windowed", rawget(sdf, "feeds"))
  end
  self.store_topic = sdf.topic.name
  self.mode, self.closing, self.where = mode, strategy, argcheck.where()
  return require("qhost.dataframe")._window_node(sdf, self, self.where)
end

-- window:final{ closing_strategy = "key" }: a result when a window closes.
function Window:final(opts)
  opts = argcheck.options("window:final", opts, FINAL_OPTIONS)
  return apply(self, "final", closing_strategy(self, "window:final", opts))
end

-- window:current{ closing_strategy = "key" }: a result for every window a
-- message updates.
function Window:current(opts)
  opts = argcheck.options("window:current", opts, CURRENT_OPTIONS)
  local strategy = closing_strategy(self, "window:current", opts)
  if self.ops.collect then
    argcheck.fail("window:current: collections are not supported by current windows (use final)")
  end
  return apply(self, "current", strategy)
end

-- The node's function (qhost.runtime.pipeline's builder for "window"):
-- process(value, key, timestamp, headers) calls nxt for each result.
-- rt.window_tx(store) -> fn() giving the window store of the message's
-- partition; rt.ctx: the message's topic, partition, offset.
function Window:_compile(nxt, rt)
  local algorithm = require("qhost.windows." .. self.kind)
  local process = algorithm.compile(self, nxt, rt.ctx)
  local tx_of = rt.window_tx(self.name, self.store_topic)
  local prefix_of = require("qhost.runtime.state.manager").prefix
  local ctx = rt.ctx
  local timed, where = self.kind ~= "count", self.where or "?"
  return function(value, key, timestamp, headers)
    if key == nil then
      -- As Quix: a window needs the key.
      log.warning("Skipping window processing for a message because the key is None, partition='%s[%s]' "
        .. "offset='%s'.", tostring(ctx.topic), tostring(ctx.partition), tostring(ctx.offset))
      return
    end
    -- Time windows are stored by their start and end: whole milliseconds.
    if timed and (type(timestamp) ~= "number" or timestamp % 1 ~= 0) then
      error(string.format("%s (%s): the timestamp must be whole milliseconds, got %s", self.name, where,
        tostring(timestamp)), 0)
    end
    return process(tx_of(), value, key, prefix_of(key), timestamp, headers)
  end
end

argcheck.guard_methods(Window, "Window", "window")

-- Definitions -------------------------------------------------------------------

local Definition = {}
Definition.__index = Definition
Definition.__name = "WindowDefinition"

-- The store's name (Quix's _get_name): "[name_]tumbling_window_60000[_sum]".
local function store_name(self, func_name)
  local base = self.type_name
  if self.user_name then base = self.user_name .. "_" .. base end
  if self.kind == "fixed" or self.kind == "sliding" then
    base = base .. "_" .. string.format("%d", self.duration)
    if self.step then base = base .. "_" .. string.format("%d", self.step) end
  end
  if func_name then base = base .. "_" .. func_name end
  return base
end

local function make_window(self, func_name, aggregators, collectors)
  local ops
  if func_name then
    ops = single_ops(aggregators[1] and aggregators[1].op or collectors[1].op)
  else
    ops = multi_ops(aggregators, collectors)
  end
  -- What user code made or may change goes through JSON when stored.
  ops.copy = not ops.builtin or self.before_update ~= false or self.after_update ~= false
  local w = setmetatable({
    sdf = self.sdf, definition = self.definition, kind = self.kind,
    name = require("qhost.dataframe").store_name(self.sdf, store_name(self, func_name)),
    duration = self.duration, grace = self.grace, step = self.step, max_count = self.max_count, on_late = self.on_late,
    before_update = self.before_update, after_update = self.after_update, ops = ops, mode = false, closing = false,
    where = false,
  }, Window)
  return w
end

local function single(self, func_name, op)
  if agg.is_aggregator(op) then return make_window(self, func_name, { { name = "value", op = op } }, {}) end
  return make_window(self, func_name, {}, { { name = "value", op = op } })
end

-- window:sum() -- and count, mean, max, min, collect: one aggregation of the
-- whole value, the result under "value".
function Definition:sum() return single(self, "sum", agg.Sum()) end
function Definition:count() return single(self, "count", agg.Count()) end
function Definition:mean() return single(self, "mean", agg.Mean()) end
function Definition:max() return single(self, "max", agg.Max()) end
function Definition:min() return single(self, "min", agg.Min()) end
function Definition:collect() return single(self, "collect", agg.Collect()) end

-- window:reduce(reducer, initializer)
function Definition:reduce(reducer, initializer)
  return single(self, "reduce", agg.Reduce(reducer, initializer))
end

-- window:agg{ name = qhost.agg.X(...), ... }: several aggregations, each
-- result under its name.
function Definition:agg(operations)
  if type(operations) ~= "table" or getmetatable(operations) ~= nil then
    argcheck.fail("window:agg expects a table of named aggregations, e.g. { total = qhost.agg.Sum(\"amount\") }")
  end
  local names = {}
  for name in pairs(operations) do
    if type(name) ~= "string" then
      argcheck.fail("window:agg: each aggregation needs a name (name = qhost.agg.X(...)), got a %s key", type(name))
    end
    names[#names + 1] = name
  end
  table.sort(names)
  if operations.start ~= nil or operations["end"] ~= nil then
    argcheck.fail("window:agg: `start` and `end` are reserved for the window boundaries")
  end
  local aggregators, collectors = {}, {}
  for _, name in ipairs(names) do
    local op = operations[name]
    if agg.is_aggregator(op) then
      aggregators[#aggregators + 1] = { name = name, op = op, key = name .. "/" .. op:state_suffix() }
    elseif agg.is_collector(op) then
      collectors[#collectors + 1] = { name = name, op = op }
    else
      argcheck.fail("window:agg: operation `%s` must be an aggregator or a collector (qhost.agg.Sum(...), ...), "
        .. "got %s", name, type(op))
    end
  end
  if #aggregators + #collectors == 0 then
    argcheck.fail("window:agg: at least one aggregator or collector must be given")
  end
  return make_window(self, nil, aggregators, collectors)
end

argcheck.guard_methods(Definition, "WindowDefinition", "window")

local function is_callback(v) return type(v) == "function" or "a function" end

local TIME_OPTIONS = { duration_ms = "integer", grace_ms = "integer", name = "string", on_late = is_callback,
  before_update = is_callback, after_update = is_callback }
local TUMBLING = argcheck.declare("sdf:tumbling_window", TIME_OPTIONS)
local HOPPING = argcheck.declare("sdf:hopping_window", { duration_ms = "integer", step_ms = "integer",
  grace_ms = "integer", name = "string", on_late = is_callback, before_update = is_callback,
  after_update = is_callback })
-- As Quix's sliding_window: no triggers.
local SLIDING = argcheck.declare("sdf:sliding_window", { duration_ms = "integer", grace_ms = "integer",
  name = "string", on_late = is_callback })
local TUMBLING_COUNT = argcheck.declare("sdf:tumbling_count_window", { count = "integer", name = "string" })
local HOPPING_COUNT = argcheck.declare("sdf:hopping_count_window", { count = "integer", step = "integer",
  name = "string" })
local SLIDING_COUNT = argcheck.declare("sdf:sliding_count_window", { count = "integer", name = "string" })

local function need(call, opts, name)
  if opts[name] == nil then argcheck.fail("%s: %s is required", call, name) end
  return opts[name]
end

local function time_definition(sdf, call, opts, spec, type_name, kind, with_step)
  opts = argcheck.options(call, opts, spec)
  local duration = need(call, opts, "duration_ms")
  local grace = opts.grace_ms or 0
  if duration < 1 then argcheck.fail("%s: duration_ms cannot be smaller than 1 ms, got %d", call, duration) end
  if grace < 0 then argcheck.fail("%s: grace_ms cannot be smaller than 0 ms, got %d", call, grace) end
  local step
  if with_step then
    step = need(call, opts, "step_ms")
    if step <= 0 or step >= duration then
      argcheck.fail("%s: step_ms must be smaller than duration_ms and bigger than 0 ms, got %d", call, step)
    end
  end
  return setmetatable({ sdf = sdf, definition = call, type_name = type_name, kind = kind, duration = duration,
    grace = grace, step = step or false, max_count = false, user_name = opts.name or false, on_late = opts.on_late or false,
    before_update = opts.before_update or false, after_update = opts.after_update or false }, Definition)
end

local function count_definition(sdf, call, opts, spec, type_name, with_step)
  opts = argcheck.options(call, opts, spec)
  local count = need(call, opts, "count")
  if count < 2 then argcheck.fail("%s: count must be greater than 1, got %d", call, count) end
  local step
  if with_step == true then
    step = need(call, opts, "step")
    if step < 1 then argcheck.fail("%s: step must be 1 or more, got %d", call, step) end
  elseif with_step then
    step = with_step
  end
  return setmetatable({ sdf = sdf, definition = call, type_name = type_name, kind = "count", max_count = count,
    step = step or false, duration = false, grace = 0, user_name = opts.name or false, on_late = false,
    before_update = false, after_update = false }, Definition)
end

-- The dataframe's window methods (qhost.dataframe installs them).
function windows.tumbling_window(sdf, opts)
  return time_definition(sdf, "sdf:tumbling_window", opts, TUMBLING, "tumbling_window", "fixed", false)
end
function windows.hopping_window(sdf, opts)
  return time_definition(sdf, "sdf:hopping_window", opts, HOPPING, "hopping_window", "fixed", true)
end
function windows.sliding_window(sdf, opts)
  return time_definition(sdf, "sdf:sliding_window", opts, SLIDING, "sliding_window", "sliding", false)
end
function windows.tumbling_count_window(sdf, opts)
  return count_definition(sdf, "sdf:tumbling_count_window", opts, TUMBLING_COUNT, "tumbling_count_window", false)
end
function windows.hopping_count_window(sdf, opts)
  return count_definition(sdf, "sdf:hopping_count_window", opts, HOPPING_COUNT, "hopping_count_window", true)
end
function windows.sliding_count_window(sdf, opts)
  return count_definition(sdf, "sdf:sliding_count_window", opts, SLIDING_COUNT, "sliding_count_window", 1)
end

windows.Window = Window
windows.Definition = Definition
return windows
