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

local null, array_mt, keys_of = codec.null, codec.array_mt, codec.keys_of
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
function merge.truthy(v)
  if v == nil or v == null or v == false then return false end
  local t = type(v)
  if t == "number" or t == "cdata" then return v ~= 0 end
  if t == "string" then return v ~= "" end
  if t == "table" then return next(v) ~= nil end
  return true
end

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
  if type(v) ~= "table" or getmetatable(v) == array_mt then return false end
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

-- { **a, **b } with b's values winning; copy_a/copy_b: copy a side's
-- tables (a stored side).
local function combine(a, b, copy_a, copy_b)
  local out, keys, n = {}, {}, 0
  if a then
    local ka = ordered_keys(a)
    for i = 1, #ka do
      local k = ka[i]
      local v = a[k]
      if copy_a and type(v) == "table" then v = copy(v) end
      out[k] = v
      n = n + 1
      keys[n] = k
    end
  end
  if b then
    local kb = ordered_keys(b)
    for i = 1, #kb do
      local k = kb[i]
      local v = b[k]
      if copy_b and type(v) == "table" then v = copy(v) end
      if out[k] == nil then n = n + 1; keys[n] = k end
      out[k] = v
    end
  end
  return setmetatable(out, { __qhost_keys = keys })
end

-- merge.new(on_merge, how, where) -> fn(left, right, copy_left, copy_right)
-- -> the merged value. how names the join ("join_asof"), where the user's
-- line, for the errors.
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
    return function(left, right, copy_left, copy_right)
      local l, r = objects(left, right)
      return combine(r, l, copy_right, copy_left)
    end
  elseif on_merge == "keep-right" then
    return function(left, right, copy_left, copy_right)
      local l, r = objects(left, right)
      return combine(l, r, copy_left, copy_right)
    end
  end
  -- "raise"
  return function(left, right, copy_left, copy_right)
    local l, r = objects(left, right)
    if l and r then
      local overlap
      for k in pairs(l) do
        if r[k] ~= nil then overlap = overlap or {}; overlap[#overlap + 1] = k end
      end
      if overlap then
        sort(overlap)
        error(string.format("%s (%s): overlapping columns: %s. Pass on_merge = \"keep-left\" or \"keep-right\", "
          .. "or a merge function(left, right)", how, where, table.concat(overlap, ", ")), 0)
      end
    end
    return combine(l, r, copy_left, copy_right)
  end
end

return merge
