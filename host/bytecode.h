/* bytecode.h: the qhost Lua library's modules kept compiled, so that a
 * process starts without parsing them. An app and each of its source
 * processes load some 60 modules before their first message: 16 ms of
 * parsing on a 2-core machine, 4.5 ms from bytecode.
 *
 * A cached chunk is taken only when it was compiled from the same text
 * under the same chunk name (the file's path, which tracebacks show).
 * Anything else (an edited file, a moved checkout, a cache from another
 * build, a LuaJIT that refuses the bytecode) is parsed from its source, as
 * without a cache: the cache can make a start faster, never different.
 * Cache file: "qhostbc1", the source's length and FNV-1a hash (8 bytes
 * each, native order), the chunk name's length (4) and bytes, then the
 * chunk as lua_dump writes it (with its debug information: line numbers in
 * errors stay).
 * Provides: qh_bytecode_load, qh_bytecode_write. Uses: LuaJIT, buf.h. */
#ifndef QH_BYTECODE_H
#define QH_BYTECODE_H

#include <stddef.h>
#include <lua.h>

/* As luaL_loadfile(L, path): pushes the chunk of the file at path, named
 * "@path", and returns 0; or pushes an error message and returns a
 * LUA_ERR* code. From the cache file at cache_path when it holds that
 * text's chunk (cache_path may be NULL: no cache). */
int qh_bytecode_load(lua_State *L, const char *path, const char *cache_path);

/* Compiles the file at source_path under chunk name "@<chunk_path>" and
 * writes its cache file to cache_path (through a temporary file and a
 * rename: a process loading it meanwhile sees the old file or the new).
 * Returns 0, or -1 with err set. The stack is left as it was. */
int qh_bytecode_write(lua_State *L, const char *source_path, const char *chunk_path, const char *cache_path,
                      char *err, size_t errlen);

#endif
