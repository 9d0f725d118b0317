/* luaclass.h: the one way the host's C modules make a Lua class: a
 * metatable registered under a name, whose __index is a table of methods
 * and whose __gc releases what the userdata owns.
 * Uses: LuaJIT's Lua 5.1 API. */
#ifndef QH_LUACLASS_H
#define QH_LUACLASS_H

#include <lauxlib.h>
#include <lua.h>

/* Registers the metatable `name` (once per state: a second call finds it
 * and changes nothing). gc may be NULL. Leaves the stack as it was. */
void qh_luaclass_register(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc);

/* The same for a class with more metamethods than __gc: metamethods
 * ("__gc", "__tostring", ...; NULL for none) go into the metatable itself. */
void qh_luaclass_register_meta(lua_State *L, const char *name, const luaL_Reg *methods,
                               const luaL_Reg *metamethods);

/* A new full userdata of `size` bytes, zeroed, with the class's metatable,
 * pushed on the stack. Make it before acquiring what it will own, so that a
 * failed allocation (which raises) leaks nothing. */
void *qh_luaclass_new(lua_State *L, const char *name, size_t size);

#endif
