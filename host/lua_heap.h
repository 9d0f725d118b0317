/* lua_heap.h: the memory of a source process's LuaJIT state (lua_heap.c
 * says why it does not use LuaJIT's own allocator, and why only there).
 * Provides: a state on a heap of its own (qh_lua_heap_newstate), closed
 * with qh_lua_heap_close; the heap alone, for tests (qh_lua_heap_new,
 * qh_lua_heap_alloc: a lua_Alloc, qh_lua_heap_destroy).
 * A heap serves one state and so one thread at a time: it takes no lock.
 * Blocks of up to QH_LUA_HEAP_SMALL_MAX bytes are kept for reuse once freed,
 * until the heap is destroyed; larger ones are malloc's.
 * Uses: LuaJIT's Lua API, libc; AddressSanitizer's interface in a SAN build. */
#ifndef QH_LUA_HEAP_H
#define QH_LUA_HEAP_H

#include <stddef.h>
#include <lua.h>

#define QH_LUA_HEAP_SMALL_MAX 512

typedef struct qh_lua_heap qh_lua_heap;

/* A new state whose memory comes from a new heap, which the state owns
 * (qh_lua_heap_close frees both). Where LuaJIT takes no allocator (a build
 * without GC64 on x64), a state of luaL_newstate's. NULL when out of memory. */
lua_State *qh_lua_heap_newstate(void);

/* lua_close(L), then frees L's heap when it has one of ours. */
void qh_lua_heap_close(lua_State *L);

/* An empty heap; NULL when out of memory. */
qh_lua_heap *qh_lua_heap_new(void);

/* The lua_Alloc of a heap (ud): nsize 0 frees ptr (osize bytes) and returns
 * NULL; otherwise returns a block of nsize bytes holding the first
 * min(osize, nsize) bytes of ptr (a new block when ptr is NULL), or NULL
 * with ptr untouched when out of memory. osize must be the size ptr was
 * last given with: it picks the block's size class. In a SAN build a block
 * records its size, and another osize aborts the process with a message. */
void *qh_lua_heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* The bytes in use: the blocks given out and not freed, at the sizes asked. */
size_t qh_lua_heap_in_use(const qh_lua_heap *h);

/* Frees the heap: its small blocks, free or not, and the heap itself. A
 * large block not freed before stays allocated (lua_close frees every block
 * of its state first). Accepts NULL. */
void qh_lua_heap_destroy(qh_lua_heap *h);

#endif
