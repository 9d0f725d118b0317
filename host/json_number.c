/* json_number.c: JSON numbers to and from doubles (see json_number.h).
 *
 * Writing follows Python's repr of floats (the shortest digits that read
 * back as the same double, exponent form below 1e-4 and from 1e16,
 * "1e+16", "1.5e-07", "9007199254740994.0"), except that integral values
 * up to 2^53 print as integers ("5", never "5.0"; -0 prints "0"): Lua does
 * not tell integers from floats. A few decimals, like 1234.56, are found
 * without printf.
 * Reading takes the common short numbers without strtod (one exact multiply
 * or divide), integers beyond 2^53 within int64 exactly, and the rest
 * through strtod in the C locale. */
#include "json_number.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* os.setlocale can change LC_NUMERIC under us; JSON numbers always use '.'. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void init_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static double strtod_c(const char *s)
{
    pthread_once(&c_locale_once, init_c_locale);
    return c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

/* "00" to "99": the integers are written two digits per division, which
 * halves the divisions of a 13-digit millisecond timestamp (28 -> 15 ns). */
static const char DIGIT_PAIRS[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static size_t fmt_int(char *out, int64_t v)
{
    size_t len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) out[len++] = '-';
    if (u < 10) {
        out[len] = (char)('0' + u);
        return len + 1;
    }
    char tmp[24];
    char *p = tmp + sizeof tmp;   /* written from the last digit backwards */
    while (u >= 100) {
        unsigned pair = (unsigned)(u % 100);
        u /= 100;
        p -= 2;
        memcpy(p, DIGIT_PAIRS + 2 * pair, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, DIGIT_PAIRS + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(out + len, p, n);
    return len + n;
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

size_t qh_json_number_format(char *out, double d)
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
/* Reading: the rare tokens (see qh_json_number_read in json_number.h)       */

int qh_json_number_strtod(const unsigned char *start, size_t n, double *out)
{
    /* strtod would read past the token ("0x1", "1e5x"...): copy it out. */
    char small[64];
    char *tok = n < sizeof small ? small : malloc(n + 1);
    if (!tok) return -1;
    memcpy(tok, start, n);
    tok[n] = '\0';
    *out = strtod_c(tok);
    if (tok != small) free(tok);
    return 0;
}

int32_t qh_ffi_json_number_read(const char *p, const char *end, double *out)
{
    qh_json_number num;
    const unsigned char *at;
    const char *what;
    const unsigned char *start = (const unsigned char *)p;
    const unsigned char *q = qh_json_number_read(start, (const unsigned char *)end, &num, &at, &what);
    if (!q || num.is_int64 || q - start > INT32_MAX) return 0;
    *out = num.d;
    int32_t len = (int32_t)(q - start);
    return num.writes_back ? len : -len;
}
