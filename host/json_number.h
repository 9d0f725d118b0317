/* json_number.h: JSON number text to and from doubles, as Python's json
 * module reads and writes it (the encoder writes with it, the decoder
 * reads with it).
 * Provides: qh_json_number_format (the shortest text that reads back as
 * the same double, as Python's repr) and qh_json_number_read (a number
 * token, exactly: short numbers without strtod, integers beyond 2^53 that
 * fit in int64 as int64; inline, with qh_json_number_strtod for the rest).
 * Uses: libc (snprintf and strtod in the C locale: os.setlocale may have
 * changed LC_NUMERIC, JSON always has '.'), pthread (the C locale is made
 * once). */
#ifndef QH_JSON_NUMBER_H
#define QH_JSON_NUMBER_H

#include <stddef.h>
#include <stdint.h>

/* Room qh_json_number_format needs (it writes a '\0' after the text). */
#define QH_JSON_NUMBER_MAX 32

/* Writes d into out (QH_JSON_NUMBER_MAX bytes) as a JSON number; returns
 * the length. Integral values with |d| <= 2^53 print as integers ("5", -0
 * as "0"), others as Python's repr prints floats. NaN and the infinities
 * are not JSON, but Python's json.dumps writes them as NaN, Infinity and
 * -Infinity (and json.loads reads them), so pipelines ported from Quix
 * Streams meet them in their topics. */
size_t qh_json_number_format(char *out, double d);

/* For LuaJIT's FFI (qhost.runtime.json_in): reads the number token at p
 * (before end) as the decoder does, into *out; returns the token's length,
 * negated when qh_json_number_format may not write *out back as exactly
 * that token ("1.50", "1e3", "-0": the object's text cannot be copied to
 * the output as it is); 0 when the decoder is to read it: not a number, an
 * integer it makes an int64, a token longer than INT32_MAX. (An int:
 * LuaJIT boxes 64-bit results.) */
int32_t qh_ffi_json_number_read(const char *p, const char *end, double *out);

/* A number read by qh_json_number_read. */
typedef struct qh_json_number {
    double d;      /* the value, unless is_int64 */
    int64_t i;     /* the value, when is_int64 */
    int is_int64;  /* an integer (no '.', no exponent) beyond 2^53 within int64 */
    /* 1: qh_json_number_format writes d as exactly the token read. Said
     * of tokens it surely holds for, not of all: an integer of at most 15
     * digits (below 2^53, written as an integer) other than "-0" (written
     * "0"); a decimal without an exponent, of at most 15 significant
     * digits, its last digit not 0 ("1.50" and "5.0" are written "1.5" and
     * "5"), at least 1e-4 (smaller ones are written with an exponent). A
     * decimal of at most 15 significant digits reads back from its double
     * unchanged (DBL_DIG), so no shorter text reads as that double, and it
     * is not integral: repr's shortest digits are its own. */
    int writes_back;
} qh_json_number;

/* The token of n bytes at start, read by strtod in the C locale: the rare
 * numbers qh_json_number_read cannot read exactly by itself (more than 15
 * significant digits, or a big exponent). 0, or -1 when out of memory. */
int qh_json_number_strtod(const unsigned char *start, size_t n, double *out);

static const double qh_json_pow10_exact[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static inline int qh_json_is_digit(unsigned c) { return c - '0' < 10; }

/* Where a number cannot go on: the end of input, or a wrong byte. */
static inline const unsigned char *qh_json_number_fail(const unsigned char *at, const unsigned char *end,
                                                       const char *what, const unsigned char **err_at,
                                                       const char **err_what)
{
    *err_at = at;
    *err_what = at >= end ? "unexpected end of input" : what;
    return NULL;
}

/* Reads the JSON number token at p (on its '-' or first digit), not past
 * end, into *out. Integers beyond int64 become doubles (rounded), values
 * beyond the double range +-inf (as Python's float()), "-0" the integer 0
 * and "-0.0" -0.0. Returns the end of the token (what follows it is the
 * caller's to judge), or NULL with *err_at on the offending byte and *what
 * saying what is wrong ("invalid number: leading zero", "unexpected end of
 * input", ...). Inline: the decoder runs it for every number of every
 * message, and a call per number costs more than the rest of a short one. */
static inline const unsigned char *qh_json_number_read(const unsigned char *p, const unsigned char *end,
                                                       qh_json_number *out, const unsigned char **err_at,
                                                       const char **what)
{
    const unsigned char *start = p;
    int neg = 0, integral = 1, int_zero = 0, has_exp = 0;
    unsigned char last_frac = 0;
    /* Validation collects the digits for the fast path: up to 15
     * significant digits and a power of ten up to 22 are exact doubles, so
     * one multiply or divide is correctly rounded (the same as strtod). */
    uint64_t mant = 0;
    int nsig = 0, scale = 0;
    long exp10 = 0;

    out->is_int64 = 0;
    out->writes_back = 0;
    if (p < end && *p == '-') { neg = 1; p++; }
    if (p >= end || !qh_json_is_digit(*p))
        return qh_json_number_fail(p, end, "invalid number: expected a digit", err_at, what);
    if (*p == '0') {
        int_zero = 1;
        p++;
        if (p < end && qh_json_is_digit(*p))
            return qh_json_number_fail(start, end, "invalid number: leading zero", err_at, what);
    } else {
        while (p < end && qh_json_is_digit(*p)) {
            mant = mant * 10 + (uint64_t)(*p - '0');
            nsig++;
            p++;
            if (nsig > 19) mant = 0;  /* too long for the fast path anyway */
        }
    }
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (p >= end || !qh_json_is_digit(*p))
            return qh_json_number_fail(p, end, "invalid number: expected a digit after '.'", err_at, what);
        while (p < end && qh_json_is_digit(*p)) {
            if (mant || *p != '0') nsig++;
            if (nsig <= 19) mant = mant * 10 + (uint64_t)(*p - '0');
            scale++;
            p++;
        }
        last_frac = p[-1];
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        has_exp = 1;
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= end || !qh_json_is_digit(*p))
            return qh_json_number_fail(p, end, "invalid number: expected a digit in the exponent", err_at,
                                       what);
        while (p < end && qh_json_is_digit(*p)) {
            if (exp10 < 100000) exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg) exp10 = -exp10;
    }

    if (integral && nsig <= 15) {
        /* "-0" is the integer 0, as in Python. */
        out->d = neg && mant ? -(double)mant : (double)mant;
        out->writes_back = !(neg && mant == 0);
        return p;
    }
    if (integral && nsig <= 19) {
        /* mant is exact. A double holds integers up to 2^53; int64 the
         * rest of its range, so that ids and nanosecond timestamps survive
         * a decode and encode unchanged. */
        if (mant > 9007199254740992ull && mant <= (neg ? 1ull << 63 : (1ull << 63) - 1)) {
            out->is_int64 = 1;
            out->i = (int64_t)(neg ? 0 - mant : mant);
            return p;
        }
        /* uint64 to double rounds correctly, as strtod does */
        out->d = neg ? -(double)mant : (double)mant;
        return p;
    }
    /* (a decimal below 1 has scale - nsig zeros after its point) */
    out->writes_back = !integral && !has_exp && last_frac != '0' && nsig <= 15 && (!int_zero || scale - nsig <= 3);
    long e10 = exp10 - scale;
    if (nsig <= 15 && e10 >= -22 && e10 <= 22) {
        double v = (double)mant;
        v = e10 < 0 ? v / qh_json_pow10_exact[-e10] : v * qh_json_pow10_exact[e10];
        out->d = neg ? -v : v;
        return p;
    }
    if (qh_json_number_strtod(start, (size_t)(p - start), &out->d) != 0)
        return qh_json_number_fail(start, end, "out of memory", err_at, what);
    return p;
}

#endif
