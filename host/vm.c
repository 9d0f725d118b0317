/* vm.c: LuaJIT states for qhost (see vm.h). */
#include "vm.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bytecode.h"
#include "codec.h"
#include "csv.h"
#include "flow.h"
#include "hostlib.h"
#include "kafka.h"
#include "lua_heap.h"
#include "metrics.h"
#include "spawn.h"
#include "sqlite.h"
#include "store.h"

/* The installed library's folder (the Makefile's DATADIR); "" in a build
 * that was not told one. */
#ifndef QHOST_DATADIR
#define QHOST_DATADIR ""
#endif

static qh_paths g_paths;

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Cuts a path at its last '/', leaving the folder. */
static void dirname_inplace(char *path)
{
    char *slash = strrchr(path, '/');
    if (slash && slash != path) *slash = '\0';
    else if (slash) slash[1] = '\0';
}

static int root_has_library(const char *root)
{
    char probe[PATH_MAX + 64];
    if (snprintf(probe, sizeof probe, "%s/lua/qhost/init.lua", root) >= (int)sizeof probe) return 0;
    return file_exists(probe);
}

/* The library's compiled modules (bytecode.h): <root>/build/bytecode in a
 * checkout (make writes it), <root>/bytecode in an install (make install);
 * "" when there is none. */
static void locate_bytecode(qh_paths *paths)
{
    const char *candidates[] = { "build/bytecode", "bytecode" };
    paths->bytecode[0] = '\0';
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        char dir[sizeof paths->bytecode];
        struct stat st;
        if (snprintf(dir, sizeof dir, "%s/%s", paths->root, candidates[i]) >= (int)sizeof dir) continue;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
            memcpy(paths->bytecode, dir, sizeof dir);
            return;
        }
    }
}

int qh_vm_locate(qh_paths *out, char *err, size_t errlen)
{
    ssize_t n = readlink("/proc/self/exe", out->exe, sizeof out->exe - 1);
    if (n < 0) {
        snprintf(err, errlen, "cannot find the qhost binary: /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    out->exe[n] = '\0';

    const char *env_root = getenv("QHOST_ROOT");
    if (env_root && *env_root) {
        snprintf(out->root, sizeof out->root, "%s", env_root);
    } else {
        char bindir[sizeof out->exe];
        snprintf(bindir, sizeof bindir, "%s", out->exe);
        dirname_inplace(bindir);
        /* A checkout builds into build/ (or build/san/) beside lua/; an
         * install puts the Lua files in <prefix>/share/qhost. Last, the
         * folder `make install` was told at build time: a copy of the
         * binary away from its prefix (luarocks copies it into its tree's
         * bin/) still finds its library. */
        const char *candidates[] = { "..", "../..", "../share/qhost", QHOST_DATADIR };
        out->root[0] = '\0';
        for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
            char path[PATH_MAX], real[PATH_MAX];
            const char *c = candidates[i];
            if (!*c) continue;
            if (snprintf(path, sizeof path, "%s%s%s", c[0] == '/' ? "" : bindir, c[0] == '/' ? "" : "/", c) >=
                (int)sizeof path)
                continue;
            if (root_has_library(path) && realpath(path, real)) {
                snprintf(out->root, sizeof out->root, "%s", real);
                break;
            }
        }
    }
    if (!root_has_library(out->root)) {
        if (env_root && *env_root)
            snprintf(err, errlen, "QHOST_ROOT=%s has no lua/qhost/init.lua", env_root);
        else
            snprintf(err, errlen, "cannot find the qhost Lua library (lua/qhost/init.lua) near %s; "
                     "set QHOST_ROOT", out->exe);
        return -1;
    }
    locate_bytecode(out);
    g_paths = *out;
    return 0;
}

const qh_paths *qh_vm_paths(void)
{
    return &g_paths;
}

static void preload(lua_State *L, const char *name, lua_CFunction open)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

/* package.loaders' entry for the library's own modules (qhost and
 * qhost.*), ahead of Lua's file searcher: the file it would find first
 * (set_paths puts <root>/lua first), loaded through the bytecode cache.
 * Other names, and names with no file there, are left to the searchers
 * after it (nothing returned). */
static int library_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (strncmp(name, "qhost", 5) != 0 || (name[5] != '\0' && name[5] != '.')) return 0;
    char rel[1024];
    size_t n = strlen(name);
    if (n >= sizeof rel) return 0;
    for (size_t i = 0; i <= n; i++) rel[i] = name[i] == '.' ? '/' : name[i];
    const char *forms[] = { "%s/lua/%s.lua", "%s/lua/%s/init.lua" };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char path[PATH_MAX], cache[PATH_MAX + 1100];
        if (snprintf(path, sizeof path, forms[i], g_paths.root, rel) >= (int)sizeof path) continue;
        if (!file_exists(path)) continue;
        int cached = g_paths.bytecode[0] &&
                     snprintf(cache, sizeof cache, "%s/%s.ljbc", g_paths.bytecode, name) < (int)sizeof cache;
        if (qh_bytecode_load(L, path, cached ? cache : NULL) != 0)
            return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, path, lua_tostring(L, -1));
        return 1;
    }
    return 0;
}

/* Puts library_searcher second in package.loaders (after the preloads). */
static void add_library_searcher(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaders");
    int n = (int)lua_objlen(L, -1);
    for (int i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, library_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
}

/* Our folders go first so `require "qhost"` never finds another copy. */
static void set_paths(lua_State *L, const char *root)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *old = lua_tostring(L, -1);
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", root, root, old ? old : "");
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

lua_State *qh_vm_new(const char *mode, qh_vm_memory memory)
{
    lua_State *L = memory == QH_VM_OWN_HEAP ? qh_lua_heap_newstate() : luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);
    set_paths(L, g_paths.root);
    add_library_searcher(L);
    preload(L, "qhost.host", qh_hostlib_open);
    preload(L, "qhost.codec", qh_codec_open);
    /* Internal: the run loop's decoder of message values in place. */
    preload(L, "qhost.runtime.json_at", qh_codec_open_json_at);
    preload(L, "qhost.csvreader", qh_csv_open);
    preload(L, "qhost.kafka", qh_kafka_open);
    preload(L, "qhost.spawn", qh_spawn_open);
    preload(L, "qhost.flow", qh_flow_open);
    preload(L, "qhost.store", qh_store_open_module);
    preload(L, "qhost.metrics", qh_metrics_open);
    preload(L, "qhost.sqlite", qh_sqlite_open);
    lua_pushstring(L, mode);
    lua_setfield(L, LUA_REGISTRYINDEX, "qhost.mode");
    return L;
}

void qh_vm_close(lua_State *L)
{
    qh_lua_heap_close(L);
}

/* The message handler: the error (any type) becomes a string with the
 * traceback of where it was raised. A nil error stays nil: `error()` with
 * no message is how busted (and other tools) exit non-zero after they have
 * reported what failed themselves; main says so in one line. */
static int traceback(lua_State *L)
{
    if (lua_isnil(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    /* An error re-raised from a pcall of ours already has its traceback:
     * the first one says where it happened, a second only adds noise. */
    if (strstr(msg, "\nstack traceback:")) {
        lua_pushstring(L, msg);
        return 1;
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int qh_vm_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    return rc;
}

int qh_vm_run_script(lua_State *L, const char *script, int argc, char **argv)
{
    lua_createtable(L, argc, 1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");

    if (luaL_loadfile(L, script) != 0) return 1;
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    return qh_vm_pcall(L, argc, 0);
}
