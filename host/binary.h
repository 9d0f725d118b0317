/* binary.h: the big-endian number packers behind the `int` and `double`
 * serializers (as Quix's IntegerSerializer and DoubleSerializer: 4-byte
 * signed int, 8-byte IEEE 754 double).
 * Provides: the Lua C functions codec.pack_int, codec.unpack_int,
 * codec.pack_double and codec.unpack_double (codec.c registers them).
 * Bad data gives nil, err; a wrong argument type raises.
 * Uses: LuaJIT's Lua 5.1 API. */
#ifndef QH_BINARY_H
#define QH_BINARY_H

#include <lua.h>

/* pack_int(n) -> 4-byte string | nil, err (n must be an int32) */
int qh_binary_pack_int(lua_State *L);
/* unpack_int(s) -> number | nil, err (s must be 4 bytes) */
int qh_binary_unpack_int(lua_State *L);
/* pack_double(x) -> 8-byte string */
int qh_binary_pack_double(lua_State *L);
/* unpack_double(s) -> number | nil, err (s must be 8 bytes) */
int qh_binary_unpack_double(lua_State *L);

#endif
