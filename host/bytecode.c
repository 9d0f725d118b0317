/* bytecode.c: the Lua library's modules kept compiled (see bytecode.h). */
#include "bytecode.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "buf.h"

#define MAGIC "qhostbc1"
#define MAGIC_LEN 8
#define HEADER_FIXED (MAGIC_LEN + 8 + 8 + 4)

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The whole file at path into b. 0, or -1 with errno set. */
static int read_file(const char *path, qh_buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    for (;;) {
        if (qh_buf_reserve(b, 16384) != 0) {
            fclose(f);
            errno = ENOMEM;
            return -1;
        }
        size_t got = fread(b->data + b->len, 1, b->cap - b->len, f);
        b->len += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* The chunk in the cache file `cache` (len bytes) when it was compiled
 * from `source` (n bytes) under `chunkname`; else NULL. */
static const char *cached_chunk(const char *cache, size_t len, const char *source, size_t n,
                                const char *chunkname, size_t *chunk_len)
{
    if (len < HEADER_FIXED || memcmp(cache, MAGIC, MAGIC_LEN) != 0) return NULL;
    uint64_t source_len, hash;
    uint32_t name_len;
    memcpy(&source_len, cache + MAGIC_LEN, 8);
    memcpy(&hash, cache + MAGIC_LEN + 8, 8);
    memcpy(&name_len, cache + MAGIC_LEN + 16, 4);
    if (source_len != n || len - HEADER_FIXED < name_len) return NULL;
    if (name_len != strlen(chunkname) || memcmp(cache + HEADER_FIXED, chunkname, name_len) != 0) return NULL;
    if (hash != fnv1a(source, n)) return NULL;
    *chunk_len = len - HEADER_FIXED - name_len;
    return cache + HEADER_FIXED + name_len;
}

int qh_bytecode_load(lua_State *L, const char *path, const char *cache_path)
{
    qh_buf source = { 0 }, cache = { 0 };
    if (read_file(path, &source) != 0) {
        qh_buf_free(&source);
        /* luaL_loadfile's own message for a file it cannot read */
        return luaL_loadfile(L, path);
    }
    /* A first line starting with '#' (a shebang) is for luaL_loadfile to skip. */
    if (source.len > 0 && source.data[0] == '#') {
        qh_buf_free(&source);
        return luaL_loadfile(L, path);
    }
    lua_pushfstring(L, "@%s", path);
    const char *chunkname = lua_tostring(L, -1);
    int status = -1;
    if (cache_path && read_file(cache_path, &cache) == 0) {
        size_t chunk_len;
        const char *chunk = cached_chunk(cache.data, cache.len, source.data, source.len, chunkname, &chunk_len);
        if (chunk) {
            status = luaL_loadbuffer(L, chunk, chunk_len, chunkname);
            /* (a LuaJIT that refuses this bytecode: parsed below) */
            if (status != 0) lua_pop(L, 1);
        }
    }
    if (status != 0) status = luaL_loadbuffer(L, source.data, source.len, chunkname);
    lua_remove(L, -2);   /* the chunk name */
    qh_buf_free(&source);
    qh_buf_free(&cache);
    return status;
}

static int collect(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return qh_buf_put(ud, p, n);
}

static int write_all(const char *path, const qh_buf *b)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = fwrite(b->data, 1, b->len, f);
    int failed = put != b->len;
    if (fclose(f) != 0) failed = 1;
    return failed ? -1 : 0;
}

int qh_bytecode_write(lua_State *L, const char *source_path, const char *chunk_path, const char *cache_path,
                      char *err, size_t errlen)
{
    int top = lua_gettop(L);
    qh_buf source = { 0 }, out = { 0 };
    char tmp[4096];
    int rc = -1;
    if (read_file(source_path, &source) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", source_path, strerror(errno));
        goto done;
    }
    lua_pushfstring(L, "@%s", chunk_path);
    const char *chunkname = lua_tostring(L, -1);
    if (luaL_loadbuffer(L, source.data, source.len, chunkname) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto done;
    }
    uint64_t source_len = source.len, hash = fnv1a(source.data, source.len);
    uint32_t name_len = (uint32_t)strlen(chunkname);
    if (qh_buf_put(&out, MAGIC, MAGIC_LEN) != 0 || qh_buf_put(&out, &source_len, 8) != 0 ||
        qh_buf_put(&out, &hash, 8) != 0 || qh_buf_put(&out, &name_len, 4) != 0 ||
        qh_buf_put(&out, chunkname, name_len) != 0 || lua_dump(L, collect, &out) != 0) {
        snprintf(err, errlen, "cannot compile %s: out of memory", source_path);
        goto done;
    }
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", cache_path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "path too long: %s", cache_path);
        goto done;
    }
    if (write_all(tmp, &out) != 0 || rename(tmp, cache_path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", cache_path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    qh_buf_free(&source);
    qh_buf_free(&out);
    lua_settop(L, top);
    return rc;
}
