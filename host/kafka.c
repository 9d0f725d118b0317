/* kafka.c: Kafka clients for qhost (see kafka.h).
 *
 * Lua objects are full userdata holding a pointer to the C handle; the
 * `ptr` method hands that pointer to the FFI side (lua/qhost/kafka.lua) for
 * the per-message functions. The userdata owns the handle: close() or __gc
 * destroys it, after which ptr() raises. */
#include "kafka.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

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

/* Builds a conf from a Lua table of librdkafka properties (values are
 * converted with tostring). Returns NULL with err set on a bad property. */
static rd_kafka_conf_t *conf_from_table(lua_State *L, int idx, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *key = lua_tostring(L, -2);
        const char *value;
        if (lua_type(L, -1) == LUA_TBOOLEAN)
            value = lua_toboolean(L, -1) ? "true" : "false";
        else
            value = lua_tostring(L, -1);
        if (!key || !value) {
            snprintf(err, errlen, "kafka config: property %s must be a string, number or boolean",
                     key ? key : "(non-string key)");
            lua_pop(L, 2);
            goto fail;
        }
        char cerr[256];
        if (rd_kafka_conf_set(conf, key, value, cerr, sizeof cerr) != RD_KAFKA_CONF_OK) {
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

/* errors comes first: the error callback gets the handle as client_errors. */
struct qh_producer {
    client_errors errors;
    rd_kafka_t *rk;
    int delivery_failures;          /* since the last take */
    char first_failure[512];
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

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    qh_producer *p = opaque;
    (void)rk;
    if (!m->err) return;
    if (p->delivery_failures++ == 0)
        snprintf(p->first_failure, sizeof p->first_failure, "delivery to %s [%d] failed: %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
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
    for (;;) {
        rd_kafka_headers_t *hdrs = NULL;
        if (header_count > 0) {
            hdrs = rd_kafka_headers_new((size_t)header_count);
            for (int i = 0; i < header_count; i++)
                rd_kafka_header_add(hdrs, header_names[i], -1, header_values[i],
                                    header_values[i] ? (ssize_t)header_value_lens[i] : 0);
        }
        rd_kafka_resp_err_t err = rd_kafka_producev(
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
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* Wait the queue out by serving delivery reports; never drop. */
            rd_kafka_poll(p->rk, 100);
            continue;
        }
        snprintf(p->errstr, sizeof p->errstr, "produce to %s [%d] failed: %s", topic,
                 (int)partition, rd_kafka_err2str(err));
        if (temporary) rd_kafka_topic_destroy(temporary);
        return (int)err;
    }
    if (temporary) rd_kafka_topic_destroy(temporary);
    return 0;
}

const char *qh_ffi_producer_errstr(qh_producer *p)
{
    return p->errstr;
}

int qh_ffi_producer_poll(qh_producer *p, int timeout_ms)
{
    return rd_kafka_poll(p->rk, timeout_ms);
}

int qh_ffi_producer_take_failures(qh_producer *p, char *buf, size_t buflen)
{
    int n = p->delivery_failures;
    if (n && buf && buflen) snprintf(buf, buflen, "%s", p->first_failure);
    p->delivery_failures = 0;
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

/* kafka.producer(config) -> producer | nil, err */
static int l_producer(lua_State *L)
{
    char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_producer *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "out of memory");
    rd_kafka_conf_t *conf = conf_from_table(L, 1, err, sizeof err);
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
    qh_producer **ud = lua_newuserdata(L, sizeof *ud);
    *ud = p;
    luaL_getmetatable(L, PRODUCER_MT);
    lua_setmetatable(L, -2);
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

static int l_producer_take_errors(lua_State *L)
{
    return push_take_errors(L, &check_producer(L)->errors);
}

static int l_producer_close(lua_State *L)
{
    qh_producer **ud = check_producer_ud(L);
    if (*ud) {
        for (int i = 0; i < (*ud)->ntopics; i++) {
            rd_kafka_topic_destroy((*ud)->topics[i].rkt);
            free((*ud)->topics[i].name);
        }
        rd_kafka_destroy((*ud)->rk);
        free(*ud);
        *ud = NULL;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Consumer */

typedef struct rebalance_event {
    int assign;                 /* 1 assign, 0 revoke */
    rd_kafka_topic_partition_list_t *partitions;
} rebalance_event;

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
    char errstr[512];
};

static void push_event(qh_consumer *c, int assign, const rd_kafka_topic_partition_list_t *parts)
{
    if (c->events_len == c->events_cap) {
        int cap = c->events_cap ? c->events_cap * 2 : 8;
        rebalance_event *ev = realloc(c->events, (size_t)cap * sizeof *ev);
        if (!ev) return;
        c->events = ev;
        c->events_cap = cap;
    }
    c->events[c->events_len].assign = assign;
    c->events[c->events_len].partitions = rd_kafka_topic_partition_list_copy(parts);
    c->events_len++;
}

/* A topic created a moment ago may have no leader yet: ask again for a
 * while (about 15 s) rather than fall back to a reset that may skip data. */
static rd_kafka_resp_err_t query_watermarks_patiently(rd_kafka_t *rk, const char *topic,
                                                      int32_t partition, int64_t *low, int64_t *high)
{
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < 30; attempt++) {
        err = rd_kafka_query_watermark_offsets(rk, topic, partition, low, high, 5000);
        if (!err) break;
        struct timespec pause = { 0, 200 * 1000000L };
        nanosleep(&pause, NULL);
    }
    return err;
}

/* Gives every partition an explicit start: its committed offset, else its
 * current end (auto.offset.reset latest) or beginning (earliest). Left to
 * librdkafka, a latest reset happens asynchronously after the assignment,
 * and whatever a source produced in between (sources start right after the
 * assignment) would be skipped; and the app needs to know where each
 * partition starts to measure its backlog. Partitions keep INVALID
 * (librdkafka's own reset) when a lookup fails. */
static void resolve_start(qh_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    if (!c->reset_to || parts->cnt == 0) return;
    int unresolved = 0;
    for (int i = 0; i < parts->cnt; i++) unresolved += parts->elems[i].offset < 0;
    if (!unresolved) return;                           /* all given explicitly */
    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, committed, 10000);
    for (int attempt = 0; err && attempt < 3; attempt++)   /* a coordinator still loading */
        err = rd_kafka_committed(c->rk, committed, 10000);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            int64_t low = 0, high = 0;
            if (tp->offset >= 0) continue;                 /* an explicit start */
            if (committed->elems[i].offset >= 0) {
                tp->offset = committed->elems[i].offset;
            } else if (query_watermarks_patiently(c->rk, tp->topic, tp->partition, &low, &high) == 0) {
                tp->offset = c->reset_to > 0 ? high : low;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(committed);
}

/* Runs inside rd_kafka_consumer_poll on the Lua thread. On revoke, the
 * offsets Lua stored (those whose outputs are flushed) are committed before
 * the partitions go to another member. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    qh_consumer *c = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        resolve_start(c, parts);
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else rd_kafka_assign(rk, parts);
        push_event(c, 1, parts);
    } else {
        rd_kafka_commit(rk, NULL, 0);
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else rd_kafka_assign(rk, NULL);
        push_event(c, 0, parts);
    }
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
    while (c->batch_len < max) {
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

/* kafka.consumer(config) -> consumer | nil, err */
static int l_consumer(lua_State *L)
{
    char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_consumer *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "out of memory");
    rd_kafka_conf_t *conf = conf_from_table(L, 1, err, sizeof err);
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
    qh_consumer **ud = lua_newuserdata(L, sizeof *ud);
    *ud = c;
    luaL_getmetatable(L, CONSUMER_MT);
    lua_setmetatable(L, -2);
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
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        rd_kafka_topic_partition_list_add(topics, luaL_checkstring(L, -1), RD_KAFKA_PARTITION_UA);
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

/* consumer:take_events() -> { { type = "assign"|"revoke", partitions = {...} }, ... } */
static int l_consumer_take_events(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    lua_createtable(L, c->events_len, 0);
    for (int i = 0; i < c->events_len; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, c->events[i].assign ? "assign" : "revoke");
        lua_setfield(L, -2, "type");
        push_partition_list(L, c->events[i].partitions);
        lua_setfield(L, -2, "partitions");
        lua_rawseti(L, -2, i + 1);
        rd_kafka_topic_partition_list_destroy(c->events[i].partitions);
    }
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

/* Reads { { topic =, partition =, offset = }, ... } at stack index idx. */
static rd_kafka_topic_partition_list_t *partition_list_from_table(lua_State *L, int idx)
{
    int n = (int)lua_objlen(L, idx);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        lua_getfield(L, -1, "topic");
        lua_getfield(L, -2, "partition");
        lua_getfield(L, -3, "offset");
        const char *topic = lua_tostring(L, -3);
        if (!topic) {
            rd_kafka_topic_partition_list_destroy(parts);
            luaL_error(L, "partition list entry %d has no topic", i);
        }
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(
            parts, topic, (int32_t)lua_tointeger(L, -2));
        tp->offset = lua_isnumber(L, -1) ? (int64_t)lua_tonumber(L, -1) : RD_KAFKA_OFFSET_INVALID;
        lua_pop(L, 4);
    }
    return parts;
}

/* consumer:assign({ { topic, partition[, offset] } }) -> true | nil, err.
 * A manual assignment, reported as an "assign" event like a rebalance. */
static int l_consumer_assign(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    rd_kafka_topic_partition_list_t *parts = partition_list_from_table(L, 2);
    resolve_start(c, parts);
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, parts);
    if (!err) push_event(c, 1, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) return push_fail(L, rd_kafka_err2str(err));
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

/* consumer:close(): leaves the group (committing stored offsets on the
 * revoke) and destroys the handle. Safe to call twice. */
static int l_consumer_close(lua_State *L)
{
    qh_consumer **ud = check_consumer_ud(L);
    qh_consumer *c = *ud;
    if (!c) return 0;
    *ud = NULL;
    release_batch(c);
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    for (int i = 0; i < c->events_len; i++)
        rd_kafka_topic_partition_list_destroy(c->events[i].partitions);
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
    rd_kafka_conf_t *conf = conf_from_table(L, 1, err, sizeof err);
    if (!conf) return push_fail(L, err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return push_fail(L, err);
    }
    qh_admin *a = lua_newuserdata(L, sizeof *a);
    a->rk = rk;
    luaL_getmetatable(L, ADMIN_MT);
    lua_setmetatable(L, -2);
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

/* admin:create_topics({ { name=, num_partitions=, replication_factor=,
 * config = { k = v } }, ... }, timeout_s) -> { [name] = "created" | "exists" }
 * | nil, err (the first failure, naming the topic). */
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
    for (int i = 1; i <= n; i++, made++) {
        lua_rawgeti(L, 2, i);
        lua_getfield(L, -1, "name");
        lua_getfield(L, -2, "num_partitions");
        lua_getfield(L, -3, "replication_factor");
        const char *name = lua_tostring(L, -3);
        int parts = (int)luaL_optinteger(L, -2, 1);
        int rf = (int)luaL_optinteger(L, -1, 1);
        topics[made] = name ? rd_kafka_NewTopic_new(name, parts, rf, err, sizeof err) : NULL;
        lua_pop(L, 3);
        if (!topics[made]) {
            lua_pop(L, 1);
            if (!name) snprintf(err, sizeof err, "topic entry %d has no name", i);
            goto fail;
        }
        lua_getfield(L, -1, "config");
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
                if (k && v) rd_kafka_NewTopic_set_config(topics[made], k, v);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 2);
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
    qh_mock *m = lua_newuserdata(L, sizeof *m);
    m->rk = rk;
    m->mc = mc;
    luaL_getmetatable(L, MOCK_MT);
    lua_setmetatable(L, -2);
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
        { "outq_len", l_producer_outq_len }, { "take_errors", l_producer_take_errors },
        { "close", l_producer_close }, { NULL, NULL },
    };
    static const luaL_Reg consumer_methods[] = {
        { "ptr", l_consumer_ptr }, { "subscribe", l_consumer_subscribe },
        { "take_events", l_consumer_take_events }, { "assignment", l_consumer_assignment },
        { "assign", l_consumer_assign },
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
