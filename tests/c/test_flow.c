/* test_flow.c: tests of host/flow.c: the shared counters, two mappings of
 * one region (as the app and its source process have), a child process
 * reading what the parent wrote, and the Lua module. */
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

#include "flow.h"
#include "helpers.h"

TEST(a_new_region_reads_zero_and_adds_up)
{
    int fd = qh_flow_create();
    CHECK(fd >= 0);
    if (fd < 0) return;
    qh_flow *f = qh_flow_map(fd);
    CHECK(f != NULL);
    if (!f) return;
    int64_t msgs = -1, bytes = -1;
    qh_ffi_flow_read(f, &msgs, &bytes);
    CHECK_EQ_INT(msgs, 0);
    CHECK_EQ_INT(bytes, 0);
    qh_ffi_flow_consumed(f, 3, 300);
    qh_ffi_flow_consumed(f, 2, 20);
    qh_ffi_flow_read(f, &msgs, NULL);
    qh_ffi_flow_read(f, NULL, &bytes);
    CHECK_EQ_INT(msgs, 5);
    CHECK_EQ_INT(bytes, 320);
    qh_flow_unmap(f);
    qh_flow_unmap(NULL);
    close(fd);
}

TEST(another_process_sees_the_counts)
{
    int fd = qh_flow_create();
    CHECK(fd >= 0);
    if (fd < 0) return;
    qh_flow *writer = qh_flow_map(fd);
    CHECK(writer != NULL);
    if (!writer) return;
    pid_t pid = fork();
    if (pid == 0) {
        /* A mapping of its own, as the source process makes from fd 5. */
        qh_flow *reader = qh_flow_map(fd);
        if (!reader) _exit(2);
        int64_t m = 0;
        _exit(TH_WAIT_UNTIL((qh_ffi_flow_read(reader, &m, NULL), m == 7), 20000) ? 0 : 1);
    }
    qh_ffi_flow_consumed(writer, 7, 700);
    int status = th_wait_child(pid, 30000);
    CHECK(status != -1 && WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    qh_flow_unmap(writer);
    close(fd);
}

TEST(lua_module_create_open_close)
{
    lua_State *L = th_lua_new("flow", qh_flow_open);
    const char *code =
        "local a = assert(flow.create())\n"
        "assert(a:fd() >= 0)\n"
        "local fd2 = a:fd()\n"
        "assert(type(a:ptr()) == 'userdata')\n"
        "local b, err = flow.open(-1)\n"
        "assert(b == nil and err:find('mmap', 1, true))\n"
        "a:close(); a:close()\n"
        "assert(not pcall(a.ptr, a))\n"
        "return fd2";
    CHECK_EQ_INT(th_run_n(L, code), 1);
    lua_close(L);
}

int main(void)
{
    RUN(a_new_region_reads_zero_and_adds_up);
    RUN(another_process_sees_the_counts);
    RUN(lua_module_create_open_close);
    return check_summary();
}
