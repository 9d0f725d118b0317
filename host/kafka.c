/* kafka.c: Kafka clients for qhost (see kafka.h).
 *
 * Lua objects are full userdata holding a pointer to the C handle; the
 * `ptr` method hands that pointer to the FFI side (lua/qhost/clients.lua)
 * for the per-message functions. The userdata owns the handle: close() or
 * __gc destroys it, after which ptr() raises. Each constructor makes its
 * userdata (holding NULL) before the librdkafka handle, so that a failed
 * allocation raises before there is a handle to leak. */
#include "kafka.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "hostlib.h"

#define PRODUCER_MT "qhost.kafka.producer"
#define CONSUMER_MT "qhost.kafka.consumer"
#define ADMIN_MT    "qhost.kafka.admin"
#define MOCK_MT     "qhost.kafka.mock"

/* ---------------------------------------------------------------------
 * Logging and client errors: librdkafka threads call these, so they only
 * write to stderr (stdio is thread-safe) or record under a lock-free flag. */

static char g_log_prefix[256] = "qhost";

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    static const char *names[] = { "EMERG", "ALERT", "CRITICAL", "ERROR",
                                   "WARNING", "NOTICE", "INFO", "DEBUG" };
    const char *name = level >= 0 && level < 8 ? names[level] : "LOG";
    fprintf(stderr, "%s %s: librdkafka %s %s: %s\n", name, g_log_prefix,
            rd_kafka_name(rk), fac, buf);
}

/* A warning of the host's own, in the same shape as librdkafka's lines. */
static void log_warning(const rd_kafka_t *rk, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "WARNING %s: %s: %s\n", g_log_prefix, rd_kafka_name(rk), buf);
}

typedef struct client_errors {
    int count;        /* errors since the last take */
    int fatal;
    char last[512];
} client_errors;

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    client_errors *e = opaque;
    (void)rk;
    if (!e) return;
    e->count++;
    if (err == RD_KAFKA_RESP_ERR__FATAL) e->fatal = 1;
    snprintf(e->last, sizeof e->last, "%s: %s", rd_kafka_err2name(err), reason);
}

/* The text of a config value at stack index idx: strings as they are,
 * numbers converted (in place: idx must be a copy, never a key that
 * lua_next still needs), booleans as "true"/"false"; NULL for anything
 * else. */
static const char *config_value(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:  return lua_tostring(L, idx);
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "true" : "false";
    default:           return NULL;
    }
}

/* Describes a table key that is not a string, for an error message. */
static void describe_key(lua_State *L, int idx, char *buf, size_t len)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        snprintf(buf, len, "number %.14g", lua_tonumber(L, idx));
    else if (lua_type(L, idx) == LUA_TBOOLEAN)
        snprintf(buf, len, "boolean %s", lua_toboolean(L, idx) ? "true" : "false");
    else
        snprintf(buf, len, "%s", luaL_typename(L, idx));
}

/* Builds a conf from a Lua table of librdkafka properties. The names in
 * `own` (NULL-terminated) are the host's own settings ("qhost.*"), read by
 * the caller and not passed to librdkafka. Returns NULL with err set on a
 * bad property. */
static rd_kafka_conf_t *conf_from_table(lua_State *L, int idx, const char *const *own,
                                        char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* lua_tostring on a number key would turn it into a string in the
         * table's iteration slot and break lua_next: check, never convert. */
        if (lua_type(L, -2) != LUA_TSTRING) {
            char what[64];
            describe_key(L, -2, what, sizeof what);
            snprintf(err, errlen, "kafka config: property names must be strings, got %s", what);
            lua_pop(L, 2);
            goto fail;
        }
        const char *key = lua_tostring(L, -2);
        const char *value = config_value(L, -1);
        if (!value) {
            snprintf(err, errlen, "kafka config: property %s must be a string, number or boolean, got %s",
                     key, luaL_typename(L, -1));
            lua_pop(L, 2);
            goto fail;
        }
        int skip = 0;
        for (int i = 0; own && own[i]; i++) skip |= strcmp(key, own[i]) == 0;
        char cerr[256];
        if (!skip && rd_kafka_conf_set(conf, key, value, cerr, sizeof cerr) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka config: %s", cerr);
            lua_pop(L, 2);
            goto fail;
        }
        lua_pop(L, 1);
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* A timeout argument in seconds as librdkafka's milliseconds: <= 0 or NaN
 * is 0, anything beyond an int's range waits forever. */
static int timeout_arg(lua_State *L, int idx, double default_s)
{
    double s = luaL_optnumber(L, idx, default_s);
    if (!(s > 0)) return 0;
    if (s * 1000.0 >= (double)(INT_MAX - 5000)) return -1;   /* RD_POLL_INFINITE */
    return (int)(s * 1000.0);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int push_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int l_set_log_prefix(lua_State *L)
{
    snprintf(g_log_prefix, sizeof g_log_prefix, "%s", luaL_checkstring(L, 1));
    return 0;
}

/* Pushes {count=, fatal=, last=} and resets the count. */
static int push_take_errors(lua_State *L, client_errors *e)
{
    if (e->count == 0) return 0;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, e->count);
    lua_setfield(L, -2, "count");
    lua_pushboolean(L, e->fatal);
    lua_setfield(L, -2, "fatal");
    lua_pushstring(L, e->last);
    lua_setfield(L, -2, "last");
    e->count = 0;
    return 1;
}

/* ---------------------------------------------------------------------
 * Producer */

#define QH_TOPIC_CACHE 16
#define QH_FAILURES_MAX 64        /* delivery failures kept between takes */
#define QH_FAILURE_KEY_MAX 256    /* bytes of a failed message's key kept */

/* One failed delivery, as the delivery report told it. */
typedef struct delivery_failure {
    char topic[256];              /* Kafka topic names have at most 249 bytes */
    int32_t partition;            /* -1 when the partitioner never chose one */
    int code;                     /* rd_kafka_resp_err_t */
    int key_null;
    size_t key_len;               /* the whole key's length */
    char key[QH_FAILURE_KEY_MAX]; /* its first bytes */
} delivery_failure;

/* errors comes first: the error callback gets the handle as client_errors. */
struct qh_producer {
    client_errors errors;
    rd_kafka_t *rk;
    /* Failed deliveries since the last take, oldest first, and how many
     * more there were past QH_FAILURES_MAX. Written by the delivery report
     * callback, which librdkafka runs inside rd_kafka_poll/flush on the
     * calling (Lua) thread: no lock. */
    int nfailures;
    int dropped;
    delivery_failure failures[QH_FAILURES_MAX];
    int queue_full_timeout_ms;    /* -1: wait until a stop is requested */
    char errstr[512];
    /* Topic handles, owned, kept for the producer's life (see producer_topic). */
    struct { char *name; rd_kafka_topic_t *rkt; } topics[QH_TOPIC_CACHE];
    int ntopics;
};

/* The producer's handle for `name`, made on first use and kept. Producing
 * through it spares librdkafka a by-name lookup per message (a lock and a
 * list scan in rd_kafka_producev(RD_KAFKA_V_TOPIC)), and a handle made before
 * the first message (qh_ffi_producer_topic) has its metadata by then: a topic
 * first named by a produce call waits up to librdkafka's 1 s topic scan
 * before anything is sent. NULL when the cache is full or out of memory:
 * the caller then makes a handle of the moment. */
static rd_kafka_topic_t *producer_topic(qh_producer *p, const char *name)
{
    for (int i = 0; i < p->ntopics; i++)
        if (strcmp(p->topics[i].name, name) == 0) return p->topics[i].rkt;
    if (p->ntopics == QH_TOPIC_CACHE) return NULL;
    char *copy = strdup(name);
    if (!copy) return NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, name, NULL);
    if (!rkt) {
        free(copy);
        return NULL;
    }
    p->topics[p->ntopics].name = copy;
    p->topics[p->ntopics].rkt = rkt;
    p->ntopics++;
    return rkt;
}

int qh_ffi_producer_topic(qh_producer *p, const char *name)
{
    return producer_topic(p, name) ? 0 : -1;
}

/* Each message's report is its own: a failure is recorded with what
 * identifies that message (librdkafka copied key and topic with it), never
 * folded into the next produce call. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    qh_producer *p = opaque;
    (void)rk;
    if (!m->err) return;
    if (p->nfailures == QH_FAILURES_MAX) {
        p->dropped++;
        return;
    }
    delivery_failure *f = &p->failures[p->nfailures++];
    snprintf(f->topic, sizeof f->topic, "%s", m->rkt ? rd_kafka_topic_name(m->rkt) : "");
    f->partition = m->partition;
    f->code = m->err;
    f->key_null = m->key == NULL;
    f->key_len = m->key ? m->key_len : 0;
    if (m->key) memcpy(f->key, m->key, f->key_len < QH_FAILURE_KEY_MAX ? f->key_len : QH_FAILURE_KEY_MAX);
}

int qh_ffi_produce(qh_producer *p, const char *topic, int32_t partition,
                   const char *key, size_t key_len, const char *value, size_t value_len,
                   int64_t timestamp, int header_count, const char **header_names,
                   const char **header_values, const size_t *header_value_lens)
{
    rd_kafka_topic_t *rkt = producer_topic(p, topic);
    rd_kafka_topic_t *temporary = NULL;   /* past the cache: a handle of the moment */
    if (!rkt) rkt = temporary = rd_kafka_topic_new(p->rk, topic, NULL);
    if (!rkt) {
        snprintf(p->errstr, sizeof p->errstr, "produce to %s [%d] failed: %s", topic,
                 (int)partition, rd_kafka_err2str(rd_kafka_last_error()));
        return (int)rd_kafka_last_error();
    }
    int64_t full_since = -1;   /* when the queue was first found full */
    rd_kafka_resp_err_t err;
    for (;;) {
        rd_kafka_headers_t *hdrs = NULL;
        if (header_count > 0) {
            hdrs = rd_kafka_headers_new((size_t)header_count);
            for (int i = 0; i < header_count; i++)
                rd_kafka_header_add(hdrs, header_names[i], -1, header_values[i],
                                    header_values[i] ? (ssize_t)header_value_lens[i] : 0);
        }
        err = rd_kafka_producev(
            p->rk,
            RD_KAFKA_V_RKT(rkt),
            RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key ? key_len : 0),
            RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0),
            RD_KAFKA_V_TIMESTAMP(timestamp > 0 ? timestamp : 0),
            RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_END);
        if (!err) break;               /* librdkafka now owns hdrs */
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(p->errstr, sizeof p->errstr, "produce to %s [%d] failed: %s", topic,
                     (int)partition, rd_kafka_err2str(err));
            break;
        }
        /* A full queue is waited out by serving delivery reports, at least
         * once; but a stop ends the wait (an unreachable broker would hold
         * the stop forever), and so does the optional bound. The message is
         * then not produced: the caller must not count it as sent. */
        int64_t now = monotonic_ms();
        if (full_since < 0) {
            full_since = now;
        } else if (qh_ffi_stop_requested() > 0) {
            snprintf(p->errstr, sizeof p->errstr,
                     "produce to %s [%d] interrupted by the stop: the producer's queue is full "
                     "(%d messages queued); this message was not produced",
                     topic, (int)partition, rd_kafka_outq_len(p->rk));
            break;
        } else if (p->queue_full_timeout_ms >= 0 && now - full_since >= p->queue_full_timeout_ms) {
            snprintf(p->errstr, sizeof p->errstr,
                     "produce to %s [%d] failed: the producer's queue is still full after %d ms "
                     "(%d messages queued); this message was not produced",
                     topic, (int)partition, p->queue_full_timeout_ms, rd_kafka_outq_len(p->rk));
            break;
        }
        int wait = 100;
        if (p->queue_full_timeout_ms >= 0 && p->queue_full_timeout_ms - (now - full_since) < wait)
            wait = (int)(p->queue_full_timeout_ms - (now - full_since));
        rd_kafka_poll(p->rk, wait > 0 ? wait : 0);
    }
    if (temporary) rd_kafka_topic_destroy(temporary);
    return (int)err;
}

const char *qh_ffi_producer_errstr(qh_producer *p)
{
    return p->errstr;
}

int qh_ffi_producer_poll(qh_producer *p, int timeout_ms)
{
    return rd_kafka_poll(p->rk, timeout_ms);
}

int qh_ffi_producer_failures(qh_producer *p)
{
    return p->nfailures + p->dropped;
}

int qh_ffi_producer_take_failures(qh_producer *p, char *buf, size_t buflen)
{
    int n = p->nfailures + p->dropped;
    if (p->nfailures && buf && buflen)
        snprintf(buf, buflen, "delivery to %s [%d] failed: %s", p->failures[0].topic,
                 (int)p->failures[0].partition, rd_kafka_err2str(p->failures[0].code));
    p->nfailures = 0;
    p->dropped = 0;
    return n;
}

static qh_producer **check_producer_ud(lua_State *L)
{
    return luaL_checkudata(L, 1, PRODUCER_MT);
}

static qh_producer *check_producer(lua_State *L)
{
    qh_producer **ud = check_producer_ud(L);
    if (!*ud) luaL_error(L, "kafka producer is closed");
    return *ud;
}

static void producer_destroy(qh_producer *p)
{
    if (!p) return;
    for (int i = 0; i < p->ntopics; i++) {
        rd_kafka_topic_destroy(p->topics[i].rkt);
        free(p->topics[i].name);
    }
    if (p->rk) rd_kafka_destroy(p->rk);
    free(p);
}

/* kafka.producer(config) -> producer | nil, err. The host's own setting:
 * qhost.queue.full.timeout.ms (default -1: a produce call waits for room in
 * a full queue until a stop is requested; >= 0: at most that long). */
static int l_producer(lua_State *L)
{
    static const char *const own[] = { "qhost.queue.full.timeout.ms", NULL };
    char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_producer **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, PRODUCER_MT);
    lua_setmetatable(L, -2);

    lua_getfield(L, 1, own[0]);
    double bound = -1;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            return push_fail(L, "kafka config: qhost.queue.full.timeout.ms must be a number of milliseconds");
        bound = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);

    qh_producer *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "out of memory");
    p->queue_full_timeout_ms = !(bound >= 0) ? -1 : bound > INT_MAX ? INT_MAX : (int)bound;   /* NaN: none */
    rd_kafka_conf_t *conf = conf_from_table(L, 1, own, err, sizeof err);
    if (!conf) {
        free(p);
        return push_fail(L, err);
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err); /* takes conf on success */
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return push_fail(L, err);
    }
    *ud = p;   /* the userdata owns it from here */
    return 1;
}

static int l_producer_ptr(lua_State *L)
{
    lua_pushlightuserdata(L, check_producer(L));
    return 1;
}

/* producer:flush(timeout_s) -> messages still queued (0 when all delivered) */
static int l_producer_flush(lua_State *L)
{
    qh_producer *p = check_producer(L);
    int ms = timeout_arg(L, 2, 10.0);
    rd_kafka_flush(p->rk, ms);
    lua_pushinteger(L, rd_kafka_outq_len(p->rk));
    return 1;
}

static int l_producer_outq_len(lua_State *L)
{
    lua_pushinteger(L, rd_kafka_outq_len(check_producer(L)->rk));
    return 1;
}

/* producer:take_failures() -> nothing when no delivery failed since the
 * last take, else { { topic =, partition =, key = (first 256 bytes; absent
 * for a null key), key_truncated = true (only when it was), code =, error = },
 * ..., dropped = n (only when more failed than were kept) }. */
static int l_producer_take_failures(lua_State *L)
{
    qh_producer *p = check_producer(L);
    if (p->nfailures + p->dropped == 0) return 0;
    lua_createtable(L, p->nfailures, 1);
    for (int i = 0; i < p->nfailures; i++) {
        const delivery_failure *f = &p->failures[i];
        lua_createtable(L, 0, 6);
        lua_pushstring(L, f->topic);
        lua_setfield(L, -2, "topic");
        lua_pushinteger(L, f->partition);
        lua_setfield(L, -2, "partition");
        if (!f->key_null) {
            lua_pushlstring(L, f->key, f->key_len < QH_FAILURE_KEY_MAX ? f->key_len : QH_FAILURE_KEY_MAX);
            lua_setfield(L, -2, "key");
            if (f->key_len > QH_FAILURE_KEY_MAX) {
                lua_pushboolean(L, 1);
                lua_setfield(L, -2, "key_truncated");
            }
        }
        lua_pushinteger(L, f->code);
        lua_setfield(L, -2, "code");
        lua_pushstring(L, rd_kafka_err2str(f->code));
        lua_setfield(L, -2, "error");
        lua_rawseti(L, -2, i + 1);
    }
    if (p->dropped) {
        lua_pushinteger(L, p->dropped);
        lua_setfield(L, -2, "dropped");
    }
    p->nfailures = 0;
    p->dropped = 0;
    return 1;
}

static int l_producer_take_errors(lua_State *L)
{
    return push_take_errors(L, &check_producer(L)->errors);
}

static int l_producer_close(lua_State *L)
{
    qh_producer **ud = check_producer_ud(L);
    producer_destroy(*ud);
    *ud = NULL;
    return 0;
}

/* ---------------------------------------------------------------------
 * Consumer */

typedef struct rebalance_event {
    int assign;                 /* 1 assign, 0 revoke */
    int lost;                   /* a revoke of partitions the group already gave away */
    rd_kafka_topic_partition_list_t *partitions;
} rebalance_event;

/* What librdkafka waits for after a deferred rebalance event. */
enum { AWAIT_NONE, AWAIT_ASSIGN, AWAIT_REVOKE };

struct qh_consumer {
    client_errors errors;        /* first, as in qh_producer */
    rd_kafka_t *rk;
    rd_kafka_message_t **batch;  /* owned; destroyed at the next poll */
    qh_msg *msgs;
    int batch_cap;
    int batch_len;
    rebalance_event *events;     /* owned; taken by Lua */
    int events_len, events_cap;
    int reset_to;                /* 1 latest, -1 earliest, 0 other: see resolve_start */
    /* qhost.rebalance = "deferred": the rebalance callback only records the
     * event; Lua finishes it (finish_assign / finish_revoke) after it has
     * processed what it fetched before and checkpointed. librdkafka keeps the
     * group waiting (WAIT_ASSIGN_CALL / WAIT_UNASSIGN_CALL, partitions
     * paused, heartbeats going) until that call. */
    int deferred;
    int closing;                 /* inside close(): rebalances are finished at once */
    int awaiting;                /* deferred: AWAIT_* */
    rd_kafka_topic_partition_list_t *awaiting_parts;   /* owned; the event's partitions */
    char errstr[512];
};

/* 0, or -1 when out of memory (the event is then not recorded). */
static int push_event(qh_consumer *c, int assign, int lost, const rd_kafka_topic_partition_list_t *parts)
{
    if (c->events_len == c->events_cap) {
        int cap = c->events_cap ? c->events_cap * 2 : 8;
        rebalance_event *ev = realloc(c->events, (size_t)cap * sizeof *ev);
        if (!ev) return -1;
        c->events = ev;
        c->events_cap = cap;
    }
    rd_kafka_topic_partition_list_t *copy = rd_kafka_topic_partition_list_copy(parts);
    if (!copy) return -1;
    c->events[c->events_len].assign = assign;
    c->events[c->events_len].lost = lost;
    c->events[c->events_len].partitions = copy;
    c->events_len++;
    return 0;
}

static int retriable_wait(int64_t deadline)
{
    int64_t left = deadline - monotonic_ms();
    if (left <= 0) return 0;
    pause_ms(left < 200 ? (int)left : 200);
    return 1;
}

/* Appends "topic [p], ..." for the partitions of `parts` to buf. */
static void name_list(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t len)
{
    size_t n = strlen(buf);
    for (int i = 0; i < parts->cnt && n < len; i++) {
        if (i == 8) {
            snprintf(buf + n, len - n, " and %d more", parts->cnt - i);
            return;
        }
        n += (size_t)snprintf(buf + n, len - n, "%s%s [%d]", i ? ", " : "", parts->elems[i].topic,
                              (int)parts->elems[i].partition);
    }
}

/* Gives every partition of `parts` without an explicit start (offset < 0)
 * one: its committed offset, else its current end (auto.offset.reset
 * latest) or beginning (earliest). Left to librdkafka, a latest reset
 * happens asynchronously after the assignment, and whatever a source
 * produced in between (sources start right after the assignment) would be
 * skipped; and the app needs to know where each partition starts to measure
 * its backlog. Under another reset policy (e.g. error) nothing is looked up.
 *
 * The committed offsets of all partitions come in one request, the ends in
 * one ListOffsets request per leader (rd_kafka_offsets_for_times with
 * END/BEGINNING as the time): a rebalance of many partitions costs a few
 * round trips, not a few per partition. Both are retried while a new
 * topic's leader or the group coordinator is not ready, all within the one
 * timeout (ms, -1 none). Returns 0; or -1 with err naming the partitions
 * not resolved, whose offsets are left negative (the others are set). */
static int resolve_start(qh_consumer *c, rd_kafka_topic_partition_list_t *parts, int timeout_ms,
                         char *err, size_t errlen)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : monotonic_ms() + timeout_ms;
    rd_kafka_topic_partition_list_t *ask = NULL, *ends = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc = -1;
    if (!c->reset_to) return 0;
    ask = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset < 0)
            rd_kafka_topic_partition_list_add(ask, parts->elems[i].topic, parts->elems[i].partition);
    if (ask->cnt == 0) {                                      /* all given explicitly */
        rc = 0;
        goto done;
    }
    ends = rd_kafka_topic_partition_list_new(ask->cnt);       /* those with nothing committed */

    /* Committed offsets: asked again (for the partitions that had an error,
     * e.g. a coordinator or a new topic not ready yet) while time remains. */
    for (;;) {
        int64_t left = deadline - monotonic_ms();
        rerr = rd_kafka_committed(c->rk, ask, left > INT_MAX ? -1 : left > 0 ? (int)left : 1);
        if (rerr == RD_KAFKA_RESP_ERR__UNKNOWN_GROUP) {       /* no group: nothing committed */
            for (int i = 0; i < ask->cnt; i++) {
                ask->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
                ask->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
            }
            rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        rd_kafka_topic_partition_list_t *still = rd_kafka_topic_partition_list_new(ask->cnt);
        for (int i = 0; i < ask->cnt; i++) {
            rd_kafka_topic_partition_t *e = &ask->elems[i];
            if (rerr || e->err) {
                rd_kafka_topic_partition_list_add(still, e->topic, e->partition);
                if (!rerr) rerr = e->err;
            } else if (e->offset >= 0) {
                rd_kafka_topic_partition_list_find(parts, e->topic, e->partition)->offset = e->offset;
            } else {
                rd_kafka_topic_partition_list_add(ends, e->topic, e->partition);
            }
        }
        rd_kafka_topic_partition_list_destroy(ask);
        ask = still;
        if (ask->cnt == 0) break;
        if (!retriable_wait(deadline)) {
            snprintf(err, errlen, "start offsets not resolved within the timeout (committed offsets: %s) for ",
                     rd_kafka_err2str(rerr));
            name_list(ask, err, errlen);
            goto done;
        }
    }

    while (ends->cnt > 0) {
        /* The "time" END (-1) or BEGINNING (-2) asks for the latest or the
         * earliest offset, as rd_kafka_query_watermark_offsets does. */
        for (int i = 0; i < ends->cnt; i++) {
            ends->elems[i].offset = c->reset_to > 0 ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
            ends->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        int64_t left = deadline - monotonic_ms();
        rerr = rd_kafka_offsets_for_times(c->rk, ends, left > INT_MAX ? -1 : left > 0 ? (int)left : 1);
        rd_kafka_topic_partition_list_t *still = rd_kafka_topic_partition_list_new(ends->cnt);
        for (int i = 0; i < ends->cnt; i++) {
            rd_kafka_topic_partition_t *e = &ends->elems[i];
            if (!rerr && !e->err && e->offset >= 0)
                rd_kafka_topic_partition_list_find(parts, e->topic, e->partition)->offset = e->offset;
            else
                rd_kafka_topic_partition_list_add(still, e->topic, e->partition);
            if (!rerr && e->err) rerr = e->err;
        }
        rd_kafka_topic_partition_list_destroy(ends);
        ends = still;
        if (ends->cnt == 0) break;
        if (!retriable_wait(deadline)) {
            snprintf(err, errlen, "start offsets not resolved within the timeout (%s offsets: %s) for ",
                     c->reset_to > 0 ? "latest" : "earliest", rd_kafka_err2str(rerr));
            name_list(ends, err, errlen);
            goto done;
        }
    }
    rc = 0;
done:
    if (ends) rd_kafka_topic_partition_list_destroy(ends);
    rd_kafka_topic_partition_list_destroy(ask);
    return rc;
}

/* In the "callback" mode, the start offsets are looked up inside the
 * rebalance callback (and manual assign): bounded, so a rebalance of many
 * partitions cannot exceed max.poll.interval.ms; a partition not resolved
 * by then keeps librdkafka's own reset. */
#define CALLBACK_RESOLVE_MS 30000

static void resolve_start_or_warn(qh_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    char err[512] = "";
    if (resolve_start(c, parts, CALLBACK_RESOLVE_MS, err, sizeof err) != 0)
        log_warning(c->rk, "%s: librdkafka's own offset reset applies to them", err);
}

static int is_cooperative(rd_kafka_t *rk)
{
    return strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
}

/* Adds `parts` to the assignment, as the rebalance protocol wants it.
 * 0, or -1 with err set. */
static int apply_assign(qh_consumer *c, rd_kafka_topic_partition_list_t *parts, char *err, size_t errlen)
{
    if (is_cooperative(c->rk)) {
        rd_kafka_error_t *e = rd_kafka_incremental_assign(c->rk, parts);
        if (!e) return 0;
        snprintf(err, errlen, "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, parts);
    if (!e) return 0;
    snprintf(err, errlen, "%s", rd_kafka_err2str(e));
    return -1;
}

/* Gives `parts` up: the cooperative protocol takes away just those, the
 * eager one everything (it revokes the whole assignment anyway). */
static int apply_revoke(qh_consumer *c, rd_kafka_topic_partition_list_t *parts, char *err, size_t errlen)
{
    if (is_cooperative(c->rk)) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(c->rk, parts);
        if (!e) return 0;
        snprintf(err, errlen, "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, NULL);
    if (!e) return 0;
    snprintf(err, errlen, "%s", rd_kafka_err2str(e));
    return -1;
}

static void clear_awaiting(qh_consumer *c)
{
    if (c->awaiting_parts) rd_kafka_topic_partition_list_destroy(c->awaiting_parts);
    c->awaiting_parts = NULL;
    c->awaiting = AWAIT_NONE;
}

/* Runs inside rd_kafka_consumer_poll (or consumer_close) on the Lua thread.
 *
 * Deferred mode: records the event for Lua and returns; rd_kafka_yield makes
 * the poll return at once, so the batch ends where the rebalance is and Lua
 * sees the event right after the messages fetched before it.
 *
 * Callback mode (the default): assigns with resolved starts, or commits the
 * offsets Lua stored (those whose outputs are flushed) and gives the
 * partitions up, then records the event.
 *
 * While closing, both modes finish the rebalance here: close() waits for it
 * and Lua has done its last checkpoint already. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    qh_consumer *c = opaque;
    int assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    int lost = !assign && rd_kafka_assignment_lost(rk);
    char why[512] = "";
    if (c->deferred && !c->closing) {
        rd_kafka_topic_partition_list_t *copy = rd_kafka_topic_partition_list_copy(parts);
        if (copy && push_event(c, assign, lost, parts) == 0) {
            clear_awaiting(c);
            c->awaiting = assign ? AWAIT_ASSIGN : AWAIT_REVOKE;
            c->awaiting_parts = copy;
            rd_kafka_yield(rk);
            return;
        }
        /* Out of memory: Lua will never hear of it, so finish it here. */
        if (copy) rd_kafka_topic_partition_list_destroy(copy);
        log_warning(rk, "out of memory recording a rebalance: finishing it without a checkpoint");
    }
    if (c->deferred) {
        if ((assign ? apply_assign(c, parts, why, sizeof why) : apply_revoke(c, parts, why, sizeof why)) != 0)
            log_warning(rk, "%s of %d partitions failed: %s", assign ? "assign" : "unassign", parts->cnt, why);
        return;
    }
    if (assign) {
        if (!c->closing) resolve_start_or_warn(c, parts);
        if (apply_assign(c, parts, why, sizeof why) != 0)
            log_warning(rk, "assign of %d partitions failed: %s", parts->cnt, why);
    } else {
        if (!lost) rd_kafka_commit(rk, NULL, 0);
        if (apply_revoke(c, parts, why, sizeof why) != 0)
            log_warning(rk, "unassign of %d partitions failed: %s", parts->cnt, why);
    }
    if (push_event(c, assign, lost, parts) != 0)
        log_warning(rk, "out of memory recording a rebalance event");
    if (!c->closing) rd_kafka_yield(rk);
}

static void release_batch(qh_consumer *c)
{
    for (int i = 0; i < c->batch_len; i++) rd_kafka_message_destroy(c->batch[i]);
    c->batch_len = 0;
}

static void fill_msg(qh_msg *m, const rd_kafka_message_t *rkm)
{
    rd_kafka_timestamp_type_t tstype;
    rd_kafka_headers_t *hdrs = NULL;
    m->topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "";
    m->key = rkm->key;
    m->key_len = rkm->key_len;
    m->value = rkm->payload;
    m->value_len = rkm->len;
    m->offset = rkm->offset;
    m->partition = rkm->partition;
    m->err = rkm->err;
    m->timestamp = rkm->err ? -1 : rd_kafka_message_timestamp(rkm, &tstype);
    m->timestamp_type = rkm->err ? 0 : (int32_t)tstype;
    m->header_count = 0;
    if (!rkm->err && rd_kafka_message_headers(rkm, &hdrs) == 0 && hdrs)
        m->header_count = (int32_t)rd_kafka_header_cnt(hdrs);
}

int qh_ffi_consumer_poll(qh_consumer *c, int max, int timeout_ms, qh_msg **out)
{
    release_batch(c);
    if (max <= 0) return -1;
    if (max > c->batch_cap) {
        rd_kafka_message_t **b = realloc(c->batch, (size_t)max * sizeof *b);
        if (!b) return -1;
        c->batch = b;
        qh_msg *m = realloc(c->msgs, (size_t)max * sizeof *m);
        if (!m) return -1;
        c->msgs = m;
        c->batch_cap = max;
    }
    int wait = timeout_ms;
    int events = c->events_len;
    /* A rebalance event ends the batch (the callback yields, so the poll
     * returns NULL): what was fetched before it is processed first. */
    while (c->batch_len < max && c->events_len == events) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, wait);
        if (!rkm) break;
        fill_msg(&c->msgs[c->batch_len], rkm);
        c->batch[c->batch_len++] = rkm;
        wait = 0;   /* only the first message is waited for */
    }
    *out = c->msgs;
    return c->batch_len;
}

int qh_ffi_msg_header(qh_consumer *c, int i, int idx, const char **name,
                      const char **value, size_t *len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    if (i < 0 || i >= c->batch_len) return -1;
    if (rd_kafka_message_headers(c->batch[i], &hdrs) != 0 || !hdrs) return -1;
    if (rd_kafka_header_get_all(hdrs, (size_t)idx, name, &v, len) != 0) return -1;
    *value = v;
    return 0;
}

const char *qh_ffi_msg_errstr(qh_consumer *c, int i)
{
    if (i < 0 || i >= c->batch_len) return "";
    rd_kafka_message_t *m = c->batch[i];
    return m->err ? rd_kafka_message_errstr(m) : "";
}

static qh_consumer **check_consumer_ud(lua_State *L)
{
    return luaL_checkudata(L, 1, CONSUMER_MT);
}

static qh_consumer *check_consumer(lua_State *L)
{
    qh_consumer **ud = check_consumer_ud(L);
    if (!*ud) luaL_error(L, "kafka consumer is closed");
    return *ud;
}

/* kafka.consumer(config) -> consumer | nil, err. The host's own setting:
 * qhost.rebalance = "callback" (default: the rebalance callback assigns
 * with resolved start offsets and commits on revoke, and assign() resolves
 * them too) or "deferred" (see struct qh_consumer; assign() is then a plain
 * manual assignment, reported as no event). */
static int l_consumer(lua_State *L)
{
    static const char *const own[] = { "qhost.rebalance", NULL };
    char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_consumer **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, CONSUMER_MT);
    lua_setmetatable(L, -2);

    int deferred = 0;
    lua_getfield(L, 1, own[0]);
    if (!lua_isnil(L, -1)) {
        const char *mode = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(mode, "deferred") == 0) deferred = 1;
        else if (strcmp(mode, "callback") != 0)
            return push_fail(L, "kafka config: qhost.rebalance must be \"callback\" or \"deferred\"");
    }
    lua_pop(L, 1);

    qh_consumer *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "out of memory");
    c->deferred = deferred;
    rd_kafka_conf_t *conf = conf_from_table(L, 1, own, err, sizeof err);
    if (!conf) {
        free(c);
        return push_fail(L, err);
    }
    lua_getfield(L, 1, "auto.offset.reset");
    const char *reset = lua_tostring(L, -1);
    if (!reset || !strcmp(reset, "latest") || !strcmp(reset, "largest") || !strcmp(reset, "end"))
        c->reset_to = 1;
    else if (!strcmp(reset, "earliest") || !strcmp(reset, "smallest") || !strcmp(reset, "beginning"))
        c->reset_to = -1;
    lua_pop(L, 1);
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err); /* takes conf on success */
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return push_fail(L, err);
    }
    /* Serve everything (rebalances, errors) from consumer_poll. */
    rd_kafka_poll_set_consumer(c->rk);
    *ud = c;   /* the userdata owns it from here */
    return 1;
}

static int l_consumer_ptr(lua_State *L)
{
    lua_pushlightuserdata(L, check_consumer(L));
    return 1;
}

/* consumer:subscribe({ "topic", ... }) -> true | nil, err */
static int l_consumer_subscribe(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)lua_objlen(L, 2);
    for (int i = 1; i <= n; i++) {          /* checked first: nothing to free on a raise */
        lua_rawgeti(L, 2, i);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "subscribe: topic %d is not a string", i);
        lua_pop(L, 1);
    }
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        rd_kafka_topic_partition_list_add(topics, lua_tostring(L, -1), RD_KAFKA_PARTITION_UA);
        lua_pop(L, 1);
    }
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) return push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

static void push_partition_list(lua_State *L, const rd_kafka_topic_partition_list_t *parts)
{
    lua_createtable(L, parts->cnt, 0);
    for (int i = 0; i < parts->cnt; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, parts->elems[i].topic);
        lua_setfield(L, -2, "topic");
        lua_pushinteger(L, parts->elems[i].partition);
        lua_setfield(L, -2, "partition");
        lua_pushnumber(L, (lua_Number)parts->elems[i].offset);
        lua_setfield(L, -2, "offset");
        lua_rawseti(L, -2, i + 1);
    }
}

/* consumer:take_events() -> { { type = "assign"|"revoke", partitions = {...}
 * [, lost = true] }, ... } */
static int l_consumer_take_events(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    lua_createtable(L, c->events_len, 0);
    for (int i = 0; i < c->events_len; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, c->events[i].assign ? "assign" : "revoke");
        lua_setfield(L, -2, "type");
        push_partition_list(L, c->events[i].partitions);
        lua_setfield(L, -2, "partitions");
        if (c->events[i].lost) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "lost");
        }
        lua_rawseti(L, -2, i + 1);
    }
    /* Freed once the table is complete: a raise above leaves them in place. */
    for (int i = 0; i < c->events_len; i++) rd_kafka_topic_partition_list_destroy(c->events[i].partitions);
    c->events_len = 0;
    return 1;
}

static int l_consumer_assignment(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &parts);
    if (err) return push_fail(L, rd_kafka_err2str(err));
    push_partition_list(L, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return 1;
}

/* Reads { { topic =, partition =, offset = }, ... } at stack index idx.
 * Raises on a malformed entry (before allocating anything). */
static rd_kafka_topic_partition_list_t *partition_list_from_table(lua_State *L, int idx)
{
    int n = (int)lua_objlen(L, idx);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (!lua_istable(L, -1)) luaL_error(L, "partition list entry %d is not a table", i);
        lua_getfield(L, -1, "topic");
        lua_getfield(L, -2, "partition");
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "partition list entry %d has no topic", i);
        if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "partition list entry %d has no partition", i);
        lua_pop(L, 3);
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        lua_getfield(L, -1, "topic");
        lua_getfield(L, -2, "partition");
        lua_getfield(L, -3, "offset");
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(
            parts, lua_tostring(L, -3), (int32_t)lua_tointeger(L, -2));
        tp->offset = lua_type(L, -1) == LUA_TNUMBER ? (int64_t)lua_tonumber(L, -1) : RD_KAFKA_OFFSET_INVALID;
        lua_pop(L, 4);
    }
    return parts;
}

/* consumer:assign({ { topic, partition[, offset] } }) -> true | nil, err.
 * A manual assignment. In the callback mode the starts are resolved first
 * and it is reported as an "assign" event like a rebalance; in the deferred
 * mode it assigns what it is given (resolve_start first) and reports
 * nothing. */
static int l_consumer_assign(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    rd_kafka_topic_partition_list_t *parts = partition_list_from_table(L, 2);
    if (!c->deferred) resolve_start_or_warn(c, parts);
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, parts);
    if (!err && !c->deferred && push_event(c, 1, 0, parts) != 0)
        log_warning(c->rk, "out of memory recording an assignment");
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) return push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:resolve_start({ { topic, partition[, offset] } }, timeout_s = 30)
 * -> the same partitions, each with its start offset | nil, err naming the
 * partitions not resolved within the timeout. See resolve_start. */
static int l_consumer_resolve_start(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ms = timeout_arg(L, 3, 30.0);
    rd_kafka_topic_partition_list_t *parts = partition_list_from_table(L, 2);
    char err[512] = "";
    if (resolve_start(c, parts, ms, err, sizeof err) != 0) {
        rd_kafka_topic_partition_list_destroy(parts);
        return push_fail(L, err);
    }
    push_partition_list(L, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return 1;
}

/* consumer:finish_assign(partitions) -> true | nil, err: takes the
 * partitions of an "assign" event (with their starts, from resolve_start),
 * incrementally under the cooperative protocol. */
static int l_consumer_finish_assign(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    rd_kafka_topic_partition_list_t *parts = partition_list_from_table(L, 2);
    char err[512];
    int rc = apply_assign(c, parts, err, sizeof err);
    rd_kafka_topic_partition_list_destroy(parts);
    if (c->awaiting == AWAIT_ASSIGN) clear_awaiting(c);
    if (rc != 0) return push_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:finish_revoke(partitions) -> true | nil, err: gives up the
 * partitions of a "revoke" event, once Lua has checkpointed them. */
static int l_consumer_finish_revoke(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    rd_kafka_topic_partition_list_t *parts = partition_list_from_table(L, 2);
    char err[512];
    int rc = apply_revoke(c, parts, err, sizeof err);
    rd_kafka_topic_partition_list_destroy(parts);
    if (c->awaiting == AWAIT_REVOKE) clear_awaiting(c);
    if (rc != 0) return push_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:store_offsets({ { topic, partition, offset = next offset } })
 * -> true | nil, err. Partitions no longer assigned are skipped: their
 * messages will be processed again by the new owner (at-least-once). */
static int l_consumer_store_offsets(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    rd_kafka_topic_partition_list_t *parts = partition_list_from_table(L, 2);
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err && err != RD_KAFKA_RESP_ERR__STATE && err != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
        return push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:commit() commits the stored offsets synchronously -> true | nil, err.
 * consumer:commit({ { topic, partition, offset = next offset } }) commits
 * those instead, assigned or not (a checkpoint kept in a group). */
static int l_consumer_commit(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    rd_kafka_topic_partition_list_t *parts = lua_istable(L, 2) ? partition_list_from_table(L, 2) : NULL;
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, parts, 0);
    for (int i = 0; !err && parts && i < parts->cnt; i++) err = parts->elems[i].err;
    if (parts) rd_kafka_topic_partition_list_destroy(parts);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) return push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:committed({ {topic, partition} }, timeout_s) -> same list with offsets */
static int l_consumer_committed(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ms = timeout_arg(L, 3, 10.0);
    rd_kafka_topic_partition_list_t *parts = partition_list_from_table(L, 2);
    rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, parts, ms);
    if (err) {
        rd_kafka_topic_partition_list_destroy(parts);
        return push_fail(L, rd_kafka_err2str(err));
    }
    push_partition_list(L, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return 1;
}

/* consumer:watermarks(topic, partition) -> low, high from the last fetch
 * (no broker round trip), or nil, err */
static int l_consumer_watermarks(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err = rd_kafka_get_watermark_offsets(
        c->rk, luaL_checkstring(L, 2), (int32_t)luaL_checkinteger(L, 3), &low, &high);
    if (err) return push_fail(L, rd_kafka_err2str(err));
    lua_pushnumber(L, (lua_Number)low);
    lua_pushnumber(L, (lua_Number)high);
    return 2;
}

static int l_consumer_take_errors(lua_State *L)
{
    return push_take_errors(L, &check_consumer(L)->errors);
}

/* consumer:close(): leaves the group and destroys the handle. Safe to call
 * twice. The callback mode commits the stored offsets on the way out (the
 * revoke); the deferred mode leaves commits to Lua's last checkpoint, and
 * first finishes a rebalance Lua was told of but did not finish: librdkafka
 * waits for that call before it can leave the group. */
static int l_consumer_close(lua_State *L)
{
    qh_consumer **ud = check_consumer_ud(L);
    qh_consumer *c = *ud;
    if (!c) return 0;
    *ud = NULL;
    release_batch(c);
    if (c->rk) {
        char why[512];
        if (c->awaiting == AWAIT_ASSIGN && apply_assign(c, c->awaiting_parts, why, sizeof why) != 0)
            log_warning(c->rk, "close: finishing the pending assign failed: %s", why);
        if (c->awaiting == AWAIT_REVOKE && apply_revoke(c, c->awaiting_parts, why, sizeof why) != 0)
            log_warning(c->rk, "close: finishing the pending revoke failed: %s", why);
        clear_awaiting(c);
        c->closing = 1;
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    for (int i = 0; i < c->events_len; i++)
        rd_kafka_topic_partition_list_destroy(c->events[i].partitions);
    clear_awaiting(c);
    free(c->events);
    free(c->batch);
    free(c->msgs);
    free(c);
    return 0;
}

/* ---------------------------------------------------------------------
 * Admin: topic creation and metadata, over a producer-type handle */

typedef struct qh_admin {
    rd_kafka_t *rk;
} qh_admin;

static qh_admin *check_admin(lua_State *L)
{
    qh_admin *a = luaL_checkudata(L, 1, ADMIN_MT);
    if (!a->rk) luaL_error(L, "kafka admin client is closed");
    return a;
}

static int l_admin(lua_State *L)
{
    char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_admin *a = lua_newuserdata(L, sizeof *a);
    a->rk = NULL;
    luaL_getmetatable(L, ADMIN_MT);
    lua_setmetatable(L, -2);
    rd_kafka_conf_t *conf = conf_from_table(L, 1, NULL, err, sizeof err);
    if (!conf) return push_fail(L, err);
    a->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);   /* takes conf on success */
    if (!a->rk) {
        rd_kafka_conf_destroy(conf);
        return push_fail(L, err);
    }
    return 1;
}

/* admin:partitions(topic, timeout_s) -> count | nil, err ("unknown topic"
 * when it does not exist). Asks for all topics so that the request itself
 * never auto-creates the topic. */
static int l_admin_partitions(lua_State *L)
{
    qh_admin *a = check_admin(L);
    const char *topic = luaL_checkstring(L, 2);
    int ms = timeout_arg(L, 3, 10.0);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(a->rk, 1, NULL, &md, ms);
    if (err) return push_fail(L, rd_kafka_err2str(err));
    int count = -1;
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err) {
            count = md->topics[i].partition_cnt;
            break;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (count < 0) return push_fail(L, "unknown topic");
    lua_pushinteger(L, count);
    return 1;
}

/* One entry of create_topics' list (the table at the top of the stack) as
 * a NewTopic: NULL with err naming the topic (or the entry) and the
 * property when anything is wrong. Never raises. */
static rd_kafka_NewTopic_t *new_topic_from_table(lua_State *L, int i, char *err, size_t errlen)
{
    rd_kafka_NewTopic_t *t = NULL;
    int top = lua_gettop(L);
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "topic entry %d is not a table", i);
        goto fail;
    }
    lua_getfield(L, top, "name");
    lua_getfield(L, top, "num_partitions");
    lua_getfield(L, top, "replication_factor");
    if (lua_type(L, -3) != LUA_TSTRING) {
        snprintf(err, errlen, "topic entry %d has no name", i);
        goto fail;
    }
    const char *name = lua_tostring(L, -3);
    if (!lua_isnil(L, -2) && lua_type(L, -2) != LUA_TNUMBER) {
        snprintf(err, errlen, "creating topic %s: num_partitions must be a number", name);
        goto fail;
    }
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER) {
        snprintf(err, errlen, "creating topic %s: replication_factor must be a number", name);
        goto fail;
    }
    int parts = lua_isnil(L, -2) ? 1 : (int)lua_tointeger(L, -2);
    int rf = lua_isnil(L, -1) ? 1 : (int)lua_tointeger(L, -1);
    char why[256];
    t = rd_kafka_NewTopic_new(name, parts, rf, why, sizeof why);
    if (!t) {
        snprintf(err, errlen, "creating topic %s: %s", name, why);
        goto fail;
    }
    lua_getfield(L, top, "config");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
        snprintf(err, errlen, "creating topic %s: config must be a table", name);
        goto fail;
    }
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING) {    /* converting it would break lua_next */
                char what[64];
                describe_key(L, -2, what, sizeof what);
                snprintf(err, errlen, "creating topic %s: config property names must be strings, got %s",
                         name, what);
                goto fail;
            }
            const char *k = lua_tostring(L, -2), *v = config_value(L, -1);
            if (!v) {
                snprintf(err, errlen, "creating topic %s: config property %s must be a string, "
                         "number or boolean, got %s", name, k, luaL_typename(L, -1));
                goto fail;
            }
            rd_kafka_resp_err_t cerr = rd_kafka_NewTopic_set_config(t, k, v);
            if (cerr) {
                snprintf(err, errlen, "creating topic %s: config property %s: %s", name, k,
                         rd_kafka_err2str(cerr));
                goto fail;
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    return t;
fail:
    if (t) rd_kafka_NewTopic_destroy(t);
    lua_settop(L, top);
    return NULL;
}

/* admin:create_topics({ { name=, num_partitions=, replication_factor=,
 * config = { k = v } }, ... }, timeout_s) -> { [name] = "created" | "exists" }
 * | nil, err (the first failure, naming the topic, and the property when
 * one is wrong; a wrong entry fails before anything is sent). */
static int l_admin_create_topics(lua_State *L)
{
    qh_admin *a = check_admin(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ms = timeout_arg(L, 3, 30.0);
    int n = (int)lua_objlen(L, 2);
    char err[512] = "";
    rd_kafka_NewTopic_t **topics = calloc((size_t)(n ? n : 1), sizeof *topics);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    int made = 0;
    if (!topics) goto fail;
    rd_kafka_AdminOptions_set_operation_timeout(opts, ms, err, sizeof err);
    rd_kafka_AdminOptions_set_request_timeout(opts, ms, err, sizeof err);
    err[0] = '\0';
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        topics[made] = new_topic_from_table(L, i, err, sizeof err);
        lua_pop(L, 1);
        if (!topics[made]) goto fail;
        made++;
    }
    rd_kafka_CreateTopics(a->rk, topics, (size_t)made, opts, queue);
    ev = rd_kafka_queue_poll(queue, ms < 0 ? -1 : ms + 5000);
    if (!ev) {
        snprintf(err, sizeof err, "creating topics timed out after %d ms", ms);
        goto fail;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, sizeof err, "creating topics: %s", rd_kafka_event_error_string(ev));
        goto fail;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(res, &cnt);
    lua_createtable(L, 0, (int)cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(results[i]);
        const char *name = rd_kafka_topic_result_name(results[i]);
        if (terr && terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            const char *why = rd_kafka_topic_result_error_string(results[i]);
            snprintf(err, sizeof err, "creating topic %s: %s", name, why ? why : rd_kafka_err2str(terr));
            lua_pop(L, 1);
            goto fail;
        }
        lua_pushstring(L, terr ? "exists" : "created");
        lua_setfield(L, -2, name);
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy_array(topics, (size_t)made);
    free(topics);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(queue);
    return 1;
fail:
    if (ev) rd_kafka_event_destroy(ev);
    if (topics) rd_kafka_NewTopic_destroy_array(topics, (size_t)made);
    free(topics);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(queue);
    return push_fail(L, err[0] ? err : "out of memory");
}

/* admin:watermarks(topic, partition, timeout_s) -> low, high, asked of the
 * broker now, or nil, err. On this handle of its own the request never waits
 * behind a consumer's long-polling fetch. */
static int l_admin_watermarks(lua_State *L)
{
    qh_admin *a = check_admin(L);
    int64_t low = 0, high = 0;
    int ms = timeout_arg(L, 4, 10.0);
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        a->rk, luaL_checkstring(L, 2), (int32_t)luaL_checkinteger(L, 3), &low, &high, ms);
    if (err) return push_fail(L, rd_kafka_err2str(err));
    lua_pushnumber(L, (lua_Number)low);
    lua_pushnumber(L, (lua_Number)high);
    return 2;
}

static int l_admin_close(lua_State *L)
{
    qh_admin *a = luaL_checkudata(L, 1, ADMIN_MT);
    if (a->rk) rd_kafka_destroy(a->rk);
    a->rk = NULL;
    return 0;
}

/* ---------------------------------------------------------------------
 * The embedded broker: librdkafka's mock cluster, in this process */

typedef struct qh_mock {
    rd_kafka_t *rk;                 /* the handle the cluster lives on */
    rd_kafka_mock_cluster_t *mc;
} qh_mock;

static qh_mock *check_mock(lua_State *L)
{
    qh_mock *m = luaL_checkudata(L, 1, MOCK_MT);
    if (!m->mc) luaL_error(L, "embedded broker is stopped");
    return m;
}

/* kafka.mock_cluster(brokers) -> mock | nil, err */
static int l_mock_cluster(lua_State *L)
{
    char err[512];
    int brokers = (int)luaL_optinteger(L, 1, 1);
    luaL_argcheck(L, brokers >= 1, 1, "broker count must be at least 1");
    qh_mock *m = lua_newuserdata(L, sizeof *m);
    m->rk = NULL;
    m->mc = NULL;
    luaL_getmetatable(L, MOCK_MT);
    lua_setmetatable(L, -2);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_log);
    /* The mock logs every unsupported request at warning level; the user
     * only needs to hear about real trouble. */
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return push_fail(L, err);
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        rd_kafka_destroy(rk);
        return push_fail(L, "cannot start the embedded broker (librdkafka mock cluster)");
    }
    m->rk = rk;   /* the userdata owns both from here */
    m->mc = mc;
    return 1;
}

static int l_mock_bootstraps(lua_State *L)
{
    lua_pushstring(L, rd_kafka_mock_cluster_bootstraps(check_mock(L)->mc));
    return 1;
}

/* mock:create_topic(name, partitions) -> true | nil, err */
static int l_mock_create_topic(lua_State *L)
{
    qh_mock *m = check_mock(L);
    int partitions = (int)luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, partitions >= 1, 3, "partition count must be at least 1");
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(m->mc, luaL_checkstring(L, 2), partitions, 1);
    if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        return push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

/* mock:push_request_errors(api_key, { err, ... }) -> true: the next
 * requests of that Kafka API (0 is Produce) get these errors, one per
 * request, in order: for tests of the paths that handle broker errors. */
static int l_mock_push_request_errors(lua_State *L)
{
    qh_mock *m = check_mock(L);
    int api = (int)luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    rd_kafka_resp_err_t errs[64];
    int n = (int)lua_objlen(L, 3);
    luaL_argcheck(L, n >= 1 && n <= 64, 3, "1 to 64 error codes");
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 3, i + 1);
        errs[i] = (rd_kafka_resp_err_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    rd_kafka_mock_push_request_errors_array(m->mc, (int16_t)api, (size_t)n, errs);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_mock_close(lua_State *L)
{
    qh_mock *m = luaL_checkudata(L, 1, MOCK_MT);
    if (m->mc) {
        rd_kafka_mock_cluster_destroy(m->mc);
        rd_kafka_destroy(m->rk);
    }
    m->mc = NULL;
    m->rk = NULL;
    return 0;
}

/* --------------------------------------------------------------------- */

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

int qh_kafka_open(lua_State *L)
{
    static const luaL_Reg producer_methods[] = {
        { "ptr", l_producer_ptr }, { "flush", l_producer_flush },
        { "outq_len", l_producer_outq_len }, { "take_failures", l_producer_take_failures },
        { "take_errors", l_producer_take_errors },
        { "close", l_producer_close }, { NULL, NULL },
    };
    static const luaL_Reg consumer_methods[] = {
        { "ptr", l_consumer_ptr }, { "subscribe", l_consumer_subscribe },
        { "take_events", l_consumer_take_events }, { "assignment", l_consumer_assignment },
        { "assign", l_consumer_assign }, { "resolve_start", l_consumer_resolve_start },
        { "finish_assign", l_consumer_finish_assign }, { "finish_revoke", l_consumer_finish_revoke },
        { "store_offsets", l_consumer_store_offsets }, { "commit", l_consumer_commit },
        { "committed", l_consumer_committed }, { "watermarks", l_consumer_watermarks },
        { "take_errors", l_consumer_take_errors }, { "close", l_consumer_close },
        { NULL, NULL },
    };
    static const luaL_Reg admin_methods[] = {
        { "partitions", l_admin_partitions }, { "create_topics", l_admin_create_topics },
        { "watermarks", l_admin_watermarks },
        { "close", l_admin_close }, { NULL, NULL },
    };
    static const luaL_Reg mock_methods[] = {
        { "bootstraps", l_mock_bootstraps }, { "create_topic", l_mock_create_topic },
        { "push_request_errors", l_mock_push_request_errors },
        { "close", l_mock_close }, { NULL, NULL },
    };
    static const luaL_Reg fns[] = {
        { "producer", l_producer }, { "consumer", l_consumer }, { "admin", l_admin },
        { "mock_cluster", l_mock_cluster }, { "set_log_prefix", l_set_log_prefix },
        { NULL, NULL },
    };
    new_class(L, PRODUCER_MT, producer_methods, l_producer_close);
    new_class(L, CONSUMER_MT, consumer_methods, l_consumer_close);
    new_class(L, ADMIN_MT, admin_methods, l_admin_close);
    new_class(L, MOCK_MT, mock_methods, l_mock_close);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushstring(L, rd_kafka_version_str());
    lua_setfield(L, -2, "librdkafka_version");
    return 1;
}
