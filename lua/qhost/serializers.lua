-- qhost.serializers: the named serializers of API.md, both ways.
-- Each is { encode = fn(value) -> bytes | nil, err,
--           decode = fn(bytes) -> value | nil, err }.
-- A Kafka null (nil) passes through both ways untouched.
local codec = require("qhost.codec")

local serializers = {}

local function expect_string(kind)
  return function(value)
    if type(value) == "string" then return value end
    return nil, string.format("%s serializer expects a string, got %s", kind, type(value))
  end
end

local function identity(bytes) return bytes end

local NAMED = {
  json = { encode = codec.json_encode, decode = codec.json_decode },
  string = { encode = expect_string("string"), decode = identity },
  bytes = { encode = expect_string("bytes"), decode = identity },
  int = {
    encode = function(value)
      if type(value) ~= "number" then
        return nil, "int serializer expects a number, got " .. type(value)
      end
      local ok, packed = pcall(codec.pack_int, value)
      if not ok then return nil, packed end
      return packed
    end,
    decode = codec.unpack_int,
  },
  double = {
    encode = function(value)
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

-- serializers.get(spec, what) -> serializer. `spec` is a name of API.md or
-- a table with encode/decode (or serialize/deserialize) functions. Raises
-- on an unknown name; `what` names the option for the message.
function serializers.get(spec, what)
  if type(spec) == "string" then
    local s = NAMED[spec]
    if not s then
      error(string.format("%s: unknown serializer %q (json, string, str, bytes, int, integer, double)",
        what, spec), 3)
    end
    return s
  elseif type(spec) == "table" then
    local encode = spec.encode or spec.serialize
    local decode = spec.decode or spec.deserialize
    return { encode = encode or expect_string(what), decode = decode or identity }
  end
  error(string.format("%s: a serializer is a name or a table, got %s", what, type(spec)), 3)
end

function serializers.encode(s, value)
  if value == nil then return nil end
  return s.encode(value)
end

function serializers.decode(s, bytes)
  if bytes == nil then return nil end
  return s.decode(bytes)
end

return serializers
