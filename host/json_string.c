/* json_string.c: the JSON string escaper and the byte classes behind the
 * string scanning (see json_string.h). */
#include "json_string.h"

#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
const unsigned char qh_json_string_class[256] = {
    R16(1), R16(1),                                         /* 00..1F */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,         /* 20..2F '"' */
    R16(0), R16(0),                                         /* 30..4F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,         /* 50..5F '\\' */
    R16(0), R16(0),                                         /* 60..7F */
    R16(5), R16(5), R16(5), R16(5),                         /* 80..BF */
    5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,         /* C0..CF */
    R16(2),                                                 /* D0..DF */
    R16(3),                                                 /* E0..EF */
    4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,         /* F0..FF */
};
#undef R16

static const char hexdigits[] = "0123456789abcdef";

int qh_json_append_string(qh_buf *b, const char *str, size_t len)
{
    const unsigned char *p = (const unsigned char *)str, *end = p + len;
    size_t start_len = b->len;
    int rc = QH_JSON_ENOMEM;  /* what a failure below is, unless it says */

    /* Most strings need no escape: one reservation covers them. */
    if (qh_buf_reserve(b, len + 2) != 0) return QH_JSON_ENOMEM;
    b->data[b->len++] = '"';
    while (p < end) {
        const unsigned char *run = p;
        p = qh_json_string_skip_plain(p, end);
        if (p > run) {
            memcpy(b->data + b->len, run, (size_t)(p - run));
            b->len += (size_t)(p - run);
        }
        if (p == end) break;

        unsigned c = *p;
        /* Room for the longest escape (6) plus the rest and the quote. */
        if (qh_buf_reserve(b, 6 + (size_t)(end - p) + 1) != 0) goto fail;
        char *o = b->data + b->len;
        if (qh_json_string_class[c] == 1) {
            char e = 0;
            switch (c) {
            case '"': e = '"'; break;
            case '\\': e = '\\'; break;
            case '\n': e = 'n'; break;
            case '\r': e = 'r'; break;
            case '\t': e = 't'; break;
            case '\b': e = 'b'; break;
            case '\f': e = 'f'; break;
            }
            if (e) {
                o[0] = '\\'; o[1] = e;
                b->len += 2;
            } else {
                memcpy(o, "\\u00", 4);
                o[4] = hexdigits[c >> 4];
                o[5] = hexdigits[c & 15];
                b->len += 6;
            }
            p++;
            continue;
        }
        size_t n = qh_json_string_utf8_len(p, end, 1);
        if (n == 0) {
            rc = QH_JSON_EUTF8;
            goto fail;
        }
        if (c == 0xED && p[1] >= 0xA0) {
            /* A surrogate code point (from a lone \uD8xx escape): writing
             * it raw would make the output invalid UTF-8. A high one right
             * before a low one is not lone: as two escapes it would read
             * back as one supplementary character, other bytes (WTF-8
             * forbids such pairs for that reason). */
            if (p[1] <= 0xAF && end - p >= 6 && p[3] == 0xED && p[4] >= 0xB0) {
                rc = QH_JSON_EUTF8;
                goto fail;
            }
            unsigned cp = ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
            o[0] = '\\'; o[1] = 'u';
            o[2] = hexdigits[(cp >> 12) & 15];
            o[3] = hexdigits[(cp >> 8) & 15];
            o[4] = hexdigits[(cp >> 4) & 15];
            o[5] = hexdigits[cp & 15];
            b->len += 6;
        } else {
            memcpy(o, p, n);
            b->len += n;
        }
        p += n;
    }
    b->data[b->len++] = '"';
    return QH_JSON_OK;

fail:
    b->len = start_len;
    return rc;
}

ptrdiff_t qh_ffi_json_string(char *out, const char *s, size_t len)
{
    /* A buffer over out that never grows: each byte escapes to at most 6,
     * and an escape's reservation (6, the bytes left, the closing quote)
     * after c bytes read asks for at most 6c + 1 + 6 + (len - c) + 1 with
     * c < len: at most 6 * len + 3, within QH_JSON_STRING_ROOM. */
    qh_buf b = { .data = out, .len = 0, .cap = QH_JSON_STRING_ROOM(len) };
    if (qh_json_append_string(&b, s, len) != QH_JSON_OK) return -1;
    return (ptrdiff_t)b.len;
}

int32_t qh_ffi_json_plain_string(const char *s, const char *e)
{
    const unsigned char *start = (const unsigned char *)s, *p = start, *end = (const unsigned char *)e;
    for (;;) {
        p = qh_json_string_skip_plain(p, end);
        if (p >= end) return -1;
        unsigned c = *p;
        if (c == '"') return p - start <= INT32_MAX ? (int32_t)(p - start) : -1;
        if (c == '\\' || c < 0x20) return -1;
        size_t n = qh_json_string_utf8_len(p, end, 0);
        if (!n) return -1;
        p += n;
    }
}
