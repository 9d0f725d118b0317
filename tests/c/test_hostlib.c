/* test_hostlib.c: tests of host/hostlib.c, the `qhost.host` module driven
 * through a state from qh_vm_new, and the stop-signal handling through the
 * C API. Everything that changes the process-wide stop state beyond one
 * SIGTERM runs in a forked child (fork() + waitpid()), because a second stop
 * signal _exits the process that gets it. Timeouts are only upper bounds
 * against hanging; every check is on an exact value.
 *
 * The Lua root: main() exports the checkout this binary was built in
 * (th_repo_root) as QHOST_ROOT; the working directory does not matter. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"
#include "hostlib.h"
#include "vm.h"

/* A state as the qhost binary makes it, with the module as global `host`. */
static lua_State *new_lua(const char *mode)
{
    lua_State *L = qh_vm_new(mode, QH_VM_LUAJIT_MEMORY);
    if (!L) return NULL;
    th_lua_prelude(L, "host = require 'qhost.host'");
    return L;
}

/* `sleep 30`, our own child, to be killed (or not) by the code under test. */
static pid_t spawn_sleeper(void)
{
    /* fork + exec rather than posix_spawn: -Ihost makes <spawn.h> ours. */
    pid_t pid = fork();
    if (pid == 0) {
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Runs fn in a forked child with its stderr into a pipe; the child reports
 * its checks through its exit status (0 when all held), unless fn exits by
 * itself. Returns the wait status; the child's stderr goes to errbuf. */
static int in_child(void (*fn)(void), char *errbuf, size_t errlen)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        check_current_ok = 1;
        fn();
        _exit(check_current_ok ? 0 : 1);   /* _exit: no leak report for a forked copy */
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while ((n = read(fds[0], errbuf + used, errlen - 1 - used)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) used += (size_t)n;
    errbuf[used] = '\0';
    close(fds[0]);
    int status = th_wait_child(pid, 20000);
    /* The child's failed checks (exit 1) say why in its stderr: pass it on. */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 1) fputs(errbuf, stderr);
    return status;
}

/* ---- module fields ----------------------------------------------------- */

TEST(fields_version_exe_root_mode)
{
    lua_State *L = new_lua("run");
    int n = th_run_n(L, "return host.version, host.exe, host.root, host.mode");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_EQ_STR(lua_tostring(L, 1), QHOST_VERSION);
        CHECK_EQ_STR(lua_tostring(L, 1), "0.1.0");
        CHECK_EQ_STR(lua_tostring(L, 2), th_self_exe());
        CHECK_EQ_STR(lua_tostring(L, 3), th_repo_root());
        CHECK_EQ_STR(lua_tostring(L, 4), "run");
    }
    qh_vm_close(L);

    L = new_lua("lua");
    n = th_run_n(L, "return host.mode");
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_STR(lua_tostring(L, 1), "lua");
    qh_vm_close(L);
}

TEST(module_lists_its_functions)
{
    lua_State *L = new_lua("run");
    int n = th_run_n(L,
        "local names = {}\n"
        "for k, v in pairs(host) do\n"
        "  if type(v) == 'function' then names[#names + 1] = k end\n"
        "end\n"
        "table.sort(names)\n"
        "return table.concat(names, ' ')");
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_EQ_STR(lua_tostring(L, 1), "exit getpid isatty mkdtemp monotonic request_stop "
                                         "sleep sleep_unless_stopped stop_requested strerror term_width time_ms write_bytecode");
    qh_vm_close(L);
}

/* ---- clocks and sleep -------------------------------------------------- */

TEST(monotonic_increases_across_a_sleep)
{
    lua_State *L = new_lua("run");
    int n = th_run_n(L,
        "local a = host.monotonic()\n"
        "local b = host.monotonic()\n"
        "host.sleep(0.02)\n"
        "local c = host.monotonic()\n"
        "return type(a), b >= a, c > b, c - b >= 0.019");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_EQ_STR(lua_tostring(L, 1), "number");
        CHECK(lua_toboolean(L, 2));
        CHECK(lua_toboolean(L, 3));
        CHECK(lua_toboolean(L, 4));   /* nanosleep sleeps at least that long */
    }
    qh_vm_close(L);
}

TEST(time_ms_is_wall_clock_milliseconds)
{
    lua_State *L = new_lua("run");
    double before = (double)time(NULL) * 1000.0;
    int n = th_run_n(L, "local t = host.time_ms(); return t, t == math.floor(t)");
    double after = (double)time(NULL) * 1000.0;
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        double t = lua_tonumber(L, 1);
        CHECK(t >= before - 60000.0 && t <= after + 60000.0);
        CHECK(t >= before);            /* time() truncates: t is never below it */
        CHECK(lua_toboolean(L, 2));    /* whole milliseconds */
    }
    qh_vm_close(L);
}

TEST(sleep_zero_and_negative_return_at_once)
{
    lua_State *L = new_lua("run");
    int n = th_run_n(L, "return select('#', host.sleep(0)), select('#', host.sleep(-1)), "
                   "select('#', host.sleep(0.001))");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 0);
        CHECK_EQ_INT(lua_tointeger(L, 3), 0);
    }
    CHECK_EQ_STR(th_run_error(L, "host.sleep('soon')"),
                 "test:1: bad argument #1 to 'sleep' (number expected, got string)");
    qh_vm_close(L);
}

/* ---- small services ---------------------------------------------------- */

TEST(term_width_is_nil_off_a_terminal)
{
    lua_State *L = new_lua("run");
    int fds[2];
    CHECK_EQ_INT(pipe(fds), 0);
    lua_pushinteger(L, fds[0]);
    lua_setglobal(L, "fd");
    int n = th_run_n(L, "return host.term_width(fd) == nil");
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK(lua_toboolean(L, 1));
    close(fds[0]);
    close(fds[1]);
    qh_vm_close(L);
}

TEST(getpid_isatty_strerror)
{
    lua_State *L = new_lua("run");
    int n = th_run_n(L, "return host.getpid(), host.isatty(-1), host.strerror(2), host.strerror(13)");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_EQ_INT(lua_tointeger(L, 1), getpid());
        CHECK(lua_isboolean(L, 2) && !lua_toboolean(L, 2));
        CHECK_EQ_STR(lua_tostring(L, 3), "No such file or directory");
        CHECK_EQ_STR(lua_tostring(L, 4), "Permission denied");
    }
    CHECK_EQ_STR(th_run_error(L, "host.strerror()"),
                 "test:1: bad argument #1 to 'strerror' (number expected, got no value)");
    qh_vm_close(L);
}

TEST(mkdtemp_creates_a_private_folder)
{
    lua_State *L = new_lua("run");
    int n = th_run_n(L,
        "local a = host.mkdtemp()\n"
        "local b = host.mkdtemp('/tmp/qh_test_hostlib.XXXXXX')\n"
        "return a, b");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        const char *a = lua_tostring(L, 1), *b = lua_tostring(L, 2);
        struct stat st;
        CHECK(a && strncmp(a, "/tmp/qhost.", 11) == 0 && strlen(a) == 17);
        CHECK(a && stat(a, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
        CHECK(b && strncmp(b, "/tmp/qh_test_hostlib.", 21) == 0 && strlen(b) == 27);
        CHECK(b && strcmp(b + 21, "XXXXXX") != 0);
        CHECK(b && stat(b, &st) == 0 && S_ISDIR(st.st_mode));
        if (a) rmdir(a);
        if (b) rmdir(b);
    }
    /* Expected failures come back as nil, err. */
    /* glibc has already filled in the X's when it finds the folder missing,
     * so the message names the path tried (6 random characters). */
    n = th_run_n(L, "return host.mkdtemp('/nonexistent-qh/x.XXXXXX')");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        const char *msg = lua_tostring(L, 2);
        CHECK(lua_isnil(L, 1));
        CHECK(msg && strlen(msg) == strlen("mkdtemp /nonexistent-qh/x.XXXXXX: No such file or directory"));
        CHECK(msg && strncmp(msg, "mkdtemp /nonexistent-qh/x.", 26) == 0);
        CHECK(msg && strcmp(msg + 32, ": No such file or directory") == 0);
    }
    n = th_run_n(L, "return host.mkdtemp('/tmp/no-template')");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK(lua_isnil(L, 1));
        CHECK_EQ_STR(lua_tostring(L, 2), "mkdtemp /tmp/no-template: Invalid argument");
    }
    qh_vm_close(L);
}

/* host.exit flushes stdout (LuaJIT's io writes through stdio) and leaves
 * with the code, skipping everything else. */
static void child_exit_flushes(void)
{
    lua_State *L = new_lua("run");
    if (!L) _exit(90);
    if (luaL_dostring(L, "io.write('buffered'); host.exit(7)") != 0) _exit(92);
    _exit(91);   /* not reached when host.exit works */
}

TEST(exit_flushes_stdout_and_uses_the_code)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        close(fds[1]);
        child_exit_flushes();
    }
    close(fds[1]);
    char buf[64];
    size_t used = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + used, sizeof buf - 1 - used)) > 0) used += (size_t)n;
    buf[used] = '\0';
    close(fds[0]);
    int status = th_wait_child(pid, 20000);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 7);
    CHECK_EQ_STR(buf, "buffered");
}

/* ---- stop signals ------------------------------------------------------ */

/* In this process: one SIGTERM only (a second one would _exit us). */
TEST(first_sigterm_requests_a_stop)
{
    lua_State *L = new_lua("run");
    CHECK_EQ_INT(qh_ffi_stop_requested(), 0);
    CHECK_EQ_INT(qh_ffi_stop_signal(), 0);
    int n = th_run_n(L, "return host.stop_requested()");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 0);
    }

    qh_hostlib_install_signals(0);
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    CHECK(sa.sa_handler == SIG_IGN);
    sigaction(SIGINT, NULL, &sa);
    CHECK(sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL);

    CHECK_EQ_INT(raise(SIGTERM), 0);
    CHECK_EQ_INT(qh_ffi_stop_requested(), 1);
    CHECK_EQ_INT(qh_ffi_stop_signal(), SIGTERM);
    CHECK_EQ_INT(qh_ffi_stop_signal(), 15);
    n = th_run_n(L, "return host.stop_requested()");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 1);
        CHECK_EQ_INT(lua_tointeger(L, 2), 15);
    }
    /* request_stop never lowers or raises a count that is already set. */
    th_run_n(L, "host.request_stop()");
    CHECK_EQ_INT(qh_ffi_stop_requested(), 1);
    CHECK_EQ_INT(qh_ffi_stop_signal(), 15);
    qh_vm_close(L);
}

/* In a child forked before this process had any stop signal (main's order). */
static void child_request_stop(void)
{
    lua_State *L = new_lua("run");
    CHECK_EQ_INT(qh_ffi_stop_requested(), 0);
    int n = th_run_n(L, "host.request_stop(); return host.stop_requested()");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 1);
        CHECK_EQ_INT(lua_tointeger(L, 2), 0);   /* no signal behind this stop */
    }
    th_run_n(L, "host.request_stop(); host.request_stop()");
    CHECK_EQ_INT(qh_ffi_stop_requested(), 1);   /* still 1: never the immediate exit */
    CHECK_EQ_INT(qh_ffi_stop_signal(), 0);
}

TEST(request_stop_sets_the_count_to_one)
{
    char err[4096];
    int status = in_child(child_request_stop, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
}

static pid_t g_tracked_sleeper, g_untracked_sleeper;

/* Installs the handlers, tracks one sleeper (and untracks the other),
 * then the user insists: two SIGTERMs. */
static void child_second_signal(void)
{
    qh_hostlib_install_signals(0);
    qh_hostlib_track_child(g_untracked_sleeper);
    qh_hostlib_track_child(g_tracked_sleeper);
    qh_hostlib_untrack_child(g_untracked_sleeper);
    raise(SIGTERM);
    if (qh_ffi_stop_requested() != 1) _exit(80);
    raise(SIGTERM);
    _exit(81);   /* not reached: the second signal exits */
}

TEST(second_signal_kills_tracked_children_and_exits_143)
{
    char err[4096];
    g_tracked_sleeper = spawn_sleeper();
    g_untracked_sleeper = spawn_sleeper();
    CHECK(g_tracked_sleeper > 0 && g_untracked_sleeper > 0);
    if (g_tracked_sleeper <= 0 || g_untracked_sleeper <= 0) return;

    int status = in_child(child_second_signal, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 128 + 15);
    CHECK_EQ_STR(err, "qhost: second stop signal, exiting immediately\n");

    /* The kill was sent before the child exited; the death may lag. */
    status = th_wait_child(g_tracked_sleeper, 20000);
    CHECK(status != -1 && WIFSIGNALED(status));
    CHECK_EQ_INT(WIFSIGNALED(status) ? WTERMSIG(status) : -1, SIGKILL);

    /* The untracked one was left alone: still running, ended here by us. */
    CHECK_EQ_INT(waitpid(g_untracked_sleeper, &status, WNOHANG), 0);
    kill(g_untracked_sleeper, SIGTERM);
    status = th_wait_child(g_untracked_sleeper, 20000);
    CHECK(status != -1 && WIFSIGNALED(status));
    CHECK_EQ_INT(WIFSIGNALED(status) ? WTERMSIG(status) : -1, SIGTERM);
}

static void child_second_sigint(void)
{
    qh_hostlib_install_signals(0);
    raise(SIGINT);
    if (qh_ffi_stop_requested() != 1 || qh_ffi_stop_signal() != SIGINT) _exit(80);
    raise(SIGINT);
    _exit(81);
}

TEST(second_sigint_exits_130)
{
    char err[4096];
    int status = in_child(child_second_sigint, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 128 + 2);
    CHECK_EQ_STR(err, "qhost: second stop signal, exiting immediately\n");
}

/* A source child: Ctrl-C is the parent's to decide; SIGTERM stops. */
static void child_source_ignores_sigint(void)
{
    qh_hostlib_install_signals(1);
    struct sigaction sa;
    sigaction(SIGINT, NULL, &sa);
    CHECK(sa.sa_handler == SIG_IGN);
    raise(SIGINT);
    raise(SIGINT);                      /* twice: would _exit if it counted */
    CHECK_EQ_INT(qh_ffi_stop_requested(), 0);
    CHECK_EQ_INT(qh_ffi_stop_signal(), 0);
    raise(SIGTERM);
    CHECK_EQ_INT(qh_ffi_stop_requested(), 1);
    CHECK_EQ_INT(qh_ffi_stop_signal(), 15);
    lua_State *L = new_lua("run");
    int n = th_run_n(L, "return host.stop_requested()");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 1);
        CHECK_EQ_INT(lua_tointeger(L, 2), 15);
    }
}

TEST(source_child_ignores_sigint_and_stops_on_sigterm)
{
    char err[4096];
    int status = in_child(child_source_ignores_sigint, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
}

/* A stop sent to the whole process group reaches a source twice: directly
 * and forwarded by the app, in either order. Neither order is the user
 * insisting: here the app's SIGTERM comes first, then the direct one, and
 * the source lives on (it says so on the pipe). Only a second stop that
 * did not come from the app makes it leave at once. The child here is the
 * app; the source is its own child. */
static void child_app_stopping_its_source(void)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) _exit(80);
    pid_t source = fork();
    if (source == 0) {
        close(pipefd[0]);
        qh_hostlib_install_signals(1);
        if (write(pipefd[1], "r", 1) != 1) _exit(82);
        if (!TH_WAIT_UNTIL(qh_ffi_stop_requested() > 0, 20000)) _exit(83);
        raise(SIGTERM);                 /* the group's stop, arriving directly */
        if (write(pipefd[1], "a", 1) != 1) _exit(84);
        raise(SIGTERM);                 /* a second direct stop: exits 143 */
        _exit(85);
    }
    close(pipefd[1]);
    char said[3] = "";
    CHECK(read(pipefd[0], said, 1) == 1);
    kill(source, SIGTERM);              /* the app forwarding the stop */
    CHECK(read(pipefd[0], said + 1, 1) == 1);
    close(pipefd[0]);
    CHECK_EQ_STR(said, "ra");           /* alive after the parent's and one direct stop */
    int status = th_wait_child(source, 20000);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 128 + 15);
}

TEST(a_source_counts_only_stops_not_from_its_app_towards_the_second)
{
    char err[4096];
    int status = in_child(child_app_stopping_its_source, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
    CHECK_EQ_STR(err, "qhost: second stop signal, exiting immediately\n");
}

/* A stop signal cuts host.sleep short, so a sleeping source stops fast. The
 * helper sends its one SIGTERM once we are blocked (in host.sleep). */
static void child_signal_interrupts_sleep(void)
{
    qh_hostlib_install_signals(1);
    pid_t self = getpid();
    lua_State *L = new_lua("run");
    pid_t killer = fork();
    if (killer == 0) {
        (void)TH_WAIT_UNTIL(th_proc_state(self) == 'S', 20000);
        kill(self, SIGTERM);
        _exit(0);
    }
    int n = th_run_n(L, "local t = host.monotonic(); host.sleep(30); "
                   "return host.monotonic() - t, host.stop_requested()");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK(lua_tonumber(L, 1) < 25.0);   /* an upper bound well below the 30 s asked */
        CHECK_EQ_INT(lua_tointeger(L, 2), 1);
        CHECK_EQ_INT(lua_tointeger(L, 3), 15);
    }
    th_wait_child(killer, 20000);
}

TEST(stop_signal_interrupts_sleep)
{
    char err[4096];
    int status = in_child(child_signal_interrupts_sleep, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
}

/* qhost.sleep's C side: false at once when a stop was already requested
 * (a plain nanosleep would sleep it all), false when a signal comes during
 * it, true after a full sleep. */
static void child_sleep_unless_stopped(void)
{
    qh_hostlib_install_signals(1);
    pid_t self = getpid();
    lua_State *L = new_lua("run");
    int n = th_run_n(L, "return host.sleep_unless_stopped(0.01), host.sleep_unless_stopped(-1)");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK(lua_toboolean(L, 1));
        CHECK(lua_toboolean(L, 2));
    }
    lua_settop(L, 0);
    pid_t killer = fork();
    if (killer == 0) {
        (void)TH_WAIT_UNTIL(th_proc_state(self) == 'S', 20000);
        kill(self, SIGTERM);
        _exit(0);
    }
    n = th_run_n(L, "return host.sleep_unless_stopped(1e12), (host.stop_requested())");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK(!lua_toboolean(L, 1));
        CHECK_EQ_INT(lua_tointeger(L, 2), 1);
    }
    th_wait_child(killer, 20000);
    lua_settop(L, 0);
    n = th_run_n(L, "return host.sleep_unless_stopped(1e12)");   /* stopped before: returns at once */
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK(!lua_toboolean(L, 1));
    qh_vm_close(L);
}

TEST(stop_cuts_sleep_unless_stopped_short)
{
    char err[4096];
    int status = in_child(child_sleep_unless_stopped, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
}

/* ---- child tracking ---------------------------------------------------- */

/* Tracking in this process is observable only through the second-signal
 * path; here: untrack of an unknown pid is harmless, and a slot freed by
 * untrack is reused (256 slots: 300 track/untrack rounds must not fill). */
static void child_track_untrack_reuses_slots(void)
{
    pid_t sleeper = g_tracked_sleeper;
    qh_hostlib_install_signals(0);
    qh_hostlib_untrack_child(424242);
    for (int i = 0; i < 300; i++) {
        qh_hostlib_track_child(100000 + i);
        qh_hostlib_untrack_child(100000 + i);
    }
    qh_hostlib_track_child(sleeper);    /* finds a free slot after all that */
    raise(SIGTERM);
    raise(SIGTERM);
    _exit(81);
}

TEST(track_untrack_frees_slots)
{
    char err[4096];
    g_tracked_sleeper = spawn_sleeper();
    CHECK(g_tracked_sleeper > 0);
    if (g_tracked_sleeper <= 0) return;
    int status = in_child(child_track_untrack_reuses_slots, err, sizeof err);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 143);
    status = th_wait_child(g_tracked_sleeper, 20000);
    CHECK(status != -1 && WIFSIGNALED(status));
    CHECK_EQ_INT(WIFSIGNALED(status) ? WTERMSIG(status) : -1, SIGKILL);
}

int main(void)
{
    char err[512];
    qh_paths paths;
    if (!th_repo_root()) {
        fprintf(stderr, "no checkout (lua/qhost/init.lua, tests/c/check.h) above %s\n", th_self_exe());
        return 1;
    }
    setenv("QHOST_ROOT", th_repo_root(), 1);
    if (qh_vm_locate(&paths, err, sizeof err) != 0) {
        fprintf(stderr, "qh_vm_locate: %s\n", err);
        return 1;
    }

    RUN(fields_version_exe_root_mode);
    RUN(module_lists_its_functions);
    RUN(monotonic_increases_across_a_sleep);
    RUN(time_ms_is_wall_clock_milliseconds);
    RUN(sleep_zero_and_negative_return_at_once);
    RUN(getpid_isatty_strerror);
    RUN(term_width_is_nil_off_a_terminal);
    RUN(mkdtemp_creates_a_private_folder);
    RUN(exit_flushes_stdout_and_uses_the_code);
    /* Forked while this process has had no stop signal yet. */
    RUN(request_stop_sets_the_count_to_one);
    RUN(second_signal_kills_tracked_children_and_exits_143);
    RUN(second_sigint_exits_130);
    RUN(source_child_ignores_sigint_and_stops_on_sigterm);
    RUN(a_source_counts_only_stops_not_from_its_app_towards_the_second);
    RUN(stop_signal_interrupts_sleep);
    RUN(stop_cuts_sleep_unless_stopped_short);
    RUN(track_untrack_frees_slots);
    /* Last: it leaves this process with a stop requested. */
    RUN(first_sigterm_requests_a_stop);
    return check_summary();
}
