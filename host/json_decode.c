/* json_decode.c: Lua values from JSON text (see json_decode.h). */
#include "json_decode.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_number.h"
#include "json_string.h"

typedef struct dec {
    lua_State *L;
    qh_json_dec_scratch *st;
    const unsigned char *s, *p, *end;
    int array_mt, cache, keys_field, int64_make;  /* indices (upvalues) */
    char *err;
    size_t errlen;
} dec;

static int dec_value(dec *d, int depth);
static int dec_fail_at(dec *d, const unsigned char *at, const char *what);
static inline void skip_ws(dec *d);

int qh_json_decode(const qh_json_dec *cfg, const char *s, size_t len)
{
    dec d;
    d.L = cfg->L;
    d.st = cfg->s;
    d.s = d.p = (const unsigned char *)(len ? s : "");
    d.end = d.s + len;
    d.array_mt = cfg->array_mt;
    d.cache = cfg->key_cache;
    d.keys_field = cfg->keys_field;
    d.int64_make = cfg->int64_make;
    d.err = cfg->err;
    d.errlen = cfg->errlen;
    d.st->keyseq.len = 0;

    if (dec_value(&d, 0) != 0) return -1;
    skip_ws(&d);
    if (d.p < d.end) return dec_fail_at(&d, d.p, "unexpected data after the JSON value");
    return 0;
}

void qh_json_dec_scratch_free(qh_json_dec_scratch *s)
{
    if (!s) return;
    qh_buf_free(&s->str);
    qh_buf_free(&s->keyseq);
    for (size_t i = 0; i < sizeof s->shape / sizeof s->shape[0]; i++) qh_buf_free(&s->shape[i]);
}

static int dec_fail_at(dec *d, const unsigned char *at, const char *what)
{
    snprintf(d->err, d->errlen, "invalid JSON at byte %zu: %s",
             (size_t)(at - d->s) + 1, what);
    return -1;
}

static int dec_fail(dec *d, const char *what)
{
    if (d->p >= d->end) what = "unexpected end of input";
    return dec_fail_at(d, d->p, what);
}

static inline void skip_ws(dec *d)
{
    const unsigned char *p = d->p, *end = d->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    d->p = p;
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9') return (int)(c - '0');
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    return -1;
}

static int read_hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = (v << 4) | h;
    }
    return v;
}

static size_t utf8_put(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads the string at d->p (on its opening quote). On success *out and *outlen
 * point into the input (no escapes) or into st->str (valid until the next
 * string is read). */
static int dec_string(dec *d, const char **out, size_t *outlen)
{
    const unsigned char *open = d->p, *p = d->p + 1, *end = d->end;
    const unsigned char *start = p;

    for (;;) {
        p = qh_json_string_skip_plain(p, end);
        if (p >= end) return dec_fail_at(d, open, "unterminated string");
        unsigned c = *p;
        if (c == '"') {
            *out = (const char *)start;
            *outlen = (size_t)(p - start);
            d->p = p + 1;
            return 0;
        }
        if (c == '\\') break;
        if (c < 0x20) return dec_fail_at(d, p, "control character in string");
        size_t n = qh_json_string_utf8_len(p, end, 0);
        if (!n) return dec_fail_at(d, p, "invalid UTF-8 in string");
        p += n;
    }

    /* Escapes: unescape into st->str. Output never exceeds the input. */
    qh_buf *b = &d->st->str;
    b->len = 0;
    if (qh_buf_reserve(b, (size_t)(end - start)) != 0)
        return dec_fail_at(d, open, "out of memory");
    unsigned char *o = (unsigned char *)b->data;
    memcpy(o, start, (size_t)(p - start));
    o += p - start;
    for (;;) {
        if (p >= end) return dec_fail_at(d, open, "unterminated string");
        unsigned c = *p;
        if (c == '"') break;
        if (c == '\\') {
            const unsigned char *esc = p;
            if (p + 1 >= end) return dec_fail_at(d, open, "unterminated string");
            switch (p[1]) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                int cp = read_hex4(p + 2, end);
                if (cp < 0) return dec_fail_at(d, esc, "invalid \\u escape");
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 8 && p[2] == '\\' && p[3] == 'u') {
                    int lo = read_hex4(p + 4, end);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        p += 6;
                    }
                }
                /* A lone surrogate gets its 3-byte form (surrogatepass). */
                o += utf8_put(o, (unsigned)cp);
                break;
            }
            default:
                return dec_fail_at(d, esc, "invalid escape");
            }
            p += 2;
            continue;
        }
        if (c < 0x20) return dec_fail_at(d, p, "control character in string");
        if (c < 0x80) {
            *o++ = (unsigned char)c;
            p++;
            continue;
        }
        size_t n = qh_json_string_utf8_len(p, end, 0);
        if (!n) return dec_fail_at(d, p, "invalid UTF-8 in string");
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    b->len = (size_t)(o - (unsigned char *)b->data);
    *out = b->data;
    *outlen = b->len;
    d->p = p + 1;
    return 0;
}

/* Pushes the int64_t cdata with the two's complement bits u. Rare: kept
 * out of line so that dec_number stays small enough to be inlined into
 * dec_value. */
__attribute__((noinline, cold))
static int dec_push_int64(dec *d, uint64_t u)
{
    lua_State *L = d->L;
    lua_pushvalue(L, d->int64_make);
    lua_pushnumber(L, (lua_Number)(int32_t)(uint32_t)(u >> 32));
    lua_pushnumber(L, (lua_Number)(uint32_t)u);
    lua_call(L, 2, 1);
    return 0;
}

static inline int dec_number(dec *d)
{
    qh_json_number num;
    const unsigned char *at;
    const char *what;
    const unsigned char *p = qh_json_number_read(d->p, d->end, &num, &at, &what);
    if (!p) return dec_fail_at(d, at, what);
    d->p = p;
    if (num.is_int64) return dec_push_int64(d, (uint64_t)num.i);
    lua_pushnumber(d->L, num.d);
    return 0;
}

/* Appends a key to the open object's key sequence: a varint length, then the
 * bytes (length-prefixed, so keys holding "\0" cannot collide). */
static int keyseq_add(qh_buf *b, const char *k, size_t n)
{
    if (qh_buf_reserve(b, n + 10) != 0) return -1;
    size_t v = n;
    do {
        unsigned char byte = v & 0x7F;
        v >>= 7;
        b->data[b->len++] = (char)(v ? byte | 0x80 : byte);
    } while (v);
    memcpy(b->data + b->len, k, n);
    b->len += n;
    return 0;
}

/* Reads one key of a key sequence at q: its length in *n; returns the bytes
 * the length took. */
static size_t keyseq_read(const unsigned char *q, size_t *n)
{
    size_t len = 0, used = 0;
    int shift = 0;
    do {
        len |= (size_t)(q[used] & 0x7F) << shift;
        shift += 7;
    } while (q[used++] & 0x80);
    *n = len;
    return used;
}

/* Gives the object at tidx the metatable for its key sequence
 * st->keyseq[kstart..] holding nkeys keys: the cached one, or a new one
 * (cached while the cache has room). */
static void dec_set_keys_mt(dec *d, int tidx, size_t kstart, int nkeys)
{
    lua_State *L = d->L;
    qh_json_dec_scratch *st = d->st;
    const char *seq = st->keyseq.data ? st->keyseq.data + kstart : "";
    size_t seqlen = st->keyseq.len - kstart;

    lua_pushlstring(L, seq, seqlen);
    lua_pushvalue(L, -1);
    lua_rawget(L, d->cache);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, d->keys_field);
        lua_createtable(L, nkeys, 0);
        /* the sequence buffer may move as Lua allocates: re-read it */
        size_t off = 0;
        for (int i = 1; off < seqlen; i++) {
            const unsigned char *q = (const unsigned char *)st->keyseq.data + kstart + off;
            size_t n, used = keyseq_read(q, &n);
            lua_pushlstring(L, (const char *)q + used, n);
            lua_rawseti(L, -2, i);
            off += used + n;
        }
        lua_rawset(L, -3);
        lua_rawgeti(L, d->cache, 1);
        lua_Number cached = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (cached < QH_JSON_KEY_CACHE_MAX) {
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, d->cache);
            lua_pushnumber(L, cached + 1);
            lua_rawseti(L, d->cache, 1);
        }
    }
    lua_setmetatable(L, tidx);
    lua_pop(L, 1);
}

/* Remembers the key sequence keyseq[kstart..] and the metatable at mt_idx
 * as the shape of depth's next object. The metatable goes in the key cache
 * under the address of the sequence's buffer: each scratch state (a nested
 * call gets its own) keeps its own shapes. */
static void shape_remember(dec *d, int depth, size_t kstart, int mt_idx)
{
    qh_json_dec_scratch *st = d->st;
    qh_buf *shape = &st->shape[depth];
    size_t n = st->keyseq.len - kstart;
    shape->len = 0;
    if (n == 0 || qh_buf_reserve(shape, n) != 0) return;   /* no shape: the slow path */
    memcpy(shape->data, st->keyseq.data + kstart, n);
    shape->len = n;
    lua_pushlightuserdata(d->L, shape);
    lua_pushvalue(d->L, mt_idx);
    lua_rawset(d->L, d->cache);
}

/* Pushes the metatable of depth's remembered shape and its key list;
 * returns 0, or -1 with nothing pushed when there is none. */
static int shape_push(dec *d, int depth)
{
    lua_State *L = d->L;
    if (d->st->shape[depth].len == 0) return -1;
    lua_pushlightuserdata(L, &d->st->shape[depth]);
    lua_rawget(L, d->cache);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_pushvalue(L, d->keys_field);
        lua_rawget(L, -2);
        if (lua_type(L, -1) == LUA_TTABLE) return 0;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return -1;
}

static int dec_object(dec *d, int depth)
{
    lua_State *L = d->L;
    qh_json_dec_scratch *st = d->st;
    if (depth >= QH_JSON_DECODE_MAX_DEPTH) return dec_fail(d, "nesting deeper than 1000");
    if (!lua_checkstack(L, 10)) return dec_fail(d, "Lua stack exhausted");
    d->p++;
    unsigned char *hint = depth < 8 ? &st->size_hint[depth] : NULL;
    lua_createtable(L, 0, hint && *hint ? *hint : 4);
    int tidx = lua_gettop(L);
    size_t kstart = st->keyseq.len;
    int nkeys = 0;

    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        dec_set_keys_mt(d, tidx, kstart, 0);
        return 0;
    }
    /* The shape of the last object at this depth, while the keys match it
     * (its metatable at tidx + 1, its key list at tidx + 2). */
    int shallow = depth < (int)(sizeof st->shape / sizeof st->shape[0]);
    int matching = shallow && shape_push(d, depth) == 0;
    const int shape_mt = tidx + 1, shape_keys = tidx + 2;
    size_t shape_off = 0;
    for (;;) {
        if (d->p >= d->end || *d->p != '"')
            return dec_fail(d, nkeys ? "expected a string key" : "expected a string key or '}'");
        const char *k;
        size_t klen;
        if (dec_string(d, &k, &klen) != 0) return -1;
        if (matching) {
            const qh_buf *shape = &st->shape[depth];
            size_t n = 0, used = shape_off < shape->len
                ? keyseq_read((const unsigned char *)shape->data + shape_off, &n) : 0;
            matching = used && n == klen && memcmp(shape->data + shape_off + used, k, klen) == 0;
            if (matching) {
                /* The shape's keys are distinct and all before matched: not
                 * a duplicate. */
                lua_rawgeti(L, shape_keys, nkeys + 1);
                matching = lua_type(L, -1) == LUA_TSTRING;
                if (!matching) lua_pop(L, 1);
            }
            if (matching) {
                shape_off += used + n;
                if (keyseq_add(&st->keyseq, k, klen) != 0) return dec_fail(d, "out of memory");
                nkeys++;
            }
        }
        if (!matching) {
            lua_pushlstring(L, k, klen);
            /* Duplicate keys: the last value wins, the first position stays. */
            lua_pushvalue(L, -1);
            lua_rawget(L, tidx);
            int fresh = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (fresh) {
                size_t n;
                const char *ks = lua_tolstring(L, -1, &n);
                if (keyseq_add(&st->keyseq, ks, n) != 0) return dec_fail(d, "out of memory");
                nkeys++;
            }
        }
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':') return dec_fail(d, "expected ':'");
        d->p++;
        if (dec_value(d, depth + 1) != 0) return -1;
        lua_rawset(L, tidx);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_ws(d);
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            break;
        }
        return dec_fail(d, "expected ',' or '}'");
    }
    if (matching && shape_off == st->shape[depth].len) {
        lua_pushvalue(L, shape_mt);
        lua_setmetatable(L, tidx);
    } else {
        lua_settop(L, tidx);
        dec_set_keys_mt(d, tidx, kstart, nkeys);
        if (shallow) {
            lua_getmetatable(L, tidx);
            shape_remember(d, depth, kstart, lua_gettop(L));
        }
    }
    lua_settop(L, tidx);
    st->keyseq.len = kstart;
    if (hint) *hint = (unsigned char)(nkeys < 64 ? nkeys : 64);
    return 0;
}

static int dec_array(dec *d, int depth)
{
    lua_State *L = d->L;
    if (depth >= QH_JSON_DECODE_MAX_DEPTH) return dec_fail(d, "nesting deeper than 1000");
    if (!lua_checkstack(L, 6)) return dec_fail(d, "Lua stack exhausted");
    d->p++;
    lua_createtable(L, 4, 0);
    int tidx = lua_gettop(L);
    lua_pushvalue(L, d->array_mt);
    lua_setmetatable(L, tidx);

    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        return 0;
    }
    for (int i = 1;; i++) {
        if (dec_value(d, depth + 1) != 0) return -1;
        lua_rawseti(L, tidx, i);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            return 0;
        }
        return dec_fail(d, "expected ',' or ']'");
    }
}

static int dec_literal(dec *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return dec_fail_at(d, d->p, "invalid literal");
    d->p += n;
    return 0;
}

static int dec_value(dec *d, int depth)
{
    skip_ws(d);
    if (d->p >= d->end) return dec_fail(d, "unexpected end of input");
    switch (*d->p) {
    case '{':
        return dec_object(d, depth);
    case '[':
        return dec_array(d, depth);
    case '"': {
        const char *s;
        size_t n;
        if (dec_string(d, &s, &n) != 0) return -1;
        lua_pushlstring(d->L, s, n);
        return 0;
    }
    case 't':
        if (dec_literal(d, "true", 4) != 0) return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5) != 0) return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4) != 0) return -1;
        lua_pushlightuserdata(d->L, NULL);
        return 0;
    case 'N':
        if (dec_literal(d, "NaN", 3) != 0) return -1;
        lua_pushnumber(d->L, NAN);
        return 0;
    case 'I':
        if (dec_literal(d, "Infinity", 8) != 0) return -1;
        lua_pushnumber(d->L, HUGE_VAL);
        return 0;
    case '-':
        if (d->end - d->p > 1 && d->p[1] == 'I') {
            if (dec_literal(d, "-Infinity", 9) != 0) return -1;
            lua_pushnumber(d->L, -HUGE_VAL);
            return 0;
        }
        /* one call of dec_number, so that it is inlined */
        __attribute__((fallthrough));
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return dec_number(d);
    default:
        return dec_fail(d, "expected a value");
    }
}

