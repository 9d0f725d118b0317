/* store.c: the local state store over RocksDB (see store.h). */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <rocksdb/c.h>

#include "lazylib.h"
#include "luaclass.h"

#define STORE_MT "qhost.store"

/* RocksDB is loaded by the first open (lazylib.h): apps without state and
 * source processes never pay for it. Its functions, through `rocks`: */
#define ROCKSDB_FUNCTIONS(X) \
    X(rocksdb_block_based_options_create) X(rocksdb_block_based_options_set_block_cache) \
    X(rocksdb_cache_create_lru) X(rocksdb_close) X(rocksdb_column_family_handle_destroy) \
    X(rocksdb_create_iterator_cf) X(rocksdb_destroy_db) X(rocksdb_free) X(rocksdb_get_cf) \
    X(rocksdb_iter_destroy) X(rocksdb_iter_get_error) X(rocksdb_iter_key) X(rocksdb_iter_next) \
    X(rocksdb_iter_prev) X(rocksdb_iter_seek_to_first) X(rocksdb_iter_seek_to_last) \
    X(rocksdb_iter_valid) X(rocksdb_iter_value) X(rocksdb_open_column_families) \
    X(rocksdb_options_create) X(rocksdb_options_destroy) \
    X(rocksdb_options_set_block_based_table_factory) X(rocksdb_options_set_create_if_missing) \
    X(rocksdb_options_set_create_missing_column_families) X(rocksdb_options_set_info_log_level) \
    X(rocksdb_options_set_keep_log_file_num) X(rocksdb_options_set_max_open_files) \
    X(rocksdb_options_set_max_write_buffer_number) X(rocksdb_options_set_write_buffer_size) \
    X(rocksdb_property_value_cf) X(rocksdb_readoptions_create) X(rocksdb_readoptions_destroy) \
    X(rocksdb_readoptions_set_iterate_lower_bound) \
    X(rocksdb_readoptions_set_iterate_upper_bound) X(rocksdb_write) \
    X(rocksdb_writebatch_create) X(rocksdb_writebatch_delete_cf) X(rocksdb_writebatch_destroy) \
    X(rocksdb_writebatch_put_cf) X(rocksdb_writeoptions_create) X(rocksdb_writeoptions_destroy)
QH_LAZY_LIBRARY(rocks, QH_ROCKSDB_SONAME, ROCKSDB_FUNCTIONS)

struct qh_store {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_readoptions_t *read;
    rocksdb_writeoptions_t *write;
    rocksdb_column_family_handle_t *cf[2];
};

struct qh_store_batch {
    rocksdb_writebatch_t *wb;
};

static const char *const cf_names[2] = { "default", "__metadata__" };

/* Takes RocksDB's malloc'd error text into err and frees it; returns -1. */
static int take_error(char *rerr, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, rerr ? rerr : "unknown error");
    free(rerr);
    return -1;
}

/* One block cache for every store of the process: a state larger than
 * memory stays on disk, and its hot blocks share one bounded budget
 * however many stores (operations x partitions) there are. Made at the
 * first open; lives as long as the process (RocksDB keeps references). */
#define BLOCK_CACHE_BYTES (32u << 20)
static rocksdb_cache_t *g_block_cache;
static rocksdb_block_based_table_options_t *g_table_options;

/* State stores are many (one per stateful operation and partition) and
 * mostly small: small memtables, the shared block cache, and few open
 * files, so a large state stays on disk rather than in this process's
 * memory. */
static rocksdb_options_t *store_options(void)
{
    rocksdb_options_t *o = rocks.rocksdb_options_create();
    if (!g_table_options) {
        g_block_cache = rocks.rocksdb_cache_create_lru(BLOCK_CACHE_BYTES);
        g_table_options = rocks.rocksdb_block_based_options_create();
        rocks.rocksdb_block_based_options_set_block_cache(g_table_options, g_block_cache);
    }
    rocks.rocksdb_options_set_block_based_table_factory(o, g_table_options);
    rocks.rocksdb_options_set_create_if_missing(o, 1);
    rocks.rocksdb_options_set_create_missing_column_families(o, 1);
    rocks.rocksdb_options_set_write_buffer_size(o, 4u << 20);
    rocks.rocksdb_options_set_max_write_buffer_number(o, 2);
    rocks.rocksdb_options_set_max_open_files(o, 256);
    rocks.rocksdb_options_set_keep_log_file_num(o, 2);
    /* RocksDB's info LOG gets its fatal lines only (and the header lines
     * of an open, which it buffers): Debian's librocksdb keeps its
     * assertions, and its logger aborts the whole process at the next line
     * it writes after a failed one, as on a full disk. Errors that matter
     * come back in each call's status. 4: FATAL_LEVEL. */
    rocks.rocksdb_options_set_info_log_level(o, 4);
    return o;
}

qh_store *qh_store_open(const char *path, char *err, size_t errlen)
{
    if (rocks_load(err, errlen) < 0) return NULL;
    qh_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "open %s: out of memory", path);
        return NULL;
    }
    s->options = store_options();
    s->read = rocks.rocksdb_readoptions_create();
    s->write = rocks.rocksdb_writeoptions_create();
    const rocksdb_options_t *cf_opts[2] = { s->options, s->options };
    char *rerr = NULL;
    s->db = rocks.rocksdb_open_column_families(s->options, path, 2, cf_names, cf_opts, s->cf, &rerr);
    if (!s->db) {
        char what[300];
        snprintf(what, sizeof what, "cannot open the state store %s", path);
        take_error(rerr, what, err, errlen);
        qh_store_close(s);
        return NULL;
    }
    return s;
}

void qh_store_close(qh_store *s)
{
    if (!s) return;
    for (int i = 0; i < 2; i++)
        if (s->cf[i]) rocks.rocksdb_column_family_handle_destroy(s->cf[i]);
    if (s->db) rocks.rocksdb_close(s->db);
    if (s->read) rocks.rocksdb_readoptions_destroy(s->read);
    if (s->write) rocks.rocksdb_writeoptions_destroy(s->write);
    if (s->options) rocks.rocksdb_options_destroy(s->options);
    free(s);
}

int qh_store_destroy(const char *path, char *err, size_t errlen)
{
    if (rocks_load(err, errlen) < 0) return -1;
    rocksdb_options_t *o = store_options();
    char *rerr = NULL;
    rocks.rocksdb_destroy_db(o, path, &rerr);
    rocks.rocksdb_options_destroy(o);
    if (rerr) return take_error(rerr, "cannot delete the state store", err, errlen);
    return 0;
}

int qh_store_get(qh_store *s, int cf, const char *key, size_t klen, char **val, size_t *vlen,
                 char *err, size_t errlen)
{
    char *rerr = NULL;
    *val = rocks.rocksdb_get_cf(s->db, s->read, s->cf[cf], key, klen, vlen, &rerr);
    if (rerr) return take_error(rerr, "state store read failed", err, errlen);
    return *val != NULL;
}

qh_store_batch *qh_store_batch_new(void)
{
    if (rocks_lib.state != 1) return NULL;   /* no store was opened */
    qh_store_batch *b = malloc(sizeof *b);
    if (b) b->wb = rocks.rocksdb_writebatch_create();
    return b;
}

void qh_store_batch_put(qh_store *s, qh_store_batch *b, int cf, const char *key, size_t klen,
                        const char *val, size_t vlen)
{
    rocks.rocksdb_writebatch_put_cf(b->wb, s->cf[cf], key, klen, val, vlen);
}

void qh_store_batch_delete(qh_store *s, qh_store_batch *b, int cf, const char *key, size_t klen)
{
    rocks.rocksdb_writebatch_delete_cf(b->wb, s->cf[cf], key, klen);
}

void qh_store_batch_free(qh_store_batch *b)
{
    if (!b) return;
    rocks.rocksdb_writebatch_destroy(b->wb);
    free(b);
}

int qh_store_write(qh_store *s, qh_store_batch *b, char *err, size_t errlen)
{
    char *rerr = NULL;
    rocks.rocksdb_write(s->db, s->write, b->wb, &rerr);
    if (rerr) return take_error(rerr, "state store write failed", err, errlen);
    return 0;
}

int qh_store_scan(qh_store *s, int cf, const char *lower, size_t lower_len, const char *upper,
                  size_t upper_len, int reverse, size_t limit, qh_store_visit fn, void *ud,
                  char *err, size_t errlen)
{
    rocksdb_readoptions_t *ro = rocks.rocksdb_readoptions_create();
    /* The bounds must outlive the iterator: RocksDB keeps the pointers. */
    rocks.rocksdb_readoptions_set_iterate_lower_bound(ro, lower, lower_len);
    rocks.rocksdb_readoptions_set_iterate_upper_bound(ro, upper, upper_len);
    rocksdb_iterator_t *it = rocks.rocksdb_create_iterator_cf(s->db, ro, s->cf[cf]);
    if (reverse) rocks.rocksdb_iter_seek_to_last(it);
    else rocks.rocksdb_iter_seek_to_first(it);
    size_t n = 0;
    while (rocks.rocksdb_iter_valid(it) && (limit == 0 || n < limit)) {
        size_t klen, vlen;
        const char *k = rocks.rocksdb_iter_key(it, &klen);
        const char *v = rocks.rocksdb_iter_value(it, &vlen);
        n++;
        if (fn(ud, k, klen, v, vlen)) break;
        if (reverse) rocks.rocksdb_iter_prev(it);
        else rocks.rocksdb_iter_next(it);
    }
    char *rerr = NULL;
    rocks.rocksdb_iter_get_error(it, &rerr);
    rocks.rocksdb_iter_destroy(it);
    rocks.rocksdb_readoptions_destroy(ro);
    if (rerr) return take_error(rerr, "state store scan failed", err, errlen);
    return 0;
}

/* ---- Lua ------------------------------------------------------------------ */

typedef struct lstore {
    qh_store *s;   /* owned: closed by close/__gc */
} lstore;

static qh_store *check_store(lua_State *L)
{
    lstore *u = luaL_checkudata(L, 1, STORE_MT);
    if (!u->s) luaL_error(L, "state store is closed");
    return u->s;
}

static int l_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lstore *u = qh_luaclass_new(L, STORE_MT, sizeof *u);
    char err[512];
    if (!(u->s = qh_store_open(path, err, sizeof err))) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static int l_destroy(lua_State *L)
{
    char err[512];
    if (qh_store_destroy(luaL_checkstring(L, 1), err, sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int get_in(lua_State *L, int cf)
{
    qh_store *s = check_store(L);
    size_t klen;
    const char *key = luaL_checklstring(L, 2, &klen);
    char *val = NULL, err[512];
    size_t vlen = 0;
    int rc = qh_store_get(s, cf, key, klen, &val, &vlen, err, sizeof err);
    if (rc < 0) return luaL_error(L, "%s", err);
    if (rc == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, val, vlen);   /* may raise (memory): free first would lose it */
    free(val);
    return 1;
}

static int l_get(lua_State *L) { return get_in(L, QH_STORE_STATE); }
static int l_get_meta(lua_State *L) { return get_in(L, QH_STORE_META); }

/* One change of a write: a put of k (v set) or a delete (v NULL). The
 * strings belong to the argument tables, alive for the call. */
typedef struct write_change {
    const char *k, *v;
    size_t klen, vlen;
    size_t seq;   /* its place in the write: deletes, then puts */
} write_change;

/* The length of the array argument at idx (0 for none). */
static size_t array_len(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    return lua_objlen(L, idx);
}

/* Appends the items of the array at idx to c (at c[*n]): key, value pairs
 * (puts) or, with pairs = 0, keys (deletes). Raises on an item that is not
 * a string (c is a userdata: nothing leaks). */
static void collect_changes(lua_State *L, int idx, int pairs, write_change *c, size_t *n)
{
    size_t len = array_len(L, idx);
    for (size_t i = 1; i <= len; i += pairs ? 2 : 1) {
        write_change *w = &c[*n];
        lua_rawgeti(L, idx, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "state store write: item %d is a %s, not a key (bytes)", (int)i, luaL_typename(L, -1));
        w->k = lua_tolstring(L, -1, &w->klen);
        w->v = NULL;
        w->vlen = 0;
        if (pairs) {
            lua_rawgeti(L, idx, (int)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "state store write: item %d is a %s, not a value (bytes)", (int)i + 1,
                           luaL_typename(L, -1));
            w->v = lua_tolstring(L, -1, &w->vlen);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        w->seq = *n;
        (*n)++;
    }
}

/* RocksDB's key order (bytewise), then the place in the write, so that two
 * changes of one key keep their order (a delete, then a put, wins the put). */
static int change_cmp(const void *a, const void *b)
{
    const write_change *x = a, *y = b;
    int c = memcmp(x->k, y->k, x->klen < y->klen ? x->klen : y->klen);
    if (c != 0) return c;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void add_change(qh_store *s, qh_store_batch *b, int cf, const write_change *w)
{
    if (w->v)
        qh_store_batch_put(s, b, cf, w->k, w->klen, w->v, w->vlen);
    else
        qh_store_batch_delete(s, b, cf, w->k, w->klen);
}

/* db:write(puts, deletes, meta_puts). The state's changes go to RocksDB in
 * key order: its memtable (a skip list) starts each insert from the place
 * of the last, which in the order the changes were made (many keys, at
 * random) was anywhere; sorted, the next place is near (the window
 * workload's RocksDB instructions fell from 917M to 500M). */
static int l_write(lua_State *L)
{
    qh_store *s = check_store(L);
    lua_settop(L, 4);
    size_t most = array_len(L, 3) + (array_len(L, 2) + 1) / 2 + (array_len(L, 4) + 1) / 2;
    write_change *c = lua_newuserdata(L, (most ? most : 1) * sizeof *c);
    size_t n = 0;
    collect_changes(L, 3, 0, c, &n);
    collect_changes(L, 2, 1, c, &n);
    size_t nstate = n;
    collect_changes(L, 4, 1, c, &n);
    qsort(c, nstate, sizeof *c, change_cmp);

    qh_store_batch *b = qh_store_batch_new();
    if (!b) return luaL_error(L, "state store write: out of memory");
    for (size_t i = 0; i < nstate; i++) add_change(s, b, QH_STORE_STATE, &c[i]);
    for (size_t i = nstate; i < n; i++) add_change(s, b, QH_STORE_META, &c[i]);
    char err[512];
    int rc = qh_store_write(s, b, err, sizeof err);
    qh_store_batch_free(b);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

typedef struct scan_out {
    lua_State *L;
    int n;
} scan_out;

static int push_pair(void *ud, const char *k, size_t klen, const char *v, size_t vlen)
{
    scan_out *o = ud;
    lua_pushlstring(o->L, k, klen);
    lua_rawseti(o->L, -2, ++o->n);
    lua_pushlstring(o->L, v, vlen);
    lua_rawseti(o->L, -2, ++o->n);
    return 0;
}

static int l_scan(lua_State *L)
{
    qh_store *s = check_store(L);
    size_t llen, ulen;
    const char *lower = luaL_checklstring(L, 2, &llen);
    const char *upper = luaL_checklstring(L, 3, &ulen);
    int reverse = lua_toboolean(L, 4);
    lua_Number limit = luaL_optnumber(L, 5, 0);
    lua_newtable(L);
    scan_out o = { L, 0 };
    char err[512];
    /* push_pair raises only when Lua is out of memory, and would then leak
     * the scan's iterator: accepted for that case. */
    if (qh_store_scan(s, QH_STORE_STATE, lower, llen, upper, ulen, reverse,
                      limit > 0 ? (size_t)limit : 0, push_pair, &o, err, sizeof err) != 0)
        return luaL_error(L, "%s", err);
    return 1;
}

char *qh_store_property(qh_store *s, const char *name)
{
    char *rv = rocks.rocksdb_property_value_cf(s->db, s->cf[QH_STORE_STATE], name);
    if (!rv) return NULL;
    /* RocksDB's allocation is released by RocksDB; the caller's is ours. */
    char *copy = strdup(rv);
    rocks.rocksdb_free(rv);
    return copy;
}

static int l_property(lua_State *L)
{
    qh_store *s = check_store(L);
    char *v = qh_store_property(s, luaL_checkstring(L, 2));
    if (!v) return 0;
    lua_pushstring(L, v);
    free(v);
    return 1;
}

static int l_close(lua_State *L)
{
    lstore *u = luaL_checkudata(L, 1, STORE_MT);
    qh_store_close(u->s);
    u->s = NULL;
    return 0;
}

int qh_store_open_module(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "get", l_get }, { "get_meta", l_get_meta }, { "write", l_write }, { "scan", l_scan },
        { "property", l_property }, { "close", l_close }, { NULL, NULL },
    };
    static const luaL_Reg funcs[] = { { "open", l_open }, { "destroy", l_destroy }, { NULL, NULL } };
    qh_luaclass_register(L, STORE_MT, methods, l_close);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
