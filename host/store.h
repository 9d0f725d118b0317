/* store.h: the local state store: one RocksDB database per (state store,
 * partition), with two column families: "default" for the state and
 * "__metadata__" for what the database itself records (the changelog offset
 * it holds), as Quix's RocksDB partition keeps them. Writes only happen in
 * whole batches (one checkpoint's changes, atomically), reads see what the
 * last batch wrote. The Lua side keeps the writes of the running checkpoint
 * in memory (qhost's state transaction) and hands them over here.
 * Provides: the C API below and the `qhost.store` Lua module. Uses: RocksDB's
 * C API (librocksdb), LuaJIT's Lua 5.1 API. */
#ifndef QH_STORE_H
#define QH_STORE_H

#include <stddef.h>
#include <lua.h>

typedef struct qh_store qh_store;

enum { QH_STORE_STATE = 0, QH_STORE_META = 1 };

/* Opens (creating it and its column families if missing) the database in
 * the folder `path`. NULL with err set; err says "Corruption" when RocksDB
 * found the files damaged. */
qh_store *qh_store_open(const char *path, char *err, size_t errlen);
/* Accepts NULL. */
void qh_store_close(qh_store *s);
/* Deletes the database's files (it must be closed). 0, or -1 with err. */
int qh_store_destroy(const char *path, char *err, size_t errlen);

/* Reads key in column family cf: 1 and *val (malloc'd: free it) when found,
 * 0 when not, -1 with err set. */
int qh_store_get(qh_store *s, int cf, const char *key, size_t klen, char **val, size_t *vlen,
                 char *err, size_t errlen);

/* One checkpoint's writes, applied atomically by qh_store_write. */
typedef struct qh_store_batch qh_store_batch;
qh_store_batch *qh_store_batch_new(void);
void qh_store_batch_put(qh_store *s, qh_store_batch *b, int cf, const char *key, size_t klen,
                        const char *val, size_t vlen);
void qh_store_batch_delete(qh_store *s, qh_store_batch *b, int cf, const char *key, size_t klen);
/* Accepts NULL. */
void qh_store_batch_free(qh_store_batch *b);
/* 0, or -1 with err set (nothing of the batch written then). */
int qh_store_write(qh_store *s, qh_store_batch *b, char *err, size_t errlen);

/* Calls fn for each key in [lower, upper) of cf in key order (reverse: the
 * other way), at most limit (0: no limit). fn returns non-zero to stop.
 * Returns 0, or -1 with err set. */
typedef int (*qh_store_visit)(void *ud, const char *key, size_t klen, const char *val, size_t vlen);
int qh_store_scan(qh_store *s, int cf, const char *lower, size_t lower_len, const char *upper,
                  size_t upper_len, int reverse, size_t limit, qh_store_visit fn, void *ud,
                  char *err, size_t errlen);

/* A RocksDB property of the state column family ("rocksdb.estimate-num-keys",
 * "rocksdb.total-sst-files-size", ...): malloc'd text (free it), or NULL
 * when RocksDB has no such property. */
char *qh_store_property(qh_store *s, const char *name);

/* luaopen-style, pushes the module:
 *   open(path) -> db | nil, err            destroy(path) -> true | nil, err
 *   db:get(key) -> value | nil              db:get_meta(key) -> value | nil
 *   db:write(puts, deletes, meta_puts)      arrays: { k1, v1, k2, v2, ... },
 *                                           { k1, k2, ... }, { k1, v1, ... }
 *                                           -> true | nil, err (atomic)
 *   db:scan(lower, upper[, reverse[, limit]]) -> { k1, v1, k2, v2, ... }
 *   db:property(name) -> text | nil         (qh_store_property)
 *   db:close()                              (also on garbage collection)
 * A read error raises (a failing disk is not an expected condition). */
int qh_store_open_module(lua_State *L);

#endif
