/* json_decode.h: Lua values from JSON text, as Python's json.loads reads
 * it, keeping each object's key order.
 * Provides: qh_json_decode, which pushes the value of one JSON text, and
 * the scratch it reuses between calls.
 * Uses: LuaJIT's Lua 5.1 API (one Lua function is called, to make int64
 * cdata), buf.h, json_string.h (string bytes), json_number.h (numbers).
 *
 * Lua tables have no key order, so a decoded object carries its document
 * key order in its metatable (`keys_field` -> array of keys); objects with
 * the same key sequence share one metatable, interned in the key cache, so
 * keeping the order costs one string lookup per object, not one table per
 * object. The cache keeps the first QH_JSON_KEY_CACHE_MAX sequences; after
 * that each object gets a metatable of its own (the order is kept, only
 * the sharing is lost). Arrays get array_mt; null is the NULL
 * lightuserdata; a lone \uD800..\uDFFF escape becomes its 3-byte form
 * (Python's "surrogatepass"); raw bytes in strings must be valid UTF-8.
 * Duplicate keys: the last value wins, the first position stays. */
#ifndef QH_JSON_DECODE_H
#define QH_JSON_DECODE_H

#include <stddef.h>
#include <lua.h>

#include "buf.h"

#define QH_JSON_DECODE_MAX_DEPTH 1000
#define QH_JSON_KEY_CACHE_MAX    4096

/* What a decode reuses: zero-initialise it; qh_json_dec_scratch_free
 * releases what it owns (the struct itself is the caller's). */
typedef struct qh_json_dec_scratch {
    qh_buf str;     /* an unescaped string */
    qh_buf keyseq;  /* the key sequences of the open objects */
    /* key count of the last object seen at each shallow depth, the size
     * hint of the next one's table (a stream of like objects then never
     * grows a table key by key). */
    unsigned char size_hint[8];
    /* The key sequence (keyseq's format) of the last object seen at each
     * shallow depth; its metatable is in the key cache, under the address of
     * this buffer (a light userdata). The
     * next object there takes each key that matches from that metatable's
     * key list (no string made, no duplicate check) and, when all match,
     * the metatable itself (no sequence lookup): a stream of like messages
     * interns no key. */
    qh_buf shape[8];
} qh_json_dec_scratch;

void qh_json_dec_scratch_free(qh_json_dec_scratch *s);

/* One decode. The indices may be upvalue pseudo-indices: the constants are
 * read where they are, not copied to the stack per call. */
typedef struct qh_json_dec {
    lua_State *L;
    qh_json_dec_scratch *s;
    int array_mt;    /* index of the metatable decoded arrays get */
    int keys_field;  /* index of the key-order field's name (a string) */
    int int64_make;  /* index of a function (hi, lo) -> int64_t cdata, hi
                      * the signed upper 32 bits, lo the unsigned lower */
    int key_cache;   /* index of the key cache: a table from key sequence to
                      * metatable, whose [1] counts its entries */
    char *err;       /* the caller's buffer for the error */
    size_t errlen;
} qh_json_dec;

/* Pushes the value of the JSON text s[0..len) (one value; whitespace around
 * it allowed) and returns 0; or returns -1 with d->err set ("invalid JSON at
 * byte N: ...", N 1-based as string.sub counts), having pushed values the
 * caller drops. s is only read during the call. A Lua error (out of memory
 * inside Lua) can escape. */
int qh_json_decode(const qh_json_dec *d, const char *s, size_t len);

#endif
