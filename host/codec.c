/* codec.c: the `qhost.codec` Lua module (see codec.h): the Lua entry points
 * over the JSON encoder and decoder and the binary packers, and the state
 * they share in a lua_State.
 *
 *   codec.json_encode(v)             -> string | nil, err
 *   codec.json_encode_pretty(v, indent = 2)  (spaces, or a string) -> same
 *   codec.json_decode(s)             -> value | nil, err
 *   codec.keys_of(t)                 -> array of t's remembered key order | nil
 *   codec.exact_keys(t)              -> that order (shared) when t has exactly those keys | nil
 *   codec.pack_int(n)  -> 4 bytes | nil, err    codec.unpack_int(s)    -> n | nil, err
 *   codec.pack_double(x) -> 8 bytes            codec.unpack_double(s) -> x | nil, err
 *   codec.null (lightuserdata NULL: JSON null), codec.array_mt (marks arrays)
 * Bad data gives nil, err; a wrong argument type raises.
 *
 * JSON follows Python's json module with separators=(",", ":") and
 * ensure_ascii=False, because pipelines port from Quix Streams and users
 * compare the printed JSON (json_encode.h, json_decode.h and json_number.h
 * say how). Here: the choices about the Lua side.
 * - Decoded objects remember their key order in a metatable shared by the
 *   objects with the same keys (`__qhost_keys`). Do not modify a decoded
 *   object's metatable: it is shared.
 * - Tables with holes or non-1..n number keys are errors, except tables
 *   marked with codec.array_mt, whose holes become null.
 * - Error positions are 1-based byte offsets (string.sub positions).
 *
 * The internal module `qhost.runtime.json_at` (qh_codec_open_json_at) has
 * the run loop's decoder of JSON text at a raw address and its encoder into
 * a buffer it reads by address, which must not be reachable through this
 * public one. */
#include "codec.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include "binary.h"
#include "json_decode.h"
#include "json_encode.h"

/* Registry names, so that opening the module twice in one state shares
 * codec.array_mt and the key cache (values decoded by one copy must encode
 * as arrays/ordered objects through the other). */
#define REG_SCRATCH   "qhost.codec.scratch"
#define REG_STATE_MT  "qhost.codec.state_mt"
#define REG_ARRAY_MT  "qhost.codec.array_mt"
#define REG_KEY_CACHE "qhost.codec.key_cache"
#define REG_INT64     "qhost.codec.int64"
#define KEYS_FIELD    "__qhost_keys"

/* Upvalues shared by the JSON functions. UV_SCRATCH is a table whose
 * [SCRATCH_STATE] is the scratch state calls share (see state_acquire). */
#define UV_SCRATCH      lua_upvalueindex(1)
#define UV_ARRAYMT      lua_upvalueindex(2)
#define UV_CACHE        lua_upvalueindex(3)
#define UV_KEYSFLD      lua_upvalueindex(4)
#define UV_INT64_MAKE   lua_upvalueindex(5)  /* see INT64_LUA */
#define UV_INT64_DIGITS lua_upvalueindex(6)
#define N_UPVALUES      6
#define SCRATCH_STATE   1
#define SCRATCH_OUT     2   /* json_encode_out's own state (see there) */

/* ------------------------------------------------------------------------ */
/* Per-state scratch                                                         */

/* Scratch reused by every call, so that the hot path does not allocate.
 * Lives in a full userdata (freed by __gc), so a Lua error thrown through a
 * call (out of memory, an error from a __gc finalizer) leaks nothing. */
typedef struct codec_state {
    int busy;          /* a call is using it (see state_acquire) */
    int fresh;         /* made by a call that found the shared one busy */
    qh_json_enc_scratch enc;
    qh_json_dec_scratch dec;
    char err[512];
} codec_state;

static int state_gc(lua_State *L)
{
    codec_state *st = lua_touserdata(L, 1);
    qh_json_enc_scratch_free(&st->enc);
    qh_json_dec_scratch_free(&st->dec);
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
    st->enc.out.len = 0;
    st->err[0] = '\0';
    return st;
}

/* Ends a call's use of the state (at stack index idx). Big one-off messages
 * should not pin their buffers for the process life. Cannot raise: the slot
 * is in the table's array part. */
static void state_release(lua_State *L, codec_state *st, int idx)
{
    const size_t keep = 1 << 20;
    if (st->enc.out.cap > keep) qh_buf_free(&st->enc.out);
    if (st->dec.str.cap > keep) qh_buf_free(&st->dec.str);
    if (st->dec.keyseq.cap > keep) qh_buf_free(&st->dec.keyseq);
    for (size_t i = 0; i < sizeof st->dec.shape / sizeof st->dec.shape[0]; i++)
        if (st->dec.shape[i].cap > keep) qh_buf_free(&st->dec.shape[i]);   /* the shape is forgotten */
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
/* JSON                                                                      */

/* Appends the JSON text of the value at index 1 to st->enc.out (indent
 * NULL for compact text): 0, or -1 with the reason in st->err. */
static int encode_into(lua_State *L, codec_state *st, const char *indent, size_t indent_len)
{
    qh_json_enc e = {
        .L = L,
        .s = &st->enc,
        .array_mt = UV_ARRAYMT,
        .keys_field = UV_KEYSFLD,
        .int64_digits = UV_INT64_DIGITS,
        .indent = indent,
        .indent_len = indent_len,
        .err = st->err,
        .errlen = sizeof st->err,
    };
    return qh_json_encode(&e, 1);
}

/* Encodes the value at index 1, the arguments being 1..base; indent NULL
 * for compact text. */
static int encode(lua_State *L, int base, const char *indent, size_t indent_len)
{
    codec_state *st = state_acquire(L);
    if (encode_into(L, st, indent, indent_len) != 0) return push_fail(L, st, base);
    qh_buf *out = &st->enc.out;
    lua_pushlstring(L, out->data ? out->data : "", out->len);
    state_release(L, st, base + 1);
    return results(L, base, 1);
}

/* codec.json_encode(value) -> string | nil, err */
static int l_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    return encode(L, 1, NULL, 0);
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
    return encode(L, 2, indent, indent_len);
}

/* json_at.json_encode_out(value) -> address, len | nil, err: the compact
 * JSON text of value left in a buffer of this module's own (the address a
 * number, which the JIT casts to a pointer where a light userdata would
 * leave the trace), not made into a Lua string: the run loop hands it
 * straight to the producer, which copies it (qhost.runtime.json_out, which
 * writes most outputs in Lua, hands it the values it does not take).
 * Interning every output as a Lua string cost more than encoding it (the
 * string table's cache misses, then the GC's sweep). The text is valid
 * until the next json_encode_out call, which nothing else makes: its
 * state is not the one json_encode and json_decode share (a __gc finalizer
 * that encodes, run by an allocation between this call and the produce,
 * cannot overwrite it). Internal: the caller must use the text before
 * calling again. */
static int l_json_encode_out(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lua_rawgeti(L, UV_SCRATCH, SCRATCH_OUT);
    codec_state *st = lua_touserdata(L, -1);
    /* The last text is dead now: a big one's buffer need not stay. */
    if (st->enc.out.cap > (1 << 20)) qh_buf_free(&st->enc.out);
    st->enc.out.len = 0;
    st->err[0] = '\0';
    if (encode_into(L, st, NULL, 0) != 0) {
        lua_settop(L, 1);
        lua_pushnil(L);
        lua_pushstring(L, st->err);
        return 2;
    }
    lua_settop(L, 1);  /* the state stays referenced by the scratch table */
    lua_pushnumber(L, (lua_Number)(uintptr_t)st->enc.out.data);
    lua_pushinteger(L, (lua_Integer)st->enc.out.len);
    return 2;
}

/* Decodes s[0..len) for a function with one argument (lua_settop(L, 1)). */
static int decode(lua_State *L, const char *s, size_t len)
{
    codec_state *st = state_acquire(L);
    qh_json_dec d = {
        .L = L,
        .s = &st->dec,
        .array_mt = UV_ARRAYMT,
        .keys_field = UV_KEYSFLD,
        .int64_make = UV_INT64_MAKE,
        .key_cache = UV_CACHE,
        .err = st->err,
        .errlen = sizeof st->err,
    };
    if (qh_json_decode(&d, s, len) != 0) return push_fail(L, st, 1);
    state_release(L, st, 2);
    return results(L, 1, 1);
}

/* codec.json_decode(s) -> value | nil, err */
static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return decode(L, s, len);
}

/* json_at.json_decode_at(address, len) -> value | nil, err: the JSON text
 * of `len` bytes at `address` (a number: a pointer from the FFI, e.g.
 * tonumber(ffi.cast("uintptr_t", p))), decoded without first copying it
 * into a Lua string. The caller vouches for the memory: internal to the
 * run loop, which reads message values in librdkafka's buffer with it. */
static int l_json_decode_at(lua_State *L)
{
    uintptr_t addr = (uintptr_t)luaL_checknumber(L, 1);
    size_t len = (size_t)luaL_checknumber(L, 2);
    lua_settop(L, 1);
    return decode(L, len ? (const char *)addr : "", len);
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

/* codec.exact_keys(t) -> t's remembered key list when t holds exactly those
 * keys (a decoded object nobody added a key to or removed one from), else
 * nil. The list is the metatable's, shared by every object of that shape:
 * do not modify it. One C call where Lua would loop with next(), which
 * splits the JIT's trace of the message (qhost.joins merges such objects). */
static int l_exact_keys(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushvalue(L, UV_KEYSFLD);
    lua_rawget(L, 2);
    if (lua_type(L, 3) != LUA_TTABLE) {
        lua_pushnil(L);
        return 1;
    }
    int n = (int)lua_objlen(L, 3);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);
        lua_rawget(L, 1);
        int missing = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (missing) {
            lua_pushnil(L);
            return 1;
        }
    }
    int count = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (++count > n) {
            lua_pop(L, 1);
            lua_pushnil(L);
            return 1;
        }
    }
    if (count != n) lua_pushnil(L);
    else lua_pushvalue(L, 3);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Modules                                                                   */

static const luaL_Reg json_funcs[] = {
    { "json_encode", l_json_encode },
    { "json_encode_pretty", l_json_encode_pretty },
    { "json_decode", l_json_decode },
    { "keys_of", l_keys_of },
    { "exact_keys", l_exact_keys },
    { NULL, NULL },
};

static const luaL_Reg binary_funcs[] = {
    { "pack_int", qh_binary_pack_int },
    { "unpack_int", qh_binary_unpack_int },
    { "pack_double", qh_binary_pack_double },
    { "unpack_double", qh_binary_unpack_double },
    { NULL, NULL },
};

static const luaL_Reg json_at_funcs[] = {
    { "json_decode_at", l_json_decode_at },
    { "json_encode_out", l_json_encode_out },
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
    /* The slots in the array part, so that state_release cannot allocate. */
    lua_createtable(L, 2, 0);
    state_new(L);
    lua_rawseti(L, -2, SCRATCH_STATE);
    state_new(L);
    lua_rawseti(L, -2, SCRATCH_OUT);
}

static void make_table(lua_State *L)
{
    lua_newtable(L);
}

/* The key cache counts its entries in [1] (see json_decode.h). */
static void make_key_cache(lua_State *L)
{
    lua_createtable(L, 1, 0);
    lua_pushnumber(L, 0);
    lua_rawseti(L, -2, 1);
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

/* Sets funcs into the table at `mod` as closures over the shared state
 * (the upvalues, in UV_* order). */
static void set_json_funcs(lua_State *L, int mod, const luaL_Reg *funcs)
{
    registry_get(L, REG_SCRATCH, make_scratch);
    registry_get(L, REG_ARRAY_MT, make_table);
    registry_get(L, REG_KEY_CACHE, make_key_cache);
    lua_pushliteral(L, KEYS_FIELD);
    registry_get(L, REG_INT64, make_int64_helpers);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_remove(L, -3);
    int uv = lua_gettop(L) - N_UPVALUES + 1;
    for (const luaL_Reg *r = funcs; r->name; r++) {
        for (int i = 0; i < N_UPVALUES; i++) lua_pushvalue(L, uv + i);
        lua_pushcclosure(L, r->func, N_UPVALUES);
        lua_setfield(L, mod, r->name);
    }
    lua_settop(L, uv - 1);
}

int qh_codec_open(lua_State *L)
{
    lua_newtable(L);
    int mod = lua_gettop(L);
    set_json_funcs(L, mod, json_funcs);
    for (const luaL_Reg *r = binary_funcs; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, mod, r->name);
    }
    registry_get(L, REG_ARRAY_MT, make_table);
    lua_setfield(L, mod, "array_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, mod, "null");
    return 1;
}

int qh_codec_open_json_at(lua_State *L)
{
    lua_newtable(L);
    set_json_funcs(L, lua_gettop(L), json_at_funcs);
    return 1;
}
