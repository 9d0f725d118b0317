/* spawn.c: source child processes and the `qhost.spawn` Lua module (see
 * spawn.h). The Lua functions at the bottom are thin wrappers over the C API.
 *
 * The pipes: the spec pipe goes parent -> child fd 3, the report pipe child
 * fd 4 -> parent. The parent's ends are O_CLOEXEC and O_NONBLOCK: the spec is
 * written as far as the pipe takes it and finished by later polls, the report
 * is read as it comes, so neither side can block the other whatever the
 * sizes. The child's ends are moved to fds >= 5 before posix_spawn dup2s them
 * onto 3 and 4 (so the two dup2s cannot clobber each other, and dup2 onto a
 * different fd is what clears FD_CLOEXEC), and every other fd >= 5 is closed
 * in the child. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#define QH_SPAWN_WANT_SYSTEM /* the system <spawn.h>, see spawn.h */
#include <spawn.h>
#undef QH_SPAWN_WANT_SYSTEM
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <lauxlib.h>

#include "hostlib.h"
#include "luaclass.h"

extern char **environ;

#define SPEC_FD 3
#define REPORT_FD 4
#define SHARE_FD 5
#define FIRST_FREE_FD 6
/* Pipes are grown up to this for a big spec, the default pipe-max-size an
 * unprivileged process may ask for. */
#define SPEC_PIPE_MAX ((size_t)1 << 20)
#define REPORT_MAX_LIMIT ((size_t)1 << 30)
#define WAIT_STEP_MS 5
/* Ends a held spec: the child may run (qh_proc_release). */
#define RELEASE_BYTE 'G'

struct qh_proc {
    pid_t pid;
    int reaped;
    qh_proc_status status;    /* valid once reaped */
    int spec_fd;              /* parent's write end; -1 once done */
    char *spec;               /* owned copy, freed once written or moot */
    size_t spec_len, spec_off;
    int held;                 /* the last spec byte (the release) waits for
                                 qh_proc_release */
    int report_fd;            /* parent's read end; -1 at EOF or once reaped */
    char *report;             /* NUL-terminated when not NULL */
    size_t report_len, report_cap, report_max, report_dropped;
};

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* write() that turns a broken pipe into EPIPE without a SIGPIPE for the whole
 * process: SIGPIPE is blocked in this thread for the call, and one it raised
 * is consumed before unblocking (one already pending before is left alone). */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);

    ssize_t n = write(fd, buf, len);
    int saved = errno;
    if (n < 0 && saved == EPIPE && !was_pending) {
        const struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return n;
}

/* ---- parent side ------------------------------------------------------- */

/* Names compare up to their '='. */
static int env_same_name(const char *a, const char *b)
{
    while (*a && *a != '=' && *a == *b) {
        a++;
        b++;
    }
    return (*a == '=' || *a == '\0') && (*b == '=' || *b == '\0');
}

static const char *const fixed_env_names[] = {
    "QHOST_SPEC_FD", "QHOST_REPORT_FD", "QHOST_PARENT_PID", "QHOST_SHARE_FD", "QHOST_SPEC_HELD",
};
#define N_FIXED_ENV (sizeof fixed_env_names / sizeof *fixed_env_names)

static int is_fixed_env(const char *entry)
{
    for (size_t i = 0; i < N_FIXED_ENV; i++)
        if (env_same_name(entry, fixed_env_names[i])) return 1;
    return 0;
}

/* The child's environment: ours, minus what `extra` or the fixed names
 * replace, then `extra` (the last of duplicate names wins), then the fixed
 * entries. The array is malloc'd; its strings are borrowed from environ,
 * extra and fixed. */
static char **build_env(const char *const *extra, char fixed[N_FIXED_ENV][64],
                        char *err, size_t errlen)
{
    size_t n_environ = 0, n_extra = 0;
    while (environ && environ[n_environ]) n_environ++;
    while (extra && extra[n_extra]) {
        const char *eq = strchr(extra[n_extra], '=');
        if (!eq || eq == extra[n_extra]) {
            snprintf(err, errlen, "spawn: env entry \"%s\" is not NAME=value", extra[n_extra]);
            return NULL;
        }
        n_extra++;
    }
    char **envp = malloc((n_environ + n_extra + N_FIXED_ENV + 1) * sizeof *envp);
    if (!envp) {
        snprintf(err, errlen, "spawn: out of memory");
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < n_environ; i++) {
        int replaced = is_fixed_env(environ[i]);
        for (size_t j = 0; !replaced && j < n_extra; j++)
            replaced = env_same_name(environ[i], extra[j]);
        if (!replaced) envp[n++] = environ[i];
    }
    for (size_t i = 0; i < n_extra; i++) {
        int replaced = is_fixed_env(extra[i]);
        for (size_t j = i + 1; !replaced && j < n_extra; j++)
            replaced = env_same_name(extra[i], extra[j]);
        if (!replaced) envp[n++] = (char *)extra[i];
    }
    for (size_t i = 0; i < N_FIXED_ENV; i++) envp[n++] = fixed[i];
    envp[n] = NULL;
    return envp;
}

/* Moves fd to the lowest free number >= FIRST_FREE_FD, keeping O_CLOEXEC. */
static int move_above_child_fds(int *fd)
{
    if (*fd >= FIRST_FREE_FD) return 0;
    int moved = fcntl(*fd, F_DUPFD_CLOEXEC, FIRST_FREE_FD);
    if (moved < 0) return -1;
    close(*fd);
    *fd = moved;
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* How far the spec may be written now: all of it, or, while held, all but
 * the release byte at its end. */
static size_t spec_writable(const qh_proc *p)
{
    return p->held ? p->spec_len - 1 : p->spec_len;
}

/* Writes what the spec pipe takes now; closes it once all is written, or as
 * soon as the child cannot read any more (EPIPE: it closed fd 3 or died).
 * A held spec stays open after its body, until qh_proc_release. */
static void pump_spec(qh_proc *p)
{
    size_t end = spec_writable(p);
    while (p->spec_fd >= 0 && p->spec_off < end) {
        ssize_t n = write_nosigpipe(p->spec_fd, p->spec + p->spec_off, end - p->spec_off);
        if (n > 0) {
            p->spec_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        break;
    }
    if (p->spec_fd >= 0 && p->spec_off == end && end < p->spec_len) return; /* held */
    close_fd(&p->spec_fd);
    free(p->spec);
    p->spec = NULL;
}

/* Makes room for at least one read into the report buffer; returns the room
 * (0 when the buffer is at report_max or cannot grow: the rest is dropped). */
static size_t report_room(qh_proc *p)
{
    if (p->report_len >= p->report_max) return 0;
    if (!p->report || p->report_len + 1 >= p->report_cap) {
        size_t cap = p->report_cap ? p->report_cap * 2 : 4096;
        if (cap > p->report_max + 1) cap = p->report_max + 1;
        char *grown = realloc(p->report, cap);
        if (!grown) return 0;
        p->report = grown;
        p->report_cap = cap;
        p->report[p->report_len] = '\0'; /* a read may still find nothing */
    }
    return p->report_cap - p->report_len - 1; /* cap <= report_max + 1 */
}

/* Reads the report pipe until it is empty (EAGAIN) or at EOF (then closes
 * it). Never blocks: after the child is reaped, everything it wrote is
 * already in the pipe, while a grandchild holding fd 4 could keep it open. */
static void drain_report(qh_proc *p)
{
    char scratch[16384];
    while (p->report_fd >= 0) {
        size_t room = report_room(p);
        char *dst = room ? p->report + p->report_len : scratch;
        if (!room) room = sizeof scratch;
        ssize_t n = read(p->report_fd, dst, room);
        if (n > 0) {
            if (dst == scratch) {
                p->report_dropped += (size_t)n;
            } else {
                p->report_len += (size_t)n;
                p->report[p->report_len] = '\0';
            }
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        close_fd(&p->report_fd); /* EOF, or an error that will not heal */
    }
}

/* "spawn /x/qhost: No such file or directory", with the step if not the
 * spawn itself: "spawn /x/qhost: pipe: Too many open files". */
static void start_error(char *err, size_t errlen, const char *exe, const char *step, int code)
{
    snprintf(err, errlen, "spawn %s: %s%s", exe, step, strerror(code));
}

qh_proc *qh_spawn_start(const qh_spawn_opts *opts, char *err, size_t errlen)
{
    int spec_pipe[2] = { -1, -1 }, report_pipe[2] = { -1, -1 };
    int share_tmp = -1;   /* our copy of opts->share_fd, above the child's fds */
    char fixed[N_FIXED_ENV][64];
    char **envp = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_ready = 0, attr_ready = 0, rc;

    qh_proc *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "spawn: out of memory");
        return NULL;
    }
    p->pid = -1;
    p->spec_fd = p->report_fd = -1;
    p->report_max = opts->report_max ? opts->report_max : QH_SPAWN_REPORT_MAX;
    if (p->report_max > REPORT_MAX_LIMIT) p->report_max = REPORT_MAX_LIMIT;
    if (!opts->argv || !opts->argv[0] || !opts->argv[0][0]) {
        snprintf(err, errlen, "spawn: argv is empty");
        goto fail;
    }
    if (opts->held) {
        /* "<length>\n", the spec, then the release byte: the child reads the
         * spec without waiting for EOF, then waits for the byte. */
        char header[32];
        int hl = snprintf(header, sizeof header, "%zu\n", opts->spec_len);
        p->spec = malloc((size_t)hl + opts->spec_len + 1);
        if (!p->spec) {
            snprintf(err, errlen, "spawn %s: out of memory for the spec", opts->argv[0]);
            goto fail;
        }
        memcpy(p->spec, header, (size_t)hl);
        if (opts->spec_len) memcpy(p->spec + hl, opts->spec, opts->spec_len);
        p->spec_len = (size_t)hl + opts->spec_len + 1;
        p->spec[p->spec_len - 1] = RELEASE_BYTE;
        p->held = 1;
    } else if (opts->spec_len) {
        p->spec = malloc(opts->spec_len);
        if (!p->spec) {
            snprintf(err, errlen, "spawn %s: out of memory for the spec", opts->argv[0]);
            goto fail;
        }
        memcpy(p->spec, opts->spec, opts->spec_len);
        p->spec_len = opts->spec_len;
    }

    if (pipe2(spec_pipe, O_CLOEXEC) < 0 || pipe2(report_pipe, O_CLOEXEC) < 0) {
        start_error(err, errlen, opts->argv[0], "pipe: ", errno);
        goto fail;
    }
    if (move_above_child_fds(&spec_pipe[0]) < 0 || move_above_child_fds(&report_pipe[1]) < 0 ||
        set_nonblock(spec_pipe[1]) < 0 || set_nonblock(report_pipe[0]) < 0) {
        start_error(err, errlen, opts->argv[0], "fcntl: ", errno);
        goto fail;
    }
    /* A copy of the shared fd above the child's numbers, so its dup2 onto
     * SHARE_FD always changes the number (which is what clears CLOEXEC). */
    if (opts->share_fd > 0 && (share_tmp = fcntl(opts->share_fd, F_DUPFD_CLOEXEC, FIRST_FREE_FD)) < 0) {
        start_error(err, errlen, opts->argv[0], "share_fd: ", errno);
        goto fail;
    }
    if (p->spec_len > 65536) {
        /* Best effort: most specs then go in whole at once. */
        size_t want = p->spec_len < SPEC_PIPE_MAX ? p->spec_len : SPEC_PIPE_MAX;
        (void)fcntl(spec_pipe[1], F_SETPIPE_SZ, (int)want);
    }

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) goto fail_setup;
    fa_ready = 1;
    if (opts->stdin_null &&
        (rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) != 0)
        goto fail_setup;
    if ((rc = posix_spawn_file_actions_adddup2(&fa, spec_pipe[0], SPEC_FD)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&fa, report_pipe[1], REPORT_FD)) != 0)
        goto fail_setup;
    if (share_tmp >= 0 && (rc = posix_spawn_file_actions_adddup2(&fa, share_tmp, SHARE_FD)) != 0)
        goto fail_setup;
#ifdef __GLIBC_PREREQ
#if __GLIBC_PREREQ(2, 34)
    /* Whatever else we hold without O_CLOEXEC stays with us. */
    if ((rc = posix_spawn_file_actions_addclosefrom_np(&fa, share_tmp >= 0 ? FIRST_FREE_FD : SHARE_FD)) != 0)
        goto fail_setup;
#endif
#endif
    if ((rc = posix_spawnattr_init(&attr)) != 0) goto fail_setup;
    attr_ready = 1;
    /* The child starts clean: nothing blocked, no handler or SIG_IGN of ours
     * (an ignored SIGPIPE or SIGINT would otherwise be inherited). */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if ((rc = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
        (rc = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0)
        goto fail_setup;

    snprintf(fixed[0], sizeof fixed[0], "QHOST_SPEC_FD=%d", SPEC_FD);
    snprintf(fixed[1], sizeof fixed[1], "QHOST_REPORT_FD=%d", REPORT_FD);
    snprintf(fixed[2], sizeof fixed[2], "QHOST_PARENT_PID=%ld", (long)getpid());
    snprintf(fixed[3], sizeof fixed[3], "QHOST_SHARE_FD=%d", share_tmp >= 0 ? SHARE_FD : -1);
    snprintf(fixed[4], sizeof fixed[4], "QHOST_SPEC_HELD=%d", p->held);
    envp = build_env(opts->env, fixed, err, errlen);
    if (!envp) goto fail;

    /* glibc's posix_spawn (CLONE_VFORK) returns exec errors here. */
    rc = posix_spawn(&p->pid, opts->argv[0], &fa, &attr, (char *const *)opts->argv, envp);
    if (rc != 0) {
        p->pid = -1;
        start_error(err, errlen, opts->argv[0], "", rc);
        goto fail;
    }
    qh_hostlib_track_child((int)p->pid);

    free(envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(spec_pipe[0]);
    close(report_pipe[1]);
    close_fd(&share_tmp);
    p->spec_fd = spec_pipe[1];
    p->report_fd = report_pipe[0];
    pump_spec(p);
    return p;

fail_setup:
    start_error(err, errlen, opts->argv[0], "posix_spawn setup: ", rc);
fail:
    free(envp);
    if (fa_ready) posix_spawn_file_actions_destroy(&fa);
    if (attr_ready) posix_spawnattr_destroy(&attr);
    close_fd(&share_tmp);
    for (int i = 0; i < 2; i++) {
        close_fd(&spec_pipe[i]);
        close_fd(&report_pipe[i]);
    }
    free(p->spec);
    free(p);
    return NULL;
}

void qh_proc_release(qh_proc *p)
{
    if (!p->held) return;
    p->held = 0;
    pump_spec(p);
}

int qh_proc_pid(const qh_proc *p)
{
    return (int)p->pid;
}

int qh_proc_poll(qh_proc *p, qh_proc_status *st, char *err, size_t errlen)
{
    if (!p->reaped) {
        pump_spec(p);
        drain_report(p);
        int ws;
        pid_t r;
        do r = waitpid(p->pid, &ws, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            snprintf(err, errlen, "waitpid %ld: %s", (long)p->pid, strerror(errno));
            return -1;
        }
        if (r == 0 || !(WIFEXITED(ws) || WIFSIGNALED(ws))) return 0;
        p->reaped = 1;
        qh_hostlib_untrack_child((int)p->pid);
        if (WIFEXITED(ws)) {
            p->status.code = WEXITSTATUS(ws);
            p->status.signal = 0;
        } else {
            p->status.code = -1;
            p->status.signal = WTERMSIG(ws);
        }
        close_fd(&p->spec_fd);
        free(p->spec);
        p->spec = NULL;
        drain_report(p);
        close_fd(&p->report_fd);
    }
    if (st) *st = p->status;
    return 1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int qh_proc_wait(qh_proc *p, double timeout_s, qh_proc_status *st, char *err, size_t errlen)
{
    double deadline = timeout_s >= 0 ? now_seconds() + timeout_s : 0;
    for (;;) {
        int r = qh_proc_poll(p, st, err, errlen);
        if (r != 0) return r;
        int ms = WAIT_STEP_MS;
        if (timeout_s >= 0) {
            double left = deadline - now_seconds();
            if (left <= 0) return 0;
            if (left * 1000 < ms) ms = (int)(left * 1000) + 1;
        }
        /* Sleep, waking early when there is report text or spec room. */
        struct pollfd fds[2];
        nfds_t n = 0;
        if (p->report_fd >= 0) fds[n++] = (struct pollfd){ .fd = p->report_fd, .events = POLLIN };
        if (p->spec_fd >= 0 && p->spec_off < spec_writable(p))
            fds[n++] = (struct pollfd){ .fd = p->spec_fd, .events = POLLOUT };
        (void)poll(fds, n, ms);
    }
}

int qh_proc_signal(qh_proc *p, int sig, char *err, size_t errlen)
{
    char ignored[8];
    /* Reap first if it can be: a reaped pid is never signalled. */
    (void)qh_proc_poll(p, NULL, ignored, sizeof ignored);
    if (p->reaped) return 0;
    if (kill(p->pid, sig) == 0) return 1;
    if (errno == ESRCH) return 0;
    snprintf(err, errlen, "kill %ld: %s", (long)p->pid, strerror(errno));
    return -1;
}

const char *qh_proc_report(const qh_proc *p, size_t *len, size_t *dropped)
{
    if (len) *len = p->report_len;
    if (dropped) *dropped = p->report_dropped;
    return p->report ? p->report : "";
}

void qh_proc_free(qh_proc *p)
{
    if (!p) return;
    if (!p->reaped && p->pid > 0) {
        int ws;
        pid_t r;
        do r = waitpid(p->pid, &ws, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == p->pid && (WIFEXITED(ws) || WIFSIGNALED(ws)))
            qh_hostlib_untrack_child((int)p->pid);
    }
    close_fd(&p->spec_fd);
    close_fd(&p->report_fd);
    free(p->spec);
    free(p->report);
    free(p);
}

/* Signal names are glibc's (sigabbrev_np: "KILL") after "SIG", as Python's
 * signal module and kill -l write them, made once: qh_spawn_signame hands
 * out pointers into the table. glibc abbreviates 29 as POLL, its System V
 * name; Linux and Python call it SIGIO, and so does qhost. */
static char signames[NSIG][16];
static pthread_once_t signames_once = PTHREAD_ONCE_INIT;

static void signames_init(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        const char *abbrev = sig == SIGIO ? "IO" : sigabbrev_np(sig);
        if (abbrev) snprintf(signames[sig], sizeof signames[sig], "SIG%s", abbrev);
    }
}

const char *qh_spawn_signame(int sig)
{
    if (sig <= 0 || sig >= NSIG) return NULL;
    pthread_once(&signames_once, signames_init);
    return signames[sig][0] ? signames[sig] : NULL;
}

int qh_spawn_signum(const char *name)
{
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    for (int sig = 1; sig < NSIG; sig++) {
        const char *known = qh_spawn_signame(sig);
        if (known && strcmp(known + 3, name) == 0) return sig;
    }
    return -1;
}

/* ---- child side -------------------------------------------------------- */

int qh_spawn_is_child(void)
{
    const char *v = getenv("QHOST_SPEC_FD");
    return v && *v;
}

/* A non-negative integer from the environment. */
static int env_number(const char *name, long *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        snprintf(err, errlen, "%s is not set: not a qhost source process", name);
        return -1;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < 0 || n > 0x7fffffff) {
        snprintf(err, errlen, "%s=\"%s\" is not a valid number", name, v);
        return -1;
    }
    *out = n;
    return 0;
}

/* The spec fd of a held spec, open after the spec was read until the
 * release byte (or EOF) came; -1 otherwise. */
static int held_spec_fd = -1;

static int spec_is_held(void)
{
    const char *v = getenv("QHOST_SPEC_HELD");
    return v && strcmp(v, "1") == 0;
}

/* A held spec's "<length>\n" header, read a byte at a time (never past it). */
static int read_spec_header(int fd, size_t *len, char *err, size_t errlen)
{
    size_t n = 0;
    int digits = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            snprintf(err, errlen, "reading the spec header from fd %d: %s", fd,
                     r == 0 ? "end of file" : strerror(errno));
            return -1;
        }
        if (c == '\n' && digits > 0) break;
        if (c < '0' || c > '9' || ++digits > 12) {
            snprintf(err, errlen, "reading the spec header from fd %d: not a length", fd);
            return -1;
        }
        n = n * 10 + (size_t)(c - '0');
    }
    *len = n;
    return 0;
}

int qh_spawn_child_read_spec(char **out, size_t *len, char *err, size_t errlen)
{
    long fd;
    if (env_number("QHOST_SPEC_FD", &fd, err, errlen) < 0) return -1;
    int held = spec_is_held();
    size_t want = 0;
    if (held && read_spec_header((int)fd, &want, err, errlen) < 0) goto fail_fd;
    size_t used = 0, cap = held ? want + 1 : 65536;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err, errlen, "reading the spec: out of memory");
        goto fail;
    }
    for (;;) {
        if (held && used == want) break;
        if (cap - used < 2) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                snprintf(err, errlen, "reading the spec: out of memory");
                goto fail;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read((int)fd, buf + used, held ? want - used : cap - used - 1);
        if (n > 0) {
            used += (size_t)n;
        } else if (n == 0) {
            if (held) {
                snprintf(err, errlen, "reading the spec from fd %ld: end of file after %zu of %zu bytes",
                         fd, used, want);
                goto fail;
            }
            break;
        } else if (errno != EINTR) {
            snprintf(err, errlen, "reading the spec from fd %ld: %s", fd, strerror(errno));
            goto fail;
        }
    }
    if (held) held_spec_fd = (int)fd;
    else close((int)fd);
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return 0;
fail:
    free(buf);
fail_fd:
    close((int)fd);
    return -1;
}

int qh_spawn_child_wait_release(int timeout_ms, char *err, size_t errlen)
{
    if (held_spec_fd < 0) return 1;   /* not held, or released already */
    struct pollfd pfd = { .fd = held_spec_fd, .events = POLLIN };
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno == EINTR) return 0;
    if (r < 0) {
        snprintf(err, errlen, "waiting for the release on fd %d: %s", held_spec_fd, strerror(errno));
        return -1;
    }
    if (r == 0) return 0;
    char c;
    ssize_t n;
    do n = read(held_spec_fd, &c, 1);
    while (n < 0 && errno == EINTR);
    close(held_spec_fd);
    held_spec_fd = -1;
    if (n == 1 && c == RELEASE_BYTE) return 1;
    snprintf(err, errlen, "the parent closed the spec pipe without releasing this process");
    return -1;
}

int qh_spawn_child_report(const char *text, size_t len, char *err, size_t errlen)
{
    long fd;
    if (env_number("QHOST_REPORT_FD", &fd, err, errlen) < 0) return -1;
    while (len > 0) {
        ssize_t n = write_nosigpipe((int)fd, text, len);
        if (n > 0) {
            text += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            snprintf(err, errlen, "writing the report to fd %ld: %s", fd, strerror(errno));
            return -1;
        }
    }
    return 0;
}

int qh_spawn_child_watch_parent(char *err, size_t errlen)
{
    long parent;
    if (env_number("QHOST_PARENT_PID", &parent, err, errlen) < 0) return -1;
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) {
        snprintf(err, errlen, "prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
        return -1;
    }
    /* The parent may have died before prctl: we were then reparented and no
     * death signal will come, so send it ourselves. */
    if ((long)getppid() != parent) raise(SIGTERM);
    return 0;
#else
    snprintf(err, errlen, "watching the parent process is only supported on Linux");
    return -1;
#endif
}

/* ---- Lua module -------------------------------------------------------- */

#define PROC_MT "qhost.spawn.proc"

typedef struct lproc {
    qh_proc *p;   /* owned; NULL only until start succeeded or after __gc */
} lproc;

static qh_proc *check_proc(lua_State *L)
{
    lproc *u = luaL_checkudata(L, 1, PROC_MT);
    if (!u->p) luaL_error(L, "qhost.spawn: proc is not running anything");
    return u->p;
}

/* A string from the stack value at idx (string or number), anchored in the
 * table at `anchor` so it stays valid for the call; errors name `what`. */
static const char *anchored_string(lua_State *L, int idx, int anchor, const char *what)
{
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "spawn.start: %s must be a string, not %s", what, lua_typename(L, t));
    size_t len;
    lua_pushvalue(L, idx);
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) luaL_error(L, "spawn.start: %s contains a NUL byte", what);
    lua_rawseti(L, anchor, (int)lua_objlen(L, anchor) + 1);
    return s;
}

/* spawn.start{ argv = {...}, env = {...}, spec = "...", stdin_null = bool,
 *              report_max = n, share_fd = fd, hold = bool } -> proc | nil, err */
static int l_start(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L);                       /* 2: anchor for strings */
    lproc *u = qh_luaclass_new(L, PROC_MT, sizeof *u); /* 3: the result */
    lua_newtable(L);                       /* per-proc store (cached status) */
    lua_setfenv(L, 3);

    lua_getfield(L, 1, "argv");            /* 4 */
    if (!lua_istable(L, 4) || lua_objlen(L, 4) == 0)
        return luaL_error(L, "spawn.start: argv must be a non-empty list of strings");
    size_t argc = lua_objlen(L, 4);
    const char **argv = lua_newuserdata(L, (argc + 1) * sizeof *argv); /* 5 */
    for (size_t i = 0; i < argc; i++) {
        lua_rawgeti(L, 4, (int)i + 1);
        argv[i] = anchored_string(L, -1, 2, "an argv element");
        lua_pop(L, 1);
    }
    argv[argc] = NULL;

    lua_getfield(L, 1, "env");             /* 6 */
    size_t envc = 0;
    if (!lua_isnil(L, 6)) {
        luaL_argcheck(L, lua_istable(L, 6), 1, "env must be a table of NAME = value");
        for (lua_pushnil(L); lua_next(L, 6); lua_pop(L, 1)) envc++;
    }
    const char **env = lua_newuserdata(L, (envc + 1) * sizeof *env); /* 7 */
    size_t k = 0;
    if (envc) {
        for (lua_pushnil(L); lua_next(L, 6); lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "spawn.start: env names must be strings");
            const char *name = lua_tostring(L, -2);
            if (!*name || strchr(name, '=') || strlen(name) != lua_objlen(L, -2))
                return luaL_error(L, "spawn.start: bad env name \"%s\"", name);
            const char *value = anchored_string(L, -1, 2, "an env value");
            lua_pushfstring(L, "%s=%s", name, value);
            env[k++] = anchored_string(L, -1, 2, "an env entry");
            lua_pop(L, 1);
        }
    }
    env[k] = NULL;

    qh_spawn_opts opts = { .argv = argv, .env = env, .share_fd = -1 };
    lua_getfield(L, 1, "share_fd");
    if (!lua_isnil(L, -1)) {
        lua_Number fd = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(fd > 0 && fd <= 1 << 20) || fd != (int)fd)
            return luaL_error(L, "spawn.start: share_fd must be a file descriptor number");
        opts.share_fd = (int)fd;
    }
    lua_getfield(L, 1, "spec");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "spawn.start: spec must be a string");
        opts.spec = lua_tolstring(L, -1, &opts.spec_len);
    }
    lua_getfield(L, 1, "stdin_null");
    opts.stdin_null = lua_toboolean(L, -1);
    lua_getfield(L, 1, "hold");
    opts.held = lua_toboolean(L, -1);
    lua_getfield(L, 1, "report_max");
    if (!lua_isnil(L, -1)) {
        lua_Number m = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(m >= 1))
            return luaL_error(L, "spawn.start: report_max must be a positive number");
        opts.report_max = m >= (lua_Number)REPORT_MAX_LIMIT ? REPORT_MAX_LIMIT : (size_t)m;
    }

    char err[512];
    u->p = qh_spawn_start(&opts, err, sizeof err);
    if (!u->p) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushvalue(L, 3);
    return 1;
}

static int l_pid(lua_State *L)
{
    lua_pushinteger(L, qh_proc_pid(check_proc(L)));
    return 1;
}

/* Pushes the cached status table, or nothing (returns 0) if not cached. */
static int push_cached_status(lua_State *L)
{
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "status");
    lua_remove(L, -2);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
    return 0;
}

static void push_new_status(lua_State *L, qh_proc *p, const qh_proc_status *st)
{
    lua_createtable(L, 0, 5);
    if (st->signal) {
        lua_pushinteger(L, st->signal);
        lua_setfield(L, -2, "signal");
        const char *name = qh_spawn_signame(st->signal);
        if (name) {
            lua_pushstring(L, name);
            lua_setfield(L, -2, "signame");
        }
    } else {
        lua_pushinteger(L, st->code);
        lua_setfield(L, -2, "code");
    }
    size_t len, dropped;
    const char *report = qh_proc_report(p, &len, &dropped);
    lua_pushlstring(L, report, len);
    lua_setfield(L, -2, "report");
    if (dropped) {
        lua_pushnumber(L, (lua_Number)dropped);
        lua_setfield(L, -2, "report_dropped");
    }
    lua_getfenv(L, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "status");
    lua_pop(L, 1);
}

/* proc:poll() -> nil while running | status table (the same one each time) */
static int l_poll(lua_State *L)
{
    qh_proc *p = check_proc(L);
    if (push_cached_status(L)) return 1;
    qh_proc_status st;
    char err[256];
    int r = qh_proc_poll(p, &st, err, sizeof err);
    if (r < 0) return luaL_error(L, "proc:poll: %s", err);
    if (r == 0) {
        lua_pushnil(L);
        return 1;
    }
    push_new_status(L, p, &st);
    return 1;
}

/* proc:wait([timeout_seconds]) -> status table | nil on timeout */
static int l_wait(lua_State *L)
{
    qh_proc *p = check_proc(L);
    double timeout = luaL_optnumber(L, 2, -1);
    if (push_cached_status(L)) return 1;
    qh_proc_status st;
    char err[256];
    int r = qh_proc_wait(p, timeout, &st, err, sizeof err);
    if (r < 0) return luaL_error(L, "proc:wait: %s", err);
    if (r == 0) {
        lua_pushnil(L);
        return 1;
    }
    push_new_status(L, p, &st);
    return 1;
}

/* proc:signal(sig) -> true | false (already gone) | nil, err */
static int l_signal(lua_State *L)
{
    qh_proc *p = check_proc(L);
    int sig;
    if (lua_type(L, 2) == LUA_TSTRING) {
        sig = qh_spawn_signum(lua_tostring(L, 2));
        if (sig < 0) return luaL_error(L, "proc:signal: unknown signal \"%s\"", lua_tostring(L, 2));
    } else {
        sig = (int)luaL_checkinteger(L, 2);
    }
    char err[256];
    int r = qh_proc_signal(p, sig, err, sizeof err);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, r);
    return 1;
}

/* proc:report_so_far() -> string */
static int l_report_so_far(lua_State *L)
{
    size_t len;
    const char *s = qh_proc_report(check_proc(L), &len, NULL);
    lua_pushlstring(L, s, len);
    return 1;
}

/* Collecting a proc closes our pipe ends and frees it, but leaves a running
 * child alone: the Lua library stops its children explicitly. */
static int l_gc(lua_State *L)
{
    lproc *u = luaL_checkudata(L, 1, PROC_MT);
    qh_proc_free(u->p);
    u->p = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    lproc *u = luaL_checkudata(L, 1, PROC_MT);
    if (u->p) lua_pushfstring(L, "qhost.spawn.proc (pid %d)", qh_proc_pid(u->p));
    else lua_pushliteral(L, "qhost.spawn.proc (closed)");
    return 1;
}

static int push_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* spawn.child_read_spec() -> string | nil, err */
static int l_child_read_spec(lua_State *L)
{
    char err[256], *spec;
    size_t len;
    if (qh_spawn_child_read_spec(&spec, &len, err, sizeof err) < 0) return push_fail(L, err);
    lua_pushlstring(L, spec, len);
    free(spec);
    return 1;
}

/* spawn.child_wait_release(seconds) -> true (released, or never held) |
 * false (not yet: timed out or interrupted) | nil, err (never will be) */
static int l_child_wait_release(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    int ms = s <= 0 ? 0 : s >= 3600 ? 3600000 : (int)(s * 1000);
    char err[256];
    int r = qh_spawn_child_wait_release(ms, err, sizeof err);
    if (r < 0) return push_fail(L, err);
    lua_pushboolean(L, r);
    return 1;
}

/* proc:release() -> true: a child started with hold = true may run */
static int l_release(lua_State *L)
{
    qh_proc_release(check_proc(L));
    lua_pushboolean(L, 1);
    return 1;
}

/* spawn.child_report(text) -> true | nil, err */
static int l_child_report(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    char err[256];
    if (qh_spawn_child_report(text, len, err, sizeof err) < 0) return push_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* spawn.child_watch_parent() -> true | nil, err */
static int l_child_watch_parent(lua_State *L)
{
    char err[256];
    if (qh_spawn_child_watch_parent(err, sizeof err) < 0) return push_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* spawn.is_child() -> boolean */
static int l_is_child(lua_State *L)
{
    lua_pushboolean(L, qh_spawn_is_child());
    return 1;
}

int qh_spawn_open(lua_State *L)
{
    static const luaL_Reg proc_methods[] = {
        { "pid", l_pid },
        { "poll", l_poll },
        { "wait", l_wait },
        { "signal", l_signal },
        { "report_so_far", l_report_so_far },
        { "release", l_release },
        { NULL, NULL },
    };
    static const luaL_Reg module[] = {
        { "start", l_start },
        { "child_read_spec", l_child_read_spec },
        { "child_wait_release", l_child_wait_release },
        { "child_report", l_child_report },
        { "child_watch_parent", l_child_watch_parent },
        { "is_child", l_is_child },
        { NULL, NULL },
    };
    static const luaL_Reg proc_metamethods[] = {
        { "__gc", l_gc },
        { "__tostring", l_tostring },
        { NULL, NULL },
    };
    qh_luaclass_register_meta(L, PROC_MT, proc_methods, proc_metamethods);
    lua_newtable(L);
    luaL_register(L, NULL, module);
    return 1;
}
