/* hostlib.c: the `qhost.host` Lua module, stop signals and the C logger
 * (see hostlib.h). */
#include "hostlib.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "bytecode.h"
#include "vm.h"

#define MAX_TRACKED_CHILDREN 256

static volatile sig_atomic_t g_stop_count;
static volatile sig_atomic_t g_stop_signal;
static volatile sig_atomic_t g_children[MAX_TRACKED_CHILDREN];

void qh_hostlib_block_signals(sigset_t *saved)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, saved);
}

void qh_hostlib_restore_signals(const sigset_t *saved)
{
    pthread_sigmask(SIG_SETMASK, saved, NULL);
}

int qh_ffi_stop_requested(void)
{
    return g_stop_count;
}

int qh_ffi_stop_signal(void)
{
    return g_stop_signal;
}

void qh_hostlib_track_child(int pid)
{
    for (int i = 0; i < MAX_TRACKED_CHILDREN; i++)
        if (g_children[i] == 0) { g_children[i] = pid; return; }
}

void qh_hostlib_untrack_child(int pid)
{
    for (int i = 0; i < MAX_TRACKED_CHILDREN; i++)
        if (g_children[i] == pid) g_children[i] = 0;
}

/* A source process's parent (the app), which stops it with SIGTERM; 0 in
 * the app itself. */
static pid_t g_parent;

/* Stop signals that did not come from the parent. */
static volatile sig_atomic_t g_direct_stops;

/* Async-signal-safe: the first signal only counts; the second is the user
 * insisting, so no child may survive us and we leave at once. In a source
 * process the parent's SIGTERM is never that second signal, in whichever
 * order it arrives: a stop sent to the whole process group (timeout(1),
 * kill -- -PGID, systemd) reaches the source directly and again through
 * the app, and is one stop. So only stops from elsewhere are counted
 * towards the second. */
static void on_stop_signal(int sig, siginfo_t *info, void *context)
{
    (void)context;
    int from_parent = g_parent && info && info->si_pid == g_parent;
    if (g_stop_count == 0 || !from_parent) g_stop_signal = sig;
    if (g_stop_count < 2) g_stop_count++;
    if (from_parent || ++g_direct_stops < 2) return;
    for (int i = 0; i < MAX_TRACKED_CHILDREN; i++)
        if (g_children[i] > 0) kill(g_children[i], SIGKILL);
    static const char msg[] = "qhost: second stop signal, exiting immediately\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(128 + sig);
}

void qh_hostlib_install_signals(int is_child)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    g_parent = is_child ? getppid() : 0;
    sa.sa_sigaction = on_stop_signal;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    if (is_child) {
        /* Ctrl-C reaches the whole process group; the parent decides when
         * its sources stop (it sends SIGTERM), as Quix's source processes do. */
        signal(SIGINT, SIG_IGN);
    } else {
        sigaction(SIGINT, &sa, NULL);
    }
    /* A closed stdout (qhost run app.lua | head) is an error to report from
     * write(), not a reason to die silently. */
    signal(SIGPIPE, SIG_IGN);
}

/* ---------------------------------------------------------------------
 * The C logger. The prefix is shared with librdkafka's threads: read and
 * written under the lock. The threshold is a single int, read without it. */

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_log_prefix[256];           /* "": "qhost[pid]" */
static int g_log_threshold = QH_LOG_INFO;

static const char *level_name(int level)
{
    if (level >= QH_LOG_CRITICAL) return "CRITICAL";
    if (level >= QH_LOG_ERROR) return "ERROR";
    if (level >= QH_LOG_WARNING) return "WARNING";
    if (level >= QH_LOG_INFO) return "INFO";
    return "DEBUG";
}

int qh_log_enabled(int level)
{
    return level >= __atomic_load_n(&g_log_threshold, __ATOMIC_RELAXED);
}

void qh_log_set_level(int level)
{
    __atomic_store_n(&g_log_threshold, level, __ATOMIC_RELAXED);
}

void qh_log_set_prefix(const char *prefix)
{
    pthread_mutex_lock(&g_log_lock);
    snprintf(g_log_prefix, sizeof g_log_prefix, "%s", prefix ? prefix : "");
    pthread_mutex_unlock(&g_log_lock);
}

void qh_log(int level, const char *fmt, ...)
{
    if (!qh_log_enabled(level)) return;
    /* The whole line is formatted first and written with one fprintf, so
     * lines from librdkafka's threads and the Lua thread never interleave
     * (stdio locks the stream per call). */
    char when[32], msg[2048], prefix[256];
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(when, sizeof when, "%lld", (long long)now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_log_lock);
    if (g_log_prefix[0]) memcpy(prefix, g_log_prefix, sizeof prefix);
    else snprintf(prefix, sizeof prefix, "qhost[%d]", (int)getpid());
    pthread_mutex_unlock(&g_log_lock);
    fprintf(stderr, "%s %s %s: %s\n", when, level_name(level), prefix, msg);
}

/* --------------------------------------------------------------------- */

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, clock_seconds(CLOCK_MONOTONIC));
    return 1;
}

static int l_time_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000));
    return 1;
}

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (!(s > 0)) return 0;
    if (s > 1e9) s = 1e9;   /* keeps the time_t conversion defined */
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    /* A stop signal interrupts the sleep, so a sleeping source stops fast. */
    nanosleep(&ts, NULL);
    return 0;
}

/* host.sleep_unless_stopped(s) -> true after sleeping s seconds, false
 * when a stop was requested before or during the sleep (at once). Sleeps
 * in slices so a signal landing just before a slice starts costs at most
 * one slice. */
static int l_sleep_unless_stopped(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    const double slice = 0.05;
    double end = clock_seconds(CLOCK_MONOTONIC) + (s > 0 ? (s > 1e9 ? 1e9 : s) : 0);
    for (;;) {
        if (g_stop_count > 0) {
            lua_pushboolean(L, 0);
            return 1;
        }
        double left = end - clock_seconds(CLOCK_MONOTONIC);
        if (!(left > 0)) break;
        if (left > slice) left = slice;
        struct timespec ts = { 0, (long)(left * 1e9) };
        nanosleep(&ts, NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_stop_requested(lua_State *L)
{
    lua_pushinteger(L, g_stop_count);
    lua_pushinteger(L, g_stop_signal);
    return 2;
}

static int l_request_stop(lua_State *L)
{
    (void)L;
    if (g_stop_count == 0) g_stop_count = 1;
    return 0;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* host.term_width(fd) -> the terminal's columns, or nil when fd is not a
 * terminal (or it does not say). */
static int l_term_width(lua_State *L)
{
    struct winsize ws;
    if (ioctl((int)luaL_checkinteger(L, 1), TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, ws.ws_col);
    return 1;
}

static int l_exit(lua_State *L)
{
    int code = (int)luaL_optinteger(L, 1, 0);
    fflush(stdout);
    fflush(stderr);
    _exit(code);
}

static int l_strerror(lua_State *L)
{
    lua_pushstring(L, strerror((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* host.write_bytecode(source_path, chunk_path, cache_path) -> true | nil, err
 * (bytecode.h; the build's compile step, host/compile_library.lua) */
static int l_write_bytecode(lua_State *L)
{
    char err[1024];
    if (qh_bytecode_write(L, luaL_checkstring(L, 1), luaL_checkstring(L, 2), luaL_checkstring(L, 3), err,
                          sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_mkstemp_dir(lua_State *L)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "%s", luaL_optstring(L, 1, "/tmp/qhost.XXXXXX"));
    if (!mkdtemp(tmpl)) {
        lua_pushnil(L);
        lua_pushfstring(L, "mkdtemp %s: %s", tmpl, strerror(errno));
        return 2;
    }
    lua_pushstring(L, tmpl);
    return 1;
}

int qh_hostlib_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "monotonic", l_monotonic },
        { "time_ms", l_time_ms },
        { "sleep", l_sleep },
        { "sleep_unless_stopped", l_sleep_unless_stopped },
        { "stop_requested", l_stop_requested },
        { "request_stop", l_request_stop },
        { "getpid", l_getpid },
        { "isatty", l_isatty },
        { "term_width", l_term_width },
        { "exit", l_exit },
        { "strerror", l_strerror },
        { "mkdtemp", l_mkstemp_dir },
        { "write_bytecode", l_write_bytecode },
        { NULL, NULL },
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushstring(L, QHOST_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, qh_vm_paths()->exe);
    lua_setfield(L, -2, "exe");
    lua_pushstring(L, qh_vm_paths()->root);
    lua_setfield(L, -2, "root");
    lua_getfield(L, LUA_REGISTRYINDEX, "qhost.mode");
    lua_setfield(L, -2, "mode");
    return 1;
}
