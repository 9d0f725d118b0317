/* json_string.h: JSON strings, as the host writes and reads them.
 * Provides: qh_json_append_string, the one JSON string escaper (the
 * encoder and csv.c's JSON rows both use it, so every string the host
 * writes is escaped the same way); and the byte scanning the decoder's
 * string reader shares with it, inline because it runs on every byte of
 * every message: which bytes are plain (qh_json_string_skip_plain) and
 * UTF-8 validation (qh_json_string_utf8_len).
 * Uses: buf.h, libc. */
#ifndef QH_JSON_STRING_H
#define QH_JSON_STRING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

enum { QH_JSON_OK = 0, QH_JSON_ENOMEM = -1, QH_JSON_EUTF8 = -2 };

/* Appends s as a quoted JSON string: `"` and `\` escaped, control characters
 * as \n \r \t \b \f or \u00XX, other UTF-8 passed through (as Python's
 * json.dumps(ensure_ascii=False)), except that surrogate code points (which
 * codec.json_decode produces for lone \uD8xx escapes) are written back as
 * \uXXXX escapes so the output stays valid UTF-8. Returns QH_JSON_OK,
 * QH_JSON_ENOMEM, or QH_JSON_EUTF8 when s is not UTF-8 with lone
 * surrogates (WTF-8: a high surrogate followed by a low one is an error, as
 * its two escapes would read back as another character) (b->len unchanged
 * on error). */
int qh_json_append_string(qh_buf *b, const char *s, size_t len);

/* The same for LuaJIT's FFI (qhost.runtime.json_out), into memory the
 * caller owns: writes s quoted into out, which has room for
 * QH_JSON_STRING_ROOM(len) bytes (the longest escaping of len bytes, plus
 * the slack qh_json_append_string's reservations ask for). Returns the
 * bytes written, or -1 when s is not UTF-8 with lone surrogates. */
#define QH_JSON_STRING_ROOM(len) (6 * (size_t)(len) + 8)
ptrdiff_t qh_ffi_json_string(char *out, const char *s, size_t len);

/* For LuaJIT's FFI (qhost.runtime.json_in): the JSON string whose content
 * starts at p (just past its opening quote), before end, when its bytes
 * are its value: returns the content's length (the closing quote is at
 * p + length), or -1 when it has an escape, or is something the decoder
 * rejects (a control character, invalid UTF-8, no closing quote), or is
 * longer than INT32_MAX: then the decoder reads it. The same checks as
 * the decoder's string reader. (An int: LuaJIT boxes 64-bit results.) */
int32_t qh_ffi_json_plain_string(const char *p, const char *end);

/* Byte classes: 0 plain ASCII, 1 needs an escape in a JSON string ('"',
 * '\\', control), 2/3/4 lead byte of a UTF-8 sequence of that length,
 * 5 never valid (continuation byte as lead, C0, C1, F5..FF). */
extern const unsigned char qh_json_string_class[256];

/* Length (2..4) of the valid UTF-8 sequence at p, or 0. With
 * allow_surrogates, ED A0..BF xx (U+D800..U+DFFF) is accepted too. */
static inline size_t qh_json_string_utf8_len(const unsigned char *p, const unsigned char *end,
                                             int allow_surrogates)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    switch (qh_json_string_class[c]) {
    case 2:
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    case 3: {
        unsigned lo = 0x80, hi = 0xBF;
        if (avail < 3) return 0;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED && !allow_surrogates) hi = 0x9F;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    case 4: {
        unsigned lo = 0x80, hi = 0xBF;
        if (avail < 4) return 0;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
               (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    default:
        return 0;
    }
}

/* Skips plain bytes (class 0) eight at a time: a word is plain unless a
 * byte is >= 0x80, < 0x20, '"' or '\\' (the "has a byte less than n" bit
 * trick, exact for n <= 128). Returns where the byte loop must take over. */
static inline const unsigned char *qh_json_string_skip_plain(const unsigned char *p,
                                                             const unsigned char *end)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t v, q, bs;
        memcpy(&v, p, 8);
        q = v ^ (ones * '"');
        bs = v ^ (ones * '\\');
        uint64_t special = v | ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((bs - ones) & ~bs);
        if (special & highs) break;
        p += 8;
    }
    while (p < end && qh_json_string_class[*p] == 0) p++;
    return p;
}

#endif
