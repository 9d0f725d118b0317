-- qhost.serializers: the named serializers of API.md, both ways.
-- Each is { encode = fn(value) -> bytes | nil, err,
--           decode = fn(bytes) -> value | nil, err }.
-- A Kafka null (nil) passes through both ways untouched.
local argcheck = require("qhost.runtime.argcheck")
local codec = require("qhost.codec")
local json_numbers = require("qhost.runtime.json_numbers")

local serializers = {}

local ffi = require("ffi")
local INT64, UINT64 = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local function is_int64(v) return ffi.istype(INT64, v) or ffi.istype(UINT64, v) end

local function expect_string(kind)
  return function(value)
    if type(value) == "string" then return value end
    return nil, string.format("%s serializer expects a string, got %s", kind, type(value))
  end
end

local function identity(bytes) return bytes end

local json_encode, number_text = codec.json_encode, json_numbers.text
local json_out = require("qhost.runtime.json_out")
local json_encode_out, json_encode_string = json_out.encode, json_out.encode_string

local NAMED = {
  -- A number (a count, a sum: what many pipelines produce) is written
  -- without a call into C when Lua prints it exactly as the codec does.
  json = {
    -- A value of nil is written as JSON null, as Quix's JSONSerializer
    -- writes None (never a Kafka null, which deletes the key of a compacted
    -- topic); the other serializers pass it on as a Kafka null, as Quix's.
    encodes_nil = true,
    -- A table is written by Lua code the JIT compiles into the caller's
    -- trace (qhost.runtime.json_out), the same text as the C encoder's,
    -- which is a call through the Lua C API per member.
    encode = function(value)
      local t = type(value)
      if t == "number" then
        local text = number_text(value)
        if text then return text end
      elseif t == "table" then
        local text = json_encode_string(value)
        if text then return text end
      end
      return json_encode(value)
    end,
    -- An object or array for the producer: see serializers.encode_out.
    encode_table_out = json_encode_out,
    decode = codec.json_decode,
  },
  string = { encode = expect_string("string"), decode = identity },
  bytes = { encode = expect_string("bytes"), decode = identity },
  int = {
    -- pack_int returns nil, err for a number that is not a 32-bit integer:
    -- both results are passed on, so the error is never lost (a lost one
    -- turned into a null value, i.e. a tombstone).
    encode = function(value)
      if type(value) == "cdata" and is_int64(value) then
        if value < -2147483648 or value > 2147483647 then
          return nil, "int value must be an integer from -2147483648 to 2147483647, got "
            .. tostring(value):gsub("U?LL$", "")
        end
        value = tonumber(value)
      end
      if type(value) ~= "number" then
        return nil, "int serializer expects an integer, got " .. type(value)
      end
      return codec.pack_int(value)
    end,
    decode = codec.unpack_int,
  },
  double = {
    encode = function(value)
      if type(value) == "cdata" and is_int64(value) then value = tonumber(value) end
      if type(value) ~= "number" then
        return nil, "double serializer expects a number, got " .. type(value)
      end
      return codec.pack_double(value)
    end,
    decode = codec.unpack_double,
  },
}
NAMED.str = NAMED.string
NAMED.integer = NAMED.int

-- A user's function that raises fails like a built-in one: nil, err.
local function protected(fn)
  return function(x)
    local ok, result, err = pcall(fn, x)
    if not ok then return nil, tostring(result) end
    return result, err
  end
end

-- serializers.get(spec, what) -> serializer. `spec` is a name of API.md or
-- a table with encode/decode (or serialize/deserialize) functions. Raises
-- on an unknown name; `what` names the option for the message.
function serializers.get(spec, what)
  if type(spec) == "string" then
    local s = NAMED[spec]
    if not s then
      local hint = argcheck.closest(spec, { "json", "string", "str", "bytes", "int", "integer", "double" })
      argcheck.fail("%s: unknown serializer %q%s (json, string, str, bytes, int, integer, double)", what, spec,
        hint and string.format("; did you mean %q?", hint) or "")
    end
    return s
  elseif type(spec) == "table" then
    local encode = spec.encode or spec.serialize
    local decode = spec.decode or spec.deserialize
    return { encode = encode and protected(encode) or expect_string(what),
             decode = decode and protected(decode) or identity }
  end
  argcheck.fail("%s: a serializer is a name or a table, got %s", what, type(spec))
end

-- serializers.encode(s, value) -> bytes | nil, err. A failure is always
-- an error, never a silent nil (which Kafka reads as a null): a custom
-- serializer that raises, returns nothing, or returns a non-string is
-- reported as such (custom ones run protected, see serializers.get).
function serializers.encode(s, value)
  if value == nil and not s.encodes_nil then return nil end
  local bytes, err = s.encode(value)
  if bytes == nil then return nil, tostring(err or "the serializer returned nothing") end
  if type(bytes) ~= "string" then
    return nil, "the serializer returned a " .. type(bytes) .. ", not bytes (a string)"
  end
  return bytes
end

-- serializers.encode_out(s, value) -> bytes, len | nil, nil, err: as
-- serializers.encode, for a value that goes straight to the producer, which
-- copies it: a table through the json serializer comes back as the address
-- of its text in an encoder's buffer (qhost.runtime.json_out; a number),
-- valid only until the next encode_out, and not as a Lua string (making one per output
-- costs more than the encoding). len is the text's length (0 for nil).
-- fresh: the table holds exactly the keys its order lists
-- (qhost.runtime.pipeline), which the encoder then need not check.
function serializers.encode_out(s, value, fresh)
  local table_out = s.encode_table_out
  if table_out and type(value) == "table" then
    local address, len = table_out(value, fresh)
    if address == nil then return nil, nil, tostring(len) end
    return address, len
  end
  local bytes, err = serializers.encode(s, value)
  if err then return nil, nil, err end
  return bytes, bytes and #bytes or 0
end

-- Whether s hands the bytes on as they are (string, bytes): its decode
-- never fails.
function serializers.passes_bytes(s)
  return s.decode == identity
end

function serializers.decode(s, bytes)
  if bytes == nil then return nil end
  return s.decode(bytes)
end

return serializers
