/* binary.c: big-endian int and double packers (see binary.h). */
#include "binary.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

/* codec.pack_int(n) -> 4-byte big-endian string | nil, err */
int qh_binary_pack_int(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TNUMBER);
    lua_Number n = lua_tonumber(L, 1);
    if (!(n >= -2147483648.0 && n <= 2147483647.0) || n != floor(n)) {
        lua_pushnil(L);
        lua_pushfstring(L, "int value must be an integer from -2147483648 to 2147483647, got %s",
                        lua_tostring(L, 1));
        return 2;
    }
    uint32_t u = (uint32_t)(int32_t)n;
    char out[4] = { (char)(u >> 24), (char)(u >> 16), (char)(u >> 8), (char)u };
    lua_pushlstring(L, out, 4);
    return 1;
}

/* codec.unpack_int(s) -> number | nil, err */
int qh_binary_unpack_int(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    if (n != 4) {
        lua_pushnil(L);
        lua_pushfstring(L, "int payload must be 4 bytes, got %d", (int)n);
        return 2;
    }
    uint32_t u = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
    lua_pushnumber(L, (lua_Number)(int32_t)u);
    return 1;
}

/* codec.pack_double(x) -> 8-byte big-endian IEEE 754 string */
int qh_binary_pack_double(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TNUMBER);
    double x = lua_tonumber(L, 1);
    uint64_t u;
    memcpy(&u, &x, 8);
    char out[8];
    for (int i = 7; i >= 0; i--) {
        out[i] = (char)(u & 0xFF);
        u >>= 8;
    }
    lua_pushlstring(L, out, 8);
    return 1;
}

/* codec.unpack_double(s) -> number | nil, err */
int qh_binary_unpack_double(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    if (n != 8) {
        lua_pushnil(L);
        lua_pushfstring(L, "double payload must be 8 bytes, got %d", (int)n);
        return 2;
    }
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | s[i];
    double x;
    memcpy(&x, &u, 8);
    lua_pushnumber(L, x);
    return 1;
}
