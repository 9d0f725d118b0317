/* buf.h: qh_buf, the growable byte buffer the host's encoders write into
 * (the JSON encoder, the CSV reader's JSON rows).
 * Provides: qh_buf_reserve, qh_buf_free, and the inline appends qh_buf_put
 * and qh_buf_putc. Uses: libc. */
#ifndef QH_BUF_H
#define QH_BUF_H

#include <stddef.h>
#include <string.h>

/* Zero-initialise it; qh_buf_free releases what it owns. */
typedef struct qh_buf {
    char *data;
    size_t len, cap;
} qh_buf;

/* Makes room for `extra` more bytes. Returns 0, or -1 when out of memory
 * (the buffer is left as it was). */
int qh_buf_reserve(qh_buf *b, size_t extra);

/* Releases the memory and leaves an empty buffer, ready for reuse. b may
 * be NULL. */
void qh_buf_free(qh_buf *b);

/* Appends n bytes. 0, or -1 when out of memory (b unchanged). */
static inline int qh_buf_put(qh_buf *b, const void *s, size_t n)
{
    if (qh_buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* Appends one byte. 0, or -1 when out of memory (b unchanged). */
static inline int qh_buf_putc(qh_buf *b, char c)
{
    if (b->len == b->cap && qh_buf_reserve(b, 1) != 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

#endif
