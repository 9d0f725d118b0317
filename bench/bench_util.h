/* bench_util.h: small helpers shared by the benchmark's C programs
 * (benchctl.c, raw_pipe.c, raw_source.c): the message checksum, a growable
 * byte buffer with a JSON string writer, the monotonic clock, and the
 * deterministic data of the workloads, so that the generator, the raw
 * baselines and the checker agree byte for byte.
 * Uses: libc only. Header-only (static functions): each program is one
 * translation unit built by bench/run.sh with `cc ... -lrdkafka`. */
#ifndef QH_BENCH_UTIL_H
#define QH_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The checksum of one message: FNV-1a over the key, a separator, the
 * value, then a finalizer so that the sum over messages (order-independent,
 * mod 2^64) mixes well. A null key or value hashes as empty. */
static inline uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static inline uint64_t msg_hash(const void *key, size_t key_len, const void *value, size_t value_len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    if (key) h = fnv1a(key, key_len, h);
    h ^= 0xff;
    h *= 0x100000001b3ULL;
    if (value) h = fnv1a(value, value_len, h);
    /* splitmix64 finalizer */
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27; h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

static inline void buf_reserve(buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) { fprintf(stderr, "out of memory\n"); exit(2); }
    b->cap = cap;
}

static inline void buf_put(buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static inline void buf_puts(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* A JSON string as Python's json/orjson write it (UTF-8 kept as is). */
static inline void buf_json_string(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            const char *short_esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                                  : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (short_esc) buf_put(b, short_esc, 2);
            else {
                char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
                buf_put(b, esc, 6);
            }
        } else {
            buf_reserve(b, 1);
            b->data[b->len++] = (char)c;
        }
    }
    buf_reserve(b, 1);
    b->data[b->len++] = '"';
}

/* Workload 3/4, the counter source: key "<i>", value {"n":<i>}. */
static inline int counter_key(char *out, size_t cap, long i) { return snprintf(out, cap, "%ld", i); }
static inline int counter_value(char *out, size_t cap, long i) { return snprintf(out, cap, "{\"n\":%ld}", i); }

#endif
