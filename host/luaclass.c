/* luaclass.c: Lua classes of the host's C modules (see luaclass.h). */
#include "luaclass.h"

#include <string.h>

void qh_luaclass_register_meta(lua_State *L, const char *name, const luaL_Reg *methods,
                               const luaL_Reg *metamethods)
{
    if (luaL_newmetatable(L, name)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        if (metamethods) luaL_register(L, NULL, metamethods);
    }
    lua_pop(L, 1);
}

void qh_luaclass_register(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    const luaL_Reg meta[] = { { "__gc", gc }, { NULL, NULL } };
    qh_luaclass_register_meta(L, name, methods, gc ? meta : NULL);
}

void *qh_luaclass_new(lua_State *L, const char *name, size_t size)
{
    void *u = lua_newuserdata(L, size);
    memset(u, 0, size);
    luaL_getmetatable(L, name);
    lua_setmetatable(L, -2);
    return u;
}
