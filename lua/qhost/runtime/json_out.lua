-- qhost.runtime.json_out: the compact JSON text of an app's output value,
-- for the producer (serializers.encode_out). Internal.
--
--   json_out.encode(value, fresh) -> address, len | nil, err
--     fresh: value is a table that holds exactly the keys its remembered
--     order lists (qhost.runtime.pipeline's fresh values): not checked
--   json_out.encode_string(value) -> text | nil (left to the C encoder)
--   json_out.handed_to_c: how many values went to the C encoder
--
-- The same text as codec.json_encode (json_encode.h says what that is),
-- written by Lua code the JIT compiles into the message's trace, where the
-- C encoder is a call through the Lua C API that ends the trace and pays
-- for every table read it makes (7 API calls per member; a 5-member object
-- cost 5,600 instructions). Strings and numbers are written by the host's C
-- escaper and number formatter, called through the FFI, so both encoders
-- write them the same way.
--
-- The common values take this path: strings, numbers, booleans, codec.null,
-- arrays, objects with string keys (in their remembered key order, then
-- keys added since, sorted; or all sorted), up to MAX_DEPTH deep. Anything
-- else (int64 cdata, a value that cannot be encoded, invalid UTF-8, deeper
-- nesting or a cycle) is handed whole to the C encoder, which writes it
-- or reports the error with its path: this path never writes what the C
-- encoder would not.
--
-- A message's decoded object, written while its message is processed, is
-- copied from the message's own text when its members still hold the values
-- decoded (qhost.runtime.json_in's source): the text is what this encoder
-- would write for them (json_in offers only such texts), and one copy
-- replaces a write per member. Members added since are written after it.
--
-- As the C encoder's json_encode_out, the text stays in a buffer of this
-- module, read by address (a number, which the JIT casts to a pointer):
-- valid until the next encode, which nothing but the producer's path makes.
local ffi = require("ffi")
local buffer = require("string.buffer")
local codec = require("qhost.codec")

local c_encode_out = require("qhost.runtime.json_at").json_encode_out
local key_shape = require("qhost.runtime.key_shape")
local source = require("qhost.runtime.json_in").source
local exact_check = key_shape.exact_check

ffi.cdef[[
size_t qh_json_number_format(char *out, double d);
ptrdiff_t qh_ffi_json_string(char *out, const char *s, size_t len);
]]
local C = ffi.C

local type, next, rawget, getmetatable, floor = type, next, rawget, getmetatable, math.floor
local null, array_mt = codec.null, codec.array_mt

local json_out = {}

-- How many values went to the C encoder, and how many were copied from
-- their decoded text (for the tests).
json_out.handed_to_c = 0
json_out.copied = 0

local NUMBER_ROOM = 32     -- QH_JSON_NUMBER_MAX
local MAX_DEPTH = 64       -- deeper values (and cycles) go to the C encoder
local MAX_INDEX = 9007199254740992  -- 2^53: the largest array index the C encoder takes
local BIG_BUFFER = 1048576 -- a buffer grown past this is let go after use
local KEY_CACHE_MAX = 8192

local out = buffer.new(1024)

-- A key's JSON text with its colon ('"key":'), made once per key: keys repeat
-- from message to message. false: the key is not valid UTF-8.
local key_texts, key_count = {}, 0
local scratch = buffer.new(64)

local function key_text(k)
  local text = key_texts[k]
  if text ~= nil then return text end
  scratch:reset()
  local n = #k
  local w = C.qh_ffi_json_string(scratch:reserve(6 * n + 8), k, n)
  if w < 0 then
    text = false
  else
    scratch:commit(w)
    scratch:put(":")
    text = scratch:tostring()
  end
  if key_count >= KEY_CACHE_MAX then key_texts, key_count = {}, 0 end
  key_texts[k] = text
  key_count = key_count + 1
  return text
end

local function put_string(s)
  local n = #s
  local w = C.qh_ffi_json_string(out:reserve(6 * n + 8), s, n)
  if w < 0 then return false end
  out:commit(w)
  return true
end

local function put_number(x)
  out:commit(C.qh_json_number_format(out:reserve(NUMBER_ROOM), x))
end

-- For each remembered key order (the decoder's, shared by the objects of one
-- shape): a set of its string keys, or false when a key repeats (the C
-- encoder writes such a key once; this path leaves those to it).
local order_sets = setmetatable({}, { __mode = "k" })

local function order_set(order)
  local set = order_sets[order]
  if set ~= nil then return set end
  set = {}
  for i = 1, #order do
    local k = order[i]
    if type(k) == "string" then
      if set[k] then set = false break end
      set[k] = true
    end
  end
  order_sets[order] = set
  return set
end

local put_value

-- keys[1..n] sorted bytewise (LuaJIT compares strings by their bytes, as
-- the C encoder's memcmp); objects are small, so an insertion sort.
local function sort_keys(keys, n)
  for i = 2, n do
    local k = keys[i]
    local j = i - 1
    while j >= 1 and keys[j] > k do
      keys[j + 1] = keys[j]
      j = j - 1
    end
    keys[j + 1] = k
  end
end

-- The members of t named keys[1..n], in that order, after `first` (whether
-- none was written yet).
local function put_members(t, keys, n, first, depth)
  for i = 1, n do
    local k = keys[i]
    local text = key_text(k)
    if not text then return false end
    if not first then out:put(",") end
    first = false
    out:put(text)
    if not put_value(rawget(t, k), depth) then return false end
  end
  return true
end

-- For each remembered key order whose objects had keys added or removed
-- since they were decoded (a pipeline setting the same new columns on every
-- message): the keys written the last time, in the order written, which
-- put_object tries as a shape of its own. An order whose objects keep changing stops
-- being widened after MAX_WIDENINGS (each makes a check and a writer).
local widened = setmetatable({}, { __mode = "k" })
local widenings = setmetatable({}, { __mode = "k" })
local MAX_WIDENINGS = 8

local function widen(order, keys)
  local times = widenings[order] or 0
  if times >= MAX_WIDENINGS then return end
  widenings[order] = times + 1
  widened[order] = keys
end

-- An object whose metatable remembers its key order: the keys it still
-- has in that order, then any others sorted. By loops: the general case.
local function put_ordered(t, order, depth)
  local set = order_set(order)
  if not set then return false end
  local count = 0
  for k in next, t do
    if type(k) ~= "string" then return false end
    count = count + 1
  end
  out:put("{")
  local written = {}
  for i = 1, #order do
    local k = order[i]
    if type(k) == "string" then
      local v = rawget(t, k)
      if v ~= nil then
        local text = key_text(k)
        if not text then return false end
        if #written > 0 then out:put(",") end
        out:put(text)
        if not put_value(v, depth) then return false end
        written[#written + 1] = k
      end
    end
  end
  local n = #written
  if n < count then
    -- keys added after decoding: after the remembered ones, sorted
    local extra, e = {}, 0
    for k in next, t do
      if not set[k] then e = e + 1; extra[e] = k end
    end
    sort_keys(extra, e)
    if not put_members(t, extra, e, n == 0, depth) then return false end
    for i = 1, e do written[n + i] = extra[i] end
    key_shape.note_growth(order, e)
  end
  widen(order, written)
  out:put("}")
  return true
end

-- An array of n elements, holes as null.
local function put_array(t, n, depth)
  out:put("[")
  for i = 1, n do
    if i > 1 then out:put(",") end
    local v = rawget(t, i)
    if v == nil then
      out:put("null")
    elseif not put_value(v, depth) then
      return false
    end
  end
  out:put("]")
  return true
end

-- The keys of a table: how many, how many are strings, the largest array
-- index; nil when a key is neither (the C encoder's error). The string keys
-- go to keys[1..nstr] when keys is given: one pass (next is not compiled,
-- each step costs).
local function key_counts(t, keys)
  local count, nstr, maxi = 0, 0, 0
  for k in next, t do
    count = count + 1
    local kt = type(k)
    if kt == "string" then
      nstr = nstr + 1
      if keys then keys[nstr] = k end
    elseif kt == "number" and k >= 1 and k <= MAX_INDEX and k == floor(k) then
      if k > maxi then maxi = k end
    else
      return nil
    end
  end
  return count, nstr, maxi
end

-- For each key list key_shape can check (a remembered order, or one
-- widened): a writer of the objects holding exactly its keys, straight-line
-- code written for it (loadstring) that the JIT compiles into the caller's
-- trace (put_ordered's loops end the trace: "inner loop in root trace").
-- writer(t, depth) -> true, or false when a value cannot be encoded here.
-- false for a list with a key that is not UTF-8.
-- A number or string member is written in line, not by put_value: for a
-- flat object the writer then never calls put_value, which called it
-- (recursion). When put_value got hot before the loop calling it did (a
-- matter of luck per run), LuaJIT ended its trace at the recursive call
-- ("up-recursion") and each value went through three traces instead of
-- one: encode_string of { n = i } in a loop took 99 ns against 84.
local writers = setmetatable({}, { __mode = "k" })

-- The source that writes member k of t (in a writer with locals v and
-- depth) after the text `before` ("{" or ","); nil when k is not UTF-8.
local function member_source(before, k)
  local text = key_text(k)
  if not text then return nil end
  return string.format("  out:put(%q) v = rawget(t, %q)\n", before .. text, k)
    .. "  if type(v) == \"number\" then put_number(v)"
    .. " elseif type(v) == \"string\" then if not put_string(v) then return false end"
    .. " elseif not put_value(v, depth) then return false end"
end

local function make_writer(order)
  local src = { "local rawget, type, put_number, put_string, put_value, out = ...",
    "return function(t, depth)", "  local v" }
  for i = 1, #order do
    local member = member_source(i == 1 and "{" or ",", order[i])
    if not member then return false end
    src[#src + 1] = member
  end
  src[#src + 1] = "  out:put(\"}\")\n  return true\nend"
  return assert(loadstring(table.concat(src, "\n"), "=json writer"))(rawget, type, put_number, put_string,
    put_value, out)
end

-- Whether t holds exactly keys (false too for a list key_shape cannot check).
local function holds_exactly(t, keys)
  local exact = exact_check(keys)
  return exact ~= nil and exact(t)
end

-- t, holding exactly keys, by the writer of keys; nil when keys have none
-- (a key not UTF-8).
local function write_shape(t, keys, depth)
  local writer = writers[keys]
  if writer == nil then writer = make_writer(keys); writers[keys] = writer end
  if writer then return writer(t, depth) end
  return nil
end

-- t by the writer of keys when t holds exactly those keys; nil otherwise.
local function put_shape(t, keys, depth)
  if holds_exactly(t, keys) then return write_shape(t, keys, depth) end
  return nil
end

-- For put_plain, per depth: an array its keys are gathered in, reused
-- (entries past the current count are stale, never read).
local plain_keys = {}

-- For put_plain, per depth: the sorted keys of the last object written
-- there, tried first by put_shape. A source or a pipeline building its
-- values with a table constructor makes the same keys message after
-- message; put_shape's straight-line check and writer stay in the caller's
-- trace, where key_counts' loop over next ends it ("inner loop in root
-- trace": a source's whole run loop then ran in the interpreter). The lists
-- are interned by their keys, so that each set of keys gets its check and
-- writer made once, up to MAX_PLAIN_SHAPES sets.
local plain_shapes = {}
local interned_shapes, interned_count = {}, 0
local MAX_PLAIN_SHAPES = 256

local function remember_shape(keys, n, depth)
  if n > key_shape.MAX_KEYS then return end   -- put_shape could not check it
  -- (two lists may share a text when keys hold "\0": the shape's exact
  -- check then fails for the other's objects, which take the slow path)
  local text = table.concat(keys, "\0", 1, n)
  local shape = interned_shapes[text]
  if shape == nil then
    if interned_count >= MAX_PLAIN_SHAPES then return end
    shape = { unpack(keys, 1, n) }
    interned_shapes[text], interned_count = shape, interned_count + 1
  end
  plain_shapes[depth] = shape
end

-- A table without a remembered order: an array when its keys are exactly
-- 1..n, else an object with its keys sorted.
local function put_plain(t, depth)
  local shape = plain_shapes[depth]
  if shape then
    local done = put_shape(t, shape, depth)
    if done ~= nil then return done end
  end
  local keys = plain_keys[depth]
  if keys == nil then keys = {}; plain_keys[depth] = keys end
  local count, nstr, maxi = key_counts(t, keys)
  if count == nil then return false end
  if count == 0 then out:put("{}") return true end
  if nstr == 0 then
    if maxi ~= count then return false end
    return put_array(t, count, depth)
  end
  if nstr ~= count then return false end
  sort_keys(keys, nstr)
  remember_shape(keys, nstr, depth)
  out:put("{")
  if not put_members(t, keys, nstr, true, depth) then return false end
  out:put("}")
  return true
end

-- The keys an object of a remembered order holds, when exactly those of the
-- order widened (tried first: an order gets widened when its objects are
-- changed) or of the order; nil otherwise.
local function held_keys(t, order)
  local wide = widened[order]
  if wide and holds_exactly(t, wide) then return wide end
  if holds_exactly(t, order) then return order end
  return nil
end

-- An object whose metatable remembers its key order: by the writer of the
-- keys it holds (held_keys), else by put_ordered.
local function put_object(t, order, depth)
  local keys = held_keys(t, order)
  if keys then
    local done = write_shape(t, keys, depth)
    if done ~= nil then return done end
  end
  return put_ordered(t, order, depth)
end

local function put_table(t, depth)
  if depth >= MAX_DEPTH then return false end
  depth = depth + 1
  local mt = getmetatable(t)
  if mt == nil then return put_plain(t, depth) end
  if mt == array_mt then
    local count, nstr, maxi = key_counts(t)
    if count == nil or nstr > 0 or maxi > 2 * count + 16 then return false end
    return put_array(t, maxi, depth)
  end
  if type(mt) ~= "table" then return false end   -- a __metatable field hides it
  local order = rawget(mt, "__qhost_keys")
  if type(order) == "table" then return put_object(t, order, depth) end
  return put_plain(t, depth)
end

put_value = function(v, depth)
  local t = type(v)
  if t == "string" then return put_string(v) end
  if t == "number" then put_number(v) return true end
  if t == "table" then return put_table(v, depth) end
  if t == "boolean" then out:put(v and "true" or "false") return true end
  if v == null then out:put("null") return true end
  return false
end

-- For each decoded order: whether an object's members of that order still
-- hold the values decoded, straight-line code (loadstring):
-- unchanged(t, vals) -> boolean. Asked first: it is cheaper than checking
-- the object's keys, and a pipeline that changes a member of every message
-- then pays only for it.
local unchanged_checks = setmetatable({}, { __mode = "k" })

local function unchanged_check(order)
  local check = unchanged_checks[order]
  if check then return check end
  local src = { "local rawget = ...", "return function(t, vals)" }
  for j = 1, #order do
    src[#src + 1] = string.format("  if rawget(t, %q) ~= vals[%d] then return false end", order[j], j)
  end
  src[#src + 1] = "  return true\nend"
  check = assert(loadstring(table.concat(src, "\n"), "=json unchanged"))(rawget)
  unchanged_checks[order] = check
  return check
end

-- For each key list that begins with a decoded order (the order itself, or
-- one widened from it): a writer of the objects holding exactly those keys,
-- the order's members unchanged, from their decoded text, then the members
-- added, straight-line code like make_writer's:
-- writer(t, addr, len) -> true, or false (a member added cannot be encoded
-- here).
local source_writers = setmetatable({}, { __mode = "k" })
local TEXT = ffi.typeof("const char *")

local function make_source_writer(keys, n)
  local src = { "local rawget, type, put_number, put_string, put_value, out, cast, TEXT = ...",
    "return function(t, addr, len)", "  local v, depth = nil, 1" }
  if #keys == n then
    src[#src + 1] = "  out:putcdata(cast(TEXT, addr), len)"
  else
    src[#src + 1] = "  out:putcdata(cast(TEXT, addr), len - 1)"   -- all but its '}'
    for j = n + 1, #keys do
      local member = member_source(",", keys[j])
      if not member then return false end
      src[#src + 1] = member
    end
    src[#src + 1] = "  out:put(\"}\")"
  end
  src[#src + 1] = "  return true\nend"
  return assert(loadstring(table.concat(src, "\n"), "=json source writer"))(rawget, type, put_number,
    put_string, put_value, out, ffi.cast, TEXT)
end

-- The source writer of keys, whose first n are order's (false when keys do
-- not begin with them, or a key is not UTF-8).
local function source_writer(keys, order)
  local writer = source_writers[keys]
  if writer ~= nil then return writer end
  local n = #order
  writer = #keys >= n
  for j = 1, n do
    if keys[j] ~= order[j] then writer = false break end
  end
  if writer then writer = make_source_writer(keys, n) end
  source_writers[keys] = writer
  return writer
end

-- t, the object json_in holds for the message being processed, from its
-- text: true, false (t cannot be encoded here), or nil when not from its
-- text (nothing written): a member changed or went, or t holds keys that
-- neither its order nor the order widened lists. A fresh t holds exactly
-- its order's keys; any other is checked.
local function put_source(t, fresh)
  local mt = getmetatable(t)
  local order = type(mt) == "table" and rawget(mt, "__qhost_keys")
  if order ~= source.order or not order then return nil end
  if not unchanged_check(order)(t, source.vals) then return nil end
  local keys = order
  if not fresh then
    keys = held_keys(t, order)
    if not keys then return nil end
  end
  local writer = source_writer(keys, order)
  if not writer then return nil end
  return writer(t, source.addr, source.len)
end

-- A fresh table: an object by the writer of its order, its keys unchecked
-- (a key the order lists but the table lacks still fails the writer:
-- put_value of nil); anything else, or an order key_shape cannot check
-- (empty, a repeated key, too long), as any value.
local function put_fresh(t)
  local mt = getmetatable(t)
  local order = type(mt) == "table" and rawget(mt, "__qhost_keys")
  if type(order) == "table" and exact_check(order) then
    local done = write_shape(t, order, 1)
    if done ~= nil then return done end
  end
  return put_value(t, 0)
end

-- json_out.encode_string(value) -> the same JSON text as a Lua string, or
-- nil when this path does not take the value (the caller hands it to the C
-- encoder, which writes it or says why not). For serializers that return
-- bytes (a source's self:serialize). It uses encode's buffer: never call it
-- between an encode and the produce of its address.
-- Empties the buffer for the next text; one grown past BIG_BUFFER is let go.
local function start_text()
  if #out > BIG_BUFFER then out:free() else out:reset() end
end

function json_out.encode_string(value)
  start_text()
  local text
  if put_value(value, 0) then text = out:tostring() end
  out:reset()
  return text
end

function json_out.encode(value, fresh)
  start_text()
  local done
  local held = source.t
  if held ~= nil and value == held then
    done = put_source(value, fresh)
    if done then json_out.copied = json_out.copied + 1 end
  end
  if done == nil then
    if fresh then done = put_fresh(value) else done = put_value(value, 0) end
  end
  if done then
    local ptr, len = out:ref()
    return tonumber(ffi.cast("uintptr_t", ptr)), len
  end
  out:reset()
  json_out.handed_to_c = json_out.handed_to_c + 1
  return c_encode_out(value)
end

return json_out
