-- qhost.runtime.json_in: a message's JSON object decoded by Lua code the
-- JIT compiles into the message's trace, for objects of a shape the C
-- decoder (host/json_decode.c) decoded before. Internal.
--
--   local slot = json_in.slot()              one per topic
--   local v = json_in.try(slot, ptr, len)    the object, or nil: not taken
--   (nil: v, err = the C decoder's; then json_in.learn(slot, v))
--   json_in.adapt(slot)                      before a batch (room for keys
--                                            a pipeline adds, see keys_for_room)
--
-- The C decoder is a call through the Lua C API that ends the trace and
-- builds the table a key at a time (500 ns for the pipeline benchmark's
-- 8-member message). Messages of a topic mostly share one shape: the same
-- keys in the same order. For the shape of the last object the C decoder
-- made, a decoder is written as straight-line Lua (loadstring): it matches
-- the keys' bytes, reads each value (numbers and escape-free strings by
-- the C decoder's own readers, through the FFI; true, false, null) and
-- makes the object with one table constructor, with the C decoder's
-- metatable for that shape (so the object is the one the C decoder would
-- have made). It takes only the text it is sure of: an object of exactly
-- those keys, compact or with one space after ':' and ','; values that are
-- not nested objects or arrays; nothing around it. Anything else (another
-- shape, nesting, escapes, NaN, int64 integers, whitespace elsewhere,
-- invalid JSON) is left to the C decoder, which reads it or reports the
-- error: this path never takes what the C decoder would not, nor reads it
-- differently. A shape whose messages it keeps leaving to the C decoder
-- (MISSES_TO_GIVE_UP in a row) is not tried again.
--
-- The text of an object it made may be copied to the output as it is
-- (qhost.runtime.json_out), while its message is processed and its bytes
-- are still in the consumer's batch:
--   json_in.hold(v, ptr, len)   v was just decoded from ptr: it may be
--   json_in.release()           the message is done: no longer
--   json_in.source              { t, order, vals, addr, len }: t (or nil)
--     was decoded from the len bytes at address addr, the members of its
--     order holding vals[1..#order]
-- The decoder offers an object for that (source.pending) only when its text
-- is what the encoder writes for those values: compact, every string
-- escape-free, every number as qh_json_number_format writes it back
-- (qh_ffi_json_number_read's sign), which the encoder then checks by
-- comparing the values, not by writing them.
local ffi = require("ffi")
local codec = require("qhost.codec")
local key_shape = require("qhost.runtime.key_shape")
local checkable = key_shape.checkable

ffi.cdef[[
int32_t qh_ffi_json_plain_string(const char *p, const char *end);
int32_t qh_ffi_json_number_read(const char *p, const char *end, double *out);
]]
local C = ffi.C

local null = codec.null
local byte, format, concat = string.byte, string.format, table.concat

local json_in = {}

local MISSES_TO_GIVE_UP = 16

local BYTES = ffi.typeof("const uint8_t *")
local number_out = ffi.new("double[1]")

-- The value at p[i] (i < n), the index after it, and whether the encoder
-- writes that value as exactly its text; nil when it is not a number, an
-- escape-free string, true, false or null.
local function value_at(p, i, n)
  local c = p[i]
  if c == 34 then      -- "
    local len = C.qh_ffi_json_plain_string(ffi.cast("const char *", p + i + 1), ffi.cast("const char *", p + n))
    if len < 0 then return nil end
    return ffi.string(p + i + 1, len), i + 2 + len, true
  end
  if c == 45 or (c >= 48 and c <= 57) then   -- - or a digit
    local len = C.qh_ffi_json_number_read(ffi.cast("const char *", p + i), ffi.cast("const char *", p + n),
      number_out)
    if len == 0 then return nil end
    if len < 0 then return number_out[0], i - len, false end
    return number_out[0], i + len, true
  end
  if c == 116 then     -- true
    if i + 4 <= n and p[i + 1] == 114 and p[i + 2] == 117 and p[i + 3] == 101 then return true, i + 4, true end
  elseif c == 102 then -- false
    if i + 5 <= n and p[i + 1] == 97 and p[i + 2] == 108 and p[i + 3] == 115 and p[i + 4] == 101 then
      return false, i + 5, true
    end
  elseif c == 110 then -- null
    if i + 4 <= n and p[i + 1] == 117 and p[i + 2] == 108 and p[i + 3] == 108 then return null, i + 4, true end
  end
  return nil
end

-- The object whose text may be copied to the output (see the top).
local source = { t = nil, pending = nil, order = nil, vals = {}, addr = 0, len = 0 }
json_in.source = source

-- A key the decoder can match by its bytes: printable ASCII without " and
-- \ (its JSON text is its bytes).
local function plain_key(k)
  return #k > 0 and not k:find('[^\32-\126]') and not k:find('["\\]')
end

-- How many keys without a value (nil) a constructor of n keys needs to
-- leave room for `room` more. LuaJIT sizes a constructor's table for all
-- its keys, nil ones too (a power of two, 2 at least), and a key added
-- later takes a node without a key; in a full table it makes a new table
-- twice the size and moves every key there: an object of 8 keys made and
-- given a 9th took 135 ns, against 75 ns when made with room (and 50 ns
-- when made exactly and given none, so room is made only for what the
-- objects of a shape were seen to gain: key_shape.growth).
local function keys_for_room(n, room)
  if room <= 0 then return 0 end
  local extra = 0
  while true do
    local size = 2
    while size < n + extra do size = size * 2 end
    if size >= n + extra + room then return extra end
    extra = extra + 1
  end
end
json_in._keys_for_room = keys_for_room

-- The source of the decoder of order (its keys), or nil when it takes no
-- such decoder: an order key_shape takes, of keys matched by their bytes.
-- Its objects have room for `room` keys more (default 0).
local function decoder_source(order, room)
  if not checkable(order) then return nil end
  local n = #order
  for i = 1, n do
    if not plain_key(order[i]) then return nil end
  end
  -- back: the text so far is what the encoder writes (see the top)
  local src = { "local value_at, setmetatable, mt, source, order = ...", "return function(p, n)",
    "  if n < 2 or p[0] ~= 123 then return nil end", "  local i, back, b = 1, true" }
  local fields = {}
  for j = 1, n do
    local k = order[j]
    local text = '"' .. k .. '":'
    local checks = {}
    for b = 1, #text do checks[b] = format("p[i + %d] ~= %d", b - 1, byte(text, b)) end
    src[#src + 1] = format("  if i + %d > n or %s then return nil end", #text, concat(checks, " or "))
    src[#src + 1] = format("  i = i + %d", #text)
    src[#src + 1] = "  if i < n and p[i] == 32 then i, back = i + 1, false end"
    src[#src + 1] = "  if i >= n then return nil end"
    src[#src + 1] = format("  local v%d\n  v%d, i, b = value_at(p, i, n)\n  if not i or i >= n then return nil end", j, j)
    src[#src + 1] = "  back = back and b"
    if j < n then
      src[#src + 1] = "  if p[i] ~= 44 then return nil end\n  i = i + 1"
      src[#src + 1] = "  if i < n and p[i] == 32 then i, back = i + 1, false end"
    else
      src[#src + 1] = "  if p[i] ~= 125 or i + 1 ~= n then return nil end"
    end
    fields[j] = format("[%q] = v%d", k, j)
  end
  -- the room: keys no JSON object of this shape has (plain_key refuses
  -- "\0"), without values, which next, pairs and the encoder never see
  for r = 1, keys_for_room(n, room or 0) do fields[#fields + 1] = format("[\"\\0room%d\"] = nil", r) end
  -- one constructor with the keys as constants: a copy of a template
  -- holding them, not an insert per key
  src[#src + 1] = "  local t = setmetatable({ " .. concat(fields, ", ") .. " }, mt)"
  -- offered for copying: the values, to tell whether they changed
  local vals = {}
  for j = 1, n do vals[j] = format("vals[%d] = v%d", j, j) end
  src[#src + 1] = "  if back then\n    local vals = source.vals\n    " .. concat(vals, "; ")
    .. "\n    source.pending, source.order = t, order\n  else\n    source.pending = nil\n  end"
  src[#src + 1] = "  return t\nend"
  return concat(src, "\n")
end

-- The decoder of the objects with metatable mt (the C decoder's, for a
-- shape) with room for `room` keys more, made once; false when there is
-- none (or the shape was given up).
local decoders = setmetatable({}, { __mode = "k" })   -- mt -> { [room] = decode | false }
local given_up = setmetatable({}, { __mode = "k" })

local function order_of(mt)
  local order = type(mt) == "table" and rawget(mt, "__qhost_keys")
  return type(order) == "table" and order or nil
end

local function decoder_for(mt, room)
  if given_up[mt] then return false end
  local by_room = decoders[mt]
  if not by_room then by_room = {}; decoders[mt] = by_room end
  local decode = by_room[room]
  if decode ~= nil then return decode end
  decode = false
  local order = order_of(mt)
  local src = order and decoder_source(order, room)
  if src then decode = assert(loadstring(src, "=json shape"))(value_at, setmetatable, mt, source, order) end
  by_room[room] = decode
  return decode
end

-- room: what the slot's decoder leaves room for (decoder_for).
function json_in.slot()
  return { decode = nil, mt = nil, misses = 0, room = 0 }
end

-- The slot's decoder: for its shape, with room for `room` keys more.
local function use_decoder(slot, room)
  slot.decode, slot.room = decoder_for(slot.mt, room) or nil, room
end

-- Before a batch: when the objects of the slot's shape were seen to gain
-- keys (key_shape.growth) since its decoder was made, the decoder making
-- them with room for those keys.
function json_in.adapt(slot)
  if not slot.decode or slot.mt == nil then return end
  local room = key_shape.growth(order_of(slot.mt))
  if room > slot.room then use_decoder(slot, room) end
end

-- The object at ptr (a pointer to len bytes) by the slot's decoder, or nil.
function json_in.try(slot, ptr, len)
  local decode = slot.decode
  if not decode then return nil end
  local v = decode(ffi.cast(BYTES, ptr), tonumber(len))
  if v ~= nil then slot.misses = 0 end
  return v
end

-- v, just decoded from the len bytes at ptr, which stay where they are
-- until json_in.release(): its text may be copied to the output meanwhile
-- when the decoder offered it.
function json_in.hold(v, ptr, len)
  if v ~= nil and v == source.pending then
    source.t, source.addr, source.len = v, tonumber(ffi.cast("uintptr_t", ptr)), tonumber(len)
  else
    source.t = nil
  end
  source.pending = nil
end

-- The held object's bytes may go: its text is not copied any more.
function json_in.release()
  source.t = nil
end

-- After the C decoder read a message of the slot's topic (value v): the
-- shape of two such objects in a row is the one tried next (the C decoder
-- keeps one metatable per shape, for the first QH_JSON_KEY_CACHE_MAX
-- shapes; beyond those each object has its own, and no decoder is made);
-- a shape tried and left to the C decoder MISSES_TO_GIVE_UP times in a
-- row is given up.
function json_in.learn(slot, v)
  if type(v) ~= "table" then return end
  local mt = getmetatable(v)
  if mt == nil then return end
  if mt ~= slot.mt then
    slot.mt, slot.decode, slot.misses = mt, nil, 0
  elseif slot.decode then
    slot.misses = slot.misses + 1
    if slot.misses >= MISSES_TO_GIVE_UP then
      given_up[mt] = true
      slot.decode = nil
    end
  else
    use_decoder(slot, key_shape.growth(order_of(mt)))
  end
end

-- For the specs: the source of the decoder of an order.
json_in._source = decoder_source

return json_in
