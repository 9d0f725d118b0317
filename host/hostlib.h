/* hostlib.h: the `qhost.host` Lua module: process facts and services the Lua
 * library needs from C (version, paths, mode, clocks, sleep, pid, isatty,
 * signal-driven stop requests, exit), the FFI entry points for the stop
 * flag, and the C side's logger (qh_log: the lines of lua/qhost/log.lua).
 * Uses: vm.h for the paths, POSIX, pthreads. */
#ifndef QH_HOSTLIB_H
#define QH_HOSTLIB_H

#include <signal.h>

#include <lua.h>

int qh_hostlib_open(lua_State *L);

/* SIGINT/SIGTERM handling: the first signal requests a graceful stop, the
 * second kills the children registered with qh_hostlib_track_child and exits
 * at once. In a source child process, SIGINT is ignored (the parent, which got
 * the same Ctrl-C, decides) and SIGTERM requests the stop. */
void qh_hostlib_install_signals(int is_child);

/* Around the creation of a thread of the host's own (one that does not
 * call Lua): blocks every signal in the calling thread, so the new thread
 * inherits that mask and SIGINT and SIGTERM keep reaching the Lua thread
 * (and cutting its waits short), as librdkafka leaves its threads; then
 * puts the mask back. */
void qh_hostlib_block_signals(sigset_t *saved);
void qh_hostlib_restore_signals(const sigset_t *saved);

/* How many stop signals have arrived (0, 1, ...). For FFI. */
int qh_ffi_stop_requested(void);
/* The last stop signal's number (0 if none). */
int qh_ffi_stop_signal(void);

/* Child pids the immediate-exit path must kill. Async-signal-safe reads. */
void qh_hostlib_track_child(int pid);
void qh_hostlib_untrack_child(int pid);

/* The C side's logger: one line per call on stderr, in lua/qhost/log.lua's
 * format, "YYYY-mm-dd HH:MM:SS LEVEL <prefix>: message" (local time), where
 * the prefix is "qhost[pid]" unless qh_log_set_prefix gave another (a source
 * process: "source 'name'[pid]"). Lines below the level threshold (that of
 * the Lua logger, which sets it) are dropped. Thread-safe: librdkafka's
 * threads log through it; each line is one write. The levels are the Lua
 * logger's numbers. */
enum {
    QH_LOG_DEBUG = 10,
    QH_LOG_INFO = 20,
    QH_LOG_WARNING = 30,
    QH_LOG_ERROR = 40,
    QH_LOG_CRITICAL = 50,
};
void qh_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copied; NULL or "" goes back to "qhost[pid]" (the pid of the moment). */
void qh_log_set_prefix(const char *prefix);
/* The threshold (default QH_LOG_INFO). */
void qh_log_set_level(int level);
/* Whether a line of `level` would be written. */
int qh_log_enabled(int level);

#endif
