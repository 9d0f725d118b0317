/* fuzz_csv.c: libFuzzer target for the CSV reader (host/csv.c over libcsv)
 * on arbitrary bytes, read the way sources/csv.lua's CSVSource reads a file:
 * the header with read_row, then every row either with read_json(header)
 * or by the FFI's qh_ffi_csv_next_json after set_header(header) (no
 * extractors; read_json when set_header refuses the header), or with
 * read_row and row_json (extractors).
 *
 * The first 4 input bytes choose the dialect and how the file arrives; the
 * rest is the file:
 *   [0] read(2) size: 0 whole chunks, else at most that many bytes per read
 *       (the reader must not care where reads split lines, CRLFs, the BOM)
 *   [1] delimiter  (, ; tab | space)      [2] quotechar (" ' ~)
 *   [3] field_size_limit: 0 the default, else that many bytes
 * The three ways of reading run side by side on the same file and must agree on
 * every row, line number, error and the end, up to the first error (where
 * CSVSource stops); every JSON row must decode (with qhost.codec) to the
 * fields, null for missing ones; read errors must be sticky.
 * A failed check aborts with the Lua message: libFuzzer keeps the input.
 * The file lives in a memfd; read(2) is wrapped (-Wl,--wrap=read) to make
 * the short reads. Uses: LuaJIT, csv.h, codec.h, libcsv. */
/* _GNU_SOURCE (memfd_create) comes from the Makefile, as for host/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "codec.h"
#include "csv.h"

/* At most this many bytes per read(2) while reading the CSV; 0: no limit. */
static size_t read_limit;

ssize_t __real_read(int fd, void *buf, size_t count);
ssize_t __wrap_read(int fd, void *buf, size_t count);

ssize_t __wrap_read(int fd, void *buf, size_t count)
{
    if (read_limit && count > read_limit) count = read_limit;
    return __real_read(fd, buf, count);
}

/* check(path, opts): reads the file both ways; raises on any disagreement. */
static const char DRIVER[] =
    "local csvreader, codec, next_json, csv_error = ...\n"
    "local ffi = require('ffi')\n"
    "ffi.cdef('typedef struct csv_reader qh_csv_reader;')\n"
    "next_json = ffi.cast('const char *(*)(qh_csv_reader *, size_t *)', next_json)\n"
    "csv_error = ffi.cast('const char *(*)(const qh_csv_reader *)', csv_error)\n"
    "local len = ffi.new('size_t[1]')\n"
    "local function ffi_json(r)\n"
    "  local ptr = ffi.cast('qh_csv_reader *', r:ptr())\n"
    "  local text = next_json(ptr, len)\n"
    "  if text ~= nil then return ffi.string(text, len[0]) end\n"
    "  local err = csv_error(ptr)\n"
    "  return nil, err ~= nil and ffi.string(err) or nil\n"
    "end\n"
    "local function same(a, b, what)\n"
    "  if a ~= b then error(what .. ': ' .. tostring(a) .. ' vs ' .. tostring(b), 0) end\n"
    "end\n"
    "return function(path, opts)\n"
    "  local a = assert(csvreader.open(path, opts))\n"
    "  local b = assert(csvreader.open(path, opts))\n"
    "  local c = assert(csvreader.open(path, opts))\n"
    "  local header, herr = a:read_row()\n"
    "  local hb, hberr = b:read_row()\n"
    "  c:read_row()\n"
    "  same(herr, hberr, 'header errors')\n"
    "  same(header == nil, hb == nil, 'header presence')\n"
    "  if not header then\n"
    "    if herr then same(select(2, a:read_row()), herr, 'sticky header error') end\n"
    "    a:close() b:close() c:close() return\n"
    "  end\n"
    "  same(#header, #hb, 'header width')\n"
    "  for i = 1, #header do same(header[i], hb[i], 'header field') end\n"
    "  local unique, seen = true, {}\n"
    "  for _, name in ipairs(header) do if seen[name] then unique = false end seen[name] = true end\n"
    "  local by_ffi = c:set_header(header)\n"
    "  local last_line = 0\n"
    "  while true do\n"
    "    local fields, line = a:read_row()\n"
    "    local json, jline = b:read_json(header)\n"
    "    local fjson, ferr\n"
    "    if by_ffi then fjson, ferr = ffi_json(c) else fjson, ferr = c:read_json(header) end\n"
    "    same(fjson, json, 'FFI row JSON')\n"
    "    if not json then same(ferr, jline, 'FFI end or error') end\n"
    "    if not fields then\n"
    "      same(json, nil, 'read_json after the end or an error')\n"
    "      same(jline, line, 'end or error')\n"
    "      if line then\n"
    "        same(select(2, a:read_row()), line, 'sticky read_row error')\n"
    "        same(select(2, b:read_json(header)), line, 'sticky read_json error')\n"
    "        if by_ffi then same(select(2, ffi_json(c)), line, 'sticky FFI error') end\n"
    "      else\n"
    "        same(a:read_row(), nil, 'read_row after the end')\n"
    "      end\n"
    "      break\n"
    "    end\n"
    "    if type(line) ~= 'number' or line <= last_line then error('line numbers must grow: ' .. tostring(line), 0) end\n"
    "    last_line = line\n"
    "    if #fields == 0 then error('an empty row', 0) end\n"
    "    local value, err = a:row_json(header, fields, line)\n"
    "    same(json, value, 'row JSON')\n"
    "    if value then\n"
    "      same(jline, line, 'row line')\n"
    "      local t, derr = codec.json_decode(value)\n"
    "      if not t then error('row JSON does not decode: ' .. derr .. ': ' .. value, 0) end\n"
    "      if unique then\n"
    "        for i, name in ipairs(header) do\n"
    "          same(t[name], fields[i] or codec.null, 'field ' .. i)\n"
    "        end\n"
    "      end\n"
    "    else\n"
    "      same(jline, err, 'row error')\n"
    "      break  -- CSVSource stops at the first error\n"
    "    end\n"
    "  end\n"
    "  a:close() b:close() c:close()\n"
    "end\n";

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
static int check_ref;
static int memfd = -1;
static char path[64];

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
    if (luaL_loadbuffer(L, DRIVER, sizeof DRIVER - 1, "=fuzz_csv") != 0) abort();
    qh_csv_open(L);
    qh_codec_open(L);
    lua_pushlightuserdata(L, (void *)qh_ffi_csv_next_json);
    lua_pushlightuserdata(L, (void *)qh_ffi_csv_error);
    lua_call(L, 4, 1);
    check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    memfd = memfd_create("fuzz_csv", MFD_CLOEXEC);
    if (memfd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = -1;
    static const char delims[] = ",;\t| ", quotes[] = "\"'~";
    if (ready < 0) ready = init();
    if (size < 4) return 0;
    size_t limit = data[0];
    char delim[2] = { delims[data[1] % 5], 0 }, quote[2] = { quotes[data[2] % 3], 0 };
    int field_limit = data[3];
    data += 4;
    size -= 4;

    if (ftruncate(memfd, 0) != 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) abort();

    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushstring(L, path);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, delim);
    lua_setfield(L, -2, "delimiter");
    lua_pushstring(L, quote);
    lua_setfield(L, -2, "quotechar");
    if (field_limit) {
        lua_pushnumber(L, field_limit);
        lua_setfield(L, -2, "field_size_limit");
    }
    read_limit = limit;
    int rc = lua_pcall(L, 2, 0, 0);
    read_limit = 0;
    if (rc != 0) {
        fprintf(stderr, "fuzz_csv: %s\n  delimiter %s, quotechar %s, field_size_limit %d, reads of %zu\n",
                lua_tostring(L, -1), delim, quote, field_limit, limit);
        abort();
    }
    /* The readers' userdata (chunk buffers) go with the garbage. */
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
