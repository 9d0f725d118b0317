/* fuzz_json.c: libFuzzer target for qhost.codec's JSON decoder
 * (host/json_decode.c, through the module in host/codec.c) on arbitrary
 * bytes, which is what a topic can hold.
 *
 * For each input:
 * - json_decode gives a value, or nil and "invalid JSON at byte N: ..."
 *   with 1 <= N <= size + 1; it never raises;
 * - json_decode_at on the same bytes (the run loop's in-place path, the
 *   internal qhost.runtime.json_at) agrees;
 * - a value encodes (json_encode), that text decodes, and encodes to the
 *   same text again; json_encode_pretty's text decodes to the same value;
 * - a document that is one number decodes to what strtod reads (or, for
 *   integers beyond 2^53 that fit, to the int64_t strtoll reads).
 * A failed check prints what it saw and aborts: libFuzzer keeps the input.
 * Uses: LuaJIT (one lua_State for the whole run, on malloc), codec.h. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "codec.h"

static lua_State *L;

/* Lua's memory from malloc, not LuaJIT's own mmap arenas: LeakSanitizer
 * then sees the codec's and reader's buffers referenced from Lua objects
 * instead of reporting them as leaks. */
static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

static void fail(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_json: %s\n  input (%zu bytes): %.*s\n", what, size,
            (int)(size < 400 ? size : 400), (const char *)data);
    abort();
}

/* Calls codec.<fn>(args on the stack) with two results; never raises. */
static void call(const char *fn, int nargs, const uint8_t *data, size_t size)
{
    lua_getglobal(L, "codec");
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    if (lua_pcall(L, nargs, 2, 0) != 0) {
        char what[512];
        snprintf(what, sizeof what, "codec.%s raised: %s", fn, lua_tostring(L, -1));
        fail(what, data, size);
    }
}

/* At exit the state goes, and with it every buffer its objects own:
 * LeakSanitizer's exit check then reports only what nothing frees (objects
 * that only JIT-compiled code refers to would otherwise look leaked). */
static void close_lua(void)
{
    lua_close(L);
}

static int init(void)
{
    L = lua_newstate(fuzz_alloc, NULL);
    if (!L) abort();
    atexit(close_lua);
    luaL_openlibs(L);
    qh_codec_open(L);
    /* call() finds every function on `codec`: the in-place decoder too */
    qh_codec_open_json_at(L);
    lua_getfield(L, -1, "json_decode_at");
    lua_setfield(L, -3, "json_decode_at");
    lua_pop(L, 1);
    lua_setglobal(L, "codec");
    return 0;
}

/* Whether the whole input is one JSON number token (what qh_json_number_read reads). */
static int is_number_token(const uint8_t *p, size_t n)
{
    size_t i = 0;
    if (i < n && p[i] == '-') i++;
    if (i >= n || p[i] < '0' || p[i] > '9') return 0;
    if (p[i] == '0') i++;
    else while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || p[i] < '0' || p[i] > '9') return 0;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        if (i >= n || p[i] < '0' || p[i] > '9') return 0;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    }
    return i == n;
}

/* The decoded value (stack top) of a one-number document against libc. */
static void check_number(const uint8_t *data, size_t size)
{
    char tok[512];
    if (size >= sizeof tok) return;
    memcpy(tok, data, size);
    tok[size] = '\0';
    int integral = !memchr(tok, '.', size) && !memchr(tok, 'e', size) && !memchr(tok, 'E', size);
    double want = strtod(tok, NULL);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        double got = lua_tonumber(L, -1);
        if (integral && want == 0) want = 0;   /* "-0" is the integer 0 */
        if (memcmp(&got, &want, sizeof got) != 0) fail("number differs from strtod", data, size);
        if (integral && fabs(want) > 9007199254740992.0 && fabs(want) < 9223372036854775808.0)
            fail("integer beyond 2^53 within int64 is not an int64_t", data, size);
        return;
    }
    /* int64_t cdata: compare its digits with strtoll's */
    errno = 0;
    long long ll = strtoll(tok, NULL, 10);
    if (!integral || errno == ERANGE) fail("cdata for a number that is not an int64", data, size);
    lua_pushvalue(L, -1);
    call("json_encode", 1, data, size);
    lua_pop(L, 1);
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", ll);
    const char *got = lua_tostring(L, -1);
    if (!got || strcmp(got, digits) != 0) fail("int64 differs from strtoll", data, size);
    lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = -1;
    if (ready < 0) ready = init();
    lua_settop(L, 0);

    /* json_decode(s) */
    lua_pushlstring(L, (const char *)data, size);
    call("json_decode", 1, data, size);                    /* v, err */
    if (lua_isnil(L, 1)) {
        const char *err = lua_tostring(L, 2);
        unsigned long at = 0;
        if (!err || sscanf(err, "invalid JSON at byte %lu: ", &at) != 1 || at < 1 || at > size + 1)
            fail("decode failed without a proper message", data, size);
        /* json_decode_at must say the same */
        lua_pushnumber(L, (lua_Number)(uintptr_t)(size ? (const void *)data : ""));
        lua_pushnumber(L, (lua_Number)size);
        call("json_decode_at", 2, data, size);
        if (!lua_isnil(L, -2) || !lua_rawequal(L, -1, 2)) fail("json_decode_at differs on an error", data, size);
        lua_settop(L, 0);
        return 0;
    }
    lua_settop(L, 1);                                      /* v */

    if (is_number_token(data, size)) check_number(data, size);

    /* encode, decode, encode: the same text */
    lua_pushvalue(L, 1);
    call("json_encode", 1, data, size);                    /* v, s1, err */
    if (lua_isnil(L, 2)) {
        char what[512];
        snprintf(what, sizeof what, "a decoded value does not encode: %s", lua_tostring(L, 3));
        fail(what, data, size);
    }
    lua_settop(L, 2);                                      /* v, s1 */
    lua_pushvalue(L, 2);
    call("json_decode", 1, data, size);                    /* v, s1, v2, err */
    if (lua_isnil(L, 3)) fail("the encoded text does not decode", data, size);
    lua_settop(L, 3);
    call("json_encode", 1, data, size);                    /* v, s1, s2, err */
    if (!lua_rawequal(L, 2, 3)) fail("encode(decode(encode(v))) differs from encode(v)", data, size);
    lua_settop(L, 2);

    /* json_decode_at reads the same value in place */
    lua_pushnumber(L, (lua_Number)(uintptr_t)data);
    lua_pushnumber(L, (lua_Number)size);
    call("json_decode_at", 2, data, size);                 /* v, s1, v3, err */
    lua_settop(L, 3);
    call("json_encode", 1, data, size);                    /* v, s1, s3, err */
    if (!lua_rawequal(L, 2, 3)) fail("json_decode_at differs from json_decode", data, size);
    lua_settop(L, 2);

    /* pretty text is the same value */
    lua_pushvalue(L, 1);
    call("json_encode_pretty", 1, data, size);             /* v, s1, p, err */
    if (lua_isnil(L, 3)) fail("a decoded value does not encode pretty", data, size);
    lua_settop(L, 3);
    call("json_decode", 1, data, size);                    /* v, s1, v4, err */
    if (lua_isnil(L, 3)) fail("the pretty text does not decode", data, size);
    lua_settop(L, 3);
    call("json_encode", 1, data, size);                    /* v, s1, s4, err */
    if (!lua_rawequal(L, 2, 3)) fail("the pretty text decodes to another value", data, size);

    lua_settop(L, 0);
    return 0;
}
