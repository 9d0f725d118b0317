/* test_sqlite.c: tests of host/sqlite.c, the `qhost.sqlite` module: a
 * database opened read-only, positional and named parameters, each SQLite
 * type to Lua and each Lua type to SQLite, limits, prepared statements run
 * again, and the errors (a missing file, bad SQL, several statements, a
 * missing parameter, a closed database). */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "helpers.h"
#include "sqlite.h"

static char db_path[512];

/* The fixture, written with SQLite's own API. */
static int make_db(const char *dir)
{
    snprintf(db_path, sizeof db_path, "%s/ref.db", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK) return -1;
    const char *sql =
        "CREATE TABLE devices (id TEXT, name TEXT, n INTEGER, x REAL, b BLOB, big INTEGER);"
        "INSERT INTO devices VALUES ('a', 'Alice', 1, 2.5, x'00ff', 9007199254740993);"
        "INSERT INTO devices VALUES ('b', NULL, 2, 3.0, NULL, -5);"
        "INSERT INTO devices VALUES ('c', 'Carol', 3, -0.25, NULL, 7);";
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) fprintf(stderr, "fixture: %s\n", err);
    sqlite3_free(err);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static lua_State *state(void)
{
    lua_State *L = th_lua_new("sqlite", qh_sqlite_open);
    lua_pushstring(L, db_path);
    lua_setglobal(L, "path");
    th_lua_prelude(L, "function rowtext(row)\n"
                      "  local out = {}\n"
                      "  for i, v in ipairs(row) do\n"
                      "    if type(v) == 'userdata' then out[i] = 'NULL' else out[i] = tostring(v) end\n"
                      "  end\n"
                      "  return table.concat(out, ',')\n"
                      "end\n");
    return L;
}

TEST(types_come_back_as_lua_values)
{
    lua_State *L = state();
    CHECK_EQ_STR(th_run(L,
        "local db = assert(sqlite.open(path))\n"
        "local rows, cols = assert(db:query('SELECT id, name, n, x, big FROM devices ORDER BY id'))\n"
        "return #rows, table.concat(cols, ','), rowtext(rows[1]), rowtext(rows[2]), rowtext(rows[3])"),
        "3|id,name,n,x,big|a,Alice,1,2.5,9007199254740993LL|b,NULL,2,3,-5|c,Carol,3,-0.25,7");
    /* NULL is a NULL lightuserdata (qhost.json.null); a BLOB is a string of its bytes. */
    CHECK_EQ_STR(th_run(L,
        "local db = assert(sqlite.open(path))\n"
        "local rows = db:query(\"SELECT name, b FROM devices WHERE id = 'b'\")\n"
        "local a = db:query(\"SELECT b FROM devices WHERE id = 'a'\")\n"
        "return type(rows[1][1]), rows[1][1] == rows[1][2], #a[1][1], a[1][1]:byte(2)"),
        "userdata|true|2|255");
    lua_close(L);
}

TEST(parameters_positional_and_named)
{
    lua_State *L = state();
    CHECK_EQ_STR(th_run(L,
        "local db = assert(sqlite.open(path))\n"
        "local r1 = db:query('SELECT name FROM devices WHERE id = ?', { 'a' })\n"
        "local r2 = db:query('SELECT name FROM devices WHERE n = :n OR id = @id', { n = 3, id = 'zz' })\n"
        "local r3 = db:query('SELECT id FROM devices WHERE n = ?2 AND id = ?1', { 'b', 2 })\n"
        "return r1[1][1], r2[1][1], r3[1][1]"),
        "Alice|Carol|b");
    /* Lua values to SQLite: booleans are 0/1, integral numbers INTEGER,
     * others REAL, null NULL, int64 cdata INTEGER. */
    CHECK_EQ_STR(th_run(L,
        "local db = assert(sqlite.open(path))\n"
        "local null = (db:query('SELECT NULL'))[1][1]\n"
        "local r = db:query('SELECT ?, ?, typeof(?), typeof(?), ? IS NULL, ?', { true, false, 2, 2.5, null, 123456789012345678LL })\n"
        "return rowtext(r[1])"),
        "1,0,integer,real,1,123456789012345678LL");
    lua_close(L);
}

TEST(limits_and_statements_run_again)
{
    lua_State *L = state();
    CHECK_EQ_STR(th_run(L,
        "local db = assert(sqlite.open(path))\n"
        "local rows = db:query('SELECT id FROM devices ORDER BY id DESC', nil, 2)\n"
        "local st = assert(db:prepare('SELECT name FROM devices WHERE id = :id'))\n"
        "local a = st:query({ id = 'a' })\n"
        "local c = st:query({ id = 'c' }, 1)\n"
        "local none, cols = st:query({ id = 'nope' })\n"
        "st:close(); st:close()\n"
        "return #rows, rows[1][1], rows[2][1], a[1][1], c[1][1], #none, cols[1]"),
        "2|c|b|Alice|Carol|0|name");
    lua_close(L);
}

TEST(errors)
{
    lua_State *L = state();
    CHECK_EQ_STR(th_run(L, "return select(2, sqlite.open(path .. '.missing')):match('^cannot open the SQLite database') ~= nil"),
                 "true");
    CHECK_EQ_STR(th_run(L, "local db = sqlite.open(path); return db:query('SELECT nope FROM devices')"),
                 "nil|cannot prepare the query: no such column: nope");
    CHECK_EQ_STR(th_run(L, "local db = sqlite.open(path); return db:query('SELECT 1; SELECT 2')"),
                 "nil|cannot prepare the query: it holds more than one statement");
    CHECK_EQ_STR(th_run(L, "local db = sqlite.open(path); return db:query('SELECT :x', {})"),
                 "nil|no value for the query's parameter :x");
    CHECK_EQ_STR(th_run(L, "local db = sqlite.open(path); return db:query('SELECT ?', { {} })"),
                 "nil|cannot bind a table to the query's parameter 1");
    CHECK_EQ_STR(th_run(L, "local db = sqlite.open(path); return db:query('SELECT ?', { 1, 2 })"),
                 "nil|the query has 1 parameters, 2 values were given");
    /* Read-only: writing is refused. */
    CHECK_EQ_STR(th_run(L, "local db = sqlite.open(path); "
                           "local ok, err = db:query(\"INSERT INTO devices VALUES ('d', 'D', 4, 0, NULL, 0)\"); "
                           "return ok, err:find('readonly', 1, true) ~= nil"),
                 "nil|true");
    /* A statement keeps working until its db is closed, then says so. */
    CHECK_EQ_STR(th_run_error(L, "local db = sqlite.open(path); local st = db:prepare('SELECT 1'); "
                                 "db:close(); db:close(); st:query()"),
                 "test:1: the SQLite database of this statement is closed");
    lua_close(L);
}

int main(void)
{
    const char *dir = th_tmpdir("sqlite");
    if (!dir || make_db(dir) != 0) return 1;
    RUN(types_come_back_as_lua_values);
    RUN(parameters_positional_and_named);
    RUN(limits_and_statements_run_again);
    RUN(errors);
    th_remove_tree(dir);
    return check_summary();
}
