-- Helpers for the specs of the JSON fast paths (json_in_spec, json_source_spec):
-- texts decoded by the C decoder, slots that learned a shape, and texts in
-- memory of exactly their length.
local ffi = require("ffi")
local json_in = require("qhost.runtime.json_in")
local json_decode_at = require("qhost.runtime.json_at").json_decode_at

pcall(ffi.cdef, "void *malloc(size_t); void free(void *);")

local json_text = {}

-- The C decoder's result for text.
function json_text.c_decode(text)
  local buf = ffi.new("char[?]", #text + 1, text)
  return json_decode_at(tonumber(ffi.cast("uintptr_t", buf)), #text)
end

-- A slot that has learned the shape of text (two objects of it in a row).
function json_text.slot_for(text)
  local slot = json_in.slot()
  for _ = 1, 2 do json_in.learn(slot, (json_text.c_decode(text))) end
  return slot
end

-- text in memory of exactly its length (reading past it is a bug that ASan
-- sees), freed when the pointer is collected.
function json_text.bytes(text)
  local buf = ffi.C.malloc(math.max(#text, 1))
  ffi.copy(buf, text, #text)
  return ffi.gc(ffi.cast("char *", buf), ffi.C.free)
end

return json_text
