/* sqlite.h: read-only SQLite queries, for lookup joins (qhost.lookups'
 * SQLiteLookup: the query building and the cache are Lua's; this unit only
 * opens a file and runs a prepared statement).
 * Provides the `qhost.sqlite` Lua module:
 *   open(path) -> db | nil, err         read-only; the file must exist; a
 *                                       locked database is waited for up to
 *                                       5 s (Python's sqlite3 default)
 *   db:prepare(sql) -> stmt | nil, err
 *   db:query(sql, params, limit) -> rows, columns | nil, err
 *                                       (prepare, run once, finalize)
 *   stmt:query(params, limit) -> rows, columns | nil, err
 *   stmt:close(), db:close()            (also on garbage collection; a
 *                                       statement keeps its db open)
 * params: nil, a list for `?` / `?NNN` parameters, or a table of names for
 * `:name`, `@name`, `$name` (as Python's sqlite3 takes a dict). Values:
 * nil or qhost.json.null -> NULL, booleans -> 0/1, integral numbers ->
 * INTEGER, other numbers -> REAL, strings -> TEXT, int64_t/uint64_t cdata
 * -> INTEGER. A missing parameter or a value of another type is an error.
 * rows: a list of rows, each the list of its columns' values: INTEGER ->
 * number (int64_t cdata beyond 2^53, as qhost's JSON), REAL -> number,
 * TEXT and BLOB -> string, NULL -> qhost.json.null (a NULL lightuserdata).
 * columns: the result's column names. limit: at most that many rows
 * (nil or 0: all).
 * Uses: libsqlite3, luaclass.h, LuaJIT's Lua 5.1 API (and its FFI, through
 * a small Lua chunk, for int64_t cdata, which the C API cannot make). */
#ifndef QH_SQLITE_H
#define QH_SQLITE_H

#include <lua.h>

int qh_sqlite_open(lua_State *L);

#endif
