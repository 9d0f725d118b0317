/* test_store.c: tests of host/store.c: writes in atomic batches, the two
 * column families, reopening, key-ordered scans both ways, destroy, the
 * properties (sizes for the metrics), the Lua module's errors, and RocksDB
 * loaded only by the first open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "store.h"

static const char *dir;  /* the test's temporary folder */

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static int get_str(qh_store *s, int cf, const char *key, char *out, size_t len)
{
    char *val = NULL, err[256];
    size_t vlen = 0;
    int rc = qh_store_get(s, cf, key, strlen(key), &val, &vlen, err, sizeof err);
    if (rc == 1) {
        snprintf(out, len, "%.*s", (int)vlen, val);
        free(val);
    }
    return rc;
}

/* 1 when a library whose path contains `name` is mapped into this process. */
static int library_mapped(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

/* RocksDB is not linked: the first open loads it (host/lazylib.h). Runs
 * first, before any other test opened a store. */
TEST(rocksdb_is_loaded_by_the_first_open)
{
    char path[256], err[256];
    CHECK_EQ_INT(library_mapped("librocksdb"), 0);
    CHECK(qh_store_batch_new() == NULL);   /* nothing to batch for yet */
    path_of(path, sizeof path, "first");
    qh_store *s = qh_store_open(path, err, sizeof err);
    CHECK(s != NULL);
    CHECK_EQ_INT(library_mapped("librocksdb"), 1);
    qh_store_close(s);
}

TEST(batches_are_atomic_and_column_families_separate)
{
    char path[256], err[256], got[64];
    path_of(path, sizeof path, "a");
    qh_store *s = qh_store_open(path, err, sizeof err);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(get_str(s, QH_STORE_STATE, "k", got, sizeof got), 0);
    qh_store_batch *b = qh_store_batch_new();
    qh_store_batch_put(s, b, QH_STORE_STATE, "k", 1, "v1", 2);
    qh_store_batch_put(s, b, QH_STORE_META, "k", 1, "meta", 4);
    /* Nothing is visible before the write. */
    CHECK_EQ_INT(get_str(s, QH_STORE_STATE, "k", got, sizeof got), 0);
    CHECK_EQ_INT(qh_store_write(s, b, err, sizeof err), 0);
    qh_store_batch_free(b);
    CHECK_EQ_INT(get_str(s, QH_STORE_STATE, "k", got, sizeof got), 1);
    CHECK_EQ_STR(got, "v1");
    CHECK_EQ_INT(get_str(s, QH_STORE_META, "k", got, sizeof got), 1);
    CHECK_EQ_STR(got, "meta");
    b = qh_store_batch_new();
    qh_store_batch_delete(s, b, QH_STORE_STATE, "k", 1);
    CHECK_EQ_INT(qh_store_write(s, b, err, sizeof err), 0);
    qh_store_batch_free(b);
    qh_store_batch_free(NULL);
    CHECK_EQ_INT(get_str(s, QH_STORE_STATE, "k", got, sizeof got), 0);
    CHECK_EQ_INT(get_str(s, QH_STORE_META, "k", got, sizeof got), 1);
    qh_store_close(s);
    qh_store_close(NULL);
    /* Reopened: what was written is there. */
    s = qh_store_open(path, err, sizeof err);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(get_str(s, QH_STORE_META, "k", got, sizeof got), 1);
    qh_store_close(s);
    CHECK_EQ_INT(qh_store_destroy(path, err, sizeof err), 0);
    CHECK(access(path, F_OK) != 0);
}

static int collect(void *ud, const char *k, size_t klen, const char *v, size_t vlen)
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%.*s=%.*s;", (int)klen, k, (int)vlen, v);
    return 0;
}

TEST(scans_keep_key_order_within_bounds)
{
    char path[256], err[256], out[256] = "";
    path_of(path, sizeof path, "b");
    qh_store *s = qh_store_open(path, err, sizeof err);
    CHECK(s != NULL);
    if (!s) return;
    qh_store_batch *b = qh_store_batch_new();
    const char *keys[] = { "p|3", "p|1", "p|2", "q|1", "o|9" };
    for (int i = 0; i < 5; i++) qh_store_batch_put(s, b, QH_STORE_STATE, keys[i], 3, keys[i], 1);
    CHECK_EQ_INT(qh_store_write(s, b, err, sizeof err), 0);
    qh_store_batch_free(b);
    CHECK_EQ_INT(qh_store_scan(s, QH_STORE_STATE, "p|", 2, "p}", 2, 0, 0, collect, out, err, sizeof err), 0);
    CHECK_EQ_STR(out, "p|1=p;p|2=p;p|3=p;");
    out[0] = '\0';
    CHECK_EQ_INT(qh_store_scan(s, QH_STORE_STATE, "p|", 2, "p}", 2, 1, 2, collect, out, err, sizeof err), 0);
    CHECK_EQ_STR(out, "p|3=p;p|2=p;");
    qh_store_close(s);
}

TEST(lua_module)
{
    char path[256];
    path_of(path, sizeof path, "c");
    lua_State *L = th_lua_new("store", qh_store_open_module);
    lua_pushstring(L, path);
    lua_setglobal(L, "path");
    const char *code =
        "local db = assert(store.open(path))\n"
        "assert(db:write({ 'a', '1', 'b', '2' }, {}, { 'offset', '7' }))\n"
        "assert(db:get('a') == '1' and db:get_meta('offset') == '7' and db:get('offset') == nil)\n"
        "assert(db:write({ 'a', 'x' }, { 'a', 'b' }))   -- deletes first: a set again wins\n"
        "assert(db:get('a') == 'x' and db:get('b') == nil)\n"
        "local ok, err = pcall(db.write, db, { 'k' })\n"
        "assert(not ok and err:find('item 2 is a nil'), err)\n"
        "ok, err = pcall(db.write, db, { 'k', 'v' }, { 'a', 5 })\n"
        "assert(not ok and err:find('item 2 is a number, not a key'), err)\n"
        "assert(db:get('k') == nil and db:get('a') == 'x')   -- a refused write writes nothing\n"
        "-- written in key order (see l_write), as given: the same key twice keeps its order\n"
        "assert(db:write({ 'm', '1', 'c', '2', 'm', '3', 'q', '4', 'c', '5' }, { 'q', 'c' }))\n"
        "assert(db:get('m') == '3' and db:get('c') == '5' and db:get('q') == '4')\n"
        "assert(db:write({}, { 'm', 'q', 'c' }))\n"
        "local pairs_ = db:scan('a', 'z')\n"
        "assert(#pairs_ == 2 and pairs_[1] == 'a' and pairs_[2] == 'x')\n"
        "assert(tonumber(db:property('rocksdb.estimate-num-keys')) >= 1)\n"
        "assert(tonumber(db:property('rocksdb.cur-size-all-mem-tables')) > 0)\n"
        "assert(db:property('rocksdb.no-such-property') == nil)\n"
        "db:close(); db:close()\n"
        "assert(not pcall(db.get, db, 'a'))\n"
        "local bad, e = store.open('/proc/nonexistent/x')\n"
        "assert(bad == nil and e:find('cannot open the state store', 1, true), e)\n"
        "assert(store.destroy(path))\n";
    CHECK_EQ_INT(th_run_n(L, code), 0);
    lua_close(L);
}

int main(void)
{
    if (!(dir = th_tmpdir("store"))) return 1;
    RUN(rocksdb_is_loaded_by_the_first_open);
    RUN(batches_are_atomic_and_column_families_separate);
    RUN(scans_keep_key_order_within_bounds);
    RUN(lua_module);
    th_remove_tree(dir);
    return check_summary();
}
