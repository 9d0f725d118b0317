/* test_csv.c: the qhost.csvreader module driven through a real lua_State,
 * over files generated into a temporary directory (the test chdirs there so
 * messages show short relative paths, as users see them). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "codec.h"
#include "csv.h"
#include "helpers.h"

/* Writes a test file (in the temporary folder, the working directory). */
#define WRITE(name, literal) CHECK_EQ_INT(th_write_file(name, literal, sizeof literal - 1, 0644), 0)

/* dump(path, opts): every row as "LINE:[f1][f2]...", one per line, and a
 * final "ERR <message>" if reading failed. */
static const char *lua_helpers =
    "function dump(path, opts)\n"
    "  local r, err = csvreader.open(path, opts)\n"
    "  if not r then return 'open: ' .. err end\n"
    "  local out = {}\n"
    "  while true do\n"
    "    local f, line = r:read_row()\n"
    "    if not f then\n"
    "      if line then\n"
    "        out[#out + 1] = 'ERR ' .. line\n"
    "        local f2, again = r:read_row()\n"
    "        if f2 or again ~= line then out[#out + 1] = 'NOT STICKY' end\n"
    "      elseif r:read_row() ~= nil then out[#out + 1] = 'ROW AFTER EOF'\n"
    "      end\n"
    "      break\n"
    "    end\n"
    "    local q = {}\n"
    "    for i, v in ipairs(f) do q[i] = '[' .. v .. ']' end\n"
    "    out[#out + 1] = line .. ':' .. table.concat(q)\n"
    "  end\n"
    "  r:close()\n"
    "  return table.concat(out, '\\n')\n"
    "end\n"
    "local ffi = require('ffi')\n"
    "ffi.cdef[[\n"
    "typedef struct csv_reader qh_csv_reader;\n"
    "const char *qh_ffi_csv_next_json(qh_csv_reader *r, size_t *len);\n"
    "const char *qh_ffi_csv_error(const qh_csv_reader *r);\n"
    "]]\n"
    "local len = ffi.new('size_t[1]')\n"
    "-- ffi_json(r): the next row's JSON text by the FFI way, or nil, err\n"
    "-- (nil, nil at the end)\n"
    "function ffi_json(r)\n"
    "  local ptr = ffi.cast('qh_csv_reader *', r:ptr())\n"
    "  local text = ffi.C.qh_ffi_csv_next_json(ptr, len)\n"
    "  if text ~= nil then return ffi.string(text, len[0]) end\n"
    "  local err = ffi.C.qh_ffi_csv_error(ptr)\n"
    "  return nil, err ~= nil and ffi.string(err) or nil\n"
    "end\n";

static lua_State *new_state(void)
{
    lua_State *L = th_lua_new("csvreader", qh_csv_open);
    th_lua_global(L, "codec", qh_codec_open);
    th_lua_prelude(L, lua_helpers);
    return L;
}

TEST(header_and_rows)
{
    lua_State *L = new_state();
    WRITE("input.csv", "name,age\nalice,30\nbob,25\n");
    CHECK_EQ_STR(th_run(L, "return dump('input.csv')"), "1:[name][age]\n2:[alice][30]\n3:[bob][25]");
    WRITE("one.csv", "x");
    CHECK_EQ_STR(th_run(L, "return dump('one.csv')"), "1:[x]");
    WRITE("empty.csv", "");
    CHECK_EQ_STR(th_run(L, "return dump('empty.csv')"), "");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('input.csv') local s = tostring(r) r:close() "
                        "return s, tostring(r)"),
                 "csvreader(input.csv)|csvreader(input.csv, closed)");
    lua_close(L);
}

TEST(quoting)
{
    lua_State *L = new_state();
    WRITE("q.csv", "a,\"b,c\",\"d\"\"e\",\"line1\nline2\",f\nnext,\"\"\"\",\"\"\n");
    CHECK_EQ_STR(th_run(L, "return dump('q.csv')"),
                 "1:[a][b,c][d\"e][line1\nline2][f]\n3:[next][\"][]");
    lua_close(L);
}

TEST(line_endings)
{
    lua_State *L = new_state();
    WRITE("crlf.csv", "a,b\r\nc,d\r\n\"x\r\ny\",z\r\nw\r\n");
    CHECK_EQ_STR(th_run(L, "return dump('crlf.csv')"), "1:[a][b]\n2:[c][d]\n3:[x\r\ny][z]\n5:[w]");
    WRITE("cr.csv", "a\rb\r\"c\rd\"\re");
    CHECK_EQ_STR(th_run(L, "return dump('cr.csv')"), "1:[a]\n2:[b]\n3:[c\rd]\n5:[e]");
    WRITE("nofinal.csv", "a,b\nc,d");
    CHECK_EQ_STR(th_run(L, "return dump('nofinal.csv')"), "1:[a][b]\n2:[c][d]");
    WRITE("nofinalq.csv", "a,b\nc,\"d\"");
    CHECK_EQ_STR(th_run(L, "return dump('nofinalq.csv')"), "1:[a][b]\n2:[c][d]");
    WRITE("trailcomma.csv", "a,b\nc,");
    CHECK_EQ_STR(th_run(L, "return dump('trailcomma.csv')"), "1:[a][b]\n2:[c][]");
    lua_close(L);
}

TEST(empty_fields_and_blank_lines)
{
    lua_State *L = new_state();
    WRITE("e.csv", ",a,,\n,\n\"\"\n");
    CHECK_EQ_STR(th_run(L, "return dump('e.csv')"), "1:[][a][][]\n2:[][]\n3:[]");
    WRITE("blank.csv", "\n\na,b\n\n\r\n\nc,d\n\n");
    CHECK_EQ_STR(th_run(L, "return dump('blank.csv')"), "3:[a][b]\n7:[c][d]");
    WRITE("spaces.csv", " a , b \n  \n");
    CHECK_EQ_STR(th_run(L, "return dump('spaces.csv')"), "1:[ a ][ b ]\n2:[  ]");
    /* Rows of empty fields only: the byte buffer is never allocated, and
     * dropping the rows already handed out must not memmove from NULL
     * (undefined behaviour, caught by UBSan; found by tests/fuzz/fuzz_csv). */
    WRITE("onlyempty.csv", ",,\n,\n,,,\nx\n");
    CHECK_EQ_STR(th_run(L, "return dump('onlyempty.csv')"), "1:[][][]\n2:[][]\n3:[][][][]\n4:[x]");
    lua_close(L);
}

TEST(unicode_and_bom)
{
    lua_State *L = new_state();
    WRITE("u.csv", "\xe5\x90\x8d\xe5\x89\x8d,citt\xc3\xa0\n\xf0\x9f\x98\x80,\"\xc3\xa9,\xc3\xa8\"\n");
    CHECK_EQ_STR(th_run(L, "return dump('u.csv')"),
                 "1:[\xe5\x90\x8d\xe5\x89\x8d][citt\xc3\xa0]\n2:[\xf0\x9f\x98\x80][\xc3\xa9,\xc3\xa8]");
    WRITE("bom.csv", "\xEF\xBB\xBFid,v\n1,\xEF\xBB\xBF\n");
    CHECK_EQ_STR(th_run(L, "return dump('bom.csv')"), "1:[id][v]\n2:[1][\xEF\xBB\xBF]");
    WRITE("bomq.csv", "\xEF\xBB\xBF\"id\",v\n");
    CHECK_EQ_STR(th_run(L, "return dump('bomq.csv')"), "1:[id][v]");
    WRITE("bomonly.csv", "\xEF\xBB\xBF");
    CHECK_EQ_STR(th_run(L, "return dump('bomonly.csv')"), "");
    WRITE("short.csv", "\xEF\xBB");
    CHECK_EQ_STR(th_run(L, "return dump('short.csv')"), "1:[\xEF\xBB]");
    lua_close(L);
}

TEST(dialects)
{
    lua_State *L = new_state();
    WRITE("semi.csv", "a;\"b;c\";d,e\n1;2;3\n");
    CHECK_EQ_STR(th_run(L, "return dump('semi.csv', { delimiter = ';' })"), "1:[a][b;c][d,e]\n2:[1][2][3]");
    WRITE("tab.csv", "a\t b\t\"c\td\"\n\t\n");
    CHECK_EQ_STR(th_run(L, "return dump('tab.csv', { delimiter = '\\t' })"), "1:[a][ b][c\td]\n2:[][]");
    WRITE("squote.csv", "'a,b','it''s',\"x\"\n");
    CHECK_EQ_STR(th_run(L, "return dump('squote.csv', { quotechar = \"'\" })"), "1:[a,b][it's][\"x\"]");
    CHECK_EQ_STR(th_run(L, "return pcall(csvreader.open, 'semi.csv', { delimiter = ';;' })"),
                 "false|csvreader.open: delimiter must be a one-character string other than a newline");
    CHECK_EQ_STR(th_run(L, "return pcall(csvreader.open, 'semi.csv', { delimiter = '\\n' })"),
                 "false|csvreader.open: delimiter must be a one-character string other than a newline");
    CHECK_EQ_STR(th_run(L, "return pcall(csvreader.open, 'semi.csv', { quotechar = ',' })"),
                 "false|csvreader.open: delimiter and quotechar must differ");
    CHECK_EQ_STR(th_run(L, "return pcall(csvreader.open, 'semi.csv', { field_size_limit = 0 })"),
                 "false|csvreader.open: field_size_limit must be a positive number");
    CHECK_EQ_STR(th_run(L, "return pcall(csvreader.open, 'semi.csv', 5)"),
                 "false|bad argument #2 to '?' (table expected, got number)");
    lua_close(L);
}

TEST(malformed)
{
    lua_State *L = new_state();
    WRITE("input.csv", "a,b\nc,d\"e\nf,g\n");
    CHECK_EQ_STR(th_run(L, "return dump('input.csv')"),
                 "1:[a][b]\nERR input.csv:2: malformed CSV: quote character in unquoted field");
    WRITE("after.csv", "a,b\n\"c\"x,d\n");
    CHECK_EQ_STR(th_run(L, "return dump('after.csv')"),
                 "1:[a][b]\nERR after.csv:2: malformed CSV: unexpected character after closing quote");
    WRITE("space.csv", "\"c\" ,d\n");
    CHECK_EQ_STR(th_run(L, "return dump('space.csv')"),
                 "ERR space.csv:1: malformed CSV: unexpected character after closing quote");
    WRITE("unterminated.csv", "a,b\n\n\"c,d\ne,f\n");
    CHECK_EQ_STR(th_run(L, "return dump('unterminated.csv')"),
                 "1:[a][b]\nERR unterminated.csv:3: malformed CSV: unterminated quoted field");
    /* the error names the line of the bad character, not of the record */
    WRITE("multi.csv", "h\n1\n\"x\ny\nz\"q\n");
    CHECK_EQ_STR(th_run(L, "return dump('multi.csv')"),
                 "1:[h]\n2:[1]\nERR multi.csv:5: malformed CSV: unexpected character after closing quote");
    /* rows completed earlier on the same physical line (CR endings) first */
    WRITE("cr_err.csv", "a\rb\"\r");
    CHECK_EQ_STR(th_run(L, "return dump('cr_err.csv')"),
                 "1:[a]\nERR cr_err.csv:2: malformed CSV: quote character in unquoted field");
    lua_close(L);
}

TEST(open_errors_and_close)
{
    lua_State *L = new_state();
    CHECK_EQ_STR(th_run(L, "return csvreader.open('missing.csv')"), "nil|missing.csv: No such file or directory");
    mkdir("adir", 0700);
    CHECK_EQ_STR(th_run(L, "return csvreader.open('adir')"), "nil|adir: Is a directory");
    rmdir("adir");
    WRITE("c.csv", "a\nb\n");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('c.csv') local f, l = r:read_row() r:close() r:close() "
                        "return f[1], l, pcall(r.read_row, r)"),
                 "a|1|false|csvreader c.csv: read_row after close");
    CHECK_EQ_STR(th_run(L, "return pcall(csvreader.open)"),
                 "false|bad argument #1 to '?' (string expected, got no value)");
    CHECK_EQ_STR(th_run(L, "return pcall(csvreader.open('c.csv').read_row, {})"),
                 "false|bad argument #1 to '?' (qhost.csvreader expected, got table)");
    /* left open: __gc at lua_close frees it (ASan checks) */
    CHECK_EQ_STR(th_run(L, "leftover = csvreader.open('c.csv') return leftover:read_row()[1]"), "a");
    lua_close(L);
}

/* A field longer than a 64 KiB chunk, and rows spanning several chunks. */
TEST(long_rows_span_chunks)
{
    lua_State *L = new_state();
    size_t n = 100000;
    char *buf = malloc(4 * n);
    size_t len = 0;
    len += (size_t)sprintf(buf + len, "a,b,c\n");
    memset(buf + len, 'x', n);            /* 100000 plain bytes */
    len += n;
    len += (size_t)sprintf(buf + len, ",\"");
    for (size_t i = 0; i < 20000; i++)    /* quoted, with all the specials */
        len += (size_t)sprintf(buf + len, "%s", i % 4 == 0 ? "\"\"" : i % 4 == 1 ? "," : i % 4 == 2 ? "\n" : "y");
    len += (size_t)sprintf(buf + len, "\",z\nlast,row,here\n");
    CHECK_EQ_INT(th_write_file("long.csv", buf, len, 0644), 0);
    CHECK_EQ_STR(th_run(L,
        "local r = csvreader.open('long.csv')\n"
        "local h, l1 = r:read_row()\n"
        "local f, l2 = r:read_row()\n"
        "local g, l3 = r:read_row()\n"
        "local eof = r:read_row()\n"
        "local want = string.rep('\",\\ny', 5000)\n"
        "return l1, l2, #f, #f[1], f[1] == string.rep('x', 100000), #f[2], f[2] == want, f[3], "
        "l3, table.concat(g, ' '), eof"),
        "1|2|3|100000|true|20000|true|z|5003|last row here|nil");
    free(buf);

    /* CRLF split across the chunk boundary: CR is byte 65535, LF 65536 */
    buf = malloc(70000 + 64);
    memset(buf, 'h', 65535);
    len = 65535;
    len += (size_t)sprintf(buf + len, "\r\nr2\r\nr3\r\n");
    CHECK_EQ_INT(th_write_file("split.csv", buf, len, 0644), 0);
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('split.csv') local h, l1 = r:read_row() "
                        "local a, l2 = r:read_row() local b, l3 = r:read_row() "
                        "return #h[1], l1, a[1], l2, b[1], l3, r:read_row()"),
                 "65535|1|r2|2|r3|3|nil");
    free(buf);

    /* many rows: memory stays flat, line numbers stay right */
    FILE *f = fopen("many.csv", "wb");
    fprintf(f, "id,name\n");
    for (int i = 2; i <= 200000; i++) fprintf(f, "%d,\"n%d\"%s", i, i, i % 2 ? "\r\n" : "\n");
    fclose(f);
    CHECK_EQ_STR(th_run(L,
        "local r = csvreader.open('many.csv') r:read_row()\n"
        "local count, bad = 0, 0\n"
        "while true do\n"
        "  local f, line = r:read_row()\n"
        "  if not f then break end\n"
        "  count = count + 1\n"
        "  if tonumber(f[1]) ~= line or f[2] ~= 'n' .. line then bad = bad + 1 end\n"
        "end\n"
        "return count, bad"), "199999|0");
    lua_close(L);
}

TEST(field_size_limit)
{
    lua_State *L = new_state();
    char *buf = malloc(300000);
    size_t len = (size_t)sprintf(buf, "a,b\n1,");
    memset(buf + len, 'x', 2000);
    len += 2000;
    len += (size_t)sprintf(buf + len, "\n");
    CHECK_EQ_INT(th_write_file("big.csv", buf, len, 0644), 0);
    CHECK_EQ_STR(th_run(L, "return dump('big.csv', { field_size_limit = 1000 })"),
                 "1:[a][b]\nERR big.csv:2: malformed CSV: field larger than field limit (1000)");
    CHECK_EQ_STR(th_run(L, "return #dump('big.csv', { field_size_limit = 2000 })"), "2016");
    /* exactly at the limit is fine, quoted or not, one more byte is not */
    len = (size_t)sprintf(buf, "a,b\n\"");
    memset(buf + len, 'q', 1000);
    len += 1000;
    len += (size_t)sprintf(buf + len, "\",");
    memset(buf + len, 'u', 1000);
    len += 1000;
    CHECK_EQ_INT(th_write_file("edge.csv", buf, len, 0644), 0);
    CHECK_EQ_STR(th_run(L, "return #dump('edge.csv', { field_size_limit = 1000 })"), "2015");
    CHECK_EQ_STR(th_run(L, "return dump('edge.csv', { field_size_limit = 999 })"),
                 "1:[a][b]\nERR edge.csv:2: malformed CSV: field larger than field limit (999)");

    /* the default limit is Python's 131072; an unterminated quote meets it
     * long before the end of a big file */
    len = (size_t)sprintf(buf, "a\n\"");
    memset(buf + len, 'x', 200000);
    len += 200000;
    CHECK_EQ_INT(th_write_file("runaway.csv", buf, len, 0644), 0);
    CHECK_EQ_STR(th_run(L, "return dump('runaway.csv')"),
                 "1:[a]\nERR runaway.csv:2: malformed CSV: field larger than field limit (131072)");
    CHECK_EQ_STR(th_run(L, "return dump('runaway.csv', { field_size_limit = math.huge })"),
                 "1:[a]\nERR runaway.csv:2: malformed CSV: unterminated quoted field");
    free(buf);
    lua_close(L);
}

TEST(reads_from_a_pipe)
{
    /* Short reads: the BOM arrives split, records arrive in pieces. */
    lua_State *L = new_state();
    if (mkfifo("fifo.csv", 0600) != 0) {
        CHECK(0);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("fifo.csv", O_WRONLY);
        const char *parts[] = { "\xEF", "\xBB", "\xBF" "a,\"b", "\nc\"\r", "\nd,e" };
        for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
            if (write(fd, parts[i], strlen(parts[i])) < 0) _exit(1);
            usleep(20000);
        }
        _exit(0);
    }
    CHECK_EQ_STR(th_run(L, "return dump('fifo.csv')"), "1:[a][b\nc]\n3:[d][e]");
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink("fifo.csv");
    lua_close(L);
}

TEST(row_json)
{
    lua_State *L = new_state();
    WRITE("rj.csv", "key,field,timestamp\nkey5,value5,5\n");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') local h = r:read_row() local f, line = r:read_row() "
                        "return r:row_json(h, f, line)"),
                 "{\"key\":\"key5\",\"field\":\"value5\",\"timestamp\":\"5\"}");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') r:close() "
                        "return r:row_json({ 'a', 'b', 'c' }, { '1', 'x\"y\\n\\1\xc3\xa9' }, 2)"),
                 "{\"a\":\"1\",\"b\":\"x\\\"y\\n\\u0001\xc3\xa9\",\"c\":null}");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return r:row_json({ 'a', 'b' }, {})"),
                 "{\"a\":null,\"b\":null}");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return r:row_json({}, {})"), "{}");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return r:row_json({ 'a', 'b' }, { '1', '2', '3', '4' }, 7)"),
                 "nil|rj.csv:7: row has 4 fields, header has 2");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return r:row_json({ 'a' }, { '1', '2' })"),
                 "nil|rj.csv: row has 2 fields, header has 1");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return r:row_json({ 'a', 'b' }, { '1', '\\255' }, 3)"),
                 "nil|rj.csv:3: invalid UTF-8 in field 2");
    /* a bad header is no row's fault: the message is read_json's */
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return r:row_json({ '\\255' }, { '1' }, 2)"),
                 "nil|rj.csv: invalid UTF-8 in header column 1");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return pcall(r.row_json, r, { 'a' }, { 5 })"),
                 "false|row_json: fields[1] is a number, expected a string");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') return pcall(r.row_json, r, { true }, {})"),
                 "false|row_json: header[1] is a boolean, expected a string");
    /* what row_json writes, codec reads back with the header order */
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rj.csv') local s = r:row_json({ 'z', 'a' }, { '1', '2' }) "
                        "return codec.json_encode(codec.json_decode(s))"),
                 "{\"z\":\"1\",\"a\":\"2\"}");
    lua_close(L);
}

/* read_json makes, straight from the parser's buffer, what row_json makes
 * from the fields read by read_row. */
TEST(read_json)
{
    lua_State *L = new_state();
    WRITE("rjs.csv", "a,b,c\n1,\"x \"\"q\"\"\",\n2\n\"multi\nline\",\xc3\xa9,3\n");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rjs.csv') local h = r:read_row() local out = {} "
                        "while true do local j, line = r:read_json(h) if not j then out[#out + 1] = tostring(line) break end "
                        "out[#out + 1] = line .. ' ' .. j end return table.concat(out, '\\n')"),
                 "2 {\"a\":\"1\",\"b\":\"x \\\"q\\\"\",\"c\":\"\"}\n"
                 "3 {\"a\":\"2\",\"b\":null,\"c\":null}\n"
                 "4 {\"a\":\"multi\\nline\",\"b\":\"\xc3\xa9\",\"c\":\"3\"}\nnil");
    /* the same text as row_json, row by row */
    CHECK_EQ_STR(th_run(L, "local a, b = csvreader.open('rjs.csv'), csvreader.open('rjs.csv') "
                        "local ha, hb = a:read_row(), b:read_row() "
                        "for i = 1, 3 do local f, line = b:read_row() "
                        "if a:read_json(ha) ~= b:row_json(hb, f, line) then return 'row ' .. i end end return 'same'"),
                 "same");
    /* another header table is taken up again */
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rjs.csv') r:read_row() r:read_json({ 'x', 'y', 'z' }) "
                        "return (r:read_json({ 'p', 'q' }))"),
                 "{\"p\":\"2\",\"q\":null}");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rjs.csv') r:read_row() return r:read_json({ 'a' })"),
                 "nil|rjs.csv:2: row has 3 fields, header has 1");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rjs.csv') return r:read_json({ '\\255' })"),
                 "nil|rjs.csv: invalid UTF-8 in header column 1");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rjs.csv') return pcall(r.read_json, r, { true })"),
                 "false|read_json: header[1] is a boolean, expected a string");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('rjs.csv') r:close() return pcall(r.read_json, r, {})"),
                 "false|csvreader rjs.csv: read_json after close");
    lua_close(L);
}

/* The FFI way (a CSVSource without extractors): set_header, then
 * qh_ffi_csv_next_json per row gives read_json's text without a Lua string
 * per row; the end is NULL with no error, an error is sticky, and a header
 * that cannot be JSON is refused by set_header itself. */
TEST(ffi_next_json)
{
    lua_State *L = new_state();
    WRITE("fj.csv", "a,b,c\n1,\"x \"\"q\"\"\",\n2\n\"multi\nline\",\xc3\xa9,3\n");
    CHECK_EQ_STR(th_run(L, "local a, b = csvreader.open('fj.csv'), csvreader.open('fj.csv') "
                        "local ha, hb = a:read_row(), b:read_row() assert(b:set_header(hb)) "
                        "local out = {} "
                        "for i = 1, 4 do local x, y, err = a:read_json(ha), ffi_json(b) "
                        "if x ~= y or err then return 'row ' .. i .. ': ' .. tostring(y) .. ' ' .. tostring(err) end "
                        "out[#out + 1] = tostring(y) end return table.concat(out, '\\n')"),
                 "{\"a\":\"1\",\"b\":\"x \\\"q\\\"\",\"c\":\"\"}\n"
                 "{\"a\":\"2\",\"b\":null,\"c\":null}\n"
                 "{\"a\":\"multi\\nline\",\"b\":\"\xc3\xa9\",\"c\":\"3\"}\nnil");
    /* errors: sticky, with file and line; no header; after close */
    WRITE("fe.csv", "a,b\n1,2\n3,4,5\n6,7\n");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('fe.csv') r:set_header(r:read_row()) "
                        "local x = ffi_json(r) local y, e1 = ffi_json(r) local z, e2 = ffi_json(r) "
                        "return x, y, e1, z, e2"),
                 "{\"a\":\"1\",\"b\":\"2\"}|nil|fe.csv:3: row has 3 fields, header has 2|nil|"
                 "fe.csv:3: row has 3 fields, header has 2");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('fe.csv') r:read_row() return ffi_json(r)"),
                 "nil|fe.csv: no header set (set_header)");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('fe.csv') r:set_header(r:read_row()) r:close() "
                        "return ffi_json(r)"),
                 "nil|fe.csv: read after close");
    CHECK_EQ_STR(th_run(L, "local r = csvreader.open('fe.csv') return r:set_header({ 'a', '\\255' })"),
                 "nil|fe.csv: invalid UTF-8 in header column 2");
    lua_close(L);
}

/* CSVSource turns rows into JSON with read_json, or with read_row and
 * row_json when it has extractors, or by the FFI way (when set_header takes
 * the header; else read_json): a bad file must fail the same way every way
 * (found by tests/fuzz/fuzz_csv): the row (end, malformed CSV), then the
 * header, the number of fields, each field. */
TEST(json_errors_alike_both_ways)
{
    static const struct { const char *file, *err; } cases[] = {
        { "\xff,b\n1,2,3\n", "bad.csv: invalid UTF-8 in header column 1" },
        { "a,\xff\n\xfe,2\n", "bad.csv: invalid UTF-8 in header column 2" },
        { "a,b\n\xfe,2,3\n", "bad.csv:2: row has 3 fields, header has 2" },
        { "a,b\n1,\xfe\n", "bad.csv:2: invalid UTF-8 in field 2" },
        { "\xff,b\n\"1,2\n", "bad.csv:2: malformed CSV: unterminated quoted field" },
        /* surrogates U+D90B U+DEFF as 3 bytes each (CESU-8): as JSON
         * escapes they would read back as another character */
        { "a,b\n1,\xed\xa4\x8b\xed\xbb\xbf\n", "bad.csv:2: invalid UTF-8 in field 2" },
    };
    lua_State *L = new_state();
    /* a bad header and no rows: nothing to convert, no error either way */
    WRITE("bad.csv", "\xff,b\n");
    CHECK_EQ_STR(th_run(L, "local a, b = csvreader.open('bad.csv'), csvreader.open('bad.csv') "
                        "local ha, hb = a:read_row(), b:read_row() "
                        "return a:read_row(), b:read_json(hb)"), "nil|nil");
    WRITE("good.csv", "a,b\n");
    CHECK_EQ_STR(th_run(L, "local c = csvreader.open('good.csv') c:set_header(c:read_row()) return ffi_json(c)"),
                 "nil|nil");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK_EQ_INT(th_write_file("bad.csv", cases[i].file, strlen(cases[i].file), 0644), 0);
        char want[256];
        snprintf(want, sizeof want, "nil|%s|nil|%s|nil|%s", cases[i].err, cases[i].err, cases[i].err);
        CHECK_EQ_STR(th_run(L, "local a, b, c = csvreader.open('bad.csv'), csvreader.open('bad.csv'), "
                            "csvreader.open('bad.csv') "
                            "local ha, hb, hc = a:read_row(), b:read_row(), c:read_row() "
                            "local f, line = a:read_row() "
                            "local x, xerr = nil, line "
                            "if f then x, xerr = a:row_json(ha, f, line) end "
                            "local y, yerr = b:read_json(hb) "
                            "local z, zerr "
                            "if c:set_header(hc) then z, zerr = ffi_json(c) else z, zerr = c:read_json(hc) end "
                            "return x, xerr, y, yerr, z, zerr"), want);
    }
    lua_close(L);
}

int main(void)
{
    const char *tmpdir = th_tmpdir("csv");
    if (!tmpdir || chdir(tmpdir) != 0) return 2;
    RUN(header_and_rows);
    RUN(quoting);
    RUN(line_endings);
    RUN(empty_fields_and_blank_lines);
    RUN(unicode_and_bom);
    RUN(dialects);
    RUN(malformed);
    RUN(open_errors_and_close);
    RUN(long_rows_span_chunks);
    RUN(field_size_limit);
    RUN(read_json);
    RUN(ffi_next_json);
    RUN(reads_from_a_pipe);
    RUN(row_json);
    RUN(json_errors_alike_both_ways);
    if (chdir("/") != 0) return 2;
    th_remove_tree(tmpdir);
    return check_summary();
}
