/* flow.h: credit-based flow control between the app and one source process
 * on the embedded broker, and the `qhost.flow` Lua module over it.
 * The embedded broker keeps at most 5 MiB or 100,000 message sets per
 * partition and drops the oldest beyond that, so a source must never be
 * further ahead of the app's consumer than a budget below those limits.
 * The app counts what it has consumed of the source's topic into a small
 * region of shared memory (a memfd the source process inherits, see
 * spawn.h's share_fd); the source counts what it has produced, and before
 * each produce waits while the difference is over budget. One writer per
 * counter (the app), read by one reader (the source): plain atomic loads
 * and stores, no locks, no system calls on the per-message path.
 * Provides: qh_flow_create/map/unmap (C), qh_ffi_flow_* (the FFI hot path),
 * the Lua module (create, open, handle:fd/ptr/close). Uses: Linux memfd,
 * mmap. */
#ifndef QH_FLOW_H
#define QH_FLOW_H

#include <stdint.h>
#include <lua.h>

/* The shared region. Written only by the app, read by the source. */
typedef struct qh_flow {
    int64_t consumed_messages;
    int64_t consumed_bytes;
} qh_flow;

/* A new memfd holding a zeroed qh_flow (close-on-exec: it reaches a child
 * only through spawn's share_fd). Returns the fd, or -1 with errno. */
int qh_flow_create(void);
/* Maps the region of fd (the fd may be closed afterwards). NULL with errno. */
qh_flow *qh_flow_map(int fd);
/* Accepts NULL. */
void qh_flow_unmap(qh_flow *f);

/* App side: adds what one batch consumed. */
void qh_ffi_flow_consumed(qh_flow *f, int64_t messages, int64_t bytes);
/* Source side: reads the counts (either pointer may be NULL). */
void qh_ffi_flow_read(const qh_flow *f, int64_t *messages, int64_t *bytes);

/* luaopen-style: pushes the `qhost.flow` module table:
 *   create() -> handle | nil, err       (the app: a new region)
 *   open(fd) -> handle | nil, err       (the source: the inherited one)
 *   handle:fd() -> number (-1 once mapped from an fd that was then closed)
 *   handle:ptr() -> light userdata for the FFI (raises once closed)
 *   handle:close()                       (also on garbage collection) */
int qh_flow_open(lua_State *L);

#endif
