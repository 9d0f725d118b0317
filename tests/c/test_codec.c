/* test_codec.c: the qhost.codec module driven through a real lua_State. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include <stdint.h>

#include "check.h"
#include "codec.h"

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    qh_codec_open(L);
    lua_setglobal(L, "codec");
    return L;
}

/* Runs a chunk and returns its results joined by "|" (tostring of each), or
 * "ERROR: <message>" if it raised. The text lives until the next call. */
static const char *run(lua_State *L, const char *chunk)
{
    static char out[1 << 16];
    lua_settop(L, 0);
    if (luaL_loadstring(L, chunk) != 0 || lua_pcall(L, 0, LUA_MULTRET, 0) != 0) {
        snprintf(out, sizeof out, "ERROR: %s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return out;
    }
    size_t n = 0;
    out[0] = '\0';
    int top = lua_gettop(L);
    lua_getglobal(L, "tostring");
    for (int i = 1; i <= top; i++) {
        lua_pushvalue(L, -1);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%s", i > 1 ? "|" : "", lua_tostring(L, -1));
        lua_pop(L, 1);
        if (n >= sizeof out) break;
    }
    lua_settop(L, 0);
    return out;
}

#define ENC(L, expr) run(L, "return codec.json_encode(" expr ")")
#define DEC(L, json) run(L, "return codec.json_encode(codec.json_decode(" json "))")

TEST(encode_scalars)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(ENC(L, "nil"), "null");
    CHECK_EQ_STR(ENC(L, "codec.null"), "null");
    CHECK_EQ_STR(ENC(L, "true"), "true");
    CHECK_EQ_STR(ENC(L, "false"), "false");
    CHECK_EQ_STR(ENC(L, "'x'"), "\"x\"");
    CHECK_EQ_STR(ENC(L, "''"), "\"\"");
    CHECK_EQ_STR(run(L, "return codec.json_encode()"),
                 "ERROR: bad argument #1 to '?' (value expected)");
    lua_close(L);
}

TEST(encode_numbers)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(ENC(L, "1"), "1");
    CHECK_EQ_STR(ENC(L, "5.0"), "5");
    CHECK_EQ_STR(ENC(L, "-3"), "-3");
    CHECK_EQ_STR(ENC(L, "0"), "0");
    CHECK_EQ_STR(ENC(L, "-0.0"), "0");
    CHECK_EQ_STR(ENC(L, "0.1"), "0.1");
    CHECK_EQ_STR(ENC(L, "0.1 + 0.2"), "0.30000000000000004");
    CHECK_EQ_STR(ENC(L, "1/3"), "0.3333333333333333");
    CHECK_EQ_STR(ENC(L, "1.5"), "1.5");
    CHECK_EQ_STR(ENC(L, "-2.5e-7"), "-2.5e-07");
    CHECK_EQ_STR(ENC(L, "1e300"), "1e+300");
    CHECK_EQ_STR(ENC(L, "-1e300"), "-1e+300");
    CHECK_EQ_STR(ENC(L, "5e-324"), "4.9406564584125e-324");
    CHECK_EQ_STR(ENC(L, "2^53 - 1"), "9007199254740991");
    CHECK_EQ_STR(ENC(L, "-(2^53 - 1)"), "-9007199254740991");
    CHECK_EQ_STR(ENC(L, "2^53"), "9007199254740992");
    CHECK_EQ_STR(ENC(L, "2^63"), "9.223372036854776e+18");
    CHECK_EQ_STR(ENC(L, "1e21"), "1e+21");
    CHECK_EQ_STR(ENC(L, "123456789.125"), "123456789.125");
    CHECK_EQ_STR(ENC(L, "1e15"), "1000000000000000");
    CHECK_EQ_STR(ENC(L, "0/0"), "nil|cannot encode NaN at value");
    CHECK_EQ_STR(ENC(L, "math.huge"), "nil|cannot encode inf at value");
    CHECK_EQ_STR(ENC(L, "{ a = { -math.huge } }"), "nil|cannot encode -inf at value.a[1]");
    /* Every double round-trips through the shortest form. */
    CHECK_EQ_STR(run(L,
        "math.randomseed(7)\n"
        "for i = 1, 20000 do\n"
        "  local x = (math.random() - 0.5) * 10 ^ math.random(-300, 300)\n"
        "  local s = codec.json_encode(x)\n"
        "  if codec.json_decode(s) ~= x then return s end\n"
        "end\n"
        "return 'ok'"), "ok");
    /* Few-decimal values take a shortcut; it must agree with %.14g..%.17g. */
    CHECK_EQ_STR(run(L,
        "math.randomseed(11)\n"
        "for i = 1, 50000 do\n"
        "  local x = math.random(-1e9, 1e9) / 10 ^ math.random(0, 9)\n"
        "  local s, want = codec.json_encode(x)\n"
        "  if x == math.floor(x) then want = string.format('%d', x) else\n"
        "    for p = 14, 17 do want = string.format('%.' .. p .. 'g', x) if tonumber(want) == x then break end end\n"
        "  end\n"
        "  if s ~= want then return s .. ' vs ' .. want end\n"
        "end\n"
        "return 'ok'"), "ok");
    CHECK_EQ_STR(ENC(L, "{ 0.0001, 0.00012, 1e-5, 12.5, -0.75, 99999999999999.5, 1234.56 }"),
                 "[0.0001,0.00012,1e-05,12.5,-0.75,99999999999999.5,1234.56]");
    lua_close(L);
}

TEST(encode_numbers_comma_locale)
{
    /* A user script may call os.setlocale; JSON must not follow it. */
    lua_State *L = new_state();
    const char *r = run(L, "return os.setlocale('de_DE.UTF-8', 'numeric') or os.setlocale('fr_FR.UTF-8', 'numeric') or 'none'");
    if (strcmp(r, "none") != 0) {
        CHECK_EQ_STR(ENC(L, "{ 1.5, 0.25 }"), "[1.5,0.25]");
        CHECK_EQ_STR(run(L, "return codec.json_decode('2.5') * 2"), "5");
    }
    run(L, "os.setlocale('C', 'numeric')");
    lua_close(L);
}

TEST(encode_strings)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(ENC(L, "'a\"b\\\\c/d'"), "\"a\\\"b\\\\c/d\"");
    CHECK_EQ_STR(ENC(L, "'\\n\\r\\t\\b\\f'"), "\"\\n\\r\\t\\b\\f\"");
    CHECK_EQ_STR(ENC(L, "'\\0\\1\\31\\127'"), "\"\\u0000\\u0001\\u001f\x7f\"");
    CHECK_EQ_STR(ENC(L, "'h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80'"),
                 "\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\"");
    CHECK_EQ_STR(ENC(L, "'\\255'"), "nil|cannot encode string with invalid UTF-8 at value");
    CHECK_EQ_STR(ENC(L, "{ k = 'ok\\192\\128' }"), "nil|cannot encode string with invalid UTF-8 at value.k");
    CHECK_EQ_STR(ENC(L, "{ ['\\255'] = 1 }"), "nil|cannot encode string with invalid UTF-8 at value[\"\xff\"]");
    CHECK_EQ_STR(ENC(L, "'\\237\\160\\128'"), "\"\\ud800\"");     /* surrogate code point */
    CHECK_EQ_STR(ENC(L, "'\\244\\144\\128\\128'"), "nil|cannot encode string with invalid UTF-8 at value");
    CHECK_EQ_STR(ENC(L, "'\\224\\128\\128'"), "nil|cannot encode string with invalid UTF-8 at value"); /* overlong */
    CHECK_EQ_STR(ENC(L, "'abc\\226\\156'"), "nil|cannot encode string with invalid UTF-8 at value"); /* truncated */
    /* long strings with escapes scattered through them */
    CHECK_EQ_STR(run(L,
        "local s = string.rep('ab\"\\n\xc3\xa9', 100000)\n"
        "local j = codec.json_encode(s)\n"
        "return #j, codec.json_decode(j) == s"), "800002|true");
    lua_close(L);
}

TEST(string_bytes_at_every_offset)
{
    /* Every byte value at every offset of a word-at-a-time scan. */
    lua_State *L = new_state();
    CHECK_EQ_STR(run(L,
        "local short = { [8] = 'b', [9] = 't', [10] = 'n', [12] = 'f', [13] = 'r', [34] = '\"', [92] = '\\\\' }\n"
        "for b = 0, 255 do\n"
        "  for pos = 0, 17 do\n"
        "    local s = string.rep('a', pos) .. string.char(b) .. string.rep('z', 17 - pos)\n"
        "    local want, err\n"
        "    if b >= 128 then err = 'cannot encode string with invalid UTF-8 at value'\n"
        "    elseif short[b] then want = '\\\\' .. short[b]\n"
        "    elseif b < 32 then want = string.format('\\\\u%04x', b)\n"
        "    else want = string.char(b) end\n"
        "    local j, e = codec.json_encode(s)\n"
        "    if want then\n"
        "      want = '\"' .. string.rep('a', pos) .. want .. string.rep('z', 17 - pos) .. '\"'\n"
        "      if j ~= want then return 'encode ' .. b .. ' at ' .. pos end\n"
        "      if codec.json_decode(j) ~= s then return 'decode ' .. b .. ' at ' .. pos end\n"
        "    elseif e ~= err then return 'error ' .. b .. ' at ' .. pos .. ': ' .. tostring(e) end\n"
        "    local v, derr = codec.json_decode('\"' .. s .. '\"')\n"
        "    local dwant = (b < 32 and 'control character in string') or (b >= 128 and 'invalid UTF-8 in string')\n"
        "      or (b == 34 and 'unexpected data after the JSON value') or (b == 92 and 'invalid escape')\n"
        "    if dwant then\n"
        "      local at = (b == 34) and pos + 3 or pos + 2\n"
        "      if b == 92 and pos == 17 then at, dwant = 1, 'unterminated string' end\n"
        "      if derr ~= 'invalid JSON at byte ' .. at .. ': ' .. dwant then return 'decode error ' .. b .. ' at ' .. pos .. ': ' .. tostring(derr) end\n"
        "    elseif v ~= s then return 'raw decode ' .. b .. ' at ' .. pos end\n"
        "  end\n"
        "end\n"
        "return 'ok'"), "ok");
    lua_close(L);
}

TEST(encode_tables)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(ENC(L, "{}"), "{}");
    CHECK_EQ_STR(ENC(L, "setmetatable({}, codec.array_mt)"), "[]");
    CHECK_EQ_STR(ENC(L, "{ 1, 2, 'x' }"), "[1,2,\"x\"]");
    CHECK_EQ_STR(ENC(L, "{ b = 1, a = 2, c = { x = true }, B = 0 }"), "{\"B\":0,\"a\":2,\"b\":1,\"c\":{\"x\":true}}");
    CHECK_EQ_STR(ENC(L, "{ {}, { {} }, { a = {} } }"), "[{},[{}],{\"a\":{}}]");
    CHECK_EQ_STR(ENC(L, "{ ab = 1, a = 2, ['a\\0'] = 3, [''] = 4 }"), "{\"\":4,\"a\":2,\"a\\u0000\":3,\"ab\":1}");
    CHECK_EQ_STR(ENC(L, "{ ['\xc3\xa9'] = 1, z = 2 }"), "{\"z\":2,\"\xc3\xa9\":1}");
    CHECK_EQ_STR(ENC(L, "{ 1, 2, a = 3 }"), "nil|cannot encode table with mixed or non-string keys at value");
    CHECK_EQ_STR(ENC(L, "{ x = { [2] = 1 } }"), "nil|cannot encode table with mixed or non-string keys at value.x");
    CHECK_EQ_STR(ENC(L, "{ [1.5] = 1 }"), "nil|cannot encode table with mixed or non-string keys at value");
    CHECK_EQ_STR(ENC(L, "{ [true] = 1 }"), "nil|cannot encode table with mixed or non-string keys at value");
    CHECK_EQ_STR(ENC(L, "{ 1, nil, 3 }"), "nil|cannot encode table with mixed or non-string keys at value");
    CHECK_EQ_STR(ENC(L, "setmetatable({ 1, nil, 3 }, codec.array_mt)"), "[1,null,3]");
    CHECK_EQ_STR(ENC(L, "setmetatable({ [100] = 1 }, codec.array_mt)"), "nil|cannot encode array: too sparse at value");
    CHECK_EQ_STR(ENC(L, "setmetatable({ 1, a = 1 }, codec.array_mt)"),
                 "nil|cannot encode array (codec.array_mt) with non-integer keys at value");
    CHECK_EQ_STR(ENC(L, "{ a = { b = function() end } }"), "nil|cannot encode function at value.a.b");
    CHECK_EQ_STR(ENC(L, "{ 1, { x = coroutine.create(print) } }"), "nil|cannot encode thread at value[2].x");
    CHECK_EQ_STR(ENC(L, "{ ['a b'] = { io.stdout } }"), "nil|cannot encode userdata at value[\"a b\"][1]");
    CHECK_EQ_STR(ENC(L, "print"), "nil|cannot encode function at value");
    CHECK_EQ_STR(ENC(L, "{ p = { k = 1 } }"), "{\"p\":{\"k\":1}}");
    /* the same table twice is not a cycle */
    CHECK_EQ_STR(run(L, "local t = { 1 } return codec.json_encode({ a = t, b = { t, t } })"),
                 "{\"a\":[1],\"b\":[[1],[1]]}");
    CHECK_EQ_STR(run(L, "local t = {} t.x = { y = t } return codec.json_encode({ t })"),
                 "nil|cannot encode a table that contains itself at value[1].x.y");
    CHECK_EQ_STR(run(L, "local t = {} t[1] = t return codec.json_encode(t)"),
                 "nil|cannot encode a table that contains itself at value[1]");
    /* 1000 levels are fine, 1001 are not */
    CHECK_EQ_STR(run(L,
        "local function nest(n) local t = {} for i = 2, n do t = { t } end return t end\n"
        "local s = codec.json_encode(nest(1000))\n"
        "local ok = s == string.rep('[', 999) .. '{}' .. string.rep(']', 999)\n"
        "local r, err = codec.json_encode(nest(1001))\n"
        "return ok, r, err:sub(1, 59), #err"),
        "true|nil|cannot encode tables nested deeper than 1000 at value[1][1]|511");
    lua_close(L);
}

TEST(encode_key_order_metatable)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(ENC(L, "setmetatable({ a = 1, b = 2, c = 3 }, { __qhost_keys = { 'c', 'x', 'a' } })"),
                 "{\"c\":3,\"a\":1,\"b\":2}");
    CHECK_EQ_STR(ENC(L, "setmetatable({ a = 1, b = 2 }, { __qhost_keys = { 'a', 'a', 5 } })"),
                 "{\"a\":1,\"b\":2}");
    CHECK_EQ_STR(ENC(L, "setmetatable({}, { __qhost_keys = { 'a' } })"), "{}");
    CHECK_EQ_STR(ENC(L, "setmetatable({ 1 }, { __qhost_keys = { 'a' } })"),
                 "nil|cannot encode table with mixed or non-string keys at value");
    /* Many keys: the pointer-sorted lookup path beyond insertion sort. */
    CHECK_EQ_STR(run(L,
        "local keys, t, want = {}, {}, {}\n"
        "for i = 40, 1, -1 do keys[#keys + 1] = 'k' .. i; t['k' .. i] = i; want[#want + 1] = '\"k' .. i .. '\":' .. i end\n"
        "t.zz = 0; t.aa = 0\n"
        "local s = codec.json_encode(setmetatable(t, { __qhost_keys = keys }))\n"
        "return s == '{' .. table.concat(want, ',') .. ',\"aa\":0,\"zz\":0}'"), "true");
    lua_close(L);
}

TEST(encode_pretty)
{
    lua_State *L = new_state();
    /* json.dumps({"a": [1, 2], "b": {}, "c": [], "d": {"e": None}}, indent=2) */
    CHECK_EQ_STR(run(L, "return codec.json_encode_pretty({ a = { 1, 2 }, b = {}, "
                        "c = setmetatable({}, codec.array_mt), d = { e = codec.null } })"),
                 "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": {\n    \"e\": null\n  }\n}");
    CHECK_EQ_STR(run(L, "return codec.json_encode_pretty({ 1 }, 4)"), "[\n    1\n]");
    CHECK_EQ_STR(run(L, "return codec.json_encode_pretty({ 1 }, 0)"), "[\n1\n]");
    CHECK_EQ_STR(run(L, "return codec.json_encode_pretty({ x = 1 }, '\\t')"), "{\n\t\"x\": 1\n}");
    CHECK_EQ_STR(run(L, "return codec.json_encode_pretty('s')"), "\"s\"");
    CHECK_EQ_STR(run(L, "return codec.json_encode_pretty(codec.json_decode('{\"b\":1,\"a\":[]}'))"),
                 "{\n  \"b\": 1,\n  \"a\": []\n}");
    CHECK_EQ_STR(run(L, "return codec.json_encode_pretty({ f = print })"), "nil|cannot encode function at value.f");
    CHECK_EQ_STR(run(L, "return pcall(codec.json_encode_pretty, {}, -1)"),
                 "false|bad argument #2 to '?' (indent must be an integer from 0 to 64 or a string)");
    lua_close(L);
}

TEST(decode_values)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(DEC(L, "'[1,\"a\",true,false,null,{\"x\":1.5},[]]'"), "[1,\"a\",true,false,null,{\"x\":1.5},[]]");
    CHECK_EQ_STR(run(L, "local v = codec.json_decode(' \\t\\r\\n null \\n') return v == codec.null"), "true");
    CHECK_EQ_STR(run(L, "local v = codec.json_decode('[null]') return v[1] == codec.null, #v"), "true|1");
    CHECK_EQ_STR(run(L, "local v = codec.json_decode('{\"a\":{\"b\":[1,2,{\"c\":\"d\"}]}}') return v.a.b[3].c, v.a.b[2]"), "d|2");
    CHECK_EQ_STR(run(L, "return getmetatable(codec.json_decode('[]')) == codec.array_mt, "
                        "getmetatable(codec.json_decode('[[1]]')[1]) == codec.array_mt"), "true|true");
    CHECK_EQ_STR(run(L, "return codec.json_decode('true'), codec.json_decode('false'), codec.json_decode('\"s\"')"),
                 "true|false|s");
    CHECK_EQ_STR(DEC(L, "'{}'"), "{}");
    CHECK_EQ_STR(DEC(L, "'[]'"), "[]");
    CHECK_EQ_STR(DEC(L, "'[{},[],[[]],{\"a\":{}}]'"), "[{},[],[[]],{\"a\":{}}]");
    CHECK_EQ_STR(run(L, "return pcall(codec.json_decode)"),
                 "false|bad argument #1 to '?' (string expected, got no value)");
    lua_close(L);
}

TEST(decode_numbers)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(run(L, "local v = codec.json_decode('-0') return v, 1 / v"), "0|inf");
    CHECK_EQ_STR(run(L, "local v = codec.json_decode('-0.0') return 1 / v"), "-inf");
    CHECK_EQ_STR(run(L, "return codec.json_decode('1e400'), codec.json_decode('-1e400')"), "inf|-inf");
    CHECK_EQ_STR(DEC(L, "'[0,-1,10,0.5,1E2,1e-2,2.5E+3,-1.25e-1,123456789012345,1234567890123456]'"),
                 "[0,-1,10,0.5,100,0.01,2500,-0.125,123456789012345,1234567890123456]");
    CHECK_EQ_STR(DEC(L, "'12345678901234567890'"), "1.2345678901234567e+19");
    CHECK_EQ_STR(DEC(L, "'0.30000000000000004'"), "0.30000000000000004");
    CHECK_EQ_STR(DEC(L, "'9007199254740993'"), "9007199254740992");
    CHECK_EQ_STR(DEC(L, "'1' .. string.rep('0', 80) .. '.5'"), "1e+80");
    CHECK_EQ_STR(DEC(L, "'[0.000123,1.5e-10,7E22,7e23,0e5,-0e0,123456789012345.6]'"),
                 "[0.000123,1.5e-10,7e+22,7e+23,0,0,123456789012345.6]");
    /* the exact fast path and strtod agree with LuaJIT's own reader */
    CHECK_EQ_STR(run(L,
        "math.randomseed(3)\n"
        "for i = 1, 50000 do\n"
        "  local s = math.random(0, 1e9) .. '.' .. string.rep('0', math.random(0, 3)) .. math.random(0, 1e6)\n"
        "  if i % 2 == 0 then s = s .. 'e' .. math.random(-30, 30) end\n"
        "  if i % 3 == 0 then s = '-' .. s end\n"
        "  if codec.json_decode(s) ~= tonumber(s) then return s end\n"
        "end\n"
        "return 'ok'"), "ok");
    lua_close(L);
}

TEST(decode_strings)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(run(L, "return codec.json_decode('\"\\\\\"\\\\\\\\\\\\/\\\\b\\\\f\\\\n\\\\r\\\\t\"') == '\"\\\\/\\b\\f\\n\\r\\t'"),
                 "true");
    CHECK_EQ_STR(run(L, "return codec.json_decode('\"\\\\u00e9\\\\u00E9\\\\u20ac\\\\u0041\"')"),
                 "\xc3\xa9\xc3\xa9\xe2\x82\xac" "A");
    CHECK_EQ_STR(run(L, "return codec.json_decode('\"\\\\ud83d\\\\ude00\"') == '\\240\\159\\152\\128'"), "true");
    /* lone surrogates: the 3-byte form, and back to the same escape */
    CHECK_EQ_STR(run(L, "local s = codec.json_decode('\"\\\\ud800\"') return s == '\\237\\160\\128', codec.json_encode(s)"),
                 "true|\"\\ud800\"");
    CHECK_EQ_STR(run(L, "local s = codec.json_decode('\"x\\\\udc00y\"') return s == 'x\\237\\176\\128y', codec.json_encode(s)"),
                 "true|\"x\\udc00y\"");
    CHECK_EQ_STR(run(L, "local s = codec.json_decode('\"\\\\ud800\\\\u0041\"') return s == '\\237\\160\\128A'"), "true");
    CHECK_EQ_STR(run(L, "local s = codec.json_decode('\"\\\\ud800\\\\ud800\"') return codec.json_encode(s)"),
                 "\"\\ud800\\ud800\"");
    CHECK_EQ_STR(run(L, "return codec.json_decode('\"\\\\u0000\"') == '\\0'"), "true");
    CHECK_EQ_STR(run(L, "return codec.json_decode('\"h\xc3\xa9llo \xf0\x9f\x98\x80\"')"), "h\xc3\xa9llo \xf0\x9f\x98\x80");
    CHECK_EQ_STR(DEC(L, "'\"a\\\\u0001b\\\\u001F\\\\u007f\"'"), "\"a\\u0001b\\u001f\x7f\"");
    lua_close(L);
}

TEST(decode_key_order)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(DEC(L, "'{\"b\":1,\"a\":2}'"), "{\"b\":1,\"a\":2}");
    CHECK_EQ_STR(DEC(L, "'{\"z\":{\"y\":1,\"x\":2},\"a\":[{\"q\":1,\"p\":2}],\"m\":{}}'"),
                 "{\"z\":{\"y\":1,\"x\":2},\"a\":[{\"q\":1,\"p\":2}],\"m\":{}}");
    CHECK_EQ_STR(DEC(L, "' { \"b\" : 1 , \"a\" : [ 1 , 2 ] } '"), "{\"b\":1,\"a\":[1,2]}");
    /* keys with NULs and escapes keep their place */
    CHECK_EQ_STR(DEC(L, "'{\"a\\\\u0000b\":1,\"a\":2,\"\\\\u00e9\":3,\"\":4}'"),
                 "{\"a\\u0000b\":1,\"a\":2,\"\xc3\xa9\":3,\"\":4}");
    /* added keys come after the original ones (sorted); removed ones vanish */
    CHECK_EQ_STR(run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') t.c = 3 t.aa = 4 return codec.json_encode(t)"),
                 "{\"b\":1,\"a\":2,\"aa\":4,\"c\":3}");
    CHECK_EQ_STR(run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') t.b = nil return codec.json_encode(t)"),
                 "{\"a\":2}");
    CHECK_EQ_STR(run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') t.b = nil t.a = nil return codec.json_encode(t)"),
                 "{}");
    /* duplicate keys: the last value, the first position */
    CHECK_EQ_STR(DEC(L, "'{\"a\":1,\"b\":2,\"a\":3}'"), "{\"a\":3,\"b\":2}");
    /* interned: same key sequence, same metatable; other order, other one */
    CHECK_EQ_STR(run(L, "return getmetatable(codec.json_decode('{\"a\":1}')) == getmetatable(codec.json_decode('{\"a\":[2]}')), "
                        "getmetatable(codec.json_decode('{\"a\":1,\"b\":1}')) == getmetatable(codec.json_decode('{\"b\":1,\"a\":1}'))"),
                 "true|false");
    /* keys_of: a copy of the order, as an array */
    CHECK_EQ_STR(run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') local k = codec.keys_of(t) "
                        "k[1] = 'zzz' return codec.json_encode(codec.keys_of(t)), codec.json_encode(k), "
                        "codec.keys_of({}), codec.keys_of(setmetatable({}, {}))"),
                 "[\"b\",\"a\"]|[\"zzz\",\"a\"]|nil|nil");
    CHECK_EQ_STR(run(L, "return codec.json_encode(codec.keys_of(codec.json_decode('{}')))"), "[]");
    /* beyond the cache's 4096 sequences objects still keep their order */
    CHECK_EQ_STR(run(L,
        "for i = 1, 5000 do\n"
        "  local j = '{\"k' .. i .. '\":1,\"a\":2}'\n"
        "  if codec.json_encode(codec.json_decode(j)) ~= j then return j end\n"
        "end\n"
        "local a, b = codec.json_decode('{\"k4999\":1,\"a\":2}'), codec.json_decode('{\"k4999\":1,\"a\":2}')\n"
        "return 'ok', getmetatable(a) ~= getmetatable(b)"), "ok|true");
    lua_close(L);
}

TEST(decode_errors)
{
    static const struct { const char *lua_json, *err; } cases[] = {
        { "''", "invalid JSON at byte 1: unexpected end of input" },
        { "'   '", "invalid JSON at byte 4: unexpected end of input" },
        { "'[1,2'", "invalid JSON at byte 5: unexpected end of input" },
        { "'{\"a\":1 \"b\":2}'", "invalid JSON at byte 8: expected ',' or '}'" },
        { "'{\"a\" 1}'", "invalid JSON at byte 6: expected ':'" },
        { "'{\"a\":1,}'", "invalid JSON at byte 8: expected a string key" },
        { "'{1:2}'", "invalid JSON at byte 2: expected a string key or '}'" },
        { "'{\"a\":}'", "invalid JSON at byte 6: expected a value" },
        { "'[1,]'", "invalid JSON at byte 4: expected a value" },
        { "'[,1]'", "invalid JSON at byte 2: expected a value" },
        { "'[1 2]'", "invalid JSON at byte 4: expected ',' or ']'" },
        { "'01'", "invalid JSON at byte 1: invalid number: leading zero" },
        { "'[-01]'", "invalid JSON at byte 2: invalid number: leading zero" },
        { "'+1'", "invalid JSON at byte 1: expected a value" },
        { "'.5'", "invalid JSON at byte 1: expected a value" },
        { "'1.'", "invalid JSON at byte 3: unexpected end of input" },
        { "'[1.x]'", "invalid JSON at byte 4: invalid number: expected a digit after '.'" },
        { "'[1e+]'", "invalid JSON at byte 5: invalid number: expected a digit in the exponent" },
        { "'-a'", "invalid JSON at byte 2: invalid number: expected a digit" },
        { "'0x10'", "invalid JSON at byte 2: unexpected data after the JSON value" },
        { "'NaN'", "invalid JSON at byte 1: expected a value" },
        { "'-Infinity'", "invalid JSON at byte 2: invalid number: expected a digit" },
        { "'nul'", "invalid JSON at byte 1: invalid literal" },
        { "'[tru]'", "invalid JSON at byte 2: invalid literal" },
        { "'True'", "invalid JSON at byte 1: expected a value" },
        { "'\"abc'", "invalid JSON at byte 1: unterminated string" },
        { "'[\"a\\\\'", "invalid JSON at byte 2: unterminated string" },
        { "'\"a\\1\"'", "invalid JSON at byte 3: control character in string" },
        { "'\"a\\n\"'", "invalid JSON at byte 3: control character in string" },
        { "'\"\\\\x\"'", "invalid JSON at byte 2: invalid escape" },
        { "'\"ab\\\\u12\"'", "invalid JSON at byte 4: invalid \\u escape" },
        { "'\"\\\\u12g4\"'", "invalid JSON at byte 2: invalid \\u escape" },
        { "'\"a\\255\"'", "invalid JSON at byte 3: invalid UTF-8 in string" },
        { "'\"\\\\n\\255\"'", "invalid JSON at byte 4: invalid UTF-8 in string" },
        { "'\"\\237\\160\\128\"'", "invalid JSON at byte 2: invalid UTF-8 in string" },
        { "'[1] x'", "invalid JSON at byte 5: unexpected data after the JSON value" },
        { "'{\"a\":1}}'", "invalid JSON at byte 8: unexpected data after the JSON value" },
        { "'[1]\\0'", "invalid JSON at byte 4: unexpected data after the JSON value" },
        { "'\\239\\187\\191[]'", "invalid JSON at byte 1: expected a value" },
        { "string.rep('[', 1001) .. string.rep(']', 1001)", "invalid JSON at byte 1001: nesting deeper than 1000" },
        { "string.rep('{\"a\":', 1001) .. '1' .. string.rep('}', 1001)",
          "invalid JSON at byte 5001: nesting deeper than 1000" },
    };
    lua_State *L = new_state();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char chunk[512], want[512];
        snprintf(chunk, sizeof chunk, "return codec.json_decode(%s)", cases[i].lua_json);
        snprintf(want, sizeof want, "nil|%s", cases[i].err);
        CHECK_EQ_STR(run(L, chunk), want);
    }
    CHECK_EQ_STR(run(L, "local s = string.rep('[', 1000) .. string.rep(']', 1000) "
                        "return codec.json_encode(codec.json_decode(s)) == s"), "true");
    lua_close(L);
}

TEST(object_from_arrays)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(run(L, "return codec.json_object_from_arrays({ 'b', 'a', 'c' }, { '1', 'x\"y' })"),
                 "{\"b\":\"1\",\"a\":\"x\\\"y\",\"c\":null}");
    CHECK_EQ_STR(run(L, "return codec.json_object_from_arrays({}, {})"), "{}");
    CHECK_EQ_STR(run(L, "return codec.json_object_from_arrays({ 'n', 't' }, { 1.5, { 1 } })"),
                 "{\"n\":1.5,\"t\":[1]}");
    CHECK_EQ_STR(run(L, "return codec.json_object_from_arrays({ 'a' }, { '1', '2' })"),
                 "nil|values has 2 entries, keys has 1");
    CHECK_EQ_STR(run(L, "return codec.json_object_from_arrays({ 'a' }, { '\\255' })"),
                 "nil|cannot encode string with invalid UTF-8 at value.a");
    CHECK_EQ_STR(run(L, "return pcall(codec.json_object_from_arrays, { 'a', 2 }, {})"),
                 "false|json_object_from_arrays: keys[2] is a number, expected a string");
    lua_close(L);
}

TEST(pack_unpack)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(run(L, "return codec.pack_int(1) == '\\0\\0\\0\\1', codec.pack_int(-1) == '\\255\\255\\255\\255', "
                        "codec.pack_int(258) == '\\0\\0\\1\\2', codec.pack_int(-2147483648) == '\\128\\0\\0\\0'"),
                 "true|true|true|true");
    CHECK_EQ_STR(run(L, "return codec.unpack_int(codec.pack_int(2147483647)), codec.unpack_int(codec.pack_int(-2147483648)), "
                        "codec.unpack_int(codec.pack_int(-5)), codec.unpack_int(codec.pack_int(0))"),
                 "2147483647|-2147483648|-5|0");
    CHECK_EQ_STR(run(L, "return codec.pack_int(2^31)"),
                 "nil|int value must be an integer from -2147483648 to 2147483647, got 2147483648");
    CHECK_EQ_STR(run(L, "return codec.pack_int(1.5)"),
                 "nil|int value must be an integer from -2147483648 to 2147483647, got 1.5");
    CHECK_EQ_STR(run(L, "return codec.pack_int(0/0) == nil"), "true");
    CHECK_EQ_STR(run(L, "return pcall(codec.pack_int, '1')"),
                 "false|bad argument #1 to '?' (number expected, got string)");
    CHECK_EQ_STR(run(L, "return codec.unpack_int('abc')"), "nil|int payload must be 4 bytes, got 3");
    CHECK_EQ_STR(run(L, "return codec.unpack_int('abcde')"), "nil|int payload must be 4 bytes, got 5");
    CHECK_EQ_STR(run(L, "return codec.pack_double(1.5) == '\\63\\248\\0\\0\\0\\0\\0\\0', "
                        "codec.pack_double(-2) == '\\192\\0\\0\\0\\0\\0\\0\\0'"), "true|true");
    CHECK_EQ_STR(run(L, "return codec.unpack_double(codec.pack_double(-0.1)), codec.unpack_double(codec.pack_double(1e300)), "
                        "codec.unpack_double(codec.pack_double(-math.huge)), 1 / codec.unpack_double(codec.pack_double(-0.0))"),
                 "-0.1|1e+300|-inf|-inf");
    CHECK_EQ_STR(run(L, "local x = codec.unpack_double(codec.pack_double(0/0)) return x ~= x"), "true");
    CHECK_EQ_STR(run(L, "return codec.unpack_double('1234')"), "nil|double payload must be 8 bytes, got 4");
    CHECK_EQ_STR(run(L, "return pcall(codec.pack_double, nil)"),
                 "false|bad argument #1 to '?' (number expected, got nil)");
    lua_close(L);
}

TEST(module_shared_between_opens)
{
    /* A second open in the same state shares null, array_mt and the cache. */
    lua_State *L = new_state();
    qh_codec_open(L);
    lua_setglobal(L, "codec2");
    CHECK_EQ_STR(run(L, "return codec2.array_mt == codec.array_mt, codec2.null == codec.null, "
                        "codec2.json_encode(codec.json_decode('[]')), "
                        "codec2.json_encode(codec.json_decode('{\"b\":1,\"a\":1}'))"),
                 "true|true|[]|{\"b\":1,\"a\":1}");
    lua_close(L);
}

TEST(reentrant_from_gc)
{
    /* Finalizers run inside the decoder's allocations and encode too. */
    lua_State *L = new_state();
    CHECK_EQ_STR(run(L,
        "local n, bad = 0, 0\n"
        "for i = 1, 2000 do\n"
        "  local p = newproxy(true)\n"
        "  getmetatable(p).__gc = function()\n"
        "    local s = codec.json_encode(codec.json_decode('{\"x\":[1,2],\"y\":\"z\"}'))\n"
        "    if s == '{\"x\":[1,2],\"y\":\"z\"}' then n = n + 1 else bad = bad + 1 end\n"
        "  end\n"
        "end\n"
        "local big = '[' .. string.rep('{\"a\":\"b\",\"c\":[1]},', 50000) .. '1]'\n"
        "for r = 1, 3 do\n"
        "  local v = codec.json_decode(big)\n"
        "  if codec.json_encode(v) ~= big then return 'mismatch' end\n"
        "end\n"
        "collectgarbage()\n"
        "return n, bad"), "2000|0");
    lua_close(L);
}

/* An allocator that counts scratch-state-sized blocks (the state holds
 * 1002 path frames: no other allocation of these tests comes near 32 KiB)
 * and can fail one allocation on request. */
static long alloc_fail_countdown = -1;  /* fail when it reaches 0; -1: never */
static long big_allocs;

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (nsize > osize && alloc_fail_countdown >= 0 && alloc_fail_countdown-- == 0) return NULL;
    if (nsize >= 32768 && !ptr) big_allocs++;
    return realloc(ptr, nsize);
}

static int l_fail_alloc_after(lua_State *L)
{
    alloc_fail_countdown = (long)luaL_checknumber(L, 1);
    return 0;
}

static int l_big_allocs(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)big_allocs);
    return 1;
}

/* A Lua error can leave a codec call at any allocation: an error thrown by
 * a __gc finalizer, or out of memory. The next calls must work and share one
 * scratch state again (not make one per call, and keep sharing key-order
 * metatables). */
TEST(scratch_state_after_error)
{
    lua_State *L = lua_newstate(test_alloc, NULL);
    CHECK(L != NULL);
    if (!L) return;
    luaL_openlibs(L);
    qh_codec_open(L);
    lua_setglobal(L, "codec");
    lua_register(L, "fail_alloc_after", l_fail_alloc_after);
    lua_register(L, "big_allocs", l_big_allocs);
    CHECK_EQ_STR(run(L,
        "big = '[' .. string.rep('{\"a\":\"b\",\"c\":[1]},', 20000) .. '1]'\n"
        "big_value = codec.json_decode(big)\n"
        "function shared_again(what)\n"
        "  local before = big_allocs()\n"
        "  for i = 1, 100 do\n"
        "    local a, b = codec.json_decode('{\"q\":1}'), codec.json_decode('{\"q\":[2]}')\n"
        "    if getmetatable(a) ~= getmetatable(b) then return what .. ': key order not shared' end\n"
        "    if codec.json_encode(a) ~= '{\"q\":1}' then return what .. ': bad encode' end\n"
        "  end\n"
        "  local made = big_allocs() - before\n"
        "  if made > 1 then return what .. ': ' .. made .. ' scratch states for 300 calls' end\n"
        "end\n"
        /* a finalizer that throws, and a collector eager enough to run it
         * inside the next big call */
        "function gc_bomb()\n"
        "  collectgarbage('setpause', 10)\n"
        "  collectgarbage('setstepmul', 1000)\n"
        "  collectgarbage()\n"
        "  local p = newproxy(true)\n"
        "  getmetatable(p).__gc = function() error('boom from __gc', 0) end\n"
        "end\n"
        "function gc_calm() collectgarbage('setpause', 200) collectgarbage('setstepmul', 200) end\n"
        "return 'ok'"), "ok");
    CHECK_EQ_STR(run(L, "gc_bomb() local ok, err = pcall(codec.json_decode, big) gc_calm() return ok, err"), "false|boom from __gc");
    CHECK_EQ_STR(run(L, "return shared_again('after a __gc error in decode') or 'ok'"), "ok");
    CHECK_EQ_STR(run(L, "fail_alloc_after(200) local ok, err = pcall(codec.json_decode, big) "
                        "fail_alloc_after(-1) return ok, err"), "false|not enough memory");
    CHECK_EQ_STR(run(L, "return shared_again('after running out of memory in decode') or 'ok'"), "ok");
    /* the encoder's only Lua allocation is its result (a new string: the
     * text of big_value itself would be found interned) */
    CHECK_EQ_STR(run(L, "big_value[#big_value + 1] = 2 fail_alloc_after(0) local ok, err = pcall(codec.json_encode, big_value) "
                        "fail_alloc_after(-1) return ok, err"), "false|not enough memory");
    CHECK_EQ_STR(run(L, "return shared_again('after running out of memory in encode') or 'ok'"), "ok");
    CHECK_EQ_STR(run(L, "return codec.json_encode(codec.json_decode(big)) == big"), "true");
    lua_close(L);
}

TEST(escape_function_for_c)
{
    qh_buf b = { 0 };
    CHECK_EQ_INT(qh_json_append_string(&b, "a\"\n\x01\xc3\xa9", 6), QH_JSON_OK);
    CHECK_EQ_INT(qh_json_append_string(&b, "x\xff", 2), QH_JSON_EUTF8);
    CHECK_EQ_INT(qh_json_append_string(&b, "", 0), QH_JSON_OK);
    CHECK_EQ_INT((long long)b.len, 17);
    CHECK(b.len == 17 && memcmp(b.data, "\"a\\\"\\n\\u0001\xc3\xa9\"\"\"", 17) == 0);
    qh_buf_free(&b);
    qh_buf_free(&b);
    qh_buf_free(NULL);
}

/* json_decode_at reads JSON text in place, as the run loop does from
 * librdkafka's buffer: same values, same key order, same errors. */
TEST(decode_at)
{
    lua_State *L = new_state();
    static const char obj[] = "{\"b\":1,\"a\":[\"x\",null],\"c\":\"\\u00e9\"}";
    char doc[64], chunk[256];
    snprintf(doc, sizeof doc, "%s trailing", obj);
    /* the object only: the bytes after it are not read */
    snprintf(chunk, sizeof chunk, "return codec.json_encode(codec.json_decode_at(%.0f, %zu))",
             (double)(uintptr_t)doc, sizeof obj - 1);
    CHECK_EQ_STR(run(L, chunk), "{\"b\":1,\"a\":[\"x\",null],\"c\":\"\xc3\xa9\"}");
    snprintf(chunk, sizeof chunk, "return codec.json_decode_at(%.0f, %zu)", (double)(uintptr_t)doc,
             sizeof obj + 3);
    CHECK_EQ_STR(run(L, chunk), "nil|invalid JSON at byte 37: unexpected data after the JSON value");
    CHECK_EQ_STR(run(L, "return codec.json_decode_at(0, 0)"),
                 "nil|invalid JSON at byte 1: unexpected end of input");
    CHECK_EQ_STR(run(L, "return pcall(codec.json_decode_at, 'x', 1)"),
                 "false|bad argument #1 to '?' (number expected, got string)");
    lua_close(L);
}

int main(void)
{
    RUN(encode_scalars);
    RUN(encode_numbers);
    RUN(encode_numbers_comma_locale);
    RUN(encode_strings);
    RUN(string_bytes_at_every_offset);
    RUN(encode_tables);
    RUN(encode_key_order_metatable);
    RUN(encode_pretty);
    RUN(decode_values);
    RUN(decode_numbers);
    RUN(decode_strings);
    RUN(decode_key_order);
    RUN(decode_errors);
    RUN(object_from_arrays);
    RUN(pack_unpack);
    RUN(module_shared_between_opens);
    RUN(reentrant_from_gc);
    RUN(scratch_state_after_error);
    RUN(escape_function_for_c);
    RUN(decode_at);
    return check_summary();
}
