/* metrics.h: the app's HTTP endpoint for operations: /metrics (a Prometheus
 * text the Lua side renders and publishes), /health (200 while the
 * processing loop's heartbeat is recent, 503 once it is stale) and /ready
 * (200 once the loop says its partitions are assigned and recovered), and
 * the `qhost.metrics` Lua module over it.
 * The server is libmicrohttpd's, with its own thread: requests are answered
 * there from what the Lua thread last handed over (a copy of the text, an
 * atomic heartbeat deadline, a ready flag), so a scrape never waits for the
 * processing loop and the loop never waits for a scrape (the only shared
 * lock is held for a copy of the text).
 * Provides: qh_metrics_* (C), qh_ffi_metrics_now (FFI), the Lua module. Uses: libmicrohttpd, POSIX
 * threads and signals, luaclass.h, hostlib.h (the logger). */
#ifndef QH_METRICS_H
#define QH_METRICS_H

#include <stddef.h>
#include <lua.h>

typedef struct qh_metrics qh_metrics;

/* Serves on `port` (1..65535; 0: a free port the system picks, see
 * qh_metrics_port) on every local address, IPv6 and IPv4 where the
 * system has both. NULL with err set, naming the port and the reason
 * ("port 9100: Address already in use"). /health answers 503 until the
 * first qh_metrics_beat, /ready 503 until qh_metrics_set_ready(m, 1). */
qh_metrics *qh_metrics_start(int port, char *err, size_t errlen);
/* Stops the server (waits for its thread) and frees it. Accepts NULL. */
void qh_metrics_close(qh_metrics *m);
/* The port served. */
int qh_metrics_port(const qh_metrics *m);

/* Replaces the text /metrics answers with a copy of text[0..len).
 * 0, or -1 when out of memory (the previous text stays). */
int qh_metrics_publish(qh_metrics *m, const char *text, size_t len);
/* The loop is alive, and counts as alive for grace_s more seconds. */
void qh_metrics_beat(qh_metrics *m, double grace_s);
/* Ready or not; reason (copied, may be NULL) is /ready's text while not. */
void qh_metrics_set_ready(qh_metrics *m, int ready, const char *reason);

/* Monotonic seconds, for the FFI: the Lua side's timing of user functions
 * (a vDSO clock read, no system call). */
double qh_ffi_metrics_now(void);

/* luaopen-style: pushes the `qhost.metrics` module table:
 *   start(port) -> server | nil, err
 *   server:publish(text)            server:beat(grace_s)
 *   server:set_ready(bool, reason)  server:port() -> number
 *   server:close()                  (also on garbage collection) */
int qh_metrics_open(lua_State *L);

#endif
