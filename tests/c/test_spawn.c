/* test_spawn.c: tests of host/spawn.c, through a real lua_State with the
 * `qhost.spawn` module and through the C API. Children are /bin/sh scripts
 * and this binary itself re-run as a helper (`--helper-<name>`) for the
 * child-side functions, so nothing else needs building. Timeouts are only
 * upper bounds against hanging; every check is on an exact value. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "helpers.h"
#include "hostlib.h"
#include "spawn.h"

/* ---- hostlib stubs ------------------------------------------------------
 * Weak, so a build that links the real hostlib.o uses that instead; the
 * tracking checks run only when these stubs are the ones linked. */
#define MAX_TRACKED 64
static int tracked[MAX_TRACKED];

static void stub_track(int pid)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i] == 0) {
            tracked[i] = pid;
            return;
        }
}

static void stub_untrack(int pid)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i] == pid) tracked[i] = 0;
}

void qh_hostlib_track_child(int pid) __attribute__((weak, alias("stub_track")));
void qh_hostlib_untrack_child(int pid) __attribute__((weak, alias("stub_untrack")));

static int stubs_linked(void)
{
    void (*volatile track)(int) = qh_hostlib_track_child;
    return track == stub_track;
}

static int is_tracked(int pid)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i] == pid) return 1;
    return 0;
}

/* ---- shared helpers ---------------------------------------------------- */

static const char *tmp_dir;  /* th_tmpdir("spawn"), made by main */

/* Our open fds as "n n n" (the directory's own fd excluded); with
 * only_inheritable, just those without FD_CLOEXEC. */
static void list_fds(char *out, size_t outlen, int only_inheritable)
{
    out[0] = '\0';
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int fds[256], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == dirfd(d)) continue;
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && (!only_inheritable || !(flags & FD_CLOEXEC))) fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (fds[j] < fds[i]) {
                int t = fds[i];
                fds[i] = fds[j];
                fds[j] = t;
            }
    size_t used = 0;
    for (int i = 0; i < n && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, i ? " %d" : "%d", fds[i]);
}

static int l_sleep_ms(lua_State *L)
{
    th_sleep_ms((int)luaL_checkinteger(L, 1));
    return 0;
}

static int l_proc_state(lua_State *L)
{
    char c = th_proc_state((pid_t)luaL_checkinteger(L, 1));
    lua_pushlstring(L, &c, 1);
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static const char lua_prelude[] =
    "spawn = require 'qhost.spawn'\n"
    "function sh(script, opts)\n"
    "  opts = opts or {}\n"
    "  opts.argv = { '/bin/sh', '-c', script }\n"
    "  return spawn.start(opts)\n"
    "end\n"
    /* Waits with an upper bound; a child that hangs is killed so the run
     * goes on, and the caller's checks on the status then fail. */
    "function finish(p)\n"
    "  local st = p:wait(20)\n"
    "  if not st then p:signal('KILL'); p:wait(20); return { hung = true } end\n"
    "  return st\n"
    "end\n"
    "function until_state(pid, want)\n"
    "  for _ = 1, 4000 do\n"
    "    if proc_state(pid) == want then return want end\n"
    "    sleep_ms(5)\n"
    "  end\n"
    "  return proc_state(pid)\n"
    "end\n"
    "function bytes(n)\n"
    "  local t = {}\n"
    "  for i = 0, 255 do t[#t + 1] = string.char(i) end\n"
    "  local block = table.concat(t)\n"
    "  return block:rep(math.floor(n / 256)) .. block:sub(1, n % 256)\n"
    "end\n"
    "function slurp(path)\n"
    "  local f = assert(io.open(path, 'rb'))\n"
    "  local s = f:read('*a')\n"
    "  f:close()\n"
    "  os.remove(path)\n"
    "  return s\n"
    "end\n";

static lua_State *new_lua(void)
{
    lua_State *L = th_lua_new(NULL, NULL);
    th_lua_preload(L, "qhost.spawn", qh_spawn_open);
    lua_register(L, "sleep_ms", l_sleep_ms);
    lua_register(L, "proc_state", l_proc_state);
    lua_register(L, "getpid", l_getpid);
    lua_pushstring(L, th_self_exe());
    lua_setglobal(L, "SELF");
    lua_pushstring(L, tmp_dir);
    lua_setglobal(L, "TMP");
    th_lua_prelude(L, lua_prelude);
    return L;
}

/* ---- exit status ------------------------------------------------------- */

TEST(exit_codes_zero_and_three)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p0 = assert(sh('exit 0'))\n"
        "local p3 = assert(sh('exit 3'))\n"
        "local s0, s3 = finish(p0), finish(p3)\n"
        "return s0.code, s0.signal == nil, s0.signame == nil, s0.report,\n"
        "       s3.code, s3.signal == nil, s3.report_dropped == nil\n");
    CHECK_EQ_INT(n, 7);
    if (n == 7) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK(lua_toboolean(L, 2));
        CHECK(lua_toboolean(L, 3));
        CHECK_EQ_STR(lua_tostring(L, 4), "");
        CHECK_EQ_INT(lua_tointeger(L, 5), 3);
        CHECK(lua_toboolean(L, 6));
        CHECK(lua_toboolean(L, 7));
    }
    lua_close(L);
}

TEST(sigkill_is_reported_by_number_and_name)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local a = assert(sh('kill -KILL $$'))\n"
        "local b = assert(sh('exec sleep 30'))\n"
        "local sent = b:signal(9)\n"
        "local sa, sb = finish(a), finish(b)\n"
        "return sa.signal, sa.signame, sa.code == nil, sent, sb.signal, sb.signame\n");
    CHECK_EQ_INT(n, 6);
    if (n == 6) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 9);
        CHECK_EQ_STR(lua_tostring(L, 2), "SIGKILL");
        CHECK(lua_toboolean(L, 3));
        CHECK(lua_isboolean(L, 4) && lua_toboolean(L, 4));
        CHECK_EQ_INT(lua_tointeger(L, 5), 9);
        CHECK_EQ_STR(lua_tostring(L, 6), "SIGKILL");
    }
    lua_close(L);
}

TEST(poll_returns_the_same_table_after_exit)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('printf done >&4; exit 5'))\n"
        "local st\n"
        "for _ = 1, 4000 do st = p:poll(); if st then break end; sleep_ms(5) end\n"
        "local again, waited = p:poll(), p:wait(1)\n"
        "return st.code, st.report, rawequal(st, again), rawequal(st, waited)\n");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 5);
        CHECK_EQ_STR(lua_tostring(L, 2), "done");
        CHECK(lua_toboolean(L, 3));
        CHECK(lua_toboolean(L, 4));
    }
    lua_close(L);
}

/* ---- the spec pipe ----------------------------------------------------- */

TEST(spec_of_200k_arrives_intact)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local spec = bytes(200 * 1024)\n"
        "local out = TMP .. '/spec200k'\n"
        "local p = assert(sh('cat <&3 > ' .. out, { spec = spec }))\n"
        "local st = finish(p)\n"
        "local got = slurp(out)\n"
        "return st.code, #got, got == spec\n");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 200 * 1024);
        CHECK(lua_toboolean(L, 3));
    }
    lua_close(L);
}

/* Bigger than any pipe we may ask for: the rest goes in from wait()'s polls. */
TEST(spec_of_3m_is_finished_by_polls)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local spec = bytes(3 * 1024 * 1024 + 7)\n"
        "local out = TMP .. '/spec3m'\n"
        "local p = assert(sh('cat <&3 > ' .. out, { spec = spec }))\n"
        "local st = finish(p)\n"
        "local got = slurp(out)\n"
        "return st.code, #got, got == spec\n");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 3 * 1024 * 1024 + 7);
        CHECK(lua_toboolean(L, 3));
    }
    lua_close(L);
}

/* A child that never reads its spec neither blocks start nor SIGPIPEs us. */
TEST(unread_spec_neither_blocks_nor_raises_sigpipe)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('exec 3<&-; exit 0', { spec = bytes(3 * 1024 * 1024) }))\n"
        "return finish(p).code\n");
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_INT(lua_tointeger(L, 1), 0);
    lua_close(L);
}

/* ---- the report pipe --------------------------------------------------- */

TEST(report_of_100k_arrives_without_deadlock)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('yes abcdefghi | head -c 102400 >&4'))\n"
        "local st = finish(p)\n"
        "return st.code, #st.report, st.report == ('abcdefghi\\n'):rep(10240)\n");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 102400);
        CHECK(lua_toboolean(L, 3));
    }
    lua_close(L);
}

TEST(report_beyond_report_max_is_counted_and_dropped)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('head -c 1500 /dev/zero >&4', { report_max = 1000 }))\n"
        "local st = finish(p)\n"
        "return st.code, #st.report, st.report_dropped, #p:report_so_far()\n");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 1000);
        CHECK_EQ_INT(lua_tointeger(L, 3), 500);
        CHECK_EQ_INT(lua_tointeger(L, 4), 1000);
    }
    lua_close(L);
}

TEST(pid_and_report_so_far_while_running)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('echo $$ >&4; printf hello >&4; exec sleep 30'))\n"
        "local want = p:pid() .. '\\nhello'\n"
        "for _ = 1, 4000 do\n"
        "  if p:poll() ~= nil or p:report_so_far() == want then break end\n"
        "  sleep_ms(5)\n"
        "end\n"
        "local so_far, running = p:report_so_far(), p:poll() == nil\n"
        "p:signal('KILL')\n"
        "local st = finish(p)\n"
        "return so_far == want, running, st.signal, st.report == want, type(p:pid())\n");
    CHECK_EQ_INT(n, 5);
    if (n == 5) {
        CHECK(lua_toboolean(L, 1));
        CHECK(lua_toboolean(L, 2));
        CHECK_EQ_INT(lua_tointeger(L, 3), 9);
        CHECK(lua_toboolean(L, 4));
        CHECK_EQ_STR(lua_tostring(L, 5), "number");
    }
    lua_close(L);
}

/* ---- environment, stdin, fds ------------------------------------------- */

TEST(env_pairs_reach_the_child)
{
    setenv("QHOST_TEST_INHERIT", "inherited", 1);
    setenv("QHOST_TEST_OVERRIDE", "old", 1);
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh([[printf '%s|%s|%s|%s|%s|%s|%s|%s|%s' \"$QHOST_X\" "
        "\"$QHOST_TEST_INHERIT\" \"$QHOST_TEST_OVERRIDE\" \"$QHOST_NUM\" "
        "\"$QHOST_SPEC_FD\" \"$QHOST_REPORT_FD\" \"$QHOST_PARENT_PID\" "
        "$(env | grep -c '^QHOST_TEST_OVERRIDE=') $(env | grep -c '^QHOST_PARENT_PID=') >&4]],\n"
        "  { env = { QHOST_X = '1', QHOST_TEST_OVERRIDE = 'new', QHOST_NUM = 42,\n"
        "            QHOST_PARENT_PID = '1' } }))\n"
        "local st = finish(p)\n"
        "return st.code, st.report, getpid()\n");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        char want[256];
        snprintf(want, sizeof want, "1|inherited|new|42|3|4|%d|1|1", (int)lua_tointeger(L, 3));
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_STR(lua_tostring(L, 2), want);
    }
    lua_close(L);
    unsetenv("QHOST_TEST_INHERIT");
    unsetenv("QHOST_TEST_OVERRIDE");
}

TEST(stdin_null_gives_dev_null)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('readlink /proc/$$/fd/0 >&4; cat >&4', { stdin_null = true }))\n"
        "local st = finish(p)\n"
        "return st.code, st.report\n");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_STR(lua_tostring(L, 2), "/dev/null\n");
    }
    lua_close(L);
}

/* A second child sees only 0-4, even with the first child's pipes open and
 * an fd of ours without O_CLOEXEC; our own new fds are all O_CLOEXEC. */
TEST(fds_do_not_leak_into_children)
{
    char before[512], after[512], err[256];
    list_fds(before, sizeof before, 1);
    const char *argv_a[] = { "/bin/sh", "-c", "exec sleep 30", NULL };
    qh_spawn_opts a_opts = { .argv = argv_a, .spec = "x", .spec_len = 1 };
    qh_proc *a = qh_spawn_start(&a_opts, err, sizeof err);
    CHECK(a != NULL);
    list_fds(after, sizeof after, 1);
    CHECK_EQ_STR(after, before);

    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int stray = fcntl(null_fd, F_DUPFD, 20); /* deliberately without O_CLOEXEC */
    close(null_fd);
    CHECK(stray >= 20);
    const char *argv_b[] = { th_self_exe(), "--helper-fds", NULL };
    qh_spawn_opts b_opts = { .argv = argv_b };
    qh_proc *b = qh_spawn_start(&b_opts, err, sizeof err);
    CHECK(b != NULL);
    qh_proc_status st = { 0, 0 };
    if (b) {
        CHECK_EQ_INT(qh_proc_wait(b, 20, &st, err, sizeof err), 1);
        CHECK_EQ_INT(st.code, 0);
        CHECK_EQ_STR(qh_proc_report(b, NULL, NULL), "0 1 2 3 4");
    }
    close(stray);
    if (a) {
        CHECK_EQ_INT(qh_proc_signal(a, SIGKILL, err, sizeof err), 1);
        CHECK_EQ_INT(qh_proc_wait(a, 20, &st, err, sizeof err), 1);
        CHECK_EQ_INT(st.signal, SIGKILL);
    }
    qh_proc_free(a);
    qh_proc_free(b);
}

/* ---- signals and waiting ----------------------------------------------- */

TEST(signal_term_ends_a_sleeping_child)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('exec sleep 30'))\n"
        "local sent = p:signal('TERM')\n"
        "local st = finish(p)\n"
        "return sent, st.signal, st.signame, p:signal('TERM'), p:signal(15)\n");
    CHECK_EQ_INT(n, 5);
    if (n == 5) {
        CHECK(lua_isboolean(L, 1) && lua_toboolean(L, 1));
        CHECK_EQ_INT(lua_tointeger(L, 2), 15);
        CHECK_EQ_STR(lua_tostring(L, 3), "SIGTERM");
        CHECK(lua_isboolean(L, 4) && !lua_toboolean(L, 4));
        CHECK(lua_isboolean(L, 5) && !lua_toboolean(L, 5));
    }
    lua_close(L);
}

TEST(stop_and_cont)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('exec sleep 30'))\n"
        "local stop = p:signal('STOP')\n"
        "local stopped = until_state(p:pid(), 'T')\n"
        "local running_while_stopped = p:poll() == nil\n"
        "local cont = p:signal('SIGCONT')\n"
        "local resumed = until_state(p:pid(), 'S')\n"
        "p:signal('KILL')\n"
        "return stop, stopped, running_while_stopped, cont, resumed, finish(p).signal\n");
    CHECK_EQ_INT(n, 6);
    if (n == 6) {
        CHECK(lua_toboolean(L, 1));
        CHECK_EQ_STR(lua_tostring(L, 2), "T");
        CHECK(lua_toboolean(L, 3));
        CHECK(lua_toboolean(L, 4));
        CHECK_EQ_STR(lua_tostring(L, 5), "S");
        CHECK_EQ_INT(lua_tointeger(L, 6), 9);
    }
    lua_close(L);
}

TEST(wait_with_timeout_returns_nil_while_running)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('exec sleep 30'))\n"
        "local a, b, c = p:wait(0.05), p:wait(0), p:poll()\n"
        "p:signal('KILL')\n"
        "return a == nil, b == nil, c == nil, finish(p).signal\n");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK(lua_toboolean(L, 1));
        CHECK(lua_toboolean(L, 2));
        CHECK(lua_toboolean(L, 3));
        CHECK_EQ_INT(lua_tointeger(L, 4), 9);
    }
    lua_close(L);
}

/* ---- start errors and misuse ------------------------------------------- */

TEST(missing_executable_is_an_error_from_start)
{
    char before[512], all_before[512], after[512];
    list_fds(before, sizeof before, 1);
    list_fds(all_before, sizeof all_before, 0);
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p1, e1 = spawn.start{ argv = { '/nonexistent/qhost', 'run' } }\n"
        "local p2, e2 = spawn.start{ argv = { '/etc/passwd' } }\n"
        "return p1 == nil, e1, p2 == nil, e2\n");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK(lua_toboolean(L, 1));
        CHECK_EQ_STR(lua_tostring(L, 2), "spawn /nonexistent/qhost: No such file or directory");
        CHECK(lua_toboolean(L, 3));
        CHECK_EQ_STR(lua_tostring(L, 4), "spawn /etc/passwd: Permission denied");
    }
    lua_close(L);

    char err[256] = "";
    const char *argv[] = { "/nonexistent/qhost", NULL };
    qh_spawn_opts opts = { .argv = argv, .spec = "abc", .spec_len = 3 };
    CHECK(qh_spawn_start(&opts, err, sizeof err) == NULL);
    CHECK_EQ_STR(err, "spawn /nonexistent/qhost: No such file or directory");
    const char *no_argv[] = { NULL };
    qh_spawn_opts empty = { .argv = no_argv };
    CHECK(qh_spawn_start(&empty, err, sizeof err) == NULL);
    CHECK_EQ_STR(err, "spawn: argv is empty");
    const char *sh_argv[] = { "/bin/sh", "-c", "exit 0", NULL };
    const char *bad_env[] = { "NO_EQUALS_SIGN", NULL };
    qh_spawn_opts bad = { .argv = sh_argv, .env = bad_env };
    CHECK(qh_spawn_start(&bad, err, sizeof err) == NULL);
    CHECK_EQ_STR(err, "spawn: env entry \"NO_EQUALS_SIGN\" is not NAME=value");
    list_fds(after, sizeof after, 1);
    CHECK_EQ_STR(after, before);
    /* The fds of failed starts are closed, not only O_CLOEXEC. */
    list_fds(after, sizeof after, 0);
    CHECK_EQ_STR(after, all_before);
}

TEST(misuse_raises_errors_naming_the_caller_line)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local function err(f, ...) local ok, e = pcall(f, ...); return e end\n"
        "local p = assert(sh('exit 0'))\n"
        "finish(p)\n"
        "return err(function() spawn.start{} end),\n"
        "  err(spawn.start, { argv = { '/bin/sh', {} } }),\n"
        "  err(spawn.start, { argv = { '/bin/sh' }, env = { ['A=B'] = 'x' } }),\n"
        "  err(spawn.start, { argv = { '/bin/sh' }, spec = 5 }),\n"
        "  err(function() p:signal('BOGUS') end),\n"
        "  err(spawn.start, { argv = { '/bin/sh' }, env = { X = true } })\n");
    CHECK_EQ_INT(n, 6);
    if (n == 6) {
        CHECK_EQ_STR(lua_tostring(L, 1), "test:4: spawn.start: argv must be a non-empty list of strings");
        CHECK_EQ_STR(lua_tostring(L, 2), "spawn.start: an argv element must be a string, not table");
        CHECK_EQ_STR(lua_tostring(L, 3), "spawn.start: bad env name \"A=B\"");
        CHECK_EQ_STR(lua_tostring(L, 4), "spawn.start: spec must be a string");
        CHECK_EQ_STR(lua_tostring(L, 5), "test:8: proc:signal: unknown signal \"BOGUS\"");
        CHECK_EQ_STR(lua_tostring(L, 6), "spawn.start: an env value must be a string, not boolean");
    }
    lua_close(L);
}

/* ---- ownership: __gc, free, hostlib tracking --------------------------- */

TEST(gc_leaves_a_running_child_alone)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(sh('exec sleep 30'))\n"
        "local pid = p:pid()\n"
        "p = nil\n"
        "collectgarbage(); collectgarbage()\n"
        "return pid\n");
    CHECK_EQ_INT(n, 1);
    int pid = n == 1 ? (int)lua_tointeger(L, 1) : 0;
    lua_close(L);
    CHECK(pid > 0);
    if (pid <= 0) return;
    CHECK_EQ_INT(kill(pid, 0), 0);
    if (stubs_linked()) CHECK(is_tracked(pid));
    CHECK_EQ_INT(kill(pid, SIGKILL), 0);
    int ws = 0;
    CHECK_EQ_INT(waitpid(pid, &ws, 0), pid);
    CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    stub_untrack(pid);
}

TEST(children_are_tracked_until_reaped)
{
    if (!stubs_linked()) {
        printf("     (skipped: the real hostlib is linked)\n");
        return;
    }
    char err[256];
    const char *argv[] = { "/bin/sh", "-c", "exit 0", NULL };
    qh_spawn_opts opts = { .argv = argv };
    qh_proc *p = qh_spawn_start(&opts, err, sizeof err);
    CHECK(p != NULL);
    if (!p) return;
    int pid = qh_proc_pid(p);
    CHECK(is_tracked(pid));
    qh_proc_status st = { -2, -2 };
    CHECK_EQ_INT(qh_proc_wait(p, 20, &st, err, sizeof err), 1);
    CHECK(!is_tracked(pid));
    CHECK_EQ_INT(st.code, 0);
    CHECK_EQ_INT(st.signal, 0);
    qh_proc_free(p);
    qh_proc_free(NULL);
}

/* share_fd: the child has that fd as its fd 5 and QHOST_SHARE_FD=5; without
 * it, QHOST_SHARE_FD=-1 and fd 5 is closed. The fd is shared, not copied:
 * what the child reads through it is the parent's file. */
static void run_share(int share_fd, char *report, size_t len)
{
    char err[256];
    const char *argv[] = { "/bin/sh", "-c",
        "printf '%s:' \"$QHOST_SHARE_FD\" >&4; "
        "if [ -e /proc/$$/fd/5 ]; then cat <&5 >&4; else printf closed >&4; fi", NULL };
    qh_spawn_opts opts = { .argv = argv, .share_fd = share_fd };
    qh_proc *p = qh_spawn_start(&opts, err, sizeof err);
    report[0] = '\0';
    CHECK(p != NULL);
    if (!p) return;
    qh_proc_status st = { -2, -2 };
    CHECK_EQ_INT(qh_proc_wait(p, 20, &st, err, sizeof err), 1);
    size_t n = 0;
    const char *text = qh_proc_report(p, &n, NULL);
    snprintf(report, len, "%.*s", (int)n, text);
    qh_proc_free(p);
}

TEST(share_fd_reaches_the_child_as_fd_5)
{
    char path[4200], report[256];
    snprintf(path, sizeof path, "%s/shared.txt", tmp_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK_EQ_INT(write(fd, "hello", 5), 5);
    CHECK_EQ_INT(lseek(fd, 0, SEEK_SET), 0);
    /* An fd numbered 5 in the parent too: the dup must still reach the child. */
    int five = dup2(fd, 5);
    CHECK_EQ_INT(five, 5);
    run_share(five, report, sizeof report);
    CHECK_EQ_STR(report, "5:hello");
    CHECK_EQ_INT(lseek(fd, 0, SEEK_SET), 0);
    run_share(fd, report, sizeof report);
    CHECK_EQ_STR(report, "5:hello");
    run_share(0, report, sizeof report);
    CHECK_EQ_STR(report, "-1:closed");
    close(five);
    close(fd);
    unlink(path);
}

TEST(signal_names)
{
    CHECK_EQ_INT(qh_spawn_signum("TERM"), SIGTERM);
    CHECK_EQ_INT(qh_spawn_signum("SIGTERM"), SIGTERM);
    CHECK_EQ_INT(qh_spawn_signum("KILL"), SIGKILL);
    CHECK_EQ_INT(qh_spawn_signum("INT"), SIGINT);
    CHECK_EQ_INT(qh_spawn_signum("STOP"), SIGSTOP);
    CHECK_EQ_INT(qh_spawn_signum("CONT"), SIGCONT);
    CHECK_EQ_INT(qh_spawn_signum("term"), -1);
    CHECK_EQ_INT(qh_spawn_signum("SIG"), -1);
    CHECK_EQ_STR(qh_spawn_signame(SIGKILL), "SIGKILL");
    CHECK_EQ_STR(qh_spawn_signame(SIGSEGV), "SIGSEGV");
    CHECK(qh_spawn_signame(0) == NULL);
    CHECK(qh_spawn_signame(1000) == NULL);
    CHECK(qh_spawn_signame(-1) == NULL);
    /* glibc's names, except 29: SIGIO as Linux and Python call it */
    CHECK_EQ_STR(qh_spawn_signame(SIGIO), "SIGIO");
    CHECK_EQ_INT(qh_spawn_signum("IO"), SIGIO);
    CHECK_EQ_STR(qh_spawn_signame(SIGPWR), "SIGPWR");
    CHECK(qh_spawn_signame(SIGRTMIN) == NULL);
    /* every name reads back as its number */
    for (int sig = 1; sig < NSIG; sig++) {
        const char *name = qh_spawn_signame(sig);
        if (name) CHECK_EQ_INT(qh_spawn_signum(name), sig);
    }
}

/* ---- child side -------------------------------------------------------- */

TEST(child_side_functions_in_a_real_child)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local spec = 'hello\\0world' .. bytes(200 * 1024)\n"
        "local p = assert(spawn.start{ argv = { SELF, '--helper-echo-spec' }, spec = spec })\n"
        "local st = finish(p)\n"
        "return st.code, #st.report, st.report == 'child:' .. spec\n");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 6 + 11 + 200 * 1024);
        CHECK(lua_toboolean(L, 3));
    }
    lua_close(L);
}

/* A held child reads its spec at once (a big one too, finished by polls)
 * but runs only after proc:release(). */
TEST(held_child_gets_its_spec_and_runs_only_when_released)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local spec = 'held\\n' .. bytes(300 * 1024)\n"
        "local p = assert(spawn.start{ argv = { SELF, '--helper-held' }, spec = spec, hold = true })\n"
        "local waited = 0\n"
        "while #p:report_so_far() < 5 + #spec and waited < 4000 do p:poll(); sleep_ms(5); waited = waited + 1 end\n"
        "local echoed = p:report_so_far() == 'spec:' .. spec\n"
        "for _ = 1, 10 do p:poll(); sleep_ms(5) end\n"
        "local still_running = p:poll() == nil\n"
        "assert(p:release())\n"
        "assert(p:release())\n"
        "local st = finish(p)\n"
        "return echoed, still_running, st.code, st.report == 'spec:' .. spec .. ';released'\n");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK(lua_toboolean(L, 1));
        CHECK(lua_toboolean(L, 2));
        CHECK_EQ_INT(lua_tointeger(L, 3), 0);
        CHECK(lua_toboolean(L, 4));
    }
    lua_close(L);
}

/* A held child whose parent lets go of it (the proc collected, its pipes
 * closed) learns that it will never run. */
TEST(held_child_dropped_by_the_parent_is_not_released)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local out = TMP .. '/held.out'\n"
        "local p = assert(spawn.start{ argv = { SELF, '--helper-held', out }, spec = 'x', hold = true })\n"
        "local pid = p:pid()\n"
        "for _ = 1, 4000 do if #p:report_so_far() > 0 then break end p:poll(); sleep_ms(5) end\n"
        "p = nil\n"
        "collectgarbage(); collectgarbage()\n"
        "local text\n"
        "for _ = 1, 4000 do\n"
        "  local f = io.open(out, 'rb')\n"
        "  if f then text = f:read('*a'); f:close() end\n"
        "  if text and text:find('\\n$') then break end\n"
        "  sleep_ms(5)\n"
        "end\n"
        "until_state(pid, 'gone')\n"
        "os.remove(out)\n"
        "return text\n");
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_EQ_STR(lua_tostring(L, 1),
                     "abandoned: the parent closed the spec pipe without releasing this process\n");
    lua_close(L);
}

TEST(child_side_errors_outside_a_child)
{
    unsetenv("QHOST_SPEC_FD");
    unsetenv("QHOST_REPORT_FD");
    unsetenv("QHOST_PARENT_PID");
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local s, e1 = spawn.child_read_spec()\n"
        "local r, e2 = spawn.child_report('x')\n"
        "local w, e3 = spawn.child_watch_parent()\n"
        "return spawn.is_child(), s, e1, r, e2, w, e3\n");
    CHECK_EQ_INT(n, 7);
    if (n == 7) {
        CHECK(lua_isboolean(L, 1) && !lua_toboolean(L, 1));
        CHECK(lua_isnil(L, 2));
        CHECK_EQ_STR(lua_tostring(L, 3), "QHOST_SPEC_FD is not set: not a qhost source process");
        CHECK(lua_isnil(L, 4));
        CHECK_EQ_STR(lua_tostring(L, 5), "QHOST_REPORT_FD is not set: not a qhost source process");
        CHECK(lua_isnil(L, 6));
        CHECK_EQ_STR(lua_tostring(L, 7), "QHOST_PARENT_PID is not set: not a qhost source process");
    }

    setenv("QHOST_SPEC_FD", "abc", 1);
    setenv("QHOST_REPORT_FD", "999", 1);
    n = th_run_n(L,
        "local s, e1 = spawn.child_read_spec()\n"
        "local r, e2 = spawn.child_report('x')\n"
        "return spawn.is_child(), e1, e2\n");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK(lua_toboolean(L, 1));
        CHECK_EQ_STR(lua_tostring(L, 2), "QHOST_SPEC_FD=\"abc\" is not a valid number");
        CHECK_EQ_STR(lua_tostring(L, 3), "writing the report to fd 999: Bad file descriptor");
    }

    /* Real pipes in this process: both directions, and EPIPE without SIGPIPE. */
    int spec_pipe[2], report_pipe[2];
    CHECK_EQ_INT(pipe(spec_pipe), 0);
    CHECK_EQ_INT(pipe(report_pipe), 0);
    CHECK_EQ_INT(write(spec_pipe[1], "spec\0!", 6), 6);
    close(spec_pipe[1]);
    char num[32];
    snprintf(num, sizeof num, "%d", spec_pipe[0]);
    setenv("QHOST_SPEC_FD", num, 1);
    snprintf(num, sizeof num, "%d", report_pipe[1]);
    setenv("QHOST_REPORT_FD", num, 1);
    n = th_run_n(L, "return spawn.child_read_spec(), spawn.child_report('abc')\n");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        size_t len = 0;
        const char *s = lua_tolstring(L, 1, &len);
        CHECK_EQ_INT(len, 6);
        CHECK(s && memcmp(s, "spec\0!", 6) == 0);
        CHECK(lua_isboolean(L, 2) && lua_toboolean(L, 2));
    }
    CHECK_EQ_INT(fcntl(spec_pipe[0], F_GETFD), -1); /* closed by child_read_spec */
    char got[8] = "";
    CHECK_EQ_INT(read(report_pipe[0], got, sizeof got - 1), 3);
    CHECK_EQ_STR(got, "abc");
    close(report_pipe[0]);
    n = th_run_n(L, "return spawn.child_report('abc')\n");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        char want[96];
        snprintf(want, sizeof want, "writing the report to fd %d: Broken pipe", report_pipe[1]);
        CHECK(lua_isnil(L, 1));
        CHECK_EQ_STR(lua_tostring(L, 2), want);
    }
    close(report_pipe[1]);
    lua_close(L);
    unsetenv("QHOST_SPEC_FD");
    unsetenv("QHOST_REPORT_FD");
}

/* QHOST_PARENT_PID that is not our parent: the parent "already died", so
 * child_watch_parent raises SIGTERM at once. */
TEST(watch_parent_when_the_parent_is_already_gone)
{
    lua_State *L = new_lua();
    int n = th_run_n(L,
        "local p = assert(spawn.start{ argv = { SELF, '--helper-watch-stale' } })\n"
        "local st = finish(p)\n"
        "return st.signal, st.signame, st.report\n");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lua_tointeger(L, 1), SIGTERM);
        CHECK_EQ_STR(lua_tostring(L, 2), "SIGTERM");
        CHECK_EQ_STR(lua_tostring(L, 3), "");
    }
    lua_close(L);
}

/* We spawn a middle process, which spawns a watcher (child_watch_parent, then
 * sleeps). SIGKILL the middle one: the watcher must get SIGTERM. We become a
 * subreaper for the test so the orphan is ours to reap and inspect. */
TEST(watch_parent_kills_the_orphan_of_a_sigkilled_parent)
{
    CHECK_EQ_INT(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    char err[256];
    const char *argv[] = { th_self_exe(), "--helper-mid", NULL };
    qh_spawn_opts opts = { .argv = argv };
    qh_proc *mid = qh_spawn_start(&opts, err, sizeof err);
    CHECK(mid != NULL);
    if (!mid) goto out;
    qh_proc_status st = { 0, 0 };
    /* until it reported the grandchild's pid (or ended) */
    (void)TH_WAIT_UNTIL(qh_proc_poll(mid, &st, err, sizeof err) != 0 ||
                        strchr(qh_proc_report(mid, NULL, NULL), '\n'), 20000);
    const char *report = qh_proc_report(mid, NULL, NULL);
    int grandchild = atoi(report);
    CHECK(grandchild > 0);
    CHECK_EQ_INT(qh_proc_signal(mid, SIGKILL, err, sizeof err), 1);
    CHECK_EQ_INT(qh_proc_wait(mid, 20, &st, err, sizeof err), 1);
    CHECK_EQ_INT(st.signal, SIGKILL);
    qh_proc_free(mid);
    if (grandchild <= 0) goto out;
    int ws = th_wait_child(grandchild, 20000);
    CHECK(ws != -1 && WIFSIGNALED(ws));
    CHECK_EQ_INT(ws != -1 && WIFSIGNALED(ws) ? WTERMSIG(ws) : -1, SIGTERM);
out:
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

/* ---- helper modes: this binary re-run as a child ----------------------- */

static int helper_report(const char *text)
{
    char err[256];
    if (qh_spawn_child_report(text, strlen(text), err, sizeof err) == 0) return 0;
    fprintf(stderr, "helper: %s\n", err);
    return 1;
}

/* Runs Lua code in a fresh state; 0 on success. */
static int helper_lua(const char *code)
{
    lua_State *L = new_lua();
    if (!L) return 1;
    int rc = th_run_n(L, code);
    lua_close(L);
    return rc < 0;
}

__attribute__((noreturn)) static void pause_forever(void)
{
    alarm(60); /* never outlive a broken test run by much */
    for (;;) pause();
}

static const char *argv_path;  /* a helper's optional second argument */

static int helper(const char *mode)
{
    if (strcmp(mode, "fds") == 0) {
        char list[512]; /* our fds, as the spawner left them */
        list_fds(list, sizeof list, 0);
        return helper_report(list);
    }
    if (strcmp(mode, "echo-spec") == 0)
        return helper_lua(
            "local s = assert(spawn.child_read_spec())\n"
            "assert(spawn.child_wait_release(0) == true)\n" /* never held */
            "assert(spawn.child_report((spawn.is_child() and 'child:' or 'parent:') .. s))\n");
    if (strcmp(mode, "held") == 0) {
        /* Echoes the spec, waits for the release; reports how it ended, or
         * writes it to the file named after the mode (the report pipe is
         * gone with a parent that dropped us). */
        const char *setup = argv_path ? "OUT = [[" : "OUT = nil --[[";
        char code[4096];
        snprintf(code, sizeof code,
                 "%s%s]]\n"
                 "local s = assert(spawn.child_read_spec())\n"
                 "assert(spawn.child_report('spec:' .. s))\n"
                 "local r, err\n"
                 "repeat r, err = spawn.child_wait_release(0.05) until r ~= false\n"
                 "local how = r and ';released' or 'abandoned: ' .. err .. '\\n'\n"
                 "if OUT then local f = assert(io.open(OUT, 'wb')); f:write(how); f:close()\n"
                 "else assert(spawn.child_report(how)) end\n",
                 setup, argv_path ? argv_path : "");
        return helper_lua(code);
    }
    if (strcmp(mode, "watch") == 0) {
        if (helper_lua("assert(spawn.child_watch_parent())\n"
                       "assert(spawn.child_report('ready\\n'))\n") != 0)
            return 1;
        pause_forever();
    }
    if (strcmp(mode, "watch-stale") == 0) {
        char wrong[32];
        snprintf(wrong, sizeof wrong, "%ld", (long)getppid() + 1);
        setenv("QHOST_PARENT_PID", wrong, 1);
        if (helper_lua("assert(spawn.child_watch_parent())\n") != 0) return 1;
        th_sleep_ms(2000); /* a raised SIGTERM is delivered before raise returns */
        return helper_report("survived");
    }
    if (strcmp(mode, "mid") == 0) {
        char err[256];
        const char *argv[] = { th_self_exe(), "--helper-watch", NULL };
        qh_spawn_opts opts = { .argv = argv };
        qh_proc *watcher = qh_spawn_start(&opts, err, sizeof err);
        if (!watcher) {
            fprintf(stderr, "helper mid: %s\n", err);
            return 1;
        }
        qh_proc_status st;
        for (int i = 0; i < 4000; i++) {
            if (qh_proc_poll(watcher, &st, err, sizeof err) != 0) return 1;
            if (strcmp(qh_proc_report(watcher, NULL, NULL), "ready\n") == 0) break;
            th_sleep_ms(5);
        }
        char line[32];
        snprintf(line, sizeof line, "%d\n", qh_proc_pid(watcher));
        if (helper_report(line) != 0) return 1;
        pause_forever();
    }
    fprintf(stderr, "unknown helper mode %s\n", mode);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strncmp(argv[1], "--helper-", 9) == 0) {
        check_current_name = argv[1];
        argv_path = argc >= 3 ? argv[2] : NULL;
        return helper(argv[1] + 9);
    }
    if (!(tmp_dir = th_tmpdir("spawn"))) return 1;

    RUN(exit_codes_zero_and_three);
    RUN(sigkill_is_reported_by_number_and_name);
    RUN(poll_returns_the_same_table_after_exit);
    RUN(spec_of_200k_arrives_intact);
    RUN(spec_of_3m_is_finished_by_polls);
    RUN(unread_spec_neither_blocks_nor_raises_sigpipe);
    RUN(report_of_100k_arrives_without_deadlock);
    RUN(report_beyond_report_max_is_counted_and_dropped);
    RUN(pid_and_report_so_far_while_running);
    RUN(env_pairs_reach_the_child);
    RUN(stdin_null_gives_dev_null);
    RUN(fds_do_not_leak_into_children);
    RUN(signal_term_ends_a_sleeping_child);
    RUN(stop_and_cont);
    RUN(wait_with_timeout_returns_nil_while_running);
    RUN(missing_executable_is_an_error_from_start);
    RUN(misuse_raises_errors_naming_the_caller_line);
    RUN(gc_leaves_a_running_child_alone);
    RUN(children_are_tracked_until_reaped);
    RUN(signal_names);
    RUN(share_fd_reaches_the_child_as_fd_5);
    RUN(child_side_functions_in_a_real_child);
    RUN(held_child_gets_its_spec_and_runs_only_when_released);
    RUN(held_child_dropped_by_the_parent_is_not_released);
    RUN(child_side_errors_outside_a_child);
    RUN(watch_parent_when_the_parent_is_already_gone);
    RUN(watch_parent_kills_the_orphan_of_a_sigkilled_parent);

    th_remove_tree(tmp_dir);
    return check_summary();
}
