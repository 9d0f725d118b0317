/* luaclass.c: Lua classes of the host's C modules (see luaclass.h). */
#include "luaclass.h"

#include <string.h>

void qh_luaclass_register(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    if (luaL_newmetatable(L, name)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        if (gc) {
            lua_pushcfunction(L, gc);
            lua_setfield(L, -2, "__gc");
        }
    }
    lua_pop(L, 1);
}

void *qh_luaclass_new(lua_State *L, const char *name, size_t size)
{
    void *u = lua_newuserdata(L, size);
    memset(u, 0, size);
    luaL_getmetatable(L, name);
    lua_setmetatable(L, -2);
    return u;
}
