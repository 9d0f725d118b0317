/* hostlib.h: the `qhost.host` Lua module: process facts and services the Lua
 * library needs from C (version, paths, mode, clocks, sleep, pid, isatty,
 * signal-driven stop requests, exit) and the FFI entry points for the stop
 * flag. Uses: vm.h for the paths, POSIX. */
#ifndef QH_HOSTLIB_H
#define QH_HOSTLIB_H

#include <lua.h>

int qh_hostlib_open(lua_State *L);

/* SIGINT/SIGTERM handling: the first signal requests a graceful stop, the
 * second kills the children registered with qh_hostlib_track_child and exits
 * at once. In a source child process, SIGINT is ignored (the parent, which got
 * the same Ctrl-C, decides) and SIGTERM requests the stop. */
void qh_hostlib_install_signals(int is_child);

/* How many stop signals have arrived (0, 1, ...). For FFI. */
int qh_ffi_stop_requested(void);
/* The last stop signal's number (0 if none). */
int qh_ffi_stop_signal(void);

/* Child pids the immediate-exit path must kill. Async-signal-safe reads. */
void qh_hostlib_track_child(int pid);
void qh_hostlib_untrack_child(int pid);

#endif
