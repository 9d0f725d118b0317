/* json_encode.c: JSON text from Lua values (see json_encode.h).
 *
 * Nothing here calls user Lua code: tables are read with raw accesses and
 * lua_next, so an encode sees no __index/__pairs. Errors name the path to
 * the value ("at value.a[2].b"), which the encoder keeps per depth. */
#include "json_encode.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json_number.h"
#include "json_string.h"

/* LuaJIT's type tag of cdata (lj_obj.h); lua.h does not name it. */
#define QH_LUA_TCDATA 10

static int enc_value(qh_json_enc *e, int idx, int depth);

int qh_json_encode(qh_json_enc *e, int idx)
{
    e->s->nkeys = 0;
    e->s->path[0].table = NULL;
    return enc_value(e, idx, 0);
}

void qh_json_enc_scratch_free(qh_json_enc_scratch *s)
{
    if (!s) return;
    qh_buf_free(&s->out);
    free(s->keys);
    s->keys = NULL;
    s->nkeys = s->capkeys = 0;
}

static int is_identifier(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* Sets e->err to "<what> at value.a[2].b" for the value at `depth`. */
static int enc_fail(qh_json_enc *e, int depth, const char *what)
{
    char *err = e->err;
    const size_t cap = e->errlen;
    size_t n = (size_t)snprintf(err, cap, "%s at value", what);
    for (int d = 1; d <= depth && n < cap; d++) {
        const qh_json_frame *f = &e->s->path[d];
        if (f->key && is_identifier(f->key, f->klen))
            n += (size_t)snprintf(err + n, cap - n, ".%.*s", (int)f->klen, f->key);
        else if (f->key)
            n += (size_t)snprintf(err + n, cap - n, "[\"%.*s\"]", (int)f->klen, f->key);
        else
            n += (size_t)snprintf(err + n, cap - n, "[%zu]", f->index);
    }
    if (n >= cap) memcpy(err + cap - 4, "...", 4);
    return -1;
}

static int enc_nomem(qh_json_enc *e)
{
    snprintf(e->err, e->errlen, "out of memory");
    return -1;
}

static int enc_newline(qh_json_enc *e, int depth)
{
    qh_buf *b = &e->s->out;
    if (qh_buf_reserve(b, 1 + e->indent_len * (size_t)depth) != 0) return -1;
    b->data[b->len++] = '\n';
    for (int i = 0; i < depth; i++) {
        memcpy(b->data + b->len, e->indent, e->indent_len);
        b->len += e->indent_len;
    }
    return 0;
}

static int enc_string(qh_json_enc *e, const char *s, size_t n, int depth)
{
    int rc = qh_json_append_string(&e->s->out, s, n);
    if (rc == QH_JSON_EUTF8) return enc_fail(e, depth, "cannot encode string with invalid UTF-8");
    if (rc != QH_JSON_OK) return enc_nomem(e);
    return 0;
}

/* One "key":value member; the value is on the top of the stack. */
static int enc_member(qh_json_enc *e, int first, const char *k, size_t klen, int depth)
{
    qh_json_frame *f = &e->s->path[depth + 1];
    f->key = k;
    f->klen = klen;
    if (!first && qh_buf_putc(&e->s->out, ',') != 0) return enc_nomem(e);
    if (e->indent && enc_newline(e, depth + 1) != 0) return enc_nomem(e);
    if (enc_string(e, k, klen, depth + 1) != 0) return -1;
    if (qh_buf_put(&e->s->out, e->indent ? ": " : ":", e->indent ? 2 : 1) != 0) return enc_nomem(e);
    return enc_value(e, lua_gettop(e->L), depth + 1);
}

static int keyref_cmp_bytes(const void *a, const void *b)
{
    const qh_json_keyref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int keyref_cmp_ptr(const void *a, const void *b)
{
    const qh_json_keyref *x = a, *y = b;
    uintptr_t a1 = (uintptr_t)x->s, b1 = (uintptr_t)y->s;
    return a1 < b1 ? -1 : a1 > b1;
}

/* Small key lists are the common case; insertion sort beats qsort there. */
static void sort_keys(qh_json_keyref *k, size_t n, int (*cmp)(const void *, const void *))
{
    if (n > 16) {
        qsort(k, n, sizeof *k, cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        qh_json_keyref t = k[i];
        size_t j = i;
        while (j > 0 && cmp(&k[j - 1], &t) > 0) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = t;
    }
}

static int push_key(qh_json_enc_scratch *st, const char *s, size_t len)
{
    if (st->nkeys == st->capkeys) {
        size_t cap = st->capkeys ? st->capkeys * 2 : 64;
        qh_json_keyref *k = realloc(st->keys, cap * sizeof *k);
        if (!k) return -1;
        st->keys = k;
        st->capkeys = cap;
    }
    st->keys[st->nkeys++] = (qh_json_keyref){ s, len, 0 };
    return 0;
}

/* Members in sorted byte order: the given keys[0..n) of the table at idx. */
static int enc_sorted_members(qh_json_enc *e, int idx, qh_json_keyref *keys, size_t n, int depth, int *first)
{
    lua_State *L = e->L;
    sort_keys(keys, n, keyref_cmp_bytes);
    for (size_t i = 0; i < n; i++) {
        lua_pushlstring(L, keys[i].s, keys[i].len);
        lua_rawget(L, idx);
        if (enc_member(e, *first, keys[i].s, keys[i].len, depth) != 0) return -1;
        lua_pop(L, 1);
        *first = 0;
    }
    return 0;
}

/* An object whose metatable lists a key order (qk at stack index qk): those
 * keys first, then the others sorted. The table's own keys are
 * st->keys[kbase..kbase+n). Lua strings are interned, so two keys are equal
 * exactly when their data pointers are: a pointer-sorted copy of the keys
 * tells, without allocating, which listed keys exist and which table keys
 * are left over (a key listed twice is written once). */
static int enc_ordered_members(qh_json_enc *e, int idx, int qk, size_t kbase, size_t n, int depth)
{
    lua_State *L = e->L;
    qh_json_enc_scratch *st = e->s;
    int first = 1;
    size_t written = 0;
    sort_keys(st->keys + kbase, n, keyref_cmp_ptr);

    size_t m = lua_objlen(L, qk);
    for (size_t i = 1; i <= m && written < n; i++) {
        lua_rawgeti(L, qk, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;  /* not a key the table can have */
        }
        size_t klen;
        const char *k = lua_tolstring(L, -1, &klen);
        /* Binary search by pointer among this table's keys. */
        size_t lo = 0, hi = n;
        qh_json_keyref *hit = NULL;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            qh_json_keyref *r = &st->keys[kbase + mid];
            if ((uintptr_t)r->s == (uintptr_t)k) { hit = r; break; }
            if ((uintptr_t)r->s < (uintptr_t)k) lo = mid + 1;
            else hi = mid;
        }
        if (!hit || hit->mark) {
            lua_pop(L, 1);
            continue;
        }
        hit->mark = 1;
        lua_pushvalue(L, -1);
        lua_rawget(L, idx);
        if (enc_member(e, first, k, klen, depth) != 0) return -1;
        lua_pop(L, 2);
        first = 0;
        written++;
    }
    if (written < n) {
        /* Keys added after decoding: after the listed ones, sorted. */
        size_t extra = 0;
        for (size_t i = 0; i < n; i++)
            if (!st->keys[kbase + i].mark) st->keys[kbase + extra++] = st->keys[kbase + i];
        if (enc_sorted_members(e, idx, st->keys + kbase, extra, depth, &first) != 0) return -1;
    }
    return 0;
}

enum { MODE_PLAIN, MODE_ARRAY, MODE_KEYS };

static int enc_table(qh_json_enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    qh_json_enc_scratch *st = e->s;
    qh_buf *b = &e->s->out;

    if (depth >= QH_JSON_ENCODE_MAX_DEPTH) return enc_fail(e, depth, "cannot encode tables nested deeper than 1000");
    const void *self = lua_topointer(L, idx);
    for (int d = 0; d < depth; d++)
        if (st->path[d].table == self) return enc_fail(e, depth, "cannot encode a table that contains itself");
    st->path[depth].table = self;
    if (!lua_checkstack(L, 8)) return enc_fail(e, depth, "cannot encode: Lua stack exhausted");

    int mode = MODE_PLAIN, qk = 0;
    if (lua_getmetatable(L, idx)) {
        if (lua_rawequal(L, -1, e->array_mt)) {
            mode = MODE_ARRAY;
            lua_pop(L, 1);
        } else {
            lua_pushvalue(L, e->keys_field);
            lua_rawget(L, -2);
            if (lua_type(L, -1) == LUA_TTABLE) {
                mode = MODE_KEYS;
                lua_remove(L, -2);
                qk = lua_gettop(L);
            } else {
                lua_pop(L, 2);
            }
        }
    }

    /* One pass over the keys tells array from object and collects the
     * object's keys for ordering. */
    size_t kbase = st->nkeys, count = 0, nstr = 0, nother = 0;
    double maxi = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen);
            /* The pointer stays valid: the table keeps the string alive and
             * is not changed while we encode. */
            if (push_key(st, k, klen) != 0) return enc_nomem(e);
            nstr++;
        } else if (kt == LUA_TNUMBER) {
            double k = lua_tonumber(L, -2);
            if (k >= 1 && k <= 9007199254740992.0 && k == floor(k)) {
                if (k > maxi) maxi = k;
            } else {
                nother++;
            }
        } else {
            nother++;
        }
        lua_pop(L, 1);
    }

    int rc = 0;
    if (mode == MODE_ARRAY || (mode == MODE_PLAIN && count > 0 && nstr == 0 &&
                               nother == 0 && maxi == (double)count)) {
        if (nstr || nother)
            return enc_fail(e, depth, "cannot encode array (codec.array_mt) with non-integer keys");
        /* Holes in a marked array become null, but not absurdly many. */
        if (maxi > 2.0 * (double)count + 16)
            return enc_fail(e, depth, "cannot encode array: too sparse");
        size_t n = (size_t)maxi;
        if (qh_buf_putc(b, '[') != 0) return enc_nomem(e);
        for (size_t i = 1; i <= n; i++) {
            qh_json_frame *f = &st->path[depth + 1];
            f->key = NULL;
            f->index = i;
            if (i > 1 && qh_buf_putc(b, ',') != 0) return enc_nomem(e);
            if (e->indent && enc_newline(e, depth + 1) != 0) return enc_nomem(e);
            lua_rawgeti(L, idx, (int)i);
            if (enc_value(e, lua_gettop(L), depth + 1) != 0) return -1;
            lua_pop(L, 1);
        }
        if (n > 0 && e->indent && enc_newline(e, depth) != 0) return enc_nomem(e);
        if (qh_buf_putc(b, ']') != 0) return enc_nomem(e);
    } else if (mode == MODE_PLAIN && count > 0 && nstr == 0 && nother == 0) {
        /* Keys 1..n with some missing: a Lua list that held nils, where a
         * Python list holds None. */
        char what[160];
        snprintf(what, sizeof what, "cannot encode a list with holes (%zu value%s, keys up to %.0f; "
                 "qhost.json.null is JSON's null)", count, count == 1 ? "" : "s", maxi);
        return enc_fail(e, depth, what);
    } else if (nstr != count) {
        return enc_fail(e, depth, "cannot encode table with mixed or non-string keys");
    } else {
        if (qh_buf_putc(b, '{') != 0) return enc_nomem(e);
        int first = 1;
        /* An empty object has no members to order, and st->keys may not
         * exist yet (NULL + 0 is undefined; found by fuzzing). */
        if (nstr == 0)
            rc = 0;
        else if (mode == MODE_KEYS)
            rc = enc_ordered_members(e, idx, qk, kbase, nstr, depth);
        else
            rc = enc_sorted_members(e, idx, st->keys + kbase, nstr, depth, &first);
        if (rc != 0) return -1;
        if (count > 0 && e->indent && enc_newline(e, depth) != 0) return enc_nomem(e);
        if (qh_buf_putc(b, '}') != 0) return enc_nomem(e);
    }
    st->nkeys = kbase;
    if (qk) lua_pop(L, 1);
    return 0;
}

static int enc_value(qh_json_enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return enc_string(e, s, n, depth);
    }
    case LUA_TNUMBER: {
        char num[QH_JSON_NUMBER_MAX];
        size_t n = qh_json_number_format(num, lua_tonumber(L, idx));
        return qh_buf_put(&e->s->out, num, n) == 0 ? 0 : enc_nomem(e);
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            return qh_buf_put(&e->s->out, "true", 4) == 0 ? 0 : enc_nomem(e);
        return qh_buf_put(&e->s->out, "false", 5) == 0 ? 0 : enc_nomem(e);
    case LUA_TNIL:
        return qh_buf_put(&e->s->out, "null", 4) == 0 ? 0 : enc_nomem(e);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)  /* codec.null */
            return qh_buf_put(&e->s->out, "null", 4) == 0 ? 0 : enc_nomem(e);
        break;
    case LUA_TTABLE:
        return enc_table(e, idx, depth);
    case QH_LUA_TCDATA: {
        /* int64_t and uint64_t (what decoding big integers gives) are
         * written as plain integers; other cdata are an error. */
        lua_pushvalue(L, e->int64_digits);
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        int rc = 1;
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            rc = qh_buf_put(&e->s->out, s, n) == 0 ? 0 : enc_nomem(e);
        }
        lua_pop(L, 1);
        if (rc != 1) return rc;
        break;
    }
    }
    char what[64];
    snprintf(what, sizeof what, "cannot encode %s", luaL_typename(L, idx));
    return enc_fail(e, depth, what);
}
