/* helpers.h: what the C tests share beyond check.h.
 * Provides: Lua states with a host module opened (th_lua_new, th_lua_global,
 * th_lua_preload, th_lua_prelude); running a chunk named "test" through the
 * host's protected call and reading its results (th_run: joined as text;
 * th_run_n: left on the stack; th_run_error: the message); the test
 * binary's path and its checkout (th_self_exe, th_repo_root); temporary
 * folders and files (th_tmpdir, th_remove_tree, th_make_dirs,
 * th_write_file, th_read_file); waiting without fixed sleeps (th_sleep_ms,
 * th_now_ms, TH_WAIT_UNTIL, th_wait_child, th_proc_state).
 * Uses: check.h (a failed chunk fails the current test), vm.h (qh_vm_pcall,
 * so chunks run as the host runs Lua, with a traceback), LuaJIT's Lua API,
 * libc and POSIX. Everything is static inline: a test binary is one file. */
#ifndef QH_TEST_HELPERS_H
#define QH_TEST_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "check.h"
#include "vm.h"

/* ---- Lua states --------------------------------------------------------- */

/* Calls open (a qh_*_open function) and stores what it pushes as global
 * `name`. */
static inline void th_lua_global(lua_State *L, const char *name, lua_CFunction open)
{
    open(L);
    lua_setglobal(L, name);
}

/* Puts open in package.preload[name], as the host's states have it. */
static inline void th_lua_preload(lua_State *L, const char *name, lua_CFunction open)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

/* A state with the standard libraries and, unless open is NULL, one host
 * module as global `name`. Exits the binary (2) when out of memory: no
 * test can run then. */
static inline lua_State *th_lua_new(const char *name, lua_CFunction open)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "luaL_newstate: out of memory\n");
        exit(2);
    }
    luaL_openlibs(L);
    if (open) th_lua_global(L, name, open);
    return L;
}

/* Runs the Lua definitions the tests of a file share. Exits the binary (2)
 * when they fail: every test would fail the same way. */
static inline void th_lua_prelude(lua_State *L, const char *code)
{
    if (luaL_loadbuffer(L, code, strlen(code), "=prelude") != 0 || qh_vm_pcall(L, 0, 0) != 0) {
        fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
        exit(2);
    }
}

/* ---- running chunks ----------------------------------------------------- */

/* Runs code as a chunk named "test" (errors read "test:LINE: ...") through
 * qh_vm_pcall with an empty stack below it. Returns the pcall's code. */
static inline int th_call(lua_State *L, const char *code)
{
    lua_settop(L, 0);
    if (luaL_loadbuffer(L, code, strlen(code), "=test") != 0) return LUA_ERRSYNTAX;
    return qh_vm_pcall(L, 0, LUA_MULTRET);
}

/* The chunk's results joined by "|" (tostring of each), or "ERROR:
 * <message>" without the traceback. The text lives until the next call. */
static inline const char *th_run(lua_State *L, const char *code)
{
    static char out[1 << 16];
    if (th_call(L, code) != 0) {
        const char *msg = lua_tostring(L, -1);
        snprintf(out, sizeof out, "ERROR: %s", msg ? msg : "(no message)");
        char *tb = strstr(out, "\nstack traceback:");
        if (tb) *tb = '\0';
        lua_settop(L, 0);
        return out;
    }
    size_t n = 0;
    out[0] = '\0';
    int top = lua_gettop(L);
    lua_getglobal(L, "tostring");
    for (int i = 1; i <= top && n < sizeof out; i++) {
        lua_pushvalue(L, -1);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%s", i > 1 ? "|" : "", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
    return out;
}

/* The chunk's results are left at stack slots 1..n; returns n, or -1 when
 * it raised (the error is printed and the current test fails). */
static inline int th_run_n(lua_State *L, const char *code)
{
    if (th_call(L, code) != 0) {
        fprintf(stderr, "%s: lua error: %s\n", check_current_name, lua_tostring(L, -1));
        check_current_ok = 0;
        return -1;
    }
    return lua_gettop(L);
}

/* For a chunk expected to raise: the message's first line (the traceback
 * cut off), "(no error)" or "(syntax error)". Lives until the next call. */
static inline const char *th_run_error(lua_State *L, const char *code)
{
    static char msg[1024];
    lua_settop(L, 0);
    if (luaL_loadbuffer(L, code, strlen(code), "=test") != 0) return "(syntax error)";
    if (qh_vm_pcall(L, 0, 0) == 0) return "(no error)";
    snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1));
    char *nl = strchr(msg, '\n');
    if (nl) *nl = '\0';
    lua_settop(L, 0);
    return msg;
}

/* ---- where the test runs ------------------------------------------------ */

/* This test binary's absolute path ("" if /proc/self/exe is unreadable). */
static inline const char *th_self_exe(void)
{
    static char exe[PATH_MAX];
    if (!exe[0]) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
    }
    return exe;
}

static inline int th_exists(const char *dir, const char *rel)
{
    char path[PATH_MAX + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return stat(path, &st) == 0;
}

/* The checkout this binary was built from, or NULL. Test binaries live in
 * build*<...>/tests/ inside it (the Makefile puts them there), so the
 * working directory does not matter: the nearest folder above the binary
 * holding lua/qhost/init.lua and tests/c/check.h is it. */
static inline const char *th_repo_root(void)
{
    static char root[PATH_MAX];
    if (root[0]) return root;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", th_self_exe());
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) return NULL;
        *slash = '\0';
        if (th_exists(dir, "lua/qhost/init.lua") && th_exists(dir, "tests/c/check.h")) {
            snprintf(root, sizeof root, "%s", dir);
            return root;
        }
    }
}

/* ---- temporary folders and files --------------------------------------- */

#define TH_TMP_PREFIX "/tmp/qh_test_"

/* A new private folder /tmp/qh_test_<name>.XXXXXX; its path (in a static
 * buffer: valid until the next call; copy it to keep two), or NULL with the
 * reason printed. */
static inline const char *th_tmpdir(const char *name)
{
    static char dir[256];
    snprintf(dir, sizeof dir, TH_TMP_PREFIX "%s.XXXXXX", name);
    if (!mkdtemp(dir)) {
        perror(dir);
        return NULL;
    }
    return dir;
}

static inline int th_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

/* Removes path and everything under it; refuses anything outside
 * /tmp/qh_test_*, so a wrong path cannot cost more than a test. 0 or -1. */
static inline int th_remove_tree(const char *path)
{
    if (!path || strncmp(path, TH_TMP_PREFIX, strlen(TH_TMP_PREFIX)) != 0 || strstr(path, "/..")) {
        fprintf(stderr, "th_remove_tree: refusing %s\n", path ? path : "(null)");
        return -1;
    }
    int rc = nftw(path, th_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0) fprintf(stderr, "could not remove %s\n", path);
    return rc;
}

/* mkdir -p path. 0 or -1. */
static inline int th_make_dirs(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Writes len bytes to path, its folders made as needed; mode is the new
 * file's (as open(2) applies it). 0 or -1. */
static inline int th_write_file(const char *path, const void *data, size_t len, int mode)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (th_make_dirs(dir) != 0) return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    return close(fd) == 0 && done == len ? 0 : -1;
}

/* The whole file, malloc'd with a '\0' after its len bytes (the caller
 * frees it), or NULL. */
static inline char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, used = 0, n;
    char *buf = malloc(cap + 1);
    while (buf && (n = fread(buf + used, 1, cap - used, f)) > 0) {
        used += n;
        if (used == cap) {
            char *bigger = realloc(buf, (cap *= 2) + 1);
            if (!bigger) free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[used] = '\0';
    if (len) *len = used;
    return buf;
}

/* ---- waiting ------------------------------------------------------------ */

/* Sleeps ms milliseconds, resumed after signals. */
static inline void th_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Milliseconds on the monotonic clock. */
static inline int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Evaluates cond every 5 ms until it holds (1) or max_ms passed (0): a wait
 * on progress whose bound only keeps a broken run from hanging. */
#define TH_WAIT_UNTIL(cond, max_ms) ({ \
        int64_t th_until_ = th_now_ms() + (max_ms); \
        int th_held_; \
        while (!(th_held_ = !!(cond)) && th_now_ms() < th_until_) th_sleep_ms(5); \
        th_held_; })

/* Waits for our child pid at most max_ms; a child still running then is
 * SIGKILLed and reaped (the caller's checks on the status fail, the run goes
 * on). Returns the wait status, or -1 (hung, or not our child). */
static inline int th_wait_child(pid_t pid, int max_ms)
{
    int status;
    int64_t until = th_now_ms() + max_ms;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0) return -1;
        if (th_now_ms() >= until) break;
        th_sleep_ms(5);
    }
    fprintf(stderr, "%s: pid %d still running after %d ms: killed\n", check_current_name ? check_current_name : "",
            (int)pid, max_ms);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* The state letter of /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...), or '?'. */
static inline char th_proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : '?';
}

#endif
