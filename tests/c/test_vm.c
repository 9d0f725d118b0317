/* test_vm.c: tests of host/vm.c: finding the Lua root (qh_vm_locate), new
 * states (qh_vm_new), the protected-call helper (qh_vm_pcall) and scripts
 * (qh_vm_run_script). The root search depends on where the binary is, so
 * it is tested on copies of this binary in made-up layouts under a temp
 * folder, each run as `--helper-locate`; every check is on an exact value.
 *
 * The Lua root for the in-process tests is the checkout this binary was
 * built in (th_repo_root); the working directory does not matter. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"
#include "kafka.h"
#include "vm.h"

static const char *tmp_dir;  /* th_tmpdir("vm"), made by main */

/* tmp_dir/rel in out (PATH_MAX bytes); returns out. */
static char *tmp_path(char *out, const char *rel)
{
    snprintf(out, PATH_MAX, "%s/%s", tmp_dir, rel);
    return out;
}

/* mkdir -p of tmp_dir/rel. */
static int make_dirs(const char *rel)
{
    char path[PATH_MAX];
    return th_make_dirs(tmp_path(path, rel));
}

/* Writes text to tmp_dir/rel (folders made as needed); 0 or -1. */
static int write_text(const char *rel, const char *text)
{
    char path[PATH_MAX];
    return th_write_file(tmp_path(path, rel), text, strlen(text), 0644);
}

/* Copies this binary to tmp_dir/rel, executable. */
static int copy_self(const char *rel)
{
    char path[PATH_MAX];
    size_t len = 0;
    char *bin = th_read_file(th_self_exe(), &len);
    if (!bin) return -1;
    int rc = th_write_file(tmp_path(path, rel), bin, len, 0755);
    free(bin);
    return rc;
}

/* Runs tmp_dir/rel --helper-locate with QHOST_ROOT set to env_root (unset
 * when NULL); its one output line goes to out. Returns its exit code, -1
 * if it could not be run or hung (20 s). */
static int run_locate(const char *rel, const char *env_root, char *out, size_t outlen)
{
    char exe[PATH_MAX];
    int fds[2];
    tmp_path(exe, rel);
    out[0] = '\0';
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        close(fds[1]);
        if (env_root) setenv("QHOST_ROOT", env_root, 1);
        else unsetenv("QHOST_ROOT");
        execl(exe, exe, "--helper-locate", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while ((n = read(fds[0], out + used, outlen - 1 - used)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) used += (size_t)n;
    out[used] = '\0';
    close(fds[0]);
    int status = th_wait_child(pid, 20000);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The helper: "0 <root> <exe>" or "-1 <err>" on stdout. */
static int helper_locate(void)
{
    qh_paths paths;
    char err[1024];
    if (qh_vm_locate(&paths, err, sizeof err) == 0) {
        printf("0 %s %s", paths.root, paths.exe);
        fflush(stdout);
        _exit(0);   /* the copies may be ASan builds: nothing to report here */
    }
    printf("-1 %s", err);
    fflush(stdout);
    _exit(3);
}

static void realpath_of(const char *rel, char *out)
{
    char path[PATH_MAX];
    if (!realpath(tmp_path(path, rel), out)) snprintf(out, PATH_MAX, "(missing)");
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static int starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- qh_vm_locate ------------------------------------------------------ */

TEST(locate_with_qhost_root)
{
    qh_paths paths;
    char err[1024] = "";
    memset(&paths, 0, sizeof paths);
    setenv("QHOST_ROOT", th_repo_root(), 1);
    CHECK_EQ_INT(qh_vm_locate(&paths, err, sizeof err), 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_STR(paths.exe, th_self_exe());
    CHECK_EQ_STR(paths.root, th_repo_root());
    CHECK_EQ_STR(qh_vm_paths()->exe, th_self_exe());
    CHECK_EQ_STR(qh_vm_paths()->root, th_repo_root());
}

TEST(locate_error_when_qhost_root_has_no_library)
{
    qh_paths paths;
    char err[1024] = "", want[PATH_MAX + 200];
    char empty[PATH_MAX];
    snprintf(empty, sizeof empty, "%s/empty-root", tmp_dir);
    CHECK_EQ_INT(make_dirs("empty-root"), 0);
    setenv("QHOST_ROOT", empty, 1);
    CHECK_EQ_INT(qh_vm_locate(&paths, err, sizeof err), -1);
    snprintf(want, sizeof want, "QHOST_ROOT=%s has no lua/qhost/init.lua", empty);
    CHECK_EQ_STR(err, want);
    /* A failed search leaves the paths of the last success in place. */
    CHECK_EQ_STR(qh_vm_paths()->root, th_repo_root());
    setenv("QHOST_ROOT", th_repo_root(), 1);
}

/* <prefix>/build/<bin> beside <prefix>/lua: the binary's parent. */
TEST(locate_checkout_build_folder)
{
    char out[8192], want[PATH_MAX * 3], root[PATH_MAX], exe[PATH_MAX];
    CHECK_EQ_INT(write_text("co1/lua/qhost/init.lua", "return {}\n"), 0);
    CHECK_EQ_INT(copy_self("co1/build/qhost"), 0);
    realpath_of("co1", root);
    realpath_of("co1/build/qhost", exe);
    snprintf(want, sizeof want, "0 %s %s", root, exe);
    CHECK_EQ_INT(run_locate("co1/build/qhost", NULL, out, sizeof out), 0);
    CHECK_EQ_STR(out, want);
    /* An empty QHOST_ROOT is no override. */
    CHECK_EQ_INT(run_locate("co1/build/qhost", "", out, sizeof out), 0);
    CHECK_EQ_STR(out, want);
}

/* <prefix>/build/san/<bin> or build/tests/<bin>: two levels up. */
TEST(locate_checkout_two_levels_up)
{
    char out[8192], want[PATH_MAX * 3], root[PATH_MAX], exe[PATH_MAX];
    CHECK_EQ_INT(write_text("co2/lua/qhost/init.lua", "return {}\n"), 0);
    CHECK_EQ_INT(copy_self("co2/build/tests/test_vm"), 0);
    realpath_of("co2", root);
    realpath_of("co2/build/tests/test_vm", exe);
    snprintf(want, sizeof want, "0 %s %s", root, exe);
    CHECK_EQ_INT(run_locate("co2/build/tests/test_vm", NULL, out, sizeof out), 0);
    CHECK_EQ_STR(out, want);
}

/* <prefix>/bin/qhost with <prefix>/share/qhost/lua: an install. */
TEST(locate_installed_share_qhost)
{
    char out[8192], want[PATH_MAX * 3], root[PATH_MAX], exe[PATH_MAX];
    CHECK_EQ_INT(write_text("inst/share/qhost/lua/qhost/init.lua", "return {}\n"), 0);
    CHECK_EQ_INT(copy_self("inst/bin/qhost"), 0);
    realpath_of("inst/share/qhost", root);
    realpath_of("inst/bin/qhost", exe);
    snprintf(want, sizeof want, "0 %s %s", root, exe);
    CHECK_EQ_INT(run_locate("inst/bin/qhost", NULL, out, sizeof out), 0);
    CHECK_EQ_STR(out, want);
    /* QHOST_ROOT wins over what the search would find, and is kept as given. */
    snprintf(want, sizeof want, "0 %s %s", th_repo_root(), exe);
    CHECK_EQ_INT(run_locate("inst/bin/qhost", th_repo_root(), out, sizeof out), 0);
    CHECK_EQ_STR(out, want);
}

TEST(locate_error_names_the_binary)
{
    char out[8192], want[PATH_MAX * 3], exe[PATH_MAX];
    CHECK_EQ_INT(copy_self("none/bin/qhost"), 0);
    realpath_of("none/bin/qhost", exe);
    snprintf(want, sizeof want, "-1 cannot find the qhost Lua library (lua/qhost/init.lua) near %s; "
             "set QHOST_ROOT", exe);
    CHECK_EQ_INT(run_locate("none/bin/qhost", NULL, out, sizeof out), 3);
    CHECK_EQ_STR(out, want);
}

/* ---- qh_vm_new --------------------------------------------------------- */

TEST(new_state_requires_every_host_module)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    CHECK(L != NULL);
    if (!L) return;
    int n = th_run_n(L,
        "local host = require 'qhost.host'\n"
        "local codec = require 'qhost.codec'\n"
        "local kafka = require 'qhost.kafka'\n"
        "local spawn = require 'qhost.spawn'\n"
        "local csv = require 'qhost.csvreader'\n"
        "return host.version, host.mode, host.root,\n"
        "  codec.json_encode({ 1, 'a' }),\n"
        "  kafka.librdkafka_version, type(kafka.producer), type(kafka.mock_cluster),\n"
        "  type(spawn.start), type(csv.open),\n"
        "  rawequal(host, require 'qhost.host'), rawequal(kafka, package.loaded['qhost.kafka']),\n"
        "  type(require('qhost.runtime.json_at').json_decode_at)");
    CHECK_EQ_INT(n, 12);
    if (n == 12) {
        CHECK_EQ_STR(lua_tostring(L, 1), "0.1.0");
        CHECK_EQ_STR(lua_tostring(L, 2), "run");
        CHECK_EQ_STR(lua_tostring(L, 3), th_repo_root());
        CHECK_EQ_STR(lua_tostring(L, 4), "[1,\"a\"]");
        CHECK_EQ_STR(lua_tostring(L, 5), "2.0.2");
        CHECK_EQ_STR(lua_tostring(L, 6), "function");
        CHECK_EQ_STR(lua_tostring(L, 7), "function");
        CHECK_EQ_STR(lua_tostring(L, 8), "function");
        CHECK_EQ_STR(lua_tostring(L, 9), "function");
        CHECK(lua_toboolean(L, 10));
        CHECK(lua_toboolean(L, 11));
        CHECK_EQ_STR(lua_tostring(L, 12), "function");  /* the run loop's, internal */
    }
    qh_vm_close(L);
}

TEST(new_state_requires_the_full_library)
{
    lua_State *L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    CHECK(L != NULL);
    if (!L) return;
    int n = th_run_n(L,
        "local qhost = require 'qhost'\n"
        "return qhost.version, type(qhost.Application), type(qhost.TopicConfig),\n"
        "  qhost.json.encode({ a = 1 }), type(qhost.sources), require('qhost.host').mode,\n"
        "  package.searchpath('qhost.app', package.path)");
    CHECK_EQ_INT(n, 7);
    if (n == 7) {
        char want[PATH_MAX + 64];
        CHECK_EQ_STR(lua_tostring(L, 1), "0.1.0");
        CHECK(lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "nil") != 0);
        CHECK(lua_type(L, 3) == LUA_TSTRING && strcmp(lua_tostring(L, 3), "nil") != 0);
        CHECK_EQ_STR(lua_tostring(L, 4), "{\"a\":1}");
        CHECK_EQ_STR(lua_tostring(L, 5), "table");
        CHECK_EQ_STR(lua_tostring(L, 6), "lua");
        snprintf(want, sizeof want, "%s/lua/qhost/app.lua", th_repo_root());
        CHECK_EQ_STR(lua_tostring(L, 7), want);
    }
    qh_vm_close(L);
}

/* lua/qhost/ffi.lua declares qh_msg and the qh_ffi_* functions again for
 * LuaJIT's FFI: the layout must be host/kafka.h's, and every function must
 * resolve in the binary (exported with -rdynamic). */
TEST(ffi_declarations_match_the_host)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    int n = th_run_n(L,
        "local ffi = require 'ffi'\n"
        "local C = require 'qhost.kafka.ffi'\n"
        "local names = { 'qh_ffi_consumer_poll', 'qh_ffi_msg_header', 'qh_ffi_msg_errstr',\n"
        "  'qh_ffi_produce', 'qh_ffi_producer_errstr', 'qh_ffi_producer_poll',\n"
        "  'qh_ffi_producer_take_failures', 'qh_ffi_producer_failures', 'qh_ffi_stop_requested' }\n"
        "local resolved = 0\n"
        "for _, name in ipairs(names) do\n"
        "  if pcall(function() return C[name] end) then resolved = resolved + 1 end\n"
        "end\n"
        "local o = function(f) return ffi.offsetof('qh_msg', f) end\n"
        "return resolved, ffi.sizeof('qh_msg'), o('topic'), o('key'), o('value'), o('key_len'),\n"
        "  o('value_len'), o('offset'), o('timestamp'), o('partition'), o('timestamp_type'),\n"
        "  o('err'), o('header_count')");
    CHECK_EQ_INT(n, 13);
    if (n == 13) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 9);
        CHECK_EQ_INT(lua_tointeger(L, 2), sizeof(qh_msg));
        CHECK_EQ_INT(lua_tointeger(L, 3), offsetof(qh_msg, topic));
        CHECK_EQ_INT(lua_tointeger(L, 4), offsetof(qh_msg, key));
        CHECK_EQ_INT(lua_tointeger(L, 5), offsetof(qh_msg, value));
        CHECK_EQ_INT(lua_tointeger(L, 6), offsetof(qh_msg, key_len));
        CHECK_EQ_INT(lua_tointeger(L, 7), offsetof(qh_msg, value_len));
        CHECK_EQ_INT(lua_tointeger(L, 8), offsetof(qh_msg, offset));
        CHECK_EQ_INT(lua_tointeger(L, 9), offsetof(qh_msg, timestamp));
        CHECK_EQ_INT(lua_tointeger(L, 10), offsetof(qh_msg, partition));
        CHECK_EQ_INT(lua_tointeger(L, 11), offsetof(qh_msg, timestamp_type));
        CHECK_EQ_INT(lua_tointeger(L, 12), offsetof(qh_msg, err));
        CHECK_EQ_INT(lua_tointeger(L, 13), offsetof(qh_msg, header_count));
    }
    qh_vm_close(L);
}

/* Our folders come first on package.path, so `require "qhost"` never finds
 * another copy. */
TEST(new_state_puts_the_root_first_on_package_path)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    char want[3 * PATH_MAX];
    snprintf(want, sizeof want, "%s/lua/?.lua;%s/lua/?/init.lua;", th_repo_root(), th_repo_root());
    int n = th_run_n(L, "return package.path");
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK(starts_with(lua_tostring(L, 1), want));
    qh_vm_close(L);
}

/* No global Lua state leaks between states (one per pipeline). */
TEST(states_are_independent)
{
    lua_State *a = qh_vm_new("run", QH_VM_LUAJIT_MEMORY), *b = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    int n = th_run_n(a, "leak = 1; require('qhost.host').extra = 2; return true");
    CHECK_EQ_INT(n, 1);
    n = th_run_n(b, "return leak == nil, require('qhost.host').extra == nil");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK(lua_toboolean(b, 1));
        CHECK(lua_toboolean(b, 2));
    }
    qh_vm_close(a);
    qh_vm_close(b);
}

/* ---- qh_vm_pcall ------------------------------------------------------- */

static int load(lua_State *L, const char *code)
{
    return luaL_loadbuffer(L, code, strlen(code), "=t");
}

TEST(pcall_success_keeps_the_stack)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    lua_pushstring(L, "below");
    CHECK_EQ_INT(load(L, "local a, b = ...; return a + b, a * b, 'x'"), 0);
    lua_pushinteger(L, 3);
    lua_pushinteger(L, 4);
    CHECK_EQ_INT(qh_vm_pcall(L, 2, LUA_MULTRET), 0);
    CHECK_EQ_INT(lua_gettop(L), 4);
    CHECK_EQ_STR(lua_tostring(L, 1), "below");
    CHECK_EQ_INT(lua_tointeger(L, 2), 7);
    CHECK_EQ_INT(lua_tointeger(L, 3), 12);
    CHECK_EQ_STR(lua_tostring(L, 4), "x");

    lua_settop(L, 1);
    CHECK_EQ_INT(load(L, "return 1, 2, 3"), 0);
    CHECK_EQ_INT(qh_vm_pcall(L, 0, 1), 0);
    CHECK_EQ_INT(lua_gettop(L), 2);
    CHECK_EQ_INT(lua_tointeger(L, 2), 1);
    qh_vm_close(L);
}

TEST(pcall_error_is_message_then_traceback)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    lua_pushstring(L, "below");
    CHECK_EQ_INT(load(L, "local function inner() error('boom') end\ninner()"), 0);
    CHECK_EQ_INT(qh_vm_pcall(L, 0, 0), LUA_ERRRUN);
    CHECK_EQ_INT(lua_gettop(L), 2);
    CHECK_EQ_STR(lua_tostring(L, 1), "below");
    const char *msg = lua_tostring(L, 2);
    CHECK(starts_with(msg, "t:1: boom\nstack traceback:\n"));
    CHECK_EQ_INT(count_of(msg, "stack traceback:"), 1);
    CHECK(strstr(msg, "\n\tt:1: in function 'inner'") != NULL);
    CHECK(strstr(msg, "\n\tt:2: in main chunk") != NULL);
    qh_vm_close(L);
}

TEST(pcall_runtime_error_has_the_line)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    CHECK_EQ_INT(load(L, "local t = nil\nreturn t.field"), 0);
    CHECK_EQ_INT(qh_vm_pcall(L, 0, 0), LUA_ERRRUN);
    CHECK_EQ_INT(lua_gettop(L), 1);
    CHECK(starts_with(lua_tostring(L, 1),
                      "t:2: attempt to index local 't' (a nil value)\nstack traceback:\n"));
    qh_vm_close(L);
}

TEST(pcall_non_string_errors_become_strings)
{
    static const struct { const char *code, *prefix; } cases[] = {
        { "error({})", "(error object is a table value)\nstack traceback:\n" },
        { "error(true)", "(error object is a boolean value)\nstack traceback:\n" },
        { "error(42)", "t:1: 42\nstack traceback:\n" },
        { "error(setmetatable({}, { __tostring = function() return 'custom' end }))",
          "custom\nstack traceback:\n" },
        { "error(setmetatable({}, { __tostring = function() return {} end }))",
          "(error object is a table value)\nstack traceback:\n" },
    };
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lua_settop(L, 0);
        CHECK_EQ_INT(load(L, cases[i].code), 0);
        CHECK_EQ_INT(qh_vm_pcall(L, 0, 0), LUA_ERRRUN);
        CHECK_EQ_INT(lua_gettop(L), 1);
        CHECK_EQ_INT(lua_type(L, 1), LUA_TSTRING);
        const char *msg = lua_tostring(L, 1);
        if (!starts_with(msg, cases[i].prefix)) {
            fprintf(stderr, "%s: %s gave: %s\n", check_current_name, cases[i].code,
                    msg ? msg : "(not a string)");
            check_current_ok = 0;
        }
        CHECK_EQ_INT(count_of(msg, "stack traceback:"), 1);
    }
    qh_vm_close(L);
}

/* error() with no message stays nil: a script asking to exit non-zero after
 * reporting its own failure (busted), which main reports in one line. */
TEST(pcall_nil_error_stays_nil)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    CHECK_EQ_INT(load(L, "error()"), 0);
    CHECK_EQ_INT(qh_vm_pcall(L, 0, 0), LUA_ERRRUN);
    CHECK_EQ_INT(lua_gettop(L), 1);
    CHECK(lua_isnil(L, 1));
    qh_vm_close(L);
}

/* A __tostring that raises inside the message handler: Lua reports that
 * as an error in error handling, still one string on the stack. */
TEST(pcall_error_in_the_handler)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    CHECK_EQ_INT(load(L, "error(setmetatable({}, { __tostring = function() error('again') end }))"), 0);
    int rc = qh_vm_pcall(L, 0, 0);
    CHECK_EQ_INT(rc, LUA_ERRERR);
    CHECK_EQ_INT(lua_gettop(L), 1);
    CHECK_EQ_STR(lua_tostring(L, 1), "error in error handling");
    qh_vm_close(L);
}

/* A C function running its argument through qh_vm_pcall and re-raising
 * the failure: how host code nests protected calls. */
static int l_nested(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    if (qh_vm_pcall(L, 0, 0) != 0) {
        lua_pushvalue(L, -1);
        lua_setglobal(L, "inner_message");
        return lua_error(L);
    }
    return 0;
}

TEST(pcall_adds_no_second_traceback)
{
    lua_State *L = qh_vm_new("run", QH_VM_LUAJIT_MEMORY);
    lua_register(L, "nested", l_nested);

    lua_settop(L, 0);
    CHECK_EQ_INT(load(L, "nested(function() error('deep') end)"), 0);
    CHECK_EQ_INT(qh_vm_pcall(L, 0, 0), LUA_ERRRUN);
    const char *msg = lua_tostring(L, -1);
    lua_getglobal(L, "inner_message");
    CHECK_EQ_STR(msg, lua_tostring(L, -1));
    CHECK(starts_with(msg, "t:1: deep\nstack traceback:\n"));
    CHECK_EQ_INT(count_of(msg, "stack traceback:"), 1);

    /* The same for a traceback made in Lua and raised again as it is. */
    lua_settop(L, 0);
    CHECK_EQ_INT(load(L, "local ok, e = xpcall(function() error('lua side') end, debug.traceback)\n"
                         "inner_message = e\n"
                         "error(e, 0)"), 0);
    CHECK_EQ_INT(qh_vm_pcall(L, 0, 0), LUA_ERRRUN);
    msg = lua_tostring(L, -1);
    lua_getglobal(L, "inner_message");
    CHECK_EQ_STR(msg, lua_tostring(L, -1));
    CHECK(starts_with(msg, "t:1: lua side\nstack traceback:\n"));
    CHECK_EQ_INT(count_of(msg, "stack traceback:"), 1);

    /* Only a traceback on its own line counts as one. */
    lua_settop(L, 0);
    CHECK_EQ_INT(load(L, "error('stack traceback: is just text here', 0)"), 0);
    CHECK_EQ_INT(qh_vm_pcall(L, 0, 0), LUA_ERRRUN);
    msg = lua_tostring(L, -1);
    CHECK(starts_with(msg, "stack traceback: is just text here\nstack traceback:\n"));
    CHECK_EQ_INT(count_of(msg, "stack traceback:"), 2);
    qh_vm_close(L);
}

/* ---- qh_vm_run_script -------------------------------------------------- */

static const char arg_script[] =
    "got = { n = select('#', ...), ... }\n"
    "arg_n, arg0, arg_neg = #arg, arg[0], arg[-1]\n";

TEST(run_script_sets_arg_and_varargs)
{
    char script[PATH_MAX];
    snprintf(script, sizeof script, "%s/args.lua", tmp_dir);
    CHECK_EQ_INT(write_text("args.lua", arg_script), 0);
    lua_State *L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    char *argv[] = { "first", "two words", "", "4" };
    CHECK_EQ_INT(qh_vm_run_script(L, script, 4, argv), 0);
    CHECK_EQ_INT(lua_gettop(L), 0);
    int n = th_run_n(L, "return got.n, table.concat(got, '|'), arg_n, arg0, arg_neg == nil,\n"
                   "  table.concat(arg, '|'), arg[0] == got[0]");
    CHECK_EQ_INT(n, 7);
    if (n == 7) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 4);
        CHECK_EQ_STR(lua_tostring(L, 2), "first|two words||4");
        CHECK_EQ_INT(lua_tointeger(L, 3), 4);
        CHECK_EQ_STR(lua_tostring(L, 4), script);
        CHECK(lua_toboolean(L, 5));
        CHECK_EQ_STR(lua_tostring(L, 6), "first|two words||4");
    }
    qh_vm_close(L);

    L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    CHECK_EQ_INT(qh_vm_run_script(L, script, 0, NULL), 0);
    n = th_run_n(L, "return got.n, arg_n, arg0");
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(lua_tointeger(L, 1), 0);
        CHECK_EQ_INT(lua_tointeger(L, 2), 0);
        CHECK_EQ_STR(lua_tostring(L, 3), script);
    }
    qh_vm_close(L);
}

TEST(run_script_syntax_error)
{
    char script[PATH_MAX], want[PATH_MAX + 64];
    snprintf(script, sizeof script, "%s/syntax.lua", tmp_dir);
    CHECK_EQ_INT(write_text("syntax.lua", "local x = 1\nx = = 2\n"), 0);
    lua_State *L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    CHECK(qh_vm_run_script(L, script, 0, NULL) != 0);
    CHECK_EQ_INT(lua_gettop(L), 1);
    snprintf(want, sizeof want, "%s:2: unexpected symbol near '='", script);
    CHECK_EQ_STR(lua_tostring(L, 1), want);
    qh_vm_close(L);
}

TEST(run_script_missing_file)
{
    char script[PATH_MAX], want[PATH_MAX + 64];
    snprintf(script, sizeof script, "%s/no-such-script.lua", tmp_dir);
    lua_State *L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    char *argv[] = { "x" };
    CHECK(qh_vm_run_script(L, script, 1, argv) != 0);
    CHECK_EQ_INT(lua_gettop(L), 1);
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", script);
    CHECK_EQ_STR(lua_tostring(L, 1), want);
    /* arg is set before the load, as the standalone interpreter does. */
    int n = th_run_n(L, "return arg[0], arg[1]");
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(lua_tostring(L, 1), script);
        CHECK_EQ_STR(lua_tostring(L, 2), "x");
    }
    qh_vm_close(L);
}

TEST(run_script_runtime_error_has_the_traceback)
{
    char script[PATH_MAX], want[PATH_MAX + 64];
    snprintf(script, sizeof script, "%s/fails.lua", tmp_dir);
    CHECK_EQ_INT(write_text("fails.lua", "local n = ...\nerror('failed with ' .. n)\n"), 0);
    lua_State *L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    lua_settop(L, 0);
    char *argv[] = { "7" };
    CHECK(qh_vm_run_script(L, script, 1, argv) != 0);
    CHECK_EQ_INT(lua_gettop(L), 1);
    snprintf(want, sizeof want, "%s:2: failed with 7\nstack traceback:\n", script);
    CHECK(starts_with(lua_tostring(L, 1), want));
    CHECK_EQ_INT(count_of(lua_tostring(L, 1), "stack traceback:"), 1);
    qh_vm_close(L);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--helper-locate") == 0) return helper_locate();
    if (!th_repo_root()) {
        fprintf(stderr, "no checkout (lua/qhost/init.lua, tests/c/check.h) above %s\n", th_self_exe());
        return 1;
    }
    if (!(tmp_dir = th_tmpdir("vm"))) return 1;

    RUN(locate_with_qhost_root);   /* first: the others need the paths */
    RUN(locate_error_when_qhost_root_has_no_library);
    RUN(locate_checkout_build_folder);
    RUN(locate_checkout_two_levels_up);
    RUN(locate_installed_share_qhost);
    RUN(locate_error_names_the_binary);
    RUN(new_state_requires_every_host_module);
    RUN(new_state_requires_the_full_library);
    RUN(ffi_declarations_match_the_host);
    RUN(new_state_puts_the_root_first_on_package_path);
    RUN(states_are_independent);
    RUN(pcall_success_keeps_the_stack);
    RUN(pcall_error_is_message_then_traceback);
    RUN(pcall_runtime_error_has_the_line);
    RUN(pcall_non_string_errors_become_strings);
    RUN(pcall_error_in_the_handler);
    RUN(pcall_adds_no_second_traceback);
    RUN(pcall_nil_error_stays_nil);
    RUN(run_script_sets_arg_and_varargs);
    RUN(run_script_syntax_error);
    RUN(run_script_missing_file);
    RUN(run_script_runtime_error_has_the_traceback);

    th_remove_tree(tmp_dir);
    return check_summary();
}
