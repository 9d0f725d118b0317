/* codec.h: the `qhost.codec` Lua module: JSON encode/decode that keeps object
 * key order (decoded objects remember it in their metatable), plus the
 * 4-byte int and 8-byte double big-endian packers behind the `int` and
 * `double` serializers. Also exports, for other C units (csv.c), a growable
 * byte buffer and the JSON string escaper, so every JSON string the host
 * writes is escaped the same way. Uses: LuaJIT's Lua 5.1 API and its FFI
 * (through a small Lua chunk: the C API cannot make cdata), libc.
 *
 * How JSON values map to Lua (json_decode, json_decode_at) and back
 * (json_encode, json_encode_pretty), following Python's json module:
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

#include <stddef.h>
#include <lua.h>

/* luaopen-style: pushes the module table. Opening it again in the same state
 * returns a table sharing the same codec.null, codec.array_mt and key-order
 * cache, so values decoded through one copy encode right through the other. */
int qh_codec_open(lua_State *L);

/* A growable byte buffer. Zero-initialise it; qh_buf_free releases it. */
typedef struct qh_buf {
    char *data;
    size_t len, cap;
} qh_buf;

/* Makes room for `extra` more bytes. Returns 0, or -1 when out of memory
 * (the buffer is left as it was). */
int qh_buf_reserve(qh_buf *b, size_t extra);
void qh_buf_free(qh_buf *b);

enum { QH_JSON_OK = 0, QH_JSON_ENOMEM = -1, QH_JSON_EUTF8 = -2 };

/* Appends s as a quoted JSON string: `"` and `\` escaped, control characters
 * as \n \r \t \b \f or \u00XX, other UTF-8 passed through (as Python's
 * json.dumps(ensure_ascii=False)), except that surrogate code points (which
 * codec.json_decode produces for lone \uD8xx escapes) are written back as
 * \uXXXX escapes so the output stays valid UTF-8. Returns QH_JSON_OK,
 * QH_JSON_ENOMEM, or QH_JSON_EUTF8 when s is not UTF-8 with lone
 * surrogates (WTF-8: a high surrogate followed by a low one is an error, as
 * its two escapes would read back as another character) (b->len unchanged
 * on error). */
int qh_json_append_string(qh_buf *b, const char *s, size_t len);

#endif
