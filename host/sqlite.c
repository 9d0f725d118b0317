/* sqlite.c: the `qhost.sqlite` module, read-only SQLite queries (see
 * sqlite.h). */
#include "sqlite.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "lazylib.h"
#include "luaclass.h"

/* SQLite is loaded when the module is first required (lazylib.h): apps
 * without lookups never pay for it. Its functions, through `sqlite`: */
#define SQLITE_FUNCTIONS(X) \
    X(sqlite3_bind_double) X(sqlite3_bind_int) X(sqlite3_bind_int64) X(sqlite3_bind_null) \
    X(sqlite3_bind_parameter_count) X(sqlite3_bind_parameter_name) X(sqlite3_bind_text64) \
    X(sqlite3_busy_timeout) X(sqlite3_clear_bindings) X(sqlite3_close_v2) \
    X(sqlite3_column_blob) X(sqlite3_column_bytes) X(sqlite3_column_count) \
    X(sqlite3_column_double) X(sqlite3_column_int64) X(sqlite3_column_name) \
    X(sqlite3_column_text) X(sqlite3_column_type) X(sqlite3_errmsg) X(sqlite3_errstr) \
    X(sqlite3_finalize) X(sqlite3_libversion) X(sqlite3_open_v2) X(sqlite3_prepare_v2) \
    X(sqlite3_reset) X(sqlite3_step)
QH_LAZY_LIBRARY(sqlite, QH_SQLITE_SONAME, SQLITE_FUNCTIONS)

#define DB_MT    "qhost.sqlite.db"
#define STMT_MT  "qhost.sqlite.stmt"
#define REG_INT64 "qhost.sqlite.int64"
/* LuaJIT's type tag of cdata (lj_obj.h); lua.h does not name it. */
#define QH_LUA_TCDATA 10
/* Python's sqlite3 waits this long for a locked database. */
#define BUSY_TIMEOUT_MS 5000

typedef struct ldb {
    sqlite3 *db;          /* owned: closed by close/__gc (sqlite3_close_v2: after its statements) */
} ldb;

typedef struct lstmt {
    sqlite3_stmt *stmt;   /* owned: finalized by close/__gc */
    ldb *owner;           /* borrowed: kept alive by the statement's env table */
} lstmt;

/* ---- int64 cdata ----------------------------------------------------------- */

/* The classic Lua API cannot make or read cdata: two small Lua functions
 * do it, kept in the registry. make(hi, lo) builds an int64_t from its
 * halves (hi signed); digits(v) gives the decimal digits of an int64_t or
 * uint64_t cdata (nil for any other value). */
static const char *int64_chunk =
    "local ffi = require('ffi')\n"
    "local int64, uint64 = ffi.typeof('int64_t'), ffi.typeof('uint64_t')\n"
    "local istype, match = ffi.istype, string.match\n"
    "local function make(hi, lo) return int64(hi) * 4294967296 + lo end\n"
    "local function digits(v)\n"
    "  if istype(int64, v) or istype(uint64, v) then return (match(tostring(v), '^(-?%d+)U?LL$')) end\n"
    "end\n"
    "return { make = make, digits = digits }\n";

static void push_int64_helper(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_REGISTRYINDEX, REG_INT64);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (luaL_loadstring(L, int64_chunk) != 0) lua_error(L);
        lua_call(L, 0, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, REG_INT64);
    }
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

static void push_integer(lua_State *L, sqlite3_int64 v)
{
    const sqlite3_int64 exact = (sqlite3_int64)1 << 53;
    if (v >= -exact && v <= exact) {
        lua_pushnumber(L, (lua_Number)v);
        return;
    }
    push_int64_helper(L, "make");
    uint64_t u = (uint64_t)v;
    lua_pushnumber(L, (lua_Number)(int32_t)(uint32_t)(u >> 32));
    lua_pushnumber(L, (lua_Number)(uint32_t)u);
    lua_call(L, 2, 1);
}

/* ---- binding ------------------------------------------------------------------ */

/* Binds the Lua value at idx to parameter i; 0, or -1 with the error message
 * pushed. */
static int bind_value(lua_State *L, sqlite3_stmt *stmt, int i, int idx, const char *pname)
{
    int rc = SQLITE_OK;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        lua_pushfstring(L, "no value for the query's parameter %s", pname);
        return -1;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL) goto bad_type;
        rc = sqlite.sqlite3_bind_null(stmt, i);
        break;
    case LUA_TBOOLEAN:
        rc = sqlite.sqlite3_bind_int(stmt, i, lua_toboolean(L, idx));
        break;
    case LUA_TNUMBER: {
        lua_Number d = lua_tonumber(L, idx);
        /* Integral values within int64 go in as INTEGER, as Python binds an int. */
        if (d == (lua_Number)(int64_t)d && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
            rc = sqlite.sqlite3_bind_int64(stmt, i, (sqlite3_int64)d);
        else
            rc = sqlite.sqlite3_bind_double(stmt, i, d);
        break;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        rc = sqlite.sqlite3_bind_text64(stmt, i, s, n, SQLITE_TRANSIENT, SQLITE_UTF8);
        break;
    }
    case QH_LUA_TCDATA: {
        push_int64_helper(L, "digits");
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        const char *digits = lua_tostring(L, -1);
        if (!digits) {
            lua_pop(L, 1);
            goto bad_type;
        }
        errno = 0;
        sqlite3_int64 v;
        if (digits[0] == '-') {
            v = (sqlite3_int64)strtoll(digits, NULL, 10);
        } else {
            unsigned long long u = strtoull(digits, NULL, 10);
            if (u > (unsigned long long)INT64_MAX) errno = ERANGE;
            v = (sqlite3_int64)u;
        }
        lua_pop(L, 1);
        if (errno == ERANGE) {
            lua_pushfstring(L, "the value of parameter %s does not fit a 64-bit signed integer", pname);
            return -1;
        }
        rc = sqlite.sqlite3_bind_int64(stmt, i, v);
        break;
    }
    default:
    bad_type:
        lua_pushfstring(L, "cannot bind a %s to the query's parameter %s", luaL_typename(L, idx), pname);
        return -1;
    }
    if (rc != SQLITE_OK) {
        lua_pushfstring(L, "cannot bind parameter %s: %s", pname, sqlite.sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

/* Binds params (the table at idx, or none) to every parameter of stmt;
 * 0, or -1 with the error message pushed. */
static int bind_all(lua_State *L, sqlite3_stmt *stmt, int idx)
{
    int count = sqlite.sqlite3_bind_parameter_count(stmt);
    int has = !lua_isnoneornil(L, idx);
    if (has && !lua_istable(L, idx)) {
        lua_pushfstring(L, "the query's parameters must be a table, got %s", luaL_typename(L, idx));
        return -1;
    }
    int positional = 0;
    for (int i = 1; i <= count; i++) {
        const char *name = sqlite.sqlite3_bind_parameter_name(stmt, i);
        char pname[32];
        if (!name || name[0] == '?') {
            positional++;
            snprintf(pname, sizeof pname, "%d", i);
            if (!has) {
                lua_pushfstring(L, "no value for the query's parameter %s", pname);
                return -1;
            }
            lua_rawgeti(L, idx, i);
        } else {
            if (!has) {
                lua_pushfstring(L, "no value for the query's parameter %s", name);
                return -1;
            }
            lua_getfield(L, idx, name + 1);   /* ":name" -> params.name */
        }
        int rc = bind_value(L, stmt, i, lua_gettop(L), name ? name : pname);
        if (rc != 0) {
            lua_remove(L, -2);   /* the value; the message stays on top */
            return -1;
        }
        lua_pop(L, 1);
    }
    if (positional > 0 && (int)lua_objlen(L, idx) != positional) {
        lua_pushfstring(L, "the query has %d parameters, %d values were given", positional, (int)lua_objlen(L, idx));
        return -1;
    }
    return 0;
}

/* ---- running ------------------------------------------------------------------ */

static void push_column(lua_State *L, sqlite3_stmt *stmt, int c)
{
    switch (sqlite.sqlite3_column_type(stmt, c)) {
    case SQLITE_INTEGER:
        push_integer(L, sqlite.sqlite3_column_int64(stmt, c));
        break;
    case SQLITE_FLOAT:
        lua_pushnumber(L, sqlite.sqlite3_column_double(stmt, c));
        break;
    case SQLITE_TEXT: {
        const unsigned char *s = sqlite.sqlite3_column_text(stmt, c);
        lua_pushlstring(L, (const char *)s, (size_t)sqlite.sqlite3_column_bytes(stmt, c));
        break;
    }
    case SQLITE_BLOB: {
        const void *b = sqlite.sqlite3_column_blob(stmt, c);
        int n = sqlite.sqlite3_column_bytes(stmt, c);
        lua_pushlstring(L, b ? b : "", (size_t)n);
        break;
    }
    default:
        lua_pushlightuserdata(L, NULL);   /* qhost.json.null */
        break;
    }
}

/* Runs stmt with the params at idx: pushes rows, columns (2 results) or
 * nil, err. The statement is reset either way. */
static int run(lua_State *L, sqlite3 *db, sqlite3_stmt *stmt, int idx, lua_Number limit)
{
    sqlite.sqlite3_reset(stmt);
    sqlite.sqlite3_clear_bindings(stmt);
    if (bind_all(L, stmt, idx) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    int ncol = sqlite.sqlite3_column_count(stmt);
    lua_createtable(L, 0, 0);   /* rows */
    int rows = lua_gettop(L);
    int n = 0, rc = SQLITE_DONE;
    while ((limit <= 0 || n < limit) && (rc = sqlite.sqlite3_step(stmt)) == SQLITE_ROW) {
        lua_createtable(L, ncol, 0);
        for (int c = 0; c < ncol; c++) {
            push_column(L, stmt, c);
            lua_rawseti(L, -2, c + 1);
        }
        lua_rawseti(L, rows, ++n);
    }
    if (!(limit > 0 && n >= limit) && rc != SQLITE_DONE) {
        lua_pushnil(L);
        lua_pushfstring(L, "query failed: %s", sqlite.sqlite3_errmsg(db));
        sqlite.sqlite3_reset(stmt);
        return 2;
    }
    lua_createtable(L, ncol, 0);
    for (int c = 0; c < ncol; c++) {
        const char *name = sqlite.sqlite3_column_name(stmt, c);
        lua_pushstring(L, name ? name : "");
        lua_rawseti(L, -2, c + 1);
    }
    sqlite.sqlite3_reset(stmt);
    return 2;
}

/* ---- Lua classes -------------------------------------------------------------- */

static ldb *check_db(lua_State *L, int idx)
{
    ldb *u = luaL_checkudata(L, idx, DB_MT);
    if (!u->db) luaL_error(L, "the SQLite database is closed");
    return u;
}

static lstmt *check_stmt(lua_State *L, int idx)
{
    lstmt *u = luaL_checkudata(L, idx, STMT_MT);
    if (!u->stmt) luaL_error(L, "the SQLite statement is closed");
    if (!u->owner->db) luaL_error(L, "the SQLite database of this statement is closed");
    return u;
}

static int l_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    ldb *u = qh_luaclass_new(L, DB_MT, sizeof *u);
    /* Read-only, as Quix opens it ("file:<path>?mode=ro"): a missing file is
     * an error, never an empty database made on the spot. */
    int rc = sqlite.sqlite3_open_v2(path, &u->db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open the SQLite database %s: %s", path,
                        u->db ? sqlite.sqlite3_errmsg(u->db) : sqlite.sqlite3_errstr(rc));
        sqlite.sqlite3_close_v2(u->db);
        u->db = NULL;
        return 2;
    }
    sqlite.sqlite3_busy_timeout(u->db, BUSY_TIMEOUT_MS);
    return 1;
}

/* Pushes a new statement of the db at index 1, or nil, err. */
static int prepare(lua_State *L)
{
    ldb *d = check_db(L, 1);
    size_t n;
    const char *sql = luaL_checklstring(L, 2, &n);
    lstmt *u = qh_luaclass_new(L, STMT_MT, sizeof *u);
    /* The statement keeps its db alive (its env table holds it). */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);
    u->owner = d;
    const char *tail = NULL;
    int rc = sqlite.sqlite3_prepare_v2(d->db, sql, (int)n, &u->stmt, &tail);
    if (rc != SQLITE_OK || !u->stmt) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot prepare the query: %s", rc != SQLITE_OK ? sqlite.sqlite3_errmsg(d->db) : "no statement");
        return 2;
    }
    while (tail && *tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';')) tail++;
    if (tail && *tail) {
        lua_pushnil(L);
        lua_pushstring(L, "cannot prepare the query: it holds more than one statement");
        return 2;
    }
    return 1;
}

static int l_prepare(lua_State *L)
{
    lua_settop(L, 2);
    return prepare(L);
}

static int l_db_query(lua_State *L)
{
    lua_settop(L, 4);   /* db, sql, params, limit */
    ldb *d = check_db(L, 1);
    lua_pushcfunction(L, prepare);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 2);  /* 5: stmt or nil, 6: err */
    if (lua_isnil(L, 5)) return 2;
    lua_pop(L, 1);
    lstmt *s = lua_touserdata(L, 5);
    int nret = run(L, d->db, s->stmt, 3, luaL_optnumber(L, 4, 0));
    sqlite.sqlite3_finalize(s->stmt);
    s->stmt = NULL;
    return nret;
}

static int l_stmt_query(lua_State *L)
{
    lua_settop(L, 3);
    lstmt *s = check_stmt(L, 1);
    return run(L, s->owner->db, s->stmt, 2, luaL_optnumber(L, 3, 0));
}

static int l_stmt_close(lua_State *L)
{
    lstmt *s = luaL_checkudata(L, 1, STMT_MT);
    if (s->stmt) sqlite.sqlite3_finalize(s->stmt);
    s->stmt = NULL;
    return 0;
}

static int l_db_close(lua_State *L)
{
    ldb *d = luaL_checkudata(L, 1, DB_MT);
    /* close_v2: statements still open keep the connection until finalized. */
    if (d->db) sqlite.sqlite3_close_v2(d->db);
    d->db = NULL;
    return 0;
}

int qh_sqlite_open(lua_State *L)
{
    char err[300];
    if (sqlite_load(err, sizeof err) < 0) return luaL_error(L, "qhost.sqlite: %s", err);
    static const luaL_Reg db_methods[] = {
        { "prepare", l_prepare }, { "query", l_db_query }, { "close", l_db_close }, { NULL, NULL },
    };
    static const luaL_Reg stmt_methods[] = {
        { "query", l_stmt_query }, { "close", l_stmt_close }, { NULL, NULL },
    };
    static const luaL_Reg funcs[] = { { "open", l_open }, { NULL, NULL } };
    qh_luaclass_register(L, DB_MT, db_methods, l_db_close);
    qh_luaclass_register(L, STMT_MT, stmt_methods, l_stmt_close);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    lua_pushstring(L, sqlite.sqlite3_libversion());
    lua_setfield(L, -2, "sqlite_version");
    return 1;
}
