-- qhost.runtime.key_shape: does a table hold exactly the keys of a key
-- order (the list a decoded object's metatable remembers, shared by the
-- objects of one shape)? Asked per message by the join's merge and the
-- output encoder (qhost.runtime.json_out).
--
--   key_shape.exact_check(order) -> check(t) -> boolean | nil
--   key_shape.note_growth(order, added); key_shape.growth(order) -> added
--
-- check is straight-line code written for the order (loadstring), made
-- once per order and kept while the order lives: the JIT compiles it into
-- the caller's trace, where a loop over the keys ends the trace ("inner
-- loop in root trace") and so does a call into C (codec.exact_keys). nil
-- for an order it cannot check: empty, a key that repeats or is not a
-- string, or more than MAX_KEYS keys (the caller asks codec.exact_keys).
-- An order must not change once made: it is shared, and checks are cached.
local key_shape = {}

local MAX_KEYS = 32
key_shape.MAX_KEYS = MAX_KEYS

local checks = setmetatable({}, { __mode = "k" })

-- Whether an order can have code written for it, here and in the other
-- generated per-order functions (qhost.runtime.json_in): 1 to MAX_KEYS
-- keys, all strings, none repeated.
function key_shape.checkable(order)
  local n = #order
  if n == 0 or n > MAX_KEYS then return false end
  local seen = {}
  for i = 1, n do
    local k = order[i]
    if type(k) ~= "string" or seen[k] then return false end
    seen[k] = true
  end
  return true
end

-- The source of check for the n keys of a checkable order.
local function check_source(order, n)
  local src = { "local rawget, next = ...", "return function(t)" }
  for i = 1, n do
    src[#src + 1] = string.format("  if rawget(t, %q) == nil then return false end", order[i])
  end
  -- The n keys are there: t has no others when next finds no (n+1)th.
  src[#src + 1] = "  local k = next(t)"
  for _ = 2, n + 1 do src[#src + 1] = "  k = next(t, k)" end
  src[#src + 1] = "  return k == nil\nend"
  return table.concat(src, "\n")
end

local function make_check(order)
  if not key_shape.checkable(order) then return false end
  return assert(loadstring(check_source(order, #order), "=key shape"))(rawget, next)
end

function key_shape.exact_check(order)
  local check = checks[order]
  if check == nil then
    check = make_check(order)
    checks[order] = check
  end
  return check or nil
end

-- How many keys the objects of an order were seen to gain after decoding
-- (qhost.runtime.json_out writes one with keys its order does not list, as
-- when a pipeline adds a field): the decoder of that order
-- (qhost.runtime.json_in) then makes its objects with room for them.
-- Weak: an order lives as long as the metatable holding it.
local growth = setmetatable({}, { __mode = "k" })

function key_shape.note_growth(order, added)
  if added > MAX_KEYS then added = MAX_KEYS end
  if added > (growth[order] or 0) then growth[order] = added end
end

function key_shape.growth(order)
  return growth[order] or 0
end

return key_shape
