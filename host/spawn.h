/* spawn.h: source child processes, started with posix_spawn and supervised
 * by the parent, and the `qhost.spawn` Lua module over them.
 * Provides: the parent side (start a child with a spec pipe on its fd 3, a
 * report pipe on its fd 4 and optionally one shared fd on its fd 5, poll/wait
 * for its exit, signal it, collect what it
 * reported) and the child side (read the spec, write the report, die with the
 * parent). Uses: POSIX spawn/wait/pipes, Linux prctl, glibc's sigabbrev_np
 * for signal names, hostlib.h to register running children for the
 * immediate-exit path, luaclass.h for the proc class, LuaJIT's C API. */

/* This file's name shadows the system <spawn.h> when host/ is on the include
 * path (the tests build with -Ihost). spawn.c asks for the system one by
 * defining QH_SPAWN_WANT_SYSTEM around `#include <spawn.h>`; if that finds
 * this file, pass the request on to the next include directory. */
#ifdef QH_SPAWN_WANT_SYSTEM
#include_next <spawn.h>
#else

#ifndef QH_SPAWN_H
#define QH_SPAWN_H

#include <stddef.h>
#include <lua.h>

/* Pushes the `qhost.spawn` module table (luaopen-style; returns 1):
 *   start{ argv = {exe, ...}, env = {NAME = value}, spec = "bytes",
 *          stdin_null = bool, report_max = n, share_fd = fd,
 *          hold = bool } -> proc | nil, err
 *   proc:pid() -> number
 *   proc:release() -> true (a held child may run; see qh_proc_release)
 *   proc:poll() -> nil while running | { code = n | signal = n, signame = s,
 *                  report = s, report_dropped = n (only if > 0) }, the same
 *                  table on every later call
 *   proc:wait([seconds]) -> that table | nil on timeout (no limit if absent)
 *   proc:signal(n | "TERM" | "SIGTERM" | ...) -> true | false (gone) | nil, err
 *   proc:report_so_far() -> string
 *   child_read_spec() -> string | nil, err
 *   child_wait_release(seconds) -> true | false (not yet) | nil, err
 *   child_report(text) -> true | nil, err
 *   child_watch_parent() -> true | nil, err
 *   is_child() -> boolean
 * A collected proc closes its pipes but leaves a running child alone. */
int qh_spawn_open(lua_State *L);

/* ---- parent side ------------------------------------------------------- */

/* What a child inherits and is told. All pointers are borrowed for the
 * duration of qh_spawn_start only (the spec is copied). */
typedef struct qh_spawn_opts {
    const char *const *argv;  /* NULL-terminated; argv[0] is the executable's
                                 path (no PATH search) */
    const char *const *env;   /* NULL-terminated "NAME=value" strings added to,
                                 or replacing, the parent's environ; NULL for
                                 none. QHOST_SPEC_FD, QHOST_REPORT_FD,
                                 QHOST_PARENT_PID, QHOST_SHARE_FD and
                                 QHOST_SPEC_HELD are always set by spawn and
                                 cannot be overridden. */
    const char *spec;         /* bytes the child reads on fd 3; NULL if none */
    size_t spec_len;
    int stdin_null;           /* child's stdin is /dev/null instead of ours */
    int share_fd;             /* > 0: an fd of ours the child gets as its
                                 fd 5 (its QHOST_SHARE_FD then says 5, else
                                 -1); 0 (zero-initialised opts) or less: none */
    size_t report_max;        /* report bytes kept; 0 for QH_SPAWN_REPORT_MAX */
    int held;                 /* the child may read its spec at once but waits
                                 for qh_proc_release to run (its
                                 QHOST_SPEC_HELD says 1): it gets ready while
                                 the parent still prepares */
} qh_spawn_opts;

#define QH_SPAWN_REPORT_MAX ((size_t)1 << 20)

typedef struct qh_proc qh_proc;

/* How a reaped child ended: code is the exit status (or -1 when killed by a
 * signal), signal the terminating signal (or 0 when it exited). */
typedef struct qh_proc_status {
    int code;
    int signal;
} qh_proc_status;

/* Starts a child. Returns the handle, or NULL with err set, e.g.
 * "spawn /x/qhost: No such file or directory" (exec failures come back here,
 * not as an exit status of a child). The spec is written without blocking:
 * what does not fit in the pipe now is written by later polls. */
qh_proc *qh_spawn_start(const qh_spawn_opts *opts, char *err, size_t errlen);

int qh_proc_pid(const qh_proc *p);

/* Lets a child started with opts.held run: the byte its
 * qh_spawn_child_wait_release waits for follows its spec (written now or by
 * later polls). Does nothing for a child not held or released already. */
void qh_proc_release(qh_proc *p);

/* Moves the spec and report pipes along and reaps the child if it exited.
 * Returns 0 while it runs, 1 once it has exited (st filled; again on every
 * later call), -1 with err set if waitpid fails (e.g. SIGCHLD ignored). */
int qh_proc_poll(qh_proc *p, qh_proc_status *st, char *err, size_t errlen);

/* Polls until the child exits or timeout_s seconds pass (timeout_s < 0: no
 * limit). Returns 1 (st filled), 0 on timeout, -1 as qh_proc_poll. */
int qh_proc_wait(qh_proc *p, double timeout_s, qh_proc_status *st,
                 char *err, size_t errlen);

/* Sends sig (0 probes). Returns 1 if sent, 0 if the child is already gone
 * (reaped, or ESRCH: a reaped pid is never signalled, it may be reused),
 * -1 with err set otherwise. */
int qh_proc_signal(qh_proc *p, int sig, char *err, size_t errlen);

/* What the child has written to its fd 4 so far (the whole report once poll
 * returned 1), at most report_max bytes; *dropped (if not NULL) gets how many
 * bytes beyond that were read and thrown away.
 * Borrowed: valid until the next poll, wait or free. Never NULL. */
const char *qh_proc_report(const qh_proc *p, size_t *len, size_t *dropped);

/* Closes the parent's pipe ends and frees the handle; accepts NULL. A child
 * still running is left alone (not signalled, still tracked by hostlib): the
 * caller stops children explicitly. One that already exited is reaped. */
void qh_proc_free(qh_proc *p);

/* "SIGKILL" for 9 and so on; NULL for a number it does not know. */
const char *qh_spawn_signame(int sig);
/* "TERM" or "SIGTERM" -> 15 and so on; -1 for a name it does not know. */
int qh_spawn_signum(const char *name);

/* ---- child side -------------------------------------------------------- */

/* 1 in a process started by qh_spawn_start (QHOST_SPEC_FD is set), else 0. */
int qh_spawn_is_child(void);

/* Reads the spec from fd $QHOST_SPEC_FD to EOF and closes that fd; a held
 * spec ($QHOST_SPEC_HELD=1) is read by its length header and the fd stays
 * open for qh_spawn_child_wait_release. On success returns 0 and *out
 * (malloc'd, NUL-terminated, the caller frees) and *len; -1 with err set
 * otherwise. */
int qh_spawn_child_read_spec(char **out, size_t *len, char *err, size_t errlen);

/* Waits up to timeout_ms for the parent's release of a held spec. Returns 1
 * once released (at once when the spec was not held), 0 when not yet (the
 * time passed, or a signal came), -1 with err set when it never will be (the
 * parent closed the pipe or died without releasing). */
int qh_spawn_child_wait_release(int timeout_ms, char *err, size_t errlen);

/* Writes all of text to fd $QHOST_REPORT_FD (retrying partial writes and
 * EINTR; EPIPE is an error, not a SIGPIPE). Returns 0, or -1 with err set. */
int qh_spawn_child_report(const char *text, size_t len, char *err, size_t errlen);

/* Asks the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG), then
 * raises SIGTERM at once if the parent is already gone (getppid() is no longer
 * $QHOST_PARENT_PID). Returns 0, or -1 with err set. The death signal follows
 * the parent *thread* that spawned us, so spawn from the main thread. */
int qh_spawn_child_watch_parent(char *err, size_t errlen);

#endif

#endif /* QH_SPAWN_WANT_SYSTEM */
