/* kafka_producer.c: the Kafka producer of `qhost.kafka` (see kafka.h for its
 * per-message FFI functions, kafka_internal.h for the unit's place): the
 * kafka.producer constructor and its Lua methods (flush, outq_len,
 * take_failures, take_errors, delivered, close; the transactional ones are
 * kafka_txn.c's), qh_ffi_produce with its wait for room in a full queue,
 * the per-topic handle cache, and the delivery reports, which record each
 * failed message for Lua to take and count the delivered ones per topic and
 * partition (producer:delivered, the app's metrics).
 *
 * A producer made with qhost.produce.batch (a source's) holds its plain
 * messages before librdkafka has them (kafka_batch.c, which says why), and
 * has a lock: the batch's timer thread hands messages over too, and records
 * the ones refused at the hand-over as failed deliveries. Under the lock:
 * every hand-over, every rd_kafka_poll and rd_kafka_flush (the delivery
 * reports write the failures), every look at the failures. Without a batch
 * there is one thread, and no lock is taken.
 * Uses: librdkafka, pthreads, luaclass.h, kafka_config.c (conf, callbacks),
 * kafka_batch.c, hostlib.h (the stop flag). */
#include "kafka_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostlib.h"
#include "luaclass.h"

#define QH_TOPIC_CACHE 16
#define QH_FAILURES_MAX 64        /* delivery failures kept between takes */
#define QH_FAILURE_KEY_MAX 256    /* bytes of a failed message's key kept */
/* Delivery reports are served every this many produces (librdkafka runs
 * them only in a poll): a report covers a whole batch of messages, and each
 * poll costs a lock and a clock read. Counted here rather than in Lua: a
 * branch taken every 64th message is a side exit in the message's trace,
 * whose side trace LuaJIT could not always compile ("register coalescing
 * too complex", tried again at every 64th message). */
#define QH_SERVE_EVERY 64

/* One failed delivery, as the delivery report told it. */
typedef struct delivery_failure {
    char topic[256];              /* Kafka topic names have at most 249 bytes */
    int32_t partition;            /* -1 when the partitioner never chose one */
    int code;                     /* rd_kafka_resp_err_t */
    int key_null;
    size_t key_len;               /* the whole key's length */
    char key[QH_FAILURE_KEY_MAX]; /* its first bytes */
} delivery_failure;

/* Messages delivered to one topic, per partition (counts[0..n)). rkt is
 * set when the topic's handle is one the producer keeps (its cache), so the
 * report's handle is matched by pointer; otherwise by name. */
typedef struct delivered_topic {
    char *name;
    const rd_kafka_topic_t *rkt;
    int64_t *counts;
    int32_t n;
} delivered_topic;

/* errors comes first: the error callback gets the handle as qh_client_errors. */
struct qh_producer {
    qh_client_errors errors;
    rd_kafka_t *rk;
    /* Failed deliveries since the last take, oldest first, and how many
     * more there were past QH_FAILURES_MAX. Written by the delivery report
     * callback, which librdkafka runs inside rd_kafka_poll/flush on the
     * calling (Lua) thread, and by a batch's hand-over (either thread):
     * under the lock. `failed` is their sum, for the check that every
     * produce makes without the lock. */
    int nfailures;
    int dropped;
    atomic_int failed;
    delivery_failure failures[QH_FAILURES_MAX];
    qh_batch *batch;              /* owned; NULL without qhost.produce.batch */
    pthread_mutex_t lock;         /* initialized with a batch only */
    int queue_full_timeout_ms;    /* -1: wait until a stop is requested */
    int unserved;                 /* produces since delivery reports were last served */
    char errstr[512];
    /* Topic handles, owned, kept for the producer's life (see cached_topic),
     * with what a batch knows of their partitions (owned; NULL without). */
    struct { char *name; rd_kafka_topic_t *rkt; qh_batch_topic *held; } topics[QH_TOPIC_CACHE];
    int ntopics;
    /* Delivered messages since the producer was made, written by the
     * delivery reports (the Lua thread, as failures), owned. */
    delivered_topic *delivered;
    int ndelivered;
};

/* The index in p->topics of the producer's handle for `name`, made on
 * first use and kept. Producing through it spares librdkafka a by-name
 * lookup per message (a lock and a list scan in
 * rd_kafka_producev(RD_KAFKA_V_TOPIC)), and a handle made before the first
 * message (qh_ffi_producer_topic) has its metadata by then: a topic first
 * named by a produce call waits up to librdkafka's 1 s topic scan before
 * anything is sent. A producer with a batch makes it with the batch's
 * watch of its partitions (qh_batch_topic_conf). -1 when the cache is full
 * or out of memory: the caller then makes a handle of the moment. */
static int cached_topic(qh_producer *p, const char *name)
{
    for (int i = 0; i < p->ntopics; i++)
        if (strcmp(p->topics[i].name, name) == 0) return i;
    if (p->ntopics == QH_TOPIC_CACHE) return -1;
    char *copy = strdup(name);
    if (!copy) return -1;
    qh_batch_topic *held = NULL;
    rd_kafka_topic_conf_t *conf = p->batch ? qh_batch_topic_conf(p->rk, &held) : NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, name, conf);   /* takes conf */
    if (!rkt) {
        qh_batch_topic_free(held);
        free(copy);
        return -1;
    }
    p->topics[p->ntopics].name = copy;
    p->topics[p->ntopics].rkt = rkt;
    p->topics[p->ntopics].held = held;
    return p->ntopics++;
}

int qh_ffi_producer_topic(qh_producer *p, const char *name)
{
    return cached_topic(p, name) < 0 ? -1 : 0;
}

static int is_cached_topic(const qh_producer *p, const rd_kafka_topic_t *rkt)
{
    for (int i = 0; i < p->ntopics; i++)
        if (p->topics[i].rkt == rkt) return 1;
    return 0;
}

/* Counts one delivered message. The counts are metrics: when memory runs
 * out, the message goes uncounted rather than failing anything. */
static void count_delivered(qh_producer *p, const rd_kafka_message_t *m)
{
    if (!m->rkt || m->partition < 0) return;
    const char *name = rd_kafka_topic_name(m->rkt);
    delivered_topic *t = NULL;
    for (int i = 0; i < p->ndelivered && !t; i++) {
        delivered_topic *e = &p->delivered[i];
        if ((e->rkt && e->rkt == m->rkt) || strcmp(e->name, name) == 0) t = e;
    }
    if (!t) {
        delivered_topic *grown = realloc(p->delivered, (size_t)(p->ndelivered + 1) * sizeof *grown);
        if (!grown) return;
        p->delivered = grown;
        t = &grown[p->ndelivered];
        memset(t, 0, sizeof *t);
        if (!(t->name = strdup(name))) return;
        t->rkt = is_cached_topic(p, m->rkt) ? m->rkt : NULL;
        p->ndelivered++;
    }
    if (m->partition >= t->n) {
        int32_t n = t->n ? t->n : 8;
        while (n <= m->partition) n *= 2;
        int64_t *grown = realloc(t->counts, (size_t)n * sizeof *grown);
        if (!grown) return;
        memset(grown + t->n, 0, (size_t)(n - t->n) * sizeof *grown);
        t->counts = grown;
        t->n = n;
    }
    t->counts[m->partition]++;
}

static void lock_producer(qh_producer *p)
{
    if (p->batch) pthread_mutex_lock(&p->lock);
}

static void unlock_producer(qh_producer *p)
{
    if (p->batch) pthread_mutex_unlock(&p->lock);
}

/* Records the failed message m (of topic rkt) with what identifies it
 * (librdkafka copied key and topic with it). Lock held. */
static void record_failure(qh_producer *p, const rd_kafka_topic_t *rkt, const rd_kafka_message_t *m)
{
    if (p->nfailures == QH_FAILURES_MAX) {
        p->dropped++;
    } else {
        delivery_failure *f = &p->failures[p->nfailures++];
        snprintf(f->topic, sizeof f->topic, "%s", rkt ? rd_kafka_topic_name(rkt) : "");
        f->partition = m->partition;
        f->code = m->err;
        f->key_null = m->key == NULL;
        f->key_len = m->key ? m->key_len : 0;
        if (m->key) memcpy(f->key, m->key, f->key_len < QH_FAILURE_KEY_MAX ? f->key_len : QH_FAILURE_KEY_MAX);
    }
    atomic_store_explicit(&p->failed, p->nfailures + p->dropped, memory_order_relaxed);
}

static void clear_failures(qh_producer *p)
{
    p->nfailures = 0;
    p->dropped = 0;
    atomic_store_explicit(&p->failed, 0, memory_order_relaxed);
}

/* Each message's report is its own: a failure is recorded, never folded
 * into the next produce call. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    qh_producer *p = opaque;
    (void)rk;
    if (m->err)
        record_failure(p, m->rkt, m);
    else
        count_delivered(p, m);
}

/* A held message refused at its hand-over fails as a delivery would: it
 * was queued as far as its produce call could tell. */
static void on_refused(void *opaque, rd_kafka_topic_t *rkt, const rd_kafka_message_t *m)
{
    record_failure(opaque, rkt, m);
}

/* The queue was found full (first at *full_since, -1 at the first look):
 * waits a while for room by serving delivery reports, at least once, and
 * returns 0 to try again; or, once a stop is requested (an unreachable
 * broker would hold the stop forever) or the producer's bound passed,
 * RD_KAFKA_RESP_ERR__QUEUE_FULL with errstr set: the message is then not
 * produced, and the caller must not count it as sent. */
static rd_kafka_resp_err_t wait_for_room(qh_producer *p, int64_t *full_since, const char *topic,
                                         int32_t partition)
{
    int64_t now = qh_kafka_monotonic_ms();
    if (*full_since < 0) {
        *full_since = now;
    } else if (qh_ffi_stop_requested() > 0) {
        snprintf(p->errstr, sizeof p->errstr,
                 "produce to %s [%d] interrupted by the stop: the producer's queue is full "
                 "(%d messages queued); this message was not produced",
                 topic, (int)partition, rd_kafka_outq_len(p->rk));
        return RD_KAFKA_RESP_ERR__QUEUE_FULL;
    } else if (p->queue_full_timeout_ms >= 0 && now - *full_since >= p->queue_full_timeout_ms) {
        snprintf(p->errstr, sizeof p->errstr,
                 "produce to %s [%d] failed: the producer's queue is still full after %d ms "
                 "(%d messages queued); this message was not produced",
                 topic, (int)partition, p->queue_full_timeout_ms, rd_kafka_outq_len(p->rk));
        return RD_KAFKA_RESP_ERR__QUEUE_FULL;
    }
    int wait = 100;
    if (p->queue_full_timeout_ms >= 0 && p->queue_full_timeout_ms - (now - *full_since) < wait)
        wait = (int)(p->queue_full_timeout_ms - (now - *full_since));
    rd_kafka_poll(p->rk, wait > 0 ? wait : 0);
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Hands over every held message before the message of `topic` the caller
 * produces next, so that they go in the order they were produced; waits
 * for room in a full queue as a produce does. Lock held. */
static rd_kafka_resp_err_t hand_over_all(qh_producer *p, const char *topic, int32_t partition)
{
    int64_t full_since = -1;
    while (qh_batch_hand_over(p->batch) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_resp_err_t err = wait_for_room(p, &full_since, topic, partition);
        if (err) return err;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Holds a plain message in the batch. 1: held (or refused with errstr set,
 * *err); 0: the caller produces it directly. */
static int produce_held(qh_producer *p, int cached, const char *key, size_t key_len, const char *value,
                        size_t value_len, rd_kafka_resp_err_t *err)
{
    rd_kafka_topic_t *rkt = p->topics[cached].rkt;
    qh_batch_topic *held = p->topics[cached].held;
    *err = RD_KAFKA_RESP_ERR_NO_ERROR;
    switch (qh_batch_hold(p->batch, rkt, held, key, key_len, value, value_len)) {
    case QH_BATCH_HELD:
        /* the reports are served every QH_SERVE_EVERY produces, as
         * without a batch, even when the timer hands over (a slow source's
         * earlier failed delivery must reach its next produce) */
        if (++p->unserved < QH_SERVE_EVERY) return 1;
        /* fall through */
    case QH_BATCH_NOW_FULL:
        /* a batch's worth: hand it over, and serve the delivery reports
         * (a full queue waits for the next produce, which finds the ring
         * full) */
        pthread_mutex_lock(&p->lock);
        qh_batch_hand_over(p->batch);
        rd_kafka_poll(p->rk, 0);
        pthread_mutex_unlock(&p->lock);
        p->unserved = 0;
        return 1;
    case QH_BATCH_FULL:
        pthread_mutex_lock(&p->lock);
        *err = hand_over_all(p, p->topics[cached].name, -1);
        pthread_mutex_unlock(&p->lock);
        /* the ring is empty now, and only this thread fills it */
        if (!*err) qh_batch_hold(p->batch, rkt, held, key, key_len, value, value_len);
        return 1;
    default:
        return 0;
    }
}

int qh_ffi_produce(qh_producer *p, const char *topic, int32_t partition,
                   const char *key, size_t key_len, const char *value, size_t value_len,
                   int64_t timestamp, int header_count, const char **header_names,
                   const char **header_values, const size_t *header_value_lens)
{
    int cached = cached_topic(p, topic);
    rd_kafka_topic_t *rkt = cached < 0 ? NULL : p->topics[cached].rkt;
    rd_kafka_resp_err_t err;
    if (p->batch && rkt && partition < 0 && header_count == 0 && timestamp <= 0 &&
        produce_held(p, cached, key, key_len, value, value_len, &err))
        return (int)err;
    lock_producer(p);
    if (++p->unserved >= QH_SERVE_EVERY) {
        rd_kafka_poll(p->rk, 0);
        p->unserved = 0;
    }
    if (p->batch && (err = hand_over_all(p, topic, partition))) {
        unlock_producer(p);
        return (int)err;
    }
    rd_kafka_topic_t *temporary = NULL;   /* past the cache: a handle of the moment */
    if (!rkt) rkt = temporary = rd_kafka_topic_new(p->rk, topic, NULL);
    if (!rkt) {
        snprintf(p->errstr, sizeof p->errstr, "produce to %s [%d] failed: %s", topic,
                 (int)partition, rd_kafka_err2str(rd_kafka_last_error()));
        unlock_producer(p);
        return (int)rd_kafka_last_error();
    }
    int64_t full_since = -1;   /* when the queue was first found full */
    for (;;) {
        rd_kafka_headers_t *hdrs = NULL;
        int32_t part = partition < 0 ? RD_KAFKA_PARTITION_UA : partition;
        if (header_count == 0 && timestamp <= 0) {
            /* No headers, the time of now: the same message by the plain
             * call, without producev's per-call parsing of its arguments
             * (280 against 310 ns a message, measured with nothing else). */
            err = rd_kafka_produce(rkt, part, RD_KAFKA_MSG_F_COPY, (void *)value, value ? value_len : 0,
                                   key, key ? key_len : 0, NULL) == 0
                      ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_last_error();
        } else {
            if (header_count > 0) {
                hdrs = rd_kafka_headers_new((size_t)header_count);
                for (int i = 0; i < header_count; i++)
                    rd_kafka_header_add(hdrs, header_names[i], -1, header_values[i],
                                        header_values[i] ? (ssize_t)header_value_lens[i] : 0);
            }
            err = rd_kafka_producev(
                p->rk,
                RD_KAFKA_V_RKT(rkt),
                RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key ? key_len : 0),
                RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0),
                RD_KAFKA_V_TIMESTAMP(timestamp > 0 ? timestamp : 0),
                RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_END);
        }
        if (!err) break;               /* librdkafka now owns hdrs */
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(p->errstr, sizeof p->errstr, "produce to %s [%d] failed: %s", topic,
                     (int)partition, rd_kafka_err2str(err));
            break;
        }
        if ((err = wait_for_room(p, &full_since, topic, partition))) break;
    }
    if (temporary) rd_kafka_topic_destroy(temporary);
    unlock_producer(p);
    return (int)err;
}

const char *qh_ffi_producer_errstr(qh_producer *p)
{
    return p->errstr;
}

/* Held messages are handed over first (a full queue keeps them held):
 * a caller that polls while it waits for something (the embedded broker's
 * credit) waits on messages that have left. */
int qh_ffi_producer_poll(qh_producer *p, int timeout_ms)
{
    lock_producer(p);
    if (p->batch) qh_batch_hand_over(p->batch);
    int served = rd_kafka_poll(p->rk, timeout_ms);
    unlock_producer(p);
    return served;
}

int qh_ffi_producer_failures(qh_producer *p)
{
    return atomic_load_explicit(&p->failed, memory_order_relaxed);
}

int qh_ffi_producer_take_failures(qh_producer *p, char *buf, size_t buflen)
{
    lock_producer(p);
    int n = p->nfailures + p->dropped;
    if (p->nfailures && buf && buflen)
        snprintf(buf, buflen, "delivery to %s [%d] failed: %s", p->failures[0].topic,
                 (int)p->failures[0].partition, rd_kafka_err2str(p->failures[0].code));
    clear_failures(p);
    unlock_producer(p);
    return n;
}

/* Messages queued in librdkafka or held, not yet reported. */
static int producer_outq_len(qh_producer *p)
{
    return rd_kafka_outq_len(p->rk) + (p->batch ? qh_batch_held(p->batch) : 0);
}

static qh_producer **check_producer_ud(lua_State *L)
{
    return luaL_checkudata(L, 1, QH_PRODUCER_MT);
}

static qh_producer *check_producer(lua_State *L)
{
    qh_producer **ud = check_producer_ud(L);
    if (!*ud) luaL_error(L, "kafka producer is closed");
    return *ud;
}

rd_kafka_t *qh_kafka_check_producer_rk(lua_State *L, int idx)
{
    qh_producer **ud = luaL_checkudata(L, idx, QH_PRODUCER_MT);
    if (!*ud) luaL_error(L, "kafka producer is closed");
    return (*ud)->rk;
}

static void producer_destroy(qh_producer *p)
{
    if (!p) return;
    if (p->batch) {
        /* what is held goes the way of what is queued (which a destroy
         * does not wait for: flush first) */
        pthread_mutex_lock(&p->lock);
        qh_batch_hand_over(p->batch);
        int left = qh_batch_held(p->batch);
        pthread_mutex_unlock(&p->lock);
        if (left > 0)   /* as librdkafka warns of the queued ones it drops */
            qh_kafka_warn(p->rk, "producer closed with %d messages held for a full queue: dropped", left);
        qh_batch_destroy(p->batch);   /* joins the timer, which uses the handles below */
        pthread_mutex_destroy(&p->lock);
    }
    for (int i = 0; i < p->ntopics; i++) {
        rd_kafka_topic_destroy(p->topics[i].rkt);
        free(p->topics[i].name);
    }
    if (p->rk) rd_kafka_destroy(p->rk);
    for (int i = 0; i < p->ntopics; i++) qh_batch_topic_free(p->topics[i].held);
    for (int i = 0; i < p->ndelivered; i++) {
        free(p->delivered[i].name);
        free(p->delivered[i].counts);
    }
    free(p->delivered);
    free(p);
}

/* kafka.producer(config) -> producer | nil, err. The host's own settings:
 * qhost.queue.full.timeout.ms (default -1: a produce call waits for room in
 * a full queue until a stop is requested; >= 0: at most that long), and
 * qhost.produce.batch (true: hold plain messages and hand them over in
 * batches, kafka_batch.c; not for a transactional producer, whose
 * messages must be in librdkafka before its transaction's calls). A
 * config with a transactional.id makes a transactional producer (see
 * kafka_txn.c). */
int qh_kafka_producer_new(lua_State *L)
{
    static const char *const own[] = { "qhost.queue.full.timeout.ms", "qhost.produce.batch", NULL };
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_producer **ud = qh_luaclass_new(L, QH_PRODUCER_MT, sizeof *ud);

    lua_getfield(L, 1, own[0]);
    double bound = -1;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            return qh_kafka_push_fail(L, "kafka config: qhost.queue.full.timeout.ms must be a number of milliseconds");
        bound = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, own[1]);
    const char *batch_value = qh_kafka_config_value(L, -1);   /* true or "true", as librdkafka's booleans */
    int batch = batch_value && strcmp(batch_value, "true") == 0;
    lua_pop(L, 1);
    lua_getfield(L, 1, "transactional.id");
    if (!lua_isnil(L, -1)) batch = 0;
    lua_pop(L, 1);

    qh_producer *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "out of memory");
    p->queue_full_timeout_ms = !(bound >= 0) ? -1 : bound > INT_MAX ? INT_MAX : (int)bound;   /* NaN: none */
    conf = qh_kafka_conf_from_table(L, 1, own, err, sizeof err);
    if (!conf) goto fail;
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    qh_kafka_conf_count_errors(conf);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);   /* takes conf on success */
    if (!p->rk) goto fail;
    *ud = p;   /* the userdata owns it from here */
    if (batch) {
        pthread_mutex_init(&p->lock, NULL);
        p->batch = qh_batch_new(p->rk, &p->lock, on_refused, p);
        if (!p->batch) {
            pthread_mutex_destroy(&p->lock);
            return qh_kafka_push_fail(L, "kafka producer: cannot start the thread of qhost.produce.batch");
        }
    }
    return 1;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    free(p);
    return qh_kafka_push_fail(L, err);
}

static int l_producer_ptr(lua_State *L)
{
    lua_pushlightuserdata(L, check_producer(L));
    return 1;
}

/* Hands over what is held within ms (-1: no bound), making room by
 * flushing (which also sends what lingers). Lock held. Returns what is
 * left of ms (-1 stays -1). */
static int hand_over_flushing(qh_producer *p, int ms)
{
    int64_t deadline = ms < 0 ? INT64_MAX : qh_kafka_monotonic_ms() + ms;
    while (qh_batch_hand_over(p->batch) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        int64_t left = deadline - qh_kafka_monotonic_ms();
        if (left <= 0) return 0;
        rd_kafka_flush(p->rk, left < 100 ? (int)left : 100);
    }
    if (ms < 0) return -1;
    int64_t left = deadline - qh_kafka_monotonic_ms();
    return left > 0 ? (int)left : 0;
}

/* producer:flush(timeout_s) -> messages still queued or held (0 when all
 * delivered) */
static int l_producer_flush(lua_State *L)
{
    qh_producer *p = check_producer(L);
    int ms = qh_kafka_timeout_arg(L, 2, 10.0);
    lock_producer(p);
    if (p->batch) ms = hand_over_flushing(p, ms);
    rd_kafka_flush(p->rk, ms);
    lua_pushinteger(L, producer_outq_len(p));
    unlock_producer(p);
    return 1;
}

static int l_producer_outq_len(lua_State *L)
{
    lua_pushinteger(L, producer_outq_len(check_producer(L)));
    return 1;
}

/* producer:take_failures() -> nothing when no delivery failed since the
 * last take, else { { topic =, partition =, key = (first 256 bytes; absent
 * for a null key), key_truncated = true (only when it was), code =, error = },
 * ..., dropped = n (only when more failed than were kept) }. */
static int l_producer_take_failures(lua_State *L)
{
    qh_producer *p = check_producer(L);
    /* taken under the lock, turned into tables after it: a Lua call may
     * raise (out of memory), which must not leave the lock held */
    delivery_failure taken[QH_FAILURES_MAX];
    lock_producer(p);
    int n = p->nfailures, dropped = p->dropped;
    memcpy(taken, p->failures, (size_t)n * sizeof *taken);
    clear_failures(p);
    unlock_producer(p);
    if (n + dropped == 0) return 0;
    lua_createtable(L, n, 1);
    for (int i = 0; i < n; i++) {
        const delivery_failure *f = &taken[i];
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
    if (dropped) {
        lua_pushinteger(L, dropped);
        lua_setfield(L, -2, "dropped");
    }
    return 1;
}

/* producer:delivered() -> { { topic =, partition =, count = }, ... }: the
 * messages delivered (acknowledged by the broker) per topic and partition
 * since the producer was made, partitions with none left out. */
static int l_producer_delivered(lua_State *L)
{
    qh_producer *p = check_producer(L);
    lua_newtable(L);
    int k = 0;
    for (int i = 0; i < p->ndelivered; i++) {
        const delivered_topic *t = &p->delivered[i];
        for (int32_t part = 0; part < t->n; part++) {
            if (!t->counts[part]) continue;
            lua_createtable(L, 0, 3);
            lua_pushstring(L, t->name);
            lua_setfield(L, -2, "topic");
            lua_pushinteger(L, part);
            lua_setfield(L, -2, "partition");
            lua_pushnumber(L, (lua_Number)t->counts[part]);
            lua_setfield(L, -2, "count");
            lua_rawseti(L, -2, ++k);
        }
    }
    return 1;
}

static int l_producer_take_errors(lua_State *L)
{
    return qh_kafka_push_take_errors(L, &check_producer(L)->errors);
}

static int l_producer_close(lua_State *L)
{
    qh_producer **ud = check_producer_ud(L);
    producer_destroy(*ud);
    *ud = NULL;
    return 0;
}

void qh_kafka_producer_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "ptr", l_producer_ptr }, { "flush", l_producer_flush },
        { "outq_len", l_producer_outq_len }, { "take_failures", l_producer_take_failures },
        { "take_errors", l_producer_take_errors }, { "delivered", l_producer_delivered },
        { "init_transactions", qh_kafka_txn_init }, { "begin_transaction", qh_kafka_txn_begin },
        { "send_offsets_to_transaction", qh_kafka_txn_send_offsets },
        { "commit_transaction", qh_kafka_txn_commit }, { "abort_transaction", qh_kafka_txn_abort },
        { "close", l_producer_close }, { NULL, NULL },
    };
    qh_luaclass_register(L, QH_PRODUCER_MT, methods, l_producer_close);
}

