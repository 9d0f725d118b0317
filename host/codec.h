/* codec.h: the `qhost.codec` Lua module: JSON encode/decode that keeps object
 * key order (decoded objects remember it in their metatable), plus the
 * 4-byte int and 8-byte double big-endian packers behind the `int` and
 * `double` serializers; and the internal `qhost.runtime.json_at` module,
 * the run loop's in-place decoder.
 * Uses: json_encode.h, json_decode.h (the JSON itself), binary.h (the
 * packers), LuaJIT's Lua 5.1 API and its FFI (through a small Lua chunk:
 * the C API cannot make cdata).
 *
 * How JSON values map to Lua (json_decode) and back (json_encode,
 * json_encode_pretty), following Python's json module:
 * - null is codec.null (a NULL lightuserdata); nil also encodes as null.
 * - Integers (no '.', no exponent) with |n| <= 2^53 are Lua numbers.
 *   Beyond 2^53 but within int64 they are int64_t cdata (as
 *   ffi.new("int64_t", ...)), so that ids and nanosecond timestamps are not
 *   rounded; they compare with == to numbers and to 123LL literals, and
 *   type(v) is "cdata". Beyond int64 they are doubles (rounded).
 * - int64_t and uint64_t cdata encode as plain integers; other cdata are an
 *   encode error.
 * - NaN, Infinity and -Infinity decode to 0/0, math.huge and -math.huge,
 *   and those encode back as NaN, Infinity and -Infinity: not JSON, but
 *   what Python's json.dumps writes by default and json.loads reads.
 * - Other numbers print as Python's repr prints floats: the shortest digits
 *   that read back as the same double (5e-324, 0.1, 1e+16, 1.5e-07), except
 *   that integral values up to 2^53 print as integers (3, not 3.0: Lua
 *   does not tell integers from floats) and -0 prints as 0.
 * - Decode errors return nil, err; so do values the encoder cannot write. */
#ifndef QH_CODEC_H
#define QH_CODEC_H

#include <lua.h>

/* luaopen-style: pushes the module table. Opening it again in the same state
 * returns a table sharing the same codec.null, codec.array_mt and key-order
 * cache, so values decoded through one copy encode right through the other. */
int qh_codec_open(lua_State *L);

/* luaopen-style: pushes the internal module `qhost.runtime.json_at`:
 *   json_decode_at(address, len) -> value | nil, err
 * decodes the JSON text of len bytes at a raw address (a number, from the
 * FFI) without copying it into a Lua string: the run loop's path for
 * message values in librdkafka's buffer. It reads any memory it is given,
 * so it is kept out of `qhost.codec`. Shares qhost.codec's state (array_mt,
 * key-order cache): its values are qhost.codec's. */
int qh_codec_open_json_at(lua_State *L);

#endif
