/* codec.c: the `qhost.codec` Lua module (see codec.h).
 *
 *   codec.json_encode(v)             -> string | nil, err
 *   codec.json_encode_pretty(v, indent = 2)  (spaces, or a string) -> same
 *   codec.json_decode(s)             -> value | nil, err
 *   codec.json_object_from_arrays(keys, values) -> string | nil, err
 *   codec.keys_of(t)                 -> array of t's remembered key order | nil
 *   codec.pack_int(n)  -> 4 bytes | nil, err    codec.unpack_int(s)    -> n | nil, err
 *   codec.pack_double(x) -> 8 bytes            codec.unpack_double(s) -> x | nil, err
 *   codec.null (lightuserdata NULL: JSON null), codec.array_mt (marks arrays)
 * Bad data gives nil, err; a wrong argument type raises.
 *
 * JSON follows Python's json module with separators=(",", ":") and
 * ensure_ascii=False, because pipelines port from Quix Streams and users
 * compare the printed JSON. Lua tables have no key order, so a decoded object
 * carries its document key order in its metatable (`__qhost_keys`); objects
 * with the same key sequence share one interned metatable, so keeping the
 * order costs one string lookup per object, not one table per object. The
 * encoder writes listed keys first, then any others sorted bytewise (all of
 * them sorted when there is no list), so output is deterministic.
 *
 * Choices where Python has no equivalent (documented for the Lua library):
 * - Lua has one number type: integral values with |x| <= 2^53 print as
 *   integers ("5", never "5.0"; -0 prints "0"); others as Python's repr
 *   prints them (the shortest digits that read back as the same double,
 *   exponent form below 1e-4 and from 1e16, "1e+16", "1.5e-07",
 *   "9007199254740994.0"). A few decimals, like 1234.56, are found without
 *   printf.
 * - json_decode turns a lone \uD800..\uDFFF escape into its 3-byte form
 *   (Python's "surrogatepass"); the encoder writes such a code point back as
 *   the same \uXXXX escape, so it round-trips and the output stays UTF-8.
 *   Raw (unescaped) bytes in JSON text must be valid UTF-8, and so must every
 *   string the encoder is given.
 * - Numbers decode to Lua numbers (doubles), except integers (no '.', no
 *   exponent) beyond 2^53 that fit in int64: those become int64_t cdata,
 *   so that they are not rounded, and int64_t/uint64_t cdata encode as
 *   plain integers. Integers beyond int64 decode to doubles (rounded), and
 *   values beyond the double range become +-inf (as Python's float()).
 * - NaN, Infinity and -Infinity are read and written as Python's json
 *   module does (not JSON, but what json.dumps writes by default).
 * - "-0" decodes to 0 (Python reads it as the integer 0); "-0.0" to -0.0.
 * - Error positions are 1-based byte offsets (string.sub positions).
 * - The key-order cache keeps the first 4096 distinct key sequences; after
 *   that each decoded object gets a metatable of its own (order is kept,
 *   only the sharing is lost). Do not modify a decoded object's metatable:
 *   it is shared.
 * - Tables with holes or non-1..n number keys are errors, except tables
 *   marked with codec.array_mt, whose holes become null.
 *
 * Nothing here calls user Lua code: tables are read with raw accesses and
 * lua_next, so an encode sees no __index/__pairs. */
#include "codec.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define MAX_DEPTH     1000
/* LuaJIT's type tag of cdata (lj_obj.h); lua.h does not name it. */
#define QH_LUA_TCDATA 10
#define KEY_CACHE_MAX 4096

/* Registry names, so that opening the module twice in one state shares
 * codec.array_mt and the key cache (values decoded by one copy must encode
 * as arrays/ordered objects through the other). */
#define REG_SCRATCH   "qhost.codec.scratch"
#define REG_STATE_MT  "qhost.codec.state_mt"
#define REG_ARRAY_MT  "qhost.codec.array_mt"
#define REG_KEY_CACHE "qhost.codec.key_cache"
#define REG_INT64     "qhost.codec.int64"
#define KEYS_FIELD    "__qhost_keys"

/* Upvalues shared by every module function. UV_SCRATCH is a table:
 * [SCRATCH_STATE] the scratch state calls share (see state_acquire),
 * [SCRATCH_CACHED] how many entries the key-order cache holds. */
#define UV_SCRATCH lua_upvalueindex(1)
#define UV_ARRAYMT lua_upvalueindex(2)
#define UV_CACHE   lua_upvalueindex(3)
#define UV_KEYSFLD lua_upvalueindex(4)
#define UV_INT64   lua_upvalueindex(5)  /* { make, digits }: see INT64_LUA */
#define N_UPVALUES 5
#define SCRATCH_STATE  1
#define SCRATCH_CACHED 2

/* ------------------------------------------------------------------------ */
/* Buffer                                                                    */

int qh_buf_reserve(qh_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return 0;
    size_t need = b->len + extra;
    if (need < b->len) return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void qh_buf_free(qh_buf *b)
{
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static inline int buf_put(qh_buf *b, const void *s, size_t n)
{
    if (qh_buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int buf_putc(qh_buf *b, char c)
{
    if (b->len == b->cap && qh_buf_reserve(b, 1) != 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* UTF-8 and string escaping                                                 */

/* Byte classes for the string fast paths: 0 plain ASCII, 1 needs an escape
 * ('"', '\\', control), 2/3/4 lead byte of a sequence of that length,
 * 5 never valid (continuation byte as lead, C0, C1, F5..FF). */
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const unsigned char byte_class[256] = {
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

/* Length (2..4) of the valid UTF-8 sequence at p, or 0. With
 * allow_surrogates, ED A0..BF xx (U+D800..U+DFFF) is accepted too. */
static inline size_t utf8_seq_len(const unsigned char *p, const unsigned char *end,
                                  int allow_surrogates)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    switch (byte_class[c]) {
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

static const char hexdigits[] = "0123456789abcdef";

/* Skips plain bytes (class 0) eight at a time: a word is plain unless a
 * byte is >= 0x80, < 0x20, '"' or '\\' (the "has a byte less than n" bit
 * trick, exact for n <= 128). Returns where the byte loop must take over. */
static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
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
    while (p < end && byte_class[*p] == 0) p++;
    return p;
}

int qh_json_append_string(qh_buf *b, const char *str, size_t len)
{
    const unsigned char *p = (const unsigned char *)str, *end = p + len;
    size_t start_len = b->len;

    /* Most strings need no escape: one reservation covers them. */
    if (qh_buf_reserve(b, len + 2) != 0) return QH_JSON_ENOMEM;
    b->data[b->len++] = '"';
    while (p < end) {
        const unsigned char *run = p;
        p = skip_plain(p, end);
        if (p > run) {
            memcpy(b->data + b->len, run, (size_t)(p - run));
            b->len += (size_t)(p - run);
        }
        if (p == end) break;

        unsigned c = *p;
        /* Room for the longest escape (6) plus the rest and the quote. */
        if (qh_buf_reserve(b, 6 + (size_t)(end - p) + 1) != 0) goto nomem;
        char *o = b->data + b->len;
        if (byte_class[c] == 1) {
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
        size_t n = utf8_seq_len(p, end, 1);
        if (n == 0) goto badutf8;
        if (c == 0xED && p[1] >= 0xA0) {
            /* A surrogate code point (from a lone \uD8xx escape): writing
             * it raw would make the output invalid UTF-8. A high one right
             * before a low one is not lone: as two escapes it would read
             * back as one supplementary character, other bytes (WTF-8
             * forbids such pairs for that reason). */
            if (p[1] <= 0xAF && end - p >= 6 && p[3] == 0xED && p[4] >= 0xB0) goto badutf8;
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

nomem:
    b->len = start_len;
    return QH_JSON_ENOMEM;
badutf8:
    b->len = start_len;
    return QH_JSON_EUTF8;
}

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */

/* os.setlocale can change LC_NUMERIC under us; JSON numbers always use '.'. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void init_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static double strtod_c(const char *s)
{
    return c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
}

static size_t fmt_int(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) out[len++] = '-';
    while (n) out[len++] = tmp[--n];
    return len;
}

static const double pow10_small[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8 };

/* Most non-integral values in messages have a few decimals (prices,
 * readings). If r / 10^k == |d| for an integer r, the decimal r*10^-k reads
 * back as d (division is correctly rounded, like strtod), and the smallest
 * such k gives the shortest form: no snprintf/strtod needed. Only for
 * 1e-4 <= |d| < 1e14, which repr writes without an exponent too. r must
 * also be the nearest integer to |d|*10^k, as repr picks the nearest of
 * equally short decimals: below 2^50, |d|*10^k is off by at most 1/16 and
 * m + 0.5 is exact, and doubles are so dense there (relative to 10^-k)
 * that a decimal that reads back is within 1/8 of the product, so no
 * farther integer can pass the test. Above, 2^52 + 0.5 would already
 * round. */
static size_t fmt_fixed(char *out, double d)
{
    double a = fabs(d);
    if (!(a >= 1e-4 && a < 1e14)) return 0;
    for (int k = 1; k <= 8; k++) {
        double m = a * pow10_small[k];
        if (m >= 1125899906842624.0) return 0;  /* 2^50 */
        double r = floor(m + 0.5);
        if (r / pow10_small[k] != a) continue;
        char digits[24];
        size_t n = fmt_int(digits, (int64_t)r), len = 0;
        if (d < 0) out[len++] = '-';
        if (n <= (size_t)k) {
            out[len++] = '0';
            out[len++] = '.';
            for (size_t z = n; z < (size_t)k; z++) out[len++] = '0';
            memcpy(out + len, digits, n);
            len += n;
        } else {
            memcpy(out + len, digits, n - (size_t)k);
            len += n - (size_t)k;
            out[len++] = '.';
            memcpy(out + len, digits + n - k, (size_t)k);
            len += (size_t)k;
        }
        return len;
    }
    return 0;
}

/* A positive decimal: n significant digits d[0..n) (no trailing zeros
 * once trimmed), the first one worth 10^e10. */
typedef struct decimal {
    char d[20];
    int n, e10;
} decimal;

/* a > 0, finite: its digits rounded to `ndigits` (1..17) by printf, which
 * rounds exactly. The locale's decimal point (os.setlocale may have made it
 * a comma, or several bytes) is skipped: only digits and the exponent are
 * read. */
static void decimal_printf(double a, int ndigits, decimal *out)
{
    char tmp[48];
    int len = snprintf(tmp, sizeof tmp, "%.*e", ndigits - 1, a);
    int i = 0, n = 0;
    for (; i < len && tmp[i] != 'e'; i++)
        if (tmp[i] >= '0' && tmp[i] <= '9' && n < 17) out->d[n++] = tmp[i];
    out->n = n;
    out->e10 = i < len ? (int)strtol(tmp + i + 1, NULL, 10) : 0;
}

static void decimal_trim(decimal *x)
{
    while (x->n > 1 && x->d[x->n - 1] == '0') x->n--;
}

/* x17 (a's 17 digits, untrimmed) rounded to k < 17 digits. The decimal
 * halfway between two k-digit values has k + 1 digits, so it cannot lie
 * strictly between a and its nearest 17-digit value: rounding x17 again
 * rounds the same way as rounding a, except when x17 is that halfway
 * decimal itself, and then printf decides. */
static void decimal_round(const decimal *x17, int k, double a, decimal *out)
{
    int half = x17->d[k] == '5';
    for (int i = k + 1; i < x17->n && half; i++) half = x17->d[i] == '0';
    if (half) {
        decimal_printf(a, k, out);
    } else {
        memcpy(out->d, x17->d, (size_t)k);
        out->n = k;
        out->e10 = x17->e10;
        if (x17->d[k] >= '5') {
            int i = k - 1;
            while (i >= 0 && out->d[i] == '9') out->d[i--] = '0';
            if (i >= 0) {
                out->d[i]++;
            } else {  /* 99.. -> 100..: one digit more in front */
                out->d[0] = '1';
                out->e10++;
            }
        }
    }
    decimal_trim(out);
}

/* Whether x reads back (strtod, C locale) as a. */
static int decimal_reads_back(const decimal *x, double a)
{
    char tmp[48];
    memcpy(tmp, x->d, (size_t)x->n);
    snprintf(tmp + x->n, sizeof tmp - (size_t)x->n, "e%d", x->e10 - (x->n - 1));
    return strtod_c(tmp) == a;
}

/* Writes x as Python's repr lays a float out: positional for exponents -4
 * to 15, else d.ddde+XX with at least two exponent digits. Returns the
 * length. */
static size_t decimal_layout(char *out, int neg, const decimal *x)
{
    size_t len = 0;
    if (neg) out[len++] = '-';
    if (x->e10 < -4 || x->e10 >= 16) {
        out[len++] = x->d[0];
        if (x->n > 1) {
            out[len++] = '.';
            memcpy(out + len, x->d + 1, (size_t)x->n - 1);
            len += (size_t)x->n - 1;
        }
        int e = x->e10 < 0 ? -x->e10 : x->e10;
        out[len++] = 'e';
        out[len++] = x->e10 < 0 ? '-' : '+';
        if (e >= 100) out[len++] = (char)('0' + e / 100);
        out[len++] = (char)('0' + e / 10 % 10);
        out[len++] = (char)('0' + e % 10);
    } else if (x->e10 < 0) {
        out[len++] = '0';
        out[len++] = '.';
        for (int i = -1; i > x->e10; i--) out[len++] = '0';
        memcpy(out + len, x->d, (size_t)x->n);
        len += (size_t)x->n;
    } else {
        int ip = x->e10 + 1;
        for (int i = 0; i < ip; i++) out[len++] = i < x->n ? x->d[i] : '0';
        if (x->n > ip) {
            out[len++] = '.';
            memcpy(out + len, x->d + ip, (size_t)(x->n - ip));
            len += (size_t)(x->n - ip);
        } else {
            /* Integral: only beyond 2^53 here (fmt_int writes the others).
             * Python's ".0" keeps it a double when read back; a plain
             * integer that big decodes to an int64_t cdata. */
            out[len++] = '.';
            out[len++] = '0';
        }
    }
    out[len] = '\0';
    return len;
}

/* The shortest digits that read back as d, as Python's repr finds them.
 * One printf gives the 17 digits that always read back; 15 and 16 digits
 * are rounded from them (printf is by far the slowest step).
 * - A normal double is within 2^-53 (relative) of any decimal that reads
 *   back as it, and 15-digit decimals are at least 5e-16 (relative) apart
 *   from their midpoints, so if some decimal of p <= 15 digits reads back,
 *   the 15-digit rounding is that decimal with zeros appended: when 15
 *   digits read back, trimming their zeros gives the shortest. Else 16
 *   digits if they read back, else 17.
 * - Subnormals have fewer significant bits, so those bounds fail; but their
 *   neighbours are evenly spaced, so if k digits read back, so do k + 1
 *   (the nearer rounding): a binary search over 1..17. */
static size_t fmt_shortest(char *out, double d)
{
    double a = fabs(d);
    decimal x17, x;
    decimal_printf(a, 17, &x17);
    if (a >= DBL_MIN) {
        decimal_round(&x17, 15, a, &x);
        if (!decimal_reads_back(&x, a)) {
            decimal_round(&x17, 16, a, &x);
            if (!decimal_reads_back(&x, a)) {
                x = x17;
                decimal_trim(&x);
            }
        }
    } else {
        int lo = 1, hi = 17;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            decimal_round(&x17, mid, a, &x);
            if (decimal_reads_back(&x, a)) hi = mid;
            else lo = mid + 1;
        }
        if (lo < 17) {
            decimal_round(&x17, lo, a, &x);
        } else {
            x = x17;
            decimal_trim(&x);
        }
    }
    return decimal_layout(out, d < 0, &x);
}

/* Writes d into out (at least 32 bytes) as a JSON number; returns the
 * length. NaN and the infinities are not JSON, but Python's json.dumps
 * writes them as NaN, Infinity and -Infinity (and json.loads reads them),
 * so pipelines ported from Quix Streams meet them in their topics. */
static size_t fmt_number(char *out, double d)
{
    if (d >= -9007199254740992.0 && d <= 9007199254740992.0) {
        int64_t i = (int64_t)d;
        if ((double)i == d) return fmt_int(out, i);
    }
    if (!isfinite(d)) {
        const char *word = isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
        size_t n = strlen(word);
        memcpy(out, word, n + 1);
        return n;
    }
    size_t len = fmt_fixed(out, d);
    if (len) return len;
    return fmt_shortest(out, d);
}

/* ------------------------------------------------------------------------ */
/* Per-state scratch                                                         */

typedef struct keyref {
    const char *s;
    size_t len;
    int mark;
} keyref;

/* How the encoder reached the value at one depth, for error paths. */
typedef struct frame {
    const char *key;   /* NULL: reached by array index */
    size_t klen;
    size_t index;
    const void *table; /* the table at this depth (cycle check) */
} frame;

/* Scratch reused by every call, so that the hot path does not allocate.
 * Lives in a full userdata (freed by __gc), so a Lua error thrown through a
 * call (out of memory, an error from a __gc finalizer) leaks nothing. */
typedef struct codec_state {
    int busy;          /* a call is using it (see state_acquire) */
    int fresh;         /* made by a call that found the shared one busy */
    qh_buf out;        /* encoder output */
    qh_buf str;        /* decoder: an unescaped string */
    qh_buf keyseq;     /* decoder: key sequences of the open objects */
    keyref *keys;      /* encoder: the keys of the open objects, a stack */
    size_t nkeys, capkeys;
    /* decoder: key count of the last object seen at each shallow depth, the
     * size hint of the next one's table (a stream of like objects then never
     * grows a table key by key). */
    unsigned char size_hint[8];
    char err[512];
    frame path[MAX_DEPTH + 2];
} codec_state;

static int state_gc(lua_State *L)
{
    codec_state *st = lua_touserdata(L, 1);
    qh_buf_free(&st->out);
    qh_buf_free(&st->str);
    qh_buf_free(&st->keyseq);
    free(st->keys);
    st->keys = NULL;
    st->nkeys = st->capkeys = 0;
    return 0;
}

static codec_state *state_new(lua_State *L)
{
    codec_state *st = lua_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_STATE_MT);
    lua_setmetatable(L, -2);
    return st;
}

/* Pushes the shared scratch state (the push is this call's own reference to
 * it) or, when it is busy, a fresh one. Busy means either that a call is
 * using it (this call is nested: a __gc finalizer that encodes, run by an
 * allocation inside another codec call) or that a call using it was
 * abandoned: a Lua error (out of memory, an error thrown by a finalizer)
 * can longjmp out of any allocation, past any code that would clear the
 * flag. The two cannot be told apart, so a fresh state replaces the shared
 * one when its call ends: a nested call's outer caller still holds the old
 * one on its stack and finishes with it, and an abandoned one is collected.
 * A lua_pcall per call would cost more than the one table read. */
static codec_state *state_acquire(lua_State *L)
{
    lua_rawgeti(L, UV_SCRATCH, SCRATCH_STATE);
    codec_state *st = lua_touserdata(L, -1);
    if (st->busy) {
        lua_pop(L, 1);
        st = state_new(L);
        st->fresh = 1;
    }
    st->busy = 1;
    st->nkeys = 0;
    st->out.len = st->str.len = st->keyseq.len = 0;
    st->err[0] = '\0';
    st->path[0].table = NULL;
    return st;
}

/* Ends a call's use of the state (at stack index idx). Big one-off messages
 * should not pin their buffers for the process life. Cannot raise: the slot
 * is in the table's array part. */
static void state_release(lua_State *L, codec_state *st, int idx)
{
    const size_t keep = 1 << 20;
    if (st->out.cap > keep) qh_buf_free(&st->out);
    if (st->str.cap > keep) qh_buf_free(&st->str);
    if (st->keyseq.cap > keep) qh_buf_free(&st->keyseq);
    st->busy = 0;
    if (st->fresh) {
        st->fresh = 0;
        lua_pushvalue(L, idx);
        lua_rawseti(L, UV_SCRATCH, SCRATCH_STATE);
    }
}

/* Makes the top `nret` values the results, right above `base`. The values
 * are pushed before the stack is cut, because the cut may drop the last
 * reference to a scratch state (not the shared one) whose buffers they were
 * copied from. */
static int results(lua_State *L, int base, int nret)
{
    int top = lua_gettop(L);
    for (int i = 1; i <= nret; i++) {
        lua_pushvalue(L, top - nret + i);
        lua_replace(L, base + i);
    }
    lua_settop(L, base + nret);
    return nret;
}

/* The scratch state is at base + 1 (state_acquire right after the
 * arguments). */
static int push_fail(lua_State *L, codec_state *st, int base)
{
    lua_settop(L, base + 1);  /* what a failed decode had pushed is garbage */
    lua_pushnil(L);
    lua_pushstring(L, st->err);
    state_release(L, st, base + 1);
    return results(L, base, 2);
}

/* ------------------------------------------------------------------------ */
/* Encoder                                                                   */

typedef struct enc {
    lua_State *L;
    codec_state *st;
    qh_buf *b;
    int array_mt;      /* index (an upvalue) of codec.array_mt */
    int keys_field;    /* index (an upvalue) of "__qhost_keys" */
    const char *indent; /* NULL: compact */
    size_t indent_len;
} enc;

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

/* Sets st->err to "<what> at value.a[2].b" for the value at `depth`. */
static int enc_fail(enc *e, int depth, const char *what)
{
    char *err = e->st->err;
    const size_t cap = sizeof e->st->err;
    size_t n = (size_t)snprintf(err, cap, "%s at value", what);
    for (int d = 1; d <= depth && n < cap; d++) {
        const frame *f = &e->st->path[d];
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

static int enc_nomem(enc *e)
{
    snprintf(e->st->err, sizeof e->st->err, "out of memory");
    return -1;
}

static int enc_newline(enc *e, int depth)
{
    qh_buf *b = e->b;
    if (qh_buf_reserve(b, 1 + e->indent_len * (size_t)depth) != 0) return -1;
    b->data[b->len++] = '\n';
    for (int i = 0; i < depth; i++) {
        memcpy(b->data + b->len, e->indent, e->indent_len);
        b->len += e->indent_len;
    }
    return 0;
}

static int enc_value(enc *e, int idx, int depth);

static int enc_string(enc *e, const char *s, size_t n, int depth)
{
    int rc = qh_json_append_string(e->b, s, n);
    if (rc == QH_JSON_EUTF8) return enc_fail(e, depth, "cannot encode string with invalid UTF-8");
    if (rc != QH_JSON_OK) return enc_nomem(e);
    return 0;
}

/* One "key":value member; the value is on the top of the stack. */
static int enc_member(enc *e, int first, const char *k, size_t klen, int depth)
{
    frame *f = &e->st->path[depth + 1];
    f->key = k;
    f->klen = klen;
    if (!first && buf_putc(e->b, ',') != 0) return enc_nomem(e);
    if (e->indent && enc_newline(e, depth + 1) != 0) return enc_nomem(e);
    if (enc_string(e, k, klen, depth + 1) != 0) return -1;
    if (buf_put(e->b, e->indent ? ": " : ":", e->indent ? 2 : 1) != 0) return enc_nomem(e);
    return enc_value(e, lua_gettop(e->L), depth + 1);
}

static int keyref_cmp_bytes(const void *a, const void *b)
{
    const keyref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int keyref_cmp_ptr(const void *a, const void *b)
{
    const keyref *x = a, *y = b;
    uintptr_t a1 = (uintptr_t)x->s, b1 = (uintptr_t)y->s;
    return a1 < b1 ? -1 : a1 > b1;
}

/* Small key lists are the common case; insertion sort beats qsort there. */
static void sort_keys(keyref *k, size_t n, int (*cmp)(const void *, const void *))
{
    if (n > 16) {
        qsort(k, n, sizeof *k, cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        keyref t = k[i];
        size_t j = i;
        while (j > 0 && cmp(&k[j - 1], &t) > 0) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = t;
    }
}

static int push_key(codec_state *st, const char *s, size_t len)
{
    if (st->nkeys == st->capkeys) {
        size_t cap = st->capkeys ? st->capkeys * 2 : 64;
        keyref *k = realloc(st->keys, cap * sizeof *k);
        if (!k) return -1;
        st->keys = k;
        st->capkeys = cap;
    }
    st->keys[st->nkeys++] = (keyref){ s, len, 0 };
    return 0;
}

/* Members in sorted byte order: the given keys[0..n) of the table at idx. */
static int enc_sorted_members(enc *e, int idx, keyref *keys, size_t n, int depth, int *first)
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
static int enc_ordered_members(enc *e, int idx, int qk, size_t kbase, size_t n, int depth)
{
    lua_State *L = e->L;
    codec_state *st = e->st;
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
        keyref *hit = NULL;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            keyref *r = &st->keys[kbase + mid];
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

static int enc_table(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    codec_state *st = e->st;
    qh_buf *b = e->b;

    if (depth >= MAX_DEPTH) return enc_fail(e, depth, "cannot encode tables nested deeper than 1000");
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
        if (buf_putc(b, '[') != 0) return enc_nomem(e);
        for (size_t i = 1; i <= n; i++) {
            frame *f = &st->path[depth + 1];
            f->key = NULL;
            f->index = i;
            if (i > 1 && buf_putc(b, ',') != 0) return enc_nomem(e);
            if (e->indent && enc_newline(e, depth + 1) != 0) return enc_nomem(e);
            lua_rawgeti(L, idx, (int)i);
            if (enc_value(e, lua_gettop(L), depth + 1) != 0) return -1;
            lua_pop(L, 1);
        }
        if (n > 0 && e->indent && enc_newline(e, depth) != 0) return enc_nomem(e);
        if (buf_putc(b, ']') != 0) return enc_nomem(e);
    } else if (nstr != count) {
        return enc_fail(e, depth, "cannot encode table with mixed or non-string keys");
    } else {
        if (buf_putc(b, '{') != 0) return enc_nomem(e);
        int first = 1;
        if (mode == MODE_KEYS)
            rc = enc_ordered_members(e, idx, qk, kbase, nstr, depth);
        else
            rc = enc_sorted_members(e, idx, st->keys + kbase, nstr, depth, &first);
        if (rc != 0) return -1;
        if (count > 0 && e->indent && enc_newline(e, depth) != 0) return enc_nomem(e);
        if (buf_putc(b, '}') != 0) return enc_nomem(e);
    }
    st->nkeys = kbase;
    if (qk) lua_pop(L, 1);
    return 0;
}

static int enc_value(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return enc_string(e, s, n, depth);
    }
    case LUA_TNUMBER: {
        char num[32];
        size_t n = fmt_number(num, lua_tonumber(L, idx));
        return buf_put(e->b, num, n) == 0 ? 0 : enc_nomem(e);
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            return buf_put(e->b, "true", 4) == 0 ? 0 : enc_nomem(e);
        return buf_put(e->b, "false", 5) == 0 ? 0 : enc_nomem(e);
    case LUA_TNIL:
        return buf_put(e->b, "null", 4) == 0 ? 0 : enc_nomem(e);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)  /* codec.null */
            return buf_put(e->b, "null", 4) == 0 ? 0 : enc_nomem(e);
        break;
    case LUA_TTABLE:
        return enc_table(e, idx, depth);
    case QH_LUA_TCDATA: {
        /* int64_t and uint64_t (what decoding big integers gives) are
         * written as plain integers; other cdata are an error. */
        lua_rawgeti(L, UV_INT64, 2);
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        int rc = 1;
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            rc = buf_put(e->b, s, n) == 0 ? 0 : enc_nomem(e);
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

/* Pushes the scratch state an encoder needs; returns it. The constants are
 * used where they are, as upvalues: copying them to the stack costs more
 * than it saves on a small value. */
static codec_state *enc_begin(lua_State *L, enc *e)
{
    e->L = L;
    e->st = state_acquire(L);
    e->b = &e->st->out;
    e->array_mt = UV_ARRAYMT;
    e->keys_field = UV_KEYSFLD;
    e->indent = NULL;
    e->indent_len = 0;
    return e->st;
}

static int enc_finish(lua_State *L, enc *e, int base, int rc)
{
    if (rc != 0) return push_fail(L, e->st, base);
    lua_pushlstring(L, e->b->data ? e->b->data : "", e->b->len);
    state_release(L, e->st, base + 1);
    return results(L, base, 1);
}

/* codec.json_encode(value) -> string | nil, err */
static int l_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    enc e;
    enc_begin(L, &e);
    return enc_finish(L, &e, 1, enc_value(&e, 1, 0));
}

/* codec.json_encode_pretty(value, indent = 2) -> string | nil, err;
 * indent is a number of spaces or a string, as in Python. */
static int l_json_encode_pretty(lua_State *L)
{
    luaL_checkany(L, 1);
    char spaces[65];
    const char *indent = spaces;
    size_t indent_len = 2;
    memset(spaces, ' ', sizeof spaces - 1);
    spaces[64] = '\0';
    if (lua_type(L, 2) == LUA_TSTRING) {
        indent = lua_tolstring(L, 2, &indent_len);
    } else if (!lua_isnoneornil(L, 2)) {
        lua_Number n = luaL_checknumber(L, 2);
        if (!(n >= 0 && n <= 64) || n != floor(n))
            return luaL_argerror(L, 2, "indent must be an integer from 0 to 64 or a string");
        indent_len = (size_t)n;
    }
    lua_settop(L, 2);  /* keeps a string indent alive */
    enc e;
    enc_begin(L, &e);
    e.indent = indent;
    e.indent_len = indent_len;
    return enc_finish(L, &e, 2, enc_value(&e, 1, 0));
}

/* codec.json_object_from_arrays(keys, values) -> string | nil, err: an
 * object with keys[i] -> values[i] in the keys' order; a nil value is null.
 * The fast path for CSV rows and other records with a known column order. */
static int l_json_object_from_arrays(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    size_t m = lua_objlen(L, 1), nv = lua_objlen(L, 2);
    for (size_t i = 1; i <= m; i++) {
        lua_rawgeti(L, 1, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "json_object_from_arrays: keys[%d] is a %s, expected a string",
                              (int)i, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    if (nv > m) {
        lua_pushnil(L);
        lua_pushfstring(L, "values has %d entries, keys has %d", (int)nv, (int)m);
        return 2;
    }
    enc e;
    enc_begin(L, &e);
    int rc = -1;
    if (buf_putc(e.b, '{') != 0) { enc_nomem(&e); goto done; }
    for (size_t i = 1; i <= m; i++) {
        size_t klen;
        lua_rawgeti(L, 1, (int)i);
        const char *k = lua_tolstring(L, -1, &klen);
        lua_rawgeti(L, 2, (int)i);
        if (enc_member(&e, i == 1, k, klen, 0) != 0) goto done;
        lua_pop(L, 2);
    }
    if (buf_putc(e.b, '}') != 0) { enc_nomem(&e); goto done; }
    rc = 0;
done:
    return enc_finish(L, &e, 2, rc);
}

/* ------------------------------------------------------------------------ */
/* Decoder                                                                   */

typedef struct dec {
    lua_State *L;
    codec_state *st;
    const unsigned char *s, *p, *end;
    int array_mt, cache, keys_field;  /* indices (upvalues) */
} dec;

static int dec_fail_at(dec *d, const unsigned char *at, const char *what)
{
    snprintf(d->st->err, sizeof d->st->err, "invalid JSON at byte %zu: %s",
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
        p = skip_plain(p, end);
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
        size_t n = utf8_seq_len(p, end, 0);
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
        size_t n = utf8_seq_len(p, end, 0);
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

static inline int is_digit(unsigned c) { return c - '0' < 10; }

static const double pow10_exact[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* Pushes the int64_t cdata with the two's complement bits u. Rare: kept
 * out of line so that dec_number stays small enough to be inlined into
 * dec_value. */
__attribute__((noinline, cold))
static int dec_push_int64(dec *d, uint64_t u)
{
    lua_State *L = d->L;
    lua_rawgeti(L, UV_INT64, 1);
    lua_pushnumber(L, (lua_Number)(int32_t)(uint32_t)(u >> 32));
    lua_pushnumber(L, (lua_Number)(uint32_t)u);
    lua_call(L, 2, 1);
    return 0;
}

/* The number token of n bytes at start, read by strtod. Out of line, as
 * dec_push_int64. */
__attribute__((noinline))
static int dec_number_strtod(dec *d, const unsigned char *start, size_t n)
{
    /* strtod would read past the token ("0x1", "1e5x"...): copy it out. */
    char small[64];
    char *tok = small;
    if (n >= sizeof small) {
        qh_buf *b = &d->st->str;
        b->len = 0;
        if (qh_buf_reserve(b, n + 1) != 0) return dec_fail_at(d, start, "out of memory");
        tok = b->data;
    }
    memcpy(tok, start, n);
    tok[n] = '\0';
    lua_pushnumber(d->L, strtod_c(tok));
    return 0;
}

static int dec_number(dec *d)
{
    const unsigned char *start = d->p, *p = d->p, *end = d->end;
    int neg = 0, integral = 1;
    /* Validation collects the digits for the fast path: up to 15
     * significant digits and a power of ten up to 22 are exact doubles, so
     * one multiply or divide is correctly rounded (the same as strtod). */
    uint64_t mant = 0;
    int nsig = 0, scale = 0;
    long exp10 = 0;

    if (*p == '-') { neg = 1; p++; }
    if (p >= end || !is_digit(*p)) {
        d->p = p;
        return dec_fail(d, "invalid number: expected a digit");
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) return dec_fail_at(d, start, "invalid number: leading zero");
    } else {
        while (p < end && is_digit(*p)) {
            mant = mant * 10 + (uint64_t)(*p - '0');
            nsig++;
            p++;
            if (nsig > 19) mant = 0;  /* too long for the fast path anyway */
        }
    }
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (p >= end || !is_digit(*p)) {
            d->p = p;
            return dec_fail(d, "invalid number: expected a digit after '.'");
        }
        while (p < end && is_digit(*p)) {
            if (mant || *p != '0') nsig++;
            if (nsig <= 19) mant = mant * 10 + (uint64_t)(*p - '0');
            scale++;
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= end || !is_digit(*p)) {
            d->p = p;
            return dec_fail(d, "invalid number: expected a digit in the exponent");
        }
        while (p < end && is_digit(*p)) {
            if (exp10 < 100000) exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg) exp10 = -exp10;
    }
    d->p = p;

    if (integral && nsig <= 15) {
        /* "-0" is the integer 0, as in Python. */
        lua_pushnumber(d->L, neg && mant ? -(lua_Number)mant : (lua_Number)mant);
        return 0;
    }
    if (integral && nsig <= 19) {
        /* mant is exact. A double holds integers up to 2^53; an int64_t
         * cdata the rest of the int64 range, so that ids and nanosecond
         * timestamps survive a decode and encode unchanged. */
        if (mant > 9007199254740992ull && mant <= (neg ? 1ull << 63 : (1ull << 63) - 1))
            return dec_push_int64(d, neg ? 0 - mant : mant);
        /* uint64 to double rounds correctly, as strtod does */
        lua_pushnumber(d->L, neg ? -(lua_Number)mant : (lua_Number)mant);
        return 0;
    }
    long e10 = exp10 - scale;
    if (nsig <= 15 && e10 >= -22 && e10 <= 22) {
        double v = (double)mant;
        v = e10 < 0 ? v / pow10_exact[-e10] : v * pow10_exact[e10];
        lua_pushnumber(d->L, neg ? -v : v);
        return 0;
    }
    return dec_number_strtod(d, start, (size_t)(p - start));
}

static int dec_value(dec *d, int depth);

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

/* Gives the object at tidx the metatable for its key sequence
 * st->keyseq[kstart..] holding nkeys keys: the cached one, or a new one
 * (cached while the cache has room). */
static void dec_set_keys_mt(dec *d, int tidx, size_t kstart, int nkeys)
{
    lua_State *L = d->L;
    codec_state *st = d->st;
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
            size_t n = 0, used = 0;
            int shift = 0;
            do {
                n |= (size_t)(q[used] & 0x7F) << shift;
                shift += 7;
            } while (q[used++] & 0x80);
            lua_pushlstring(L, (const char *)q + used, n);
            lua_rawseti(L, -2, i);
            off += used + n;
        }
        lua_rawset(L, -3);
        lua_rawgeti(L, UV_SCRATCH, SCRATCH_CACHED);
        lua_Number cached = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (cached < KEY_CACHE_MAX) {
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, d->cache);
            lua_pushnumber(L, cached + 1);
            lua_rawseti(L, UV_SCRATCH, SCRATCH_CACHED);
        }
    }
    lua_setmetatable(L, tidx);
    lua_pop(L, 1);
}

static int dec_object(dec *d, int depth)
{
    lua_State *L = d->L;
    codec_state *st = d->st;
    if (depth >= MAX_DEPTH) return dec_fail(d, "nesting deeper than 1000");
    if (!lua_checkstack(L, 8)) return dec_fail(d, "Lua stack exhausted");
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
    for (;;) {
        if (d->p >= d->end || *d->p != '"')
            return dec_fail(d, nkeys ? "expected a string key" : "expected a string key or '}'");
        const char *k;
        size_t klen;
        if (dec_string(d, &k, &klen) != 0) return -1;
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
    dec_set_keys_mt(d, tidx, kstart, nkeys);
    st->keyseq.len = kstart;
    if (hint) *hint = (unsigned char)(nkeys < 64 ? nkeys : 64);
    return 0;
}

static int dec_array(dec *d, int depth)
{
    lua_State *L = d->L;
    if (depth >= MAX_DEPTH) return dec_fail(d, "nesting deeper than 1000");
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

/* codec.json_decode(s) -> value | nil, err */
static int json_decode_bytes(lua_State *L, const char *s, size_t len);

static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return json_decode_bytes(L, s, len);
}

/* codec.json_decode_at(address, len) -> value | nil, err: the JSON text of
 * `len` bytes at `address` (a number: a pointer from the FFI, e.g.
 * tonumber(ffi.cast("uintptr_t", p))), decoded without first copying it
 * into a Lua string. The caller vouches for the memory. */
static int l_json_decode_at(lua_State *L)
{
    uintptr_t addr = (uintptr_t)luaL_checknumber(L, 1);
    size_t len = (size_t)luaL_checknumber(L, 2);
    lua_settop(L, 1);
    return json_decode_bytes(L, len ? (const char *)addr : "", len);
}

static int json_decode_bytes(lua_State *L, const char *s, size_t len)
{
    dec d;
    d.L = L;
    d.st = state_acquire(L);
    d.s = d.p = (const unsigned char *)s;
    d.end = d.s + len;
    d.array_mt = UV_ARRAYMT;  /* as in enc_begin */
    d.cache = UV_CACHE;
    d.keys_field = UV_KEYSFLD;

    if (dec_value(&d, 0) != 0) return push_fail(L, d.st, 1);
    skip_ws(&d);
    if (d.p < d.end) {
        dec_fail(&d, "unexpected data after the JSON value");
        return push_fail(L, d.st, 1);
    }
    state_release(L, d.st, 2);
    return results(L, 1, 1);
}

/* codec.keys_of(t) -> a new array of t's remembered key order, or nil. */
static int l_keys_of(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushvalue(L, UV_KEYSFLD);
    lua_rawget(L, -2);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pushnil(L);
        return 1;
    }
    /* A copy: the list belongs to a metatable shared by many objects. */
    int n = (int)lua_objlen(L, -1);
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, UV_ARRAYMT);
    lua_setmetatable(L, -2);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Binary numbers                                                            */

/* codec.pack_int(n) -> 4-byte big-endian string | nil, err */
static int l_pack_int(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TNUMBER);
    lua_Number n = lua_tonumber(L, 1);
    if (!(n >= -2147483648.0 && n <= 2147483647.0) || n != floor(n)) {
        lua_pushnil(L);
        lua_pushfstring(L, "int value must be an integer from -2147483648 to 2147483647, got %s",
                        lua_tostring(L, 1));
        return 2;
    }
    uint32_t u = (uint32_t)(int32_t)n;
    char out[4] = { (char)(u >> 24), (char)(u >> 16), (char)(u >> 8), (char)u };
    lua_pushlstring(L, out, 4);
    return 1;
}

/* codec.unpack_int(s) -> number | nil, err */
static int l_unpack_int(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    if (n != 4) {
        lua_pushnil(L);
        lua_pushfstring(L, "int payload must be 4 bytes, got %d", (int)n);
        return 2;
    }
    uint32_t u = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
    lua_pushnumber(L, (lua_Number)(int32_t)u);
    return 1;
}

/* codec.pack_double(x) -> 8-byte big-endian IEEE 754 string */
static int l_pack_double(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TNUMBER);
    double x = lua_tonumber(L, 1);
    uint64_t u;
    memcpy(&u, &x, 8);
    char out[8];
    for (int i = 7; i >= 0; i--) {
        out[i] = (char)(u & 0xFF);
        u >>= 8;
    }
    lua_pushlstring(L, out, 8);
    return 1;
}

/* codec.unpack_double(s) -> number | nil, err */
static int l_unpack_double(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    if (n != 8) {
        lua_pushnil(L);
        lua_pushfstring(L, "double payload must be 8 bytes, got %d", (int)n);
        return 2;
    }
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | s[i];
    double x;
    memcpy(&x, &u, 8);
    lua_pushnumber(L, x);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Module                                                                    */

static const luaL_Reg codec_funcs[] = {
    { "json_encode", l_json_encode },
    { "json_encode_pretty", l_json_encode_pretty },
    { "json_decode", l_json_decode },
    { "json_decode_at", l_json_decode_at },
    { "json_object_from_arrays", l_json_object_from_arrays },
    { "keys_of", l_keys_of },
    { "pack_int", l_pack_int },
    { "unpack_int", l_unpack_int },
    { "pack_double", l_pack_double },
    { "unpack_double", l_unpack_double },
    { NULL, NULL },
};

/* Pushes registry[name], creating it with `make` the first time. */
static void registry_get(lua_State *L, const char *name, void (*make)(lua_State *))
{
    lua_getfield(L, LUA_REGISTRYINDEX, name);
    if (!lua_isnil(L, -1)) return;
    lua_pop(L, 1);
    make(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, name);
}

static void make_scratch(lua_State *L)
{
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setfield(L, LUA_REGISTRYINDEX, REG_STATE_MT);
    /* Both slots in the array part, so that state_release cannot allocate. */
    lua_createtable(L, 2, 0);
    state_new(L);
    lua_rawseti(L, -2, SCRATCH_STATE);
    lua_pushnumber(L, 0);
    lua_rawseti(L, -2, SCRATCH_CACHED);
}

static void make_table(lua_State *L)
{
    lua_newtable(L);
}

/* The classic Lua API cannot make or read cdata, so two small Lua functions
 * do it for the codec; they only run for integers beyond 2^53, which are
 * rare. `make` builds an int64_t from its two 32-bit halves (hi signed),
 * `digits` gives the decimal digits of an int64_t or uint64_t (tostring
 * without the LL/ULL suffix) and nil for any other value. */
static const char INT64_LUA[] =
    "local ffi = require('ffi')\n"
    "local int64, uint64 = ffi.typeof('int64_t'), ffi.typeof('uint64_t')\n"
    "local istype, tostring, match = ffi.istype, tostring, string.match\n"
    "local function make(hi, lo) return int64(hi) * 4294967296 + lo end\n"
    "local function digits(v)\n"
    "  if istype(int64, v) or istype(uint64, v) then return (match(tostring(v), '^(-?%d+)U?LL$')) end\n"
    "end\n"
    "return { make, digits }\n";

/* Raises if the FFI is missing: the host always has LuaJIT's. */
static void make_int64_helpers(lua_State *L)
{
    if (luaL_loadbuffer(L, INT64_LUA, sizeof INT64_LUA - 1, "=qhost.codec") != 0) lua_error(L);
    lua_call(L, 0, 1);
}

int qh_codec_open(lua_State *L)
{
    pthread_once(&c_locale_once, init_c_locale);

    lua_newtable(L);
    int mod = lua_gettop(L);
    registry_get(L, REG_SCRATCH, make_scratch);
    registry_get(L, REG_ARRAY_MT, make_table);
    registry_get(L, REG_KEY_CACHE, make_table);
    lua_pushliteral(L, KEYS_FIELD);
    registry_get(L, REG_INT64, make_int64_helpers);
    int uv = mod + 1;
    for (const luaL_Reg *r = codec_funcs; r->name; r++) {
        for (int i = 0; i < N_UPVALUES; i++) lua_pushvalue(L, uv + i);
        lua_pushcclosure(L, r->func, N_UPVALUES);
        lua_setfield(L, mod, r->name);
    }
    lua_pushvalue(L, uv + 1);
    lua_setfield(L, mod, "array_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, mod, "null");
    lua_settop(L, mod);
    return 1;
}
