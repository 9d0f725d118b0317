/* metrics.c: the metrics, health and readiness endpoint (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <microhttpd.h>

#include "hostlib.h"
#include "lazylib.h"
#include "luaclass.h"

/* libmicrohttpd is loaded by the first server started (lazylib.h): apps
 * without metrics never pay for it. Its functions, through `mhd`: */
#define MHD_FUNCTIONS(X) \
    X(MHD_add_response_header) X(MHD_create_response_from_buffer) X(MHD_destroy_response) \
    X(MHD_get_daemon_info) X(MHD_queue_response) X(MHD_start_daemon) X(MHD_stop_daemon)
QH_LAZY_LIBRARY(mhd, QH_MICROHTTPD_SONAME, MHD_FUNCTIONS)

#define METRICS_MT "qhost.metrics.server"
#define PROMETHEUS_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct qh_metrics {
    struct MHD_Daemon *daemon;
    int port;
    /* Guards text, len, reason and start_err: the Lua thread writes them,
     * the server's thread reads them. */
    pthread_mutex_t lock;
    char *text;                 /* owned; NULL until the first publish */
    size_t len;
    char reason[256];           /* why not ready */
    /* Monotonic milliseconds until which the loop counts as alive (0:
     * never beat); atomic. */
    int64_t alive_until_ms;
    int64_t last_beat_ms;       /* atomic */
    int ready;                  /* atomic */
    /* While starting, libmicrohttpd's first error line: the reason a bind
     * failed, for the caller's message. */
    int starting;
    char start_err[256];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libmicrohttpd's error lines. While starting, the first one is kept for
 * the error message (it names the failed call and errno's text); after
 * that they are about single connections (a client that went away), which
 * are not the app's problem: debug lines. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    qh_metrics *m = cls;
    char line[256];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    pthread_mutex_lock(&m->lock);
    int starting = m->starting;
    if (starting && !m->start_err[0]) snprintf(m->start_err, sizeof m->start_err, "%s", line);
    pthread_mutex_unlock(&m->lock);
    if (!starting) qh_log(QH_LOG_DEBUG, "metrics endpoint: %s", line);
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned int status, const char *type,
                               const char *body, size_t len)
{
    struct MHD_Response *resp = mhd.MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    mhd.MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    mhd.MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = mhd.MHD_queue_response(conn, status, resp);
    mhd.MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned int status, const char *text)
{
    return respond(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result serve_metrics(qh_metrics *m, struct MHD_Connection *conn)
{
    /* The copy is made under the lock; the Lua thread's publish waits at
     * most that long. */
    pthread_mutex_lock(&m->lock);
    enum MHD_Result rc = respond(conn, MHD_HTTP_OK, PROMETHEUS_TYPE, m->text ? m->text : "", m->text ? m->len : 0);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static enum MHD_Result serve_health(qh_metrics *m, struct MHD_Connection *conn)
{
    int64_t now = now_ms();
    int64_t until = __atomic_load_n(&m->alive_until_ms, __ATOMIC_ACQUIRE);
    if (until > 0 && now < until) return respond_text(conn, MHD_HTTP_OK, "ok\n");
    char body[160];
    int64_t last = __atomic_load_n(&m->last_beat_ms, __ATOMIC_ACQUIRE);
    if (last == 0)
        snprintf(body, sizeof body, "not alive: the processing loop has not started\n");
    else
        snprintf(body, sizeof body, "not alive: the processing loop's last heartbeat was %.1f s ago\n",
                 (double)(now - last) / 1000.0);
    return respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

static enum MHD_Result serve_ready(qh_metrics *m, struct MHD_Connection *conn)
{
    if (__atomic_load_n(&m->ready, __ATOMIC_ACQUIRE)) return respond_text(conn, MHD_HTTP_OK, "ready\n");
    char body[300];
    pthread_mutex_lock(&m->lock);
    snprintf(body, sizeof body, "not ready: %s\n", m->reason[0] ? m->reason : "starting");
    pthread_mutex_unlock(&m->lock);
    return respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

/* Runs on the server's thread. A GET has no body: it is answered on the
 * first call. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    qh_metrics *m = cls;
    (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    if (strcmp(url, "/metrics") == 0) return serve_metrics(m, conn);
    if (strcmp(url, "/health") == 0) return serve_health(m, conn);
    if (strcmp(url, "/ready") == 0) return serve_ready(m, conn);
    if (strcmp(url, "/") == 0) return respond_text(conn, MHD_HTTP_OK, "qhost: /metrics /health /ready\n");
    return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found: /metrics /health /ready\n");
}

static struct MHD_Daemon *start_daemon(qh_metrics *m, int port, unsigned int flags)
{
    return mhd.MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, m,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, m,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                            MHD_OPTION_END);
}

qh_metrics *qh_metrics_start(int port, char *err, size_t errlen)
{
    qh_metrics *m = NULL;
    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "port %d is out of range (1-65535)", port);
        return NULL;
    }
    if (mhd_load(err, errlen) < 0) return NULL;
    m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "port %d: out of memory", port);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->starting = 1;
    /* (the server's thread leaves SIGINT and SIGTERM to the Lua thread) */
    sigset_t old;
    qh_hostlib_block_signals(&old);
    const unsigned int base = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    errno = 0;
    m->daemon = start_daemon(m, port, base | MHD_USE_DUAL_STACK);
    int saved = errno;
    if (!m->daemon) {
        /* No IPv6 here, or the port is taken: IPv4 alone says which. */
        m->start_err[0] = '\0';
        errno = 0;
        m->daemon = start_daemon(m, port, base);
        saved = errno;
    }
    qh_hostlib_restore_signals(&old);
    if (!m->daemon) {
        /* bind's errno survives libmicrohttpd's clean-up; its own line is
         * the fallback (a failure without errno: a thread not started). */
        if (saved)
            snprintf(err, errlen, "cannot listen on port %d: %s", port, strerror(saved));
        else
            snprintf(err, errlen, "cannot listen on port %d: %s", port,
                     m->start_err[0] ? m->start_err : "libmicrohttpd failed to start");
        goto fail;
    }
    const union MHD_DaemonInfo *info = mhd.MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info && info->port ? info->port : port;
    pthread_mutex_lock(&m->lock);
    m->starting = 0;
    pthread_mutex_unlock(&m->lock);
    return m;
fail:
    qh_metrics_close(m);
    return NULL;
}

void qh_metrics_close(qh_metrics *m)
{
    if (!m) return;
    if (m->daemon) mhd.MHD_stop_daemon(m->daemon);   /* joins its thread */
    pthread_mutex_destroy(&m->lock);
    free(m->text);
    free(m);
}

int qh_metrics_port(const qh_metrics *m)
{
    return m->port;
}

int qh_metrics_publish(qh_metrics *m, const char *text, size_t len)
{
    /* Copied outside the lock: the server's thread waits only for the swap. */
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    pthread_mutex_lock(&m->lock);
    char *old = m->text;
    m->text = copy;
    m->len = len;
    pthread_mutex_unlock(&m->lock);
    free(old);
    return 0;
}

void qh_metrics_beat(qh_metrics *m, double grace_s)
{
    int64_t now = now_ms();
    /* NaN or negative: alive until now, i.e. not any more. */
    int64_t grace = grace_s > 0 ? (grace_s > 1e9 ? (int64_t)1e12 : (int64_t)(grace_s * 1000.0)) : 0;
    __atomic_store_n(&m->last_beat_ms, now, __ATOMIC_RELEASE);
    __atomic_store_n(&m->alive_until_ms, now + grace, __ATOMIC_RELEASE);
}

void qh_metrics_set_ready(qh_metrics *m, int ready, const char *reason)
{
    pthread_mutex_lock(&m->lock);
    snprintf(m->reason, sizeof m->reason, "%s", reason ? reason : "");
    pthread_mutex_unlock(&m->lock);
    __atomic_store_n(&m->ready, ready ? 1 : 0, __ATOMIC_RELEASE);
}

double qh_ffi_metrics_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Lua ------------------------------------------------------------------ */

typedef struct lmetrics {
    qh_metrics *m;   /* owned: closed by close/__gc */
} lmetrics;

static qh_metrics *check_open(lua_State *L)
{
    lmetrics *u = luaL_checkudata(L, 1, METRICS_MT);
    if (!u->m) luaL_error(L, "the metrics server is closed");
    return u->m;
}

/* metrics.start(port) -> server | nil, err (port 0: one the system picks) */
static int l_start(lua_State *L)
{
    lua_Number port = luaL_checknumber(L, 1);
    if (!(port >= 0 && port <= 65535) || port != (lua_Number)(int)port) {
        lua_pushnil(L);
        lua_pushfstring(L, "port %s is out of range (1-65535)", lua_tostring(L, 1));
        return 2;
    }
    lmetrics *u = qh_luaclass_new(L, METRICS_MT, sizeof *u);
    char err[512];
    if (!(u->m = qh_metrics_start((int)port, err, sizeof err))) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static int l_publish(lua_State *L)
{
    qh_metrics *m = check_open(L);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    if (qh_metrics_publish(m, text, len) != 0) return luaL_error(L, "metrics: out of memory");
    return 0;
}

static int l_beat(lua_State *L)
{
    qh_metrics_beat(check_open(L), luaL_checknumber(L, 2));
    return 0;
}

static int l_set_ready(lua_State *L)
{
    qh_metrics *m = check_open(L);
    qh_metrics_set_ready(m, lua_toboolean(L, 2), luaL_optstring(L, 3, NULL));
    return 0;
}

static int l_port(lua_State *L)
{
    lua_pushinteger(L, qh_metrics_port(check_open(L)));
    return 1;
}

static int l_close(lua_State *L)
{
    lmetrics *u = luaL_checkudata(L, 1, METRICS_MT);
    qh_metrics_close(u->m);
    u->m = NULL;
    return 0;
}

int qh_metrics_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "publish", l_publish }, { "beat", l_beat }, { "set_ready", l_set_ready },
        { "port", l_port }, { "close", l_close }, { NULL, NULL },
    };
    static const luaL_Reg funcs[] = { { "start", l_start }, { NULL, NULL } };
    qh_luaclass_register(L, METRICS_MT, methods, l_close);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
