/* test_lua_heap.c: the allocator of qhost's LuaJIT states (lua_heap.h):
 * blocks of every size keep their bytes through resizes across classes and
 * to and from malloc's, freed blocks are reused by their class, a LuaJIT
 * state runs on it and gives back every byte, and qh_vm_new's states use
 * it when asked. In a SAN build also: a free at the wrong size stops the process, and
 * a read of a freed block is reported. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <lauxlib.h>
#include <lualib.h>

#include "helpers.h"
#include "lua_heap.h"
#include "vm.h"

#define LARGEST 1200   /* past QH_LUA_HEAP_SMALL_MAX: malloc's blocks too */

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 31u + i * 7u);
}

static int holds(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed * 31u + i * 7u)) return 0;
    return 1;
}

TEST(blocks_of_every_size_keep_their_bytes_through_resizes)
{
    qh_lua_heap *h = qh_lua_heap_new();
    static unsigned char *blocks[LARGEST + 1];
    static size_t sizes[LARGEST + 1];
    for (size_t n = 1; n <= LARGEST; n++) {
        blocks[n] = qh_lua_heap_alloc(h, NULL, 0, n);
        CHECK(blocks[n] != NULL);
        CHECK(((uintptr_t)blocks[n] & 15) == 0);
        sizes[n] = n;
        fill(blocks[n], n, (unsigned)n);
    }
    size_t expected = (size_t)LARGEST * (LARGEST + 1) / 2;
    CHECK_EQ_INT(qh_lua_heap_in_use(h), expected);
    /* every block resized to a size of another class (or malloc's) and back
     * into the heap's, growing and shrinking: the bytes they share stay */
    for (size_t n = 1; n <= LARGEST; n++) {
        size_t to = (n * 37) % LARGEST + 1;
        unsigned char *moved = qh_lua_heap_alloc(h, blocks[n], sizes[n], to);
        CHECK(moved != NULL);
        CHECK(holds(moved, to < sizes[n] ? to : sizes[n], (unsigned)n));
        expected = expected - sizes[n] + to;
        blocks[n] = moved;
        sizes[n] = to;
        fill(blocks[n], to, (unsigned)n + 1000);
    }
    CHECK_EQ_INT(qh_lua_heap_in_use(h), expected);
    for (size_t n = 1; n <= LARGEST; n++) {
        CHECK(holds(blocks[n], sizes[n], (unsigned)n + 1000));
        CHECK(qh_lua_heap_alloc(h, blocks[n], sizes[n], 0) == NULL);
    }
    CHECK_EQ_INT(qh_lua_heap_in_use(h), 0);
    qh_lua_heap_destroy(h);
}

TEST(a_freed_small_block_is_the_next_one_given_at_its_size)
{
    qh_lua_heap *h = qh_lua_heap_new();
    void *a = qh_lua_heap_alloc(h, NULL, 0, 40);
    void *b = qh_lua_heap_alloc(h, NULL, 0, 40);
    qh_lua_heap_alloc(h, a, 40, 0);
    qh_lua_heap_alloc(h, b, 40, 0);
    /* the last freed first; 44 bytes is the same class as 40 */
    void *first = qh_lua_heap_alloc(h, NULL, 0, 44);
    void *second = qh_lua_heap_alloc(h, NULL, 0, 40);
    CHECK(first == b);
    CHECK(second == a);
    /* another class does not get them */
    qh_lua_heap_alloc(h, first, 44, 0);
    void *other = qh_lua_heap_alloc(h, NULL, 0, 200);
    CHECK(other != first && other != second);
    qh_lua_heap_alloc(h, second, 40, 0);
    qh_lua_heap_alloc(h, other, 200, 0);
    CHECK_EQ_INT(qh_lua_heap_in_use(h), 0);
    qh_lua_heap_destroy(h);
}

#if !defined(__SANITIZE_ADDRESS__)
/* (a checked heap moves every resized block, to keep its size record exact) */
TEST(a_resize_within_its_class_keeps_the_block)
{
    qh_lua_heap *h = qh_lua_heap_new();
    void *p = qh_lua_heap_alloc(h, NULL, 0, 33);
    CHECK(qh_lua_heap_alloc(h, p, 33, 48) == p);
    CHECK(qh_lua_heap_alloc(h, p, 48, 40) == p);
    CHECK_EQ_INT(qh_lua_heap_in_use(h), 40);
    qh_lua_heap_alloc(h, p, 40, 0);
    qh_lua_heap_destroy(h);
}
#endif

/* What a stream app's Lua does to memory: strings, tables of every size,
 * string buffers, closures, cdata, full collections, the JIT's traces. */
static const char *CHURN =
    "local buffer, ffi = require('string.buffer'), require('ffi')\n"
    "local keep, sum = {}, 0\n"
    "for i = 1, 200000 do\n"
    "  local key = tostring(i)\n"
    "  local t = { n = i, s = key .. ':' .. i, list = { i, i + 1, i + 2 } }\n"
    "  if i % 97 == 0 then for j = 1, i % 300 do t[j] = j end end\n"
    "  local b = buffer.new(16); b:put(t.s, string.rep('x', i % 700)); sum = sum + #b:tostring()\n"
    "  local f = function() return t.n end\n"
    "  local c = ffi.new('int64_t[?]', i % 40 + 1); c[0] = i\n"
    "  sum = sum + f() + tonumber(c[0])\n"
    "  if i % 1000 == 0 then keep[#keep + 1] = t; if #keep > 50 then table.remove(keep, 1) end end\n"
    "  if i % 50000 == 0 then collectgarbage() end\n"
    "end\n"
    "return sum";

TEST(a_state_on_a_heap_runs_and_gives_every_byte_back)
{
    qh_lua_heap *h = qh_lua_heap_new();
    lua_State *L = lua_newstate(qh_lua_heap_alloc, h);
    CHECK(L != NULL);
    if (!L) { qh_lua_heap_destroy(h); return; }
    luaL_openlibs(L);
    CHECK(qh_lua_heap_in_use(h) > 0);
    char on_heap[128], on_own[128];
    snprintf(on_heap, sizeof on_heap, "%s", th_run(L, CHURN));
    /* the same script on LuaJIT's own allocator: the same sum */
    lua_State *own = luaL_newstate();
    luaL_openlibs(own);
    snprintf(on_own, sizeof on_own, "%s", th_run(own, CHURN));
    lua_close(own);
    CHECK(strtod(on_heap, NULL) > 200000);
    CHECK_EQ_STR(on_heap, on_own);
    lua_close(L);
    CHECK_EQ_INT(qh_lua_heap_in_use(h), 0);
    qh_lua_heap_destroy(h);
}

TEST(the_hosts_states_live_on_a_heap_when_asked)
{
    lua_State *L = qh_vm_new("lua", QH_VM_OWN_HEAP);
    lua_State *own = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    CHECK(L != NULL && own != NULL);
    if (!L || !own) return;
    void *ud = NULL;
    CHECK(lua_getallocf(L, &ud) == qh_lua_heap_alloc);
    CHECK(ud != NULL && qh_lua_heap_in_use(ud) > 0);
    CHECK(lua_getallocf(own, &ud) != qh_lua_heap_alloc);
    CHECK_EQ_STR(th_run(L, "local t = {} for i = 1, 1000 do t[i] = tostring(i) end return #t"), "1000");
    CHECK_EQ_STR(th_run(own, "local t = {} for i = 1, 1000 do t[i] = tostring(i) end return #t"), "1000");
    qh_vm_close(L);
    qh_vm_close(own);
}

#if defined(__SANITIZE_ADDRESS__)
/* Runs what(h) in a child with stderr shut; its wait status. */
static int in_child(void (*what)(qh_lua_heap *))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *quiet = freopen("/dev/null", "w", stderr);
        (void)quiet;
        what(qh_lua_heap_new());
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void free_at_another_size(qh_lua_heap *h)
{
    void *p = qh_lua_heap_alloc(h, NULL, 0, 40);
    qh_lua_heap_alloc(h, p, 72, 0);
}

static void read_after_free(qh_lua_heap *h)
{
    volatile char *p = qh_lua_heap_alloc(h, NULL, 0, 40);
    p[0] = 'x';
    qh_lua_heap_alloc(h, (void *)p, 40, 0);
    char c = p[1];
    (void)c;
}

static void read_past_the_end(qh_lua_heap *h)
{
    volatile char *p = qh_lua_heap_alloc(h, NULL, 0, 24);
    char c = p[40];   /* inside its class's 48 bytes, past the 24 asked */
    (void)c;
}

TEST(a_checked_heap_stops_a_free_at_another_size)
{
    int status = in_child(free_at_another_size);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

TEST(a_checked_heap_reports_a_read_of_a_freed_block)
{
    int status = in_child(read_after_free);
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

TEST(a_checked_heap_reports_a_read_past_a_blocks_size)
{
    int status = in_child(read_past_the_end);
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
}
#endif

int main(void)
{
    RUN(blocks_of_every_size_keep_their_bytes_through_resizes);
    RUN(a_freed_small_block_is_the_next_one_given_at_its_size);
#if !defined(__SANITIZE_ADDRESS__)
    RUN(a_resize_within_its_class_keeps_the_block);
#endif
    RUN(a_state_on_a_heap_runs_and_gives_every_byte_back);
    RUN(the_hosts_states_live_on_a_heap_when_asked);
#if defined(__SANITIZE_ADDRESS__)
    RUN(a_checked_heap_stops_a_free_at_another_size);
    RUN(a_checked_heap_reports_a_read_of_a_freed_block);
    RUN(a_checked_heap_reports_a_read_past_a_blocks_size);
#endif
    return check_summary();
}
