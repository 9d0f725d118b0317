-- qhost.joins.merge: how a join makes one value of its two sides (Quix's
-- quixstreams/dataframe/joins/utils.py): on_merge = "keep-left",
-- "keep-right", "raise" or fn(left, right).
--
-- The built-in ones take objects (Lua tables with string keys) and make a
-- new one; a side that is nil or null counts as an empty object (a left
-- join's missing right). The key order is Python's `{**a, **b}`: a's keys,
-- then b's keys that a has not; "keep-left" is `{**right, **left}` (the
-- right's keys first, the left's values win), "keep-right" and "raise" are
-- `{**left, **right}`. A side that is not an object (a number, a string, a
-- JSON array) is an error, as in Python ("... is not a mapping"): a merge
-- function handles those.
--
-- The values a join reads from its store are the store's own: the merges
-- copy the tables they take from a stored side (`copy_right`/`copy_left`)
-- so that what goes downstream never shares a table with the store.
local codec = require("qhost.codec")

local null, array_mt, keys_of, c_exact_keys = codec.null, codec.array_mt, codec.keys_of, codec.exact_keys
local exact_check = require("qhost.runtime.key_shape").exact_check
local sort = table.sort

local merge = {}

-- A deep copy of v that shares nothing with it (metatables kept: key order).
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if type(x) == "table" then x = copy(x) end
    out[k] = x
  end
  return setmetatable(out, getmetatable(v))
end
merge.copy = copy

-- Python's bool(v): what Quix's `if right_value := ...` tests.
merge.truthy = require("qhost.runtime.pytruth")

-- The keys of object t in the order JSON writes them: its remembered order
-- (qhost.codec), then keys added since, sorted (as the encoder does).
local function ordered_keys(t)
  local known = keys_of(t)
  local out, n, extra = {}, 0, nil
  if known then
    local listed = {}
    for i = 1, #known do
      local k = known[i]
      if t[k] ~= nil then n = n + 1; out[n] = k; listed[k] = true end
    end
    for k in pairs(t) do
      if not listed[k] then extra = extra or {}; extra[#extra + 1] = k end
    end
  else
    for k in pairs(t) do extra = extra or {}; extra[#extra + 1] = k end
  end
  if extra then
    sort(extra)
    for i = 1, #extra do n = n + 1; out[n] = extra[i] end
  end
  return out
end
merge.ordered_keys = ordered_keys

local function describe(v)
  if type(v) == "table" then return "a JSON array" end
  return "a " .. type(v)
end

local function is_object(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  if mt == array_mt then return false end
  if mt and rawget(mt, "__qhost_keys") then return true end   -- a decoded object
  for k in pairs(v) do
    if type(k) ~= "string" then return false end
  end
  return true
end

-- v as an object to merge: nil and null are empty (nil); anything else
-- that is not an object raises.
local function object_of(v, side, name, how, where)
  if v == nil or v == null then return nil end
  if is_object(v) then return v end
  error(string.format("%s (%s): on_merge %q merges objects, but the %s value is %s: pass on_merge = "
    .. "function(left, right) ... end to merge other values", how, where, name, side, describe(v)), 0)
end

-- The remembered key list of t when t holds exactly those keys (a decoded
-- object nobody changed: the common case), and its metatable; else nil.
-- trusted: t is known to hold them (a store's own decoded value, which
-- nobody changes, or a fresh value: qhost.runtime.pipeline).
local function exact_keys(t, trusted)
  local mt = getmetatable(t)
  local known = mt and rawget(mt, "__qhost_keys")
  if not known then return nil end
  if not trusted then
    -- (no loop over the keys here: it would split the JIT's trace)
    local exact = exact_check(known)
    if exact then
      if not exact(t) then return nil end
    elseif c_exact_keys(t) == nil then
      return nil
    end
  end
  return known, mt
end

-- The merge of two decoded shapes (key lists ka and kb; nil: no such
-- side), made once per pair: { fn = (fn(a, b, copy_a, copy_b) -> { **a,
-- **b }), overlap = (the keys in both, sorted) }. fn is straight-line code
-- written for the shape (no loop over the keys, which would split the
-- JIT's trace of the message). The last pair is remembered.
local shapes = setmetatable({}, { __mode = "k" })
local NONE = {}
local last_a, last_b, last_shape

local function make_shape(ka, kb)
  local keys, from, seen, overlap = {}, {}, {}, {}
  for _, k in ipairs(ka or {}) do keys[#keys + 1] = k; from[k] = "a"; seen[k] = true end
  for _, k in ipairs(kb or {}) do
    if seen[k] then overlap[#overlap + 1] = k else keys[#keys + 1] = k end
    from[k] = "b"
  end
  sort(overlap)
  -- One table constructor with the keys as constants: LuaJIT copies a
  -- template that has them all, where storing each key into a new table
  -- would insert it (a hash of the key and a search for a free slot).
  local src = { "local copy, type, setmetatable, mt = ...",
    "local function own(v) if type(v) == \"table\" then return copy(v) end return v end",
    "return function(a, b, copy_a, copy_b)", "  return setmetatable({" }
  for _, k in ipairs(keys) do
    local side = from[k]
    src[#src + 1] = string.format("    [%q] = copy_%s and own(%s[%q]) or %s[%q],", k, side, side, k, side, k)
  end
  src[#src + 1] = "  }, mt)\nend"
  local mt = { __qhost_keys = keys }
  local fn = assert(loadstring(table.concat(src, "\n"), "=join merge"))(copy, type, setmetatable, mt)
  return { fn = fn, overlap = overlap }
end

local function shape_of(mta, ka, mtb, kb)
  mta, mtb = mta or NONE, mtb or NONE
  if mta == last_a and mtb == last_b then return last_shape end
  local by_b = shapes[mta]
  if not by_b then
    by_b = setmetatable({}, { __mode = "k" })
    shapes[mta] = by_b
  end
  local shape = by_b[mtb]
  if not shape then
    shape = make_shape(ka, kb)
    by_b[mtb] = shape
  end
  last_a, last_b, last_shape = mta, mtb, shape
  return shape
end

local function overlap_error(how, where, overlap)
  error(string.format("%s (%s): overlapping columns: %s. Pass on_merge = \"keep-left\" or \"keep-right\", "
    .. "or a merge function(left, right)", how, where, table.concat(overlap, ", ")), 0)
end

-- { **a, **b } (b's values winning) when each side is nil or a decoded
-- object as decoded (copy_a/copy_b: a store's side, whose tables are
-- copied; fresh_a/fresh_b: a fresh value); nil otherwise. raise_how/where:
-- an overlap is an error.
local function combine_fast(a, b, copy_a, copy_b, fresh_a, fresh_b, raise_how, where)
  local ka, mta, kb, mtb
  if a then
    ka, mta = exact_keys(a, copy_a or fresh_a)
    if not ka then return nil end
  end
  if b then
    kb, mtb = exact_keys(b, copy_b or fresh_b)
    if not kb then return nil end
  elseif not a then
    return nil
  end
  local shape = shape_of(mta, ka, mtb, kb)
  if raise_how and shape.overlap[1] then overlap_error(raise_how, where, shape.overlap) end
  return shape.fn(a, b, copy_a, copy_b)
end

-- { **a, **b } for any objects (a side nil: none).
local function combine(a, b, copy_a, copy_b)
  local out, keys, n = {}, {}, 0
  if a then
    local list = ordered_keys(a)
    for i = 1, #list do
      local k = list[i]
      local v = a[k]
      if copy_a and type(v) == "table" then v = copy(v) end
      out[k] = v
      n = n + 1
      keys[n] = k
    end
  end
  if b then
    local list = ordered_keys(b)
    for i = 1, #list do
      local k = list[i]
      local v = b[k]
      if copy_b and type(v) == "table" then v = copy(v) end
      if out[k] == nil then n = n + 1; keys[n] = k end
      out[k] = v
    end
  end
  return setmetatable(out, { __qhost_keys = keys })
end

-- merge.new(on_merge, how, where) -> fn(left, right, copy_left, copy_right,
-- fresh_left, fresh_right) -> the merged value. how names the join
-- ("join_asof"), where the user's line, for the errors. copy_left/
-- copy_right: that side is a store's own value (copied where it goes
-- downstream); fresh_left/fresh_right: that side is a fresh value
-- (qhost.runtime.pipeline). The built-in merges make a fresh value.
function merge.new(on_merge, how, where)
  if type(on_merge) == "function" then
    return function(left, right, copy_left, copy_right)
      if copy_left then left = copy(left) end
      if copy_right then right = copy(right) end
      return on_merge(left, right)
    end
  end
  local function objects(left, right)
    return object_of(left, "left", on_merge, how, where), object_of(right, "right", on_merge, how, where)
  end
  if on_merge == "keep-left" then
    return function(left, right, copy_left, copy_right, fresh_left, fresh_right)
      if left == null then left = nil end
      if right == null then right = nil end
      local out = combine_fast(right, left, copy_right, copy_left, fresh_right, fresh_left)
      if out then return out end
      local l, r = objects(left, right)
      return combine(r, l, copy_right, copy_left)
    end
  elseif on_merge == "keep-right" then
    return function(left, right, copy_left, copy_right, fresh_left, fresh_right)
      if left == null then left = nil end
      if right == null then right = nil end
      local out = combine_fast(left, right, copy_left, copy_right, fresh_left, fresh_right)
      if out then return out end
      local l, r = objects(left, right)
      return combine(l, r, copy_left, copy_right)
    end
  end
  -- "raise"
  return function(left, right, copy_left, copy_right, fresh_left, fresh_right)
    if left == null then left = nil end
    if right == null then right = nil end
    local out = combine_fast(left, right, copy_left, copy_right, fresh_left, fresh_right, how, where)
    if out then return out end
    local l, r = objects(left, right)
    if l and r then
      local overlap
      for k in pairs(l) do
        if r[k] ~= nil then overlap = overlap or {}; overlap[#overlap + 1] = k end
      end
      if overlap then
        sort(overlap)
        overlap_error(how, where, overlap)
      end
    end
    return combine(l, r, copy_left, copy_right)
  end
end

return merge
