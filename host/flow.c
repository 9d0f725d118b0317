/* flow.c: credit-based flow control (see flow.h). */
#include "flow.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lauxlib.h>

#include "luaclass.h"

#define FLOW_MT "qhost.flow"

int qh_flow_create(void)
{
    int fd = memfd_create("qhost-flow", MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)sizeof(qh_flow)) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;   /* a new memfd reads as zeros */
}

qh_flow *qh_flow_map(int fd)
{
    void *p = mmap(NULL, sizeof(qh_flow), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void qh_flow_unmap(qh_flow *f)
{
    if (f) munmap(f, sizeof *f);
}

void qh_ffi_flow_consumed(qh_flow *f, int64_t messages, int64_t bytes)
{
    /* The app is the only writer: load, add, store is enough; release so the
     * source never sees the bytes of a batch before its messages. */
    __atomic_store_n(&f->consumed_bytes, __atomic_load_n(&f->consumed_bytes, __ATOMIC_RELAXED) + bytes,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&f->consumed_messages,
                     __atomic_load_n(&f->consumed_messages, __ATOMIC_RELAXED) + messages, __ATOMIC_RELEASE);
}

void qh_ffi_flow_read(const qh_flow *f, int64_t *messages, int64_t *bytes)
{
    if (messages) *messages = __atomic_load_n(&f->consumed_messages, __ATOMIC_ACQUIRE);
    if (bytes) *bytes = __atomic_load_n(&f->consumed_bytes, __ATOMIC_ACQUIRE);
}

/* ---- Lua ------------------------------------------------------------------ */

typedef struct lflow {
    qh_flow *map;   /* owned: unmapped by close/__gc */
    int fd;         /* owned when >= 0 (the app keeps it to share with its child) */
} lflow;

static lflow *check_flow(lua_State *L)
{
    return luaL_checkudata(L, 1, FLOW_MT);
}

/* The userdata first, so that a failed allocation leaks nothing. */
static lflow *new_flow(lua_State *L)
{
    lflow *u = qh_luaclass_new(L, FLOW_MT, sizeof *u);
    u->fd = -1;
    return u;
}

static int push_errno(lua_State *L, const char *what)
{
    lua_pushnil(L);
    lua_pushfstring(L, "flow control: %s: %s", what, strerror(errno));
    return 2;
}

static int l_create(lua_State *L)
{
    lflow *u = new_flow(L);
    if ((u->fd = qh_flow_create()) < 0) return push_errno(L, "memfd_create");
    if (!(u->map = qh_flow_map(u->fd))) return push_errno(L, "mmap");
    return 1;
}

static int l_open(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    lflow *u = new_flow(L);
    if (!(u->map = qh_flow_map(fd))) return push_errno(L, "mmap of the inherited region");
    close(fd);   /* the mapping keeps the region */
    return 1;
}

static int l_fd(lua_State *L)
{
    lua_pushinteger(L, check_flow(L)->fd);
    return 1;
}

static int l_ptr(lua_State *L)
{
    lflow *u = check_flow(L);
    if (!u->map) return luaL_error(L, "flow control region is closed");
    lua_pushlightuserdata(L, u->map);
    return 1;
}

static int l_close(lua_State *L)
{
    lflow *u = check_flow(L);
    qh_flow_unmap(u->map);
    u->map = NULL;
    if (u->fd >= 0) close(u->fd);
    u->fd = -1;
    return 0;
}

int qh_flow_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "fd", l_fd }, { "ptr", l_ptr }, { "close", l_close }, { NULL, NULL },
    };
    static const luaL_Reg funcs[] = { { "create", l_create }, { "open", l_open }, { NULL, NULL } };
    qh_luaclass_register(L, FLOW_MT, methods, l_close);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
