-- qhost.joins: joining dataframes (Quix's quixstreams/dataframe/joins/,
-- behaviour of Quix Streams 3.28): sdf:join_asof, sdf:join_interval, and
-- sdf:join_lookup with the lookups of qhost.lookups.
--
-- Both stream joins match messages by message key, within partitions of
-- the same number: the two topics must have the same partition count (and
-- the same partitioner), which the app checks at start (check_topics), and
-- the app then consumes in timestamp order across topics
-- (qhost.runtime.aligned), as Quix does.
--
-- join_asof: the right side's messages go into a timestamped store on the
-- right topic (qhost.runtime.state.timestamped, store "join" or { name });
-- a left message takes the right value of its key with the largest
-- timestamp at or before its own (from the key's latest timestamp minus
-- grace_ms on) and goes on merged with it. The right side goes on
-- unchanged (the store is a step of its dataframe, in place, as Quix's
-- update); only left messages come out of the join, with their key,
-- timestamp and headers.
--
-- join_interval: both sides are stored (keeping every value); a left
-- message at t comes out merged with each right value in
-- [t - backward_ms, t], a right message at t with each left value in
-- [t - forward_ms, t]; with no match, "left"/"outer" joins still emit the
-- left message ("right"/"outer" the right one), merged with nil. Outputs
-- have no headers (Quix drops them).
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")
local merge = require("qhost.joins.merge")

local joins = {}

local DAY_MS = 24 * 3600 * 1000
joins.DEFAULT_GRACE_MS = 7 * DAY_MS
local STORE = "join"

local function is_merge(v)
  if type(v) == "function" or v == "keep-left" or v == "keep-right" or v == "raise" then return true end
  return '"keep-left", "keep-right", "raise" or a function(left, right)'
end

local ASOF_OPTIONS = argcheck.declare("sdf:join_asof",
  { how = "string", on_merge = is_merge, grace_ms = "integer", name = "string" })
local INTERVAL_OPTIONS = argcheck.declare("sdf:join_interval",
  { how = "string", on_merge = is_merge, grace_ms = "integer", name = "string", backward_ms = "integer",
    forward_ms = "integer" })
local LOOKUP_OPTIONS = argcheck.declare("sdf:join_lookup", { on = "string|function" })

local Join = {}
Join.__index = Join

local function dataframe_mod() return require("qhost.dataframe") end

-- The checks Quix makes when a join is declared.
local function check_sides(call, left, right)
  if not dataframe_mod().is_dataframe(right) then
    argcheck.fail("%s expects a StreamingDataFrame to join with, got %s", call, type(right))
  end
  if rawget(left, "app") ~= rawget(right, "app") then
    argcheck.fail("%s: both dataframes must belong to the same Application", call)
  end
  if left.topic.name == right.topic.name then
    argcheck.fail("%s: joining dataframes of the same topic ('%s') is not supported", call, left.topic.name)
  end
end

-- The join's store on sdf's topic, registered with the app (its changelog
-- topic is made with the others). Two joins need two names.
local function register_store(call, sdf, store, grace, keep_duplicates)
  local app = rawget(sdf, "app")
  if not app then return end
  local stores = app._stores[sdf.topic.name]
  if stores and stores[store] then
    argcheck.fail("%s: a state store named %q already exists on topic '%s': give this join another { name = }",
      call, store, sdf.topic.name)
  end
  app:_register_store(sdf.topic, store, { kind = "timestamped", grace_ms = grace, keep_duplicates = keep_duplicates })
end

-- Records what check_topics verifies at start, and makes the app consume in
-- timestamp order.
local function note_join(call, left, right, where)
  local app = rawget(left, "app")
  if not app then return end
  app._joins[#app._joins + 1] = { call = call, left = left.topic, right = right.topic, where = where }
  app._time_alignment = true
end

local function new_join(fields)
  return setmetatable(fields, Join)
end

-- sdf:join_asof(right, { how = "inner", on_merge = "raise", grace_ms = 7 days, name = "join" })
function joins.join_asof(left, right, opts)
  local call = "StreamingDataFrame:join_asof"
  opts = argcheck.options(call, opts, ASOF_OPTIONS)
  local how = opts.how or "inner"
  argcheck.one_of(call, "how", how, { "inner", "left" })
  check_sides(call, left, right)
  local where = argcheck.where()
  local grace = opts.grace_ms or joins.DEFAULT_GRACE_MS
  local store = opts.name or STORE
  local on_merge = opts.on_merge or "raise"
  local j = new_join{ kind = "asof", how = how, merge = merge.new(on_merge, "join_asof", where),
    merge_spec = on_merge, grace = grace, store = store, left_topic = left.topic.name,
    right_topic = right.topic.name, where = where }
  register_store(call, right, store, grace, false)
  note_join("join_asof", left, right, where)
  local d = dataframe_mod()
  d._join_node(right, j, "right", true)
  -- Nothing of the right side comes out of the join (Quix's filter(block_all)).
  right:filter(function() return false end)
  return d._join_node(left, j, "left", false)
end

-- sdf:join_interval(right, { how = "inner", on_merge = "raise", grace_ms = 7 days, name = "join",
--   backward_ms = 0, forward_ms = 0 })
function joins.join_interval(left, right, opts)
  local call = "StreamingDataFrame:join_interval"
  opts = argcheck.options(call, opts, INTERVAL_OPTIONS)
  local how = opts.how or "inner"
  argcheck.one_of(call, "how", how, { "inner", "left", "right", "outer" })
  local grace = opts.grace_ms or joins.DEFAULT_GRACE_MS
  local backward, forward = opts.backward_ms or 0, opts.forward_ms or 0
  if backward > grace then
    argcheck.fail("%s: backward_ms (%d) must not be greater than grace_ms (%d): the values it looks back for "
      .. "would be gone", call, backward, grace)
  end
  check_sides(call, left, right)
  local where = argcheck.where()
  local store = opts.name or STORE
  local on_merge = opts.on_merge or "raise"
  local j = new_join{ kind = "interval", how = how, merge = merge.new(on_merge, "join_interval", where),
    merge_spec = on_merge, grace = grace, store = store,
    backward = backward, forward = forward, left_topic = left.topic.name, right_topic = right.topic.name,
    where = where }
  register_store(call, left, store, grace, true)
  register_store(call, right, store, grace, true)
  note_join("join_interval", left, right, where)
  local d = dataframe_mod()
  local l = d._join_node(left, j, "left", false)
  local r = d._join_node(right, j, "right", false)
  return l:concat(r)
end

-- At start, when the topics' partition counts are known: Quix's
-- ensure_topics_copartitioned.
function joins.check_topics(app)
  for _, j in ipairs(app._joins) do
    local nl, nr = j.left:num_partitions(), j.right:num_partitions()
    if nl ~= nr then
      error(string.format("%s (%s): topics '%s' (%d partitions) and '%s' (%d partitions) cannot be joined: a join "
        .. "matches messages by key within partitions of the same number, so both topics need the same partition "
        .. "count (and the same partitioner)", j.call, j.where, j.left.name, nl, j.right.name, nr), 0)
    end
  end
end

-- Compiling -----------------------------------------------------------------

local prefix_of = require("qhost.runtime.state.manager").prefix
local truthy = merge.truthy
local array_mt = codec.array_mt

-- Whether what the join's node of side hands on is fresh
-- (qhost.runtime.pipeline), its input being fresh or not: join_asof's right
-- side hands on its input; the merges' results are fresh when the merge
-- is a built-in one (a merge function is user code).
function Join:fresh_output(side, fresh_in)
  if self.kind == "asof" and side == "right" then return fresh_in end
  return type(self.merge_spec) ~= "function"
end

-- Join:compile(side, nxt, rt, fresh): the node's function
-- (qhost.runtime.pipeline's builder for "join"); fresh: the side's values
-- are fresh. rt.join_tx(topic, store) -> fn() -> the store's transaction
-- for the message's partition.
function Join:compile(side, nxt, rt, fresh)
  fresh = fresh and true or false
  if self.kind == "asof" then
    local tx_of = rt.join_tx(self.right_topic, self.store,
      { kind = "timestamped", grace_ms = self.grace, keep_duplicates = false })
    if side == "right" then
      return function(value, key, timestamp, headers)
        tx_of():set_for_timestamp(prefix_of(key), timestamp, value)
        return nxt(value, key, timestamp, headers)
      end
    end
    local merge_fn, inner = self.merge, self.how == "inner"
    return function(value, key, timestamp, headers)
      local right = tx_of():get_latest(prefix_of(key), timestamp)
      if truthy(right) then return nxt(merge_fn(value, right, false, true, fresh), key, timestamp, headers) end
      if not inner then return nxt(merge_fn(value, nil, false, false, fresh), key, timestamp, headers) end
    end
  end
  local opts = { kind = "timestamped", grace_ms = self.grace, keep_duplicates = true }
  local left_tx, right_tx = rt.join_tx(self.left_topic, self.store, opts), rt.join_tx(self.right_topic, self.store, opts)
  local merge_fn, how = self.merge, self.how
  local function emit(outs, key, timestamp)
    for i = 1, #outs do nxt(outs[i], key, timestamp, setmetatable({}, array_mt)) end
  end
  if side == "left" then
    local backward, unmatched = self.backward, how == "left" or how == "outer"
    return function(value, key, timestamp)
      local prefix = prefix_of(key)
      left_tx():set_for_timestamp(prefix, timestamp, value)
      local rights = right_tx():get_interval(prefix, timestamp - backward, timestamp + 1)
      local outs = {}
      if #rights > 0 then
        for i = 1, #rights do outs[i] = merge_fn(value, rights[i], false, true, fresh) end
      elseif unmatched then
        outs[1] = merge_fn(value, nil, false, false, fresh)
      end
      return emit(outs, key, timestamp)
    end
  end
  local forward, unmatched = self.forward, how == "right" or how == "outer"
  return function(value, key, timestamp)
    local prefix = prefix_of(key)
    right_tx():set_for_timestamp(prefix, timestamp, value)
    local lefts = left_tx():get_interval(prefix, timestamp - forward, timestamp + 1)
    local outs = {}
    if #lefts > 0 then
      for i = 1, #lefts do outs[i] = merge_fn(lefts[i], value, true, false, false, fresh) end
    elseif unmatched then
      outs[1] = merge_fn(nil, value, false, false, false, fresh)
    end
    return emit(outs, key, timestamp)
  end
end

-- Lookup joins ------------------------------------------------------------------

-- sdf:join_lookup(lookup, fields, { on = column or fn(value, key) }):
-- each message's value is enriched in place by lookup:join(fields, on,
-- value, key, timestamp, headers) (qhost.lookups), with `on` the column's
-- value, fn's result, or (by default) the message key. In place, as Quix's.
function joins.join_lookup(sdf, lookup, fields, opts)
  local call = "StreamingDataFrame:join_lookup"
  opts = argcheck.options(call, opts, LOOKUP_OPTIONS)
  local lookups = require("qhost.lookups")
  if not lookups.is_lookup(lookup) then
    argcheck.fail("%s expects a lookup (qhost.lookups.SQLiteLookup{ ... } or a BaseLookup subclass), got %s",
      call, type(lookup))
  end
  lookup:check_fields(fields, call)
  local on = opts.on
  local where = argcheck.where()
  local target_of
  if on == nil then
    target_of = function(_, key) return key end
  elseif type(on) == "string" then
    target_of = function(value)
      if type(value) ~= "table" then
        error(string.format("join_lookup (%s): the value is a %s, not a table with the column %q", where,
          type(value), on), 0)
      end
      local target = value[on]
      if target == nil then error(string.format("join_lookup (%s): the value has no column %q", where, on), 0) end
      return target
    end
  else
    target_of = on
  end
  return sdf:update(function(value, key, timestamp, headers)
    lookup:join(fields, target_of(value, key), value, key, timestamp, headers)
  end, { metadata = true })
end

-- sdf:test --------------------------------------------------------------------

-- The root of the dataframe consuming `topic` (sdf:test{ topic = }).
function joins.test_root(sdf, topic)
  local app = rawget(sdf, "app")
  if app then
    for _, other in ipairs(app._dataframes) do
      if other.topic.name == topic.name then return other.root end
    end
  end
  if sdf.topic and sdf.topic.name == topic.name then return sdf.root end
  argcheck.fail("StreamingDataFrame:test: no dataframe of this app consumes topic '%s'", tostring(topic.name))
end

-- rt.join_tx for sdf:test: stores in memory, kept on the root's table.
function joins.test_stores(root)
  return function(topic, store, opts)
    local stores = rawget(root, "test_joins") or {}
    rawset(root, "test_joins", stores)
    local name = topic .. "--" .. store
    if not stores[name] then
      local windowed = require("qhost.runtime.state.windowed")
      stores[name] = require("qhost.runtime.state.timestamped").new(windowed.memory_partition(), opts)
    end
    local tx = stores[name]
    return function() return tx end
  end
end

return joins
