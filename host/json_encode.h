/* json_encode.h: JSON text from Lua values, as Python's json.dumps writes
 * it (separators (",", ":") or an indent, ensure_ascii=False).
 * Provides: qh_json_encode, which walks one Lua value into a qh_buf, and
 * the scratch it reuses between calls so that encoding allocates nothing
 * per message.
 * Uses: LuaJIT's Lua 5.1 API (tables are read raw, with lua_next: no
 * __index or __pairs runs; one Lua function is called, for int64 cdata),
 * buf.h, json_string.h (strings), json_number.h (numbers).
 *
 * Objects whose metatable lists a key order (the `keys_field` of it, which
 * the decoder sets) write those keys first, then any others sorted
 * bytewise; other objects write all keys sorted, so output is
 * deterministic. Tables marked with array_mt are arrays (holes become
 * null); other tables are arrays when their keys are exactly 1..n. nil and
 * the NULL lightuserdata (codec.null) are null; int64_t/uint64_t cdata are
 * plain integers. */
#ifndef QH_JSON_ENCODE_H
#define QH_JSON_ENCODE_H

#include <stddef.h>
#include <lua.h>

#include "buf.h"

#define QH_JSON_ENCODE_MAX_DEPTH 1000

/* A key of an object being written (borrowed from the table). */
typedef struct qh_json_keyref {
    const char *s;
    size_t len;
    int mark;
} qh_json_keyref;

/* How the encoder reached the value at one depth, for error paths. */
typedef struct qh_json_frame {
    const char *key;   /* NULL: reached by array index */
    size_t klen;
    size_t index;
    const void *table; /* the table at this depth (cycle check) */
} qh_json_frame;

/* What an encode reuses: zero-initialise it; qh_json_enc_scratch_free
 * releases what it owns (the struct itself is the caller's). */
typedef struct qh_json_enc_scratch {
    qh_buf out;              /* the text; qh_json_encode appends to it */
    qh_json_keyref *keys;    /* the keys of the open objects, a stack */
    size_t nkeys, capkeys;
    qh_json_frame path[QH_JSON_ENCODE_MAX_DEPTH + 2];
} qh_json_enc_scratch;

void qh_json_enc_scratch_free(qh_json_enc_scratch *s);

/* One encode. The indices may be upvalue pseudo-indices: the constants are
 * read where they are, not copied to the stack per call. */
typedef struct qh_json_enc {
    lua_State *L;
    qh_json_enc_scratch *s;
    int array_mt;        /* index of the metatable that marks arrays */
    int keys_field;      /* index of the key-order field's name (a string) */
    int int64_digits;    /* index of a function: int64_t/uint64_t cdata ->
                          * its decimal digits, anything else -> nil */
    const char *indent;  /* NULL: compact; else a newline and this per level */
    size_t indent_len;
    char *err;           /* the caller's buffer for the error */
    size_t errlen;       /* at least 4 */
} qh_json_enc;

/* Appends the JSON text of the value at idx to e->s->out. Returns 0, or -1
 * with e->err set ("cannot encode function at value.a[2]"; "out of
 * memory"). A Lua error (out of memory inside Lua) can escape, leaving the
 * scratch for the next qh_json_encode to reset. */
int qh_json_encode(qh_json_enc *e, int idx);

#endif
