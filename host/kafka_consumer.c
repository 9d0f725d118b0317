/* kafka_consumer.c: the Kafka consumer of `qhost.kafka` (see kafka.h for its
 * per-message FFI functions, kafka_internal.h for the unit's place): the
 * kafka.consumer constructor and its Lua methods; batches polled for the FFI
 * (qh_ffi_consumer_poll, borrowed until the next poll); rebalances, handled
 * in the callback or deferred to Lua (qhost.rebalance); the start-offset
 * policy (resolve_start: committed, else the end or the beginning, looked up
 * before the assignment); offsets stored and committed; partition lists
 * between Lua and librdkafka.
 * Uses: librdkafka, luaclass.h, kafka_config.c (conf, callbacks, warnings). */
#include "kafka_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostlib.h"
#include "luaclass.h"

typedef struct rebalance_event {
    int assign;                 /* 1 assign, 0 revoke */
    int lost;                   /* a revoke of partitions the group already gave away */
    rd_kafka_topic_partition_list_t *partitions;
} rebalance_event;

/* What librdkafka waits for after a deferred rebalance event. */
enum { AWAIT_NONE, AWAIT_ASSIGN, AWAIT_REVOKE };

/* A thread of the consumer's that sends the requests which wake a stalled
 * fetch (see wake_fetch), so that the app's thread never waits for one.
 * Started by the first wake; one request asked for or under way at a time. */
typedef struct fetch_waker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    rd_kafka_t *rk;
    int started;
    int stop;                    /* close: end the thread */
    int asked;                   /* a request waits for the thread */
    int busy;                    /* asked, or under way */
    char topic[256];             /* the partition to ask about (Kafka names fit) */
    int32_t partition;
} fetch_waker;

struct qh_consumer {
    qh_client_errors errors;     /* first, as in qh_producer */
    rd_kafka_t *rk;
    /* The consumer queue (owned; NULL without a group): what is fetched
     * already is taken from it in one call (see qh_ffi_consumer_poll). */
    rd_kafka_queue_t *queue;
    fetch_waker waker;
    int64_t last_look_ms;        /* when wake_fetch last looked for a partition to wake */
    int64_t last_wake_ms;        /* when it last asked for a wake */
    int fetched_since_look;      /* a poll returned messages since then */
    int wake_next;               /* where its next search for a lagging partition starts */
    int64_t wakes;               /* wakes asked for (consumer:fetch_wakes()) */
    int queued_min;              /* queued.min.messages: the queue's count bound */
    int64_t queued_max_bytes;    /* queued.max.messages.kbytes, in bytes */
    double value_bytes;          /* the mean value size of recent messages */
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

/* Waits a little (200 ms at most) before a retry: 1, or 0 when the
 * deadline has passed. */
static int retriable_wait(int64_t deadline)
{
    int64_t left = deadline - qh_kafka_monotonic_ms();
    if (left <= 0) return 0;
    int ms = left < 200 ? (int)left : 200;
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
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
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : qh_kafka_monotonic_ms() + timeout_ms;
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
        int64_t left = deadline - qh_kafka_monotonic_ms();
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
        int64_t left = deadline - qh_kafka_monotonic_ms();
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
        qh_kafka_warn(c->rk, "%s: librdkafka's own offset reset applies to them", err);
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
        qh_kafka_warn(rk, "out of memory recording a rebalance: finishing it without a checkpoint");
    }
    if (c->deferred) {
        if ((assign ? apply_assign(c, parts, why, sizeof why) : apply_revoke(c, parts, why, sizeof why)) != 0)
            qh_kafka_warn(rk, "%s of %d partitions failed: %s", assign ? "assign" : "unassign", parts->cnt, why);
        return;
    }
    if (assign) {
        if (!c->closing) resolve_start_or_warn(c, parts);
        if (apply_assign(c, parts, why, sizeof why) != 0)
            qh_kafka_warn(rk, "assign of %d partitions failed: %s", parts->cnt, why);
    } else {
        if (!lost) rd_kafka_commit(rk, NULL, 0);
        if (apply_revoke(c, parts, why, sizeof why) != 0)
            qh_kafka_warn(rk, "unassign of %d partitions failed: %s", parts->cnt, why);
    }
    if (push_event(c, assign, lost, parts) != 0)
        qh_kafka_warn(rk, "out of memory recording a rebalance event");
    if (!c->closing) rd_kafka_yield(rk);
}

static void release_batch(qh_consumer *c)
{
    for (int i = 0; i < c->batch_len; i++) rd_kafka_message_destroy(c->batch[i]);
    c->batch_len = 0;
}

/* Whether a consumed message may have headers, without asking librdkafka:
 * its rd_kafka_message_headers parses a message's headers at the first call
 * in a buffer it allocates and frees, even for a message that has none
 * (182 ns a message, measured over 1M messages: a fifth of what a raw
 * librdkafka program spends consuming and producing one). librdkafka 2.0.2,
 * Debian 12's, keeps the record's unparsed headers after the public struct
 * (rd_kafka_msg_t in its src/rdkafka_msg.h, mirrored here): a record without
 * headers has there the single byte 0 (its header count, a varint), or
 * nothing (the message formats before headers). That layout is read for that
 * version only (QH_KAFKA_HEADER_PEEK_VERSION; later ones changed the struct): with any
 * other librdkafka every message is asked. */
#define RDK_MSG_F_PRODUCER 0x40000
typedef struct rdkafka_2_0_2_msg {
    rd_kafka_message_t rkmessage;
    void *link_next, **link_prev;
    int flags;
    rd_kafka_timestamp_type_t tstype;
    int64_t timestamp;
    rd_kafka_headers_t *headers;          /* parsed already */
    int status;
    int32_t broker_id;
    struct { int32_t len; const void *data; } binhdrs;   /* rkm_u.consumer */
} rdkafka_2_0_2_msg;

static int g_header_peek = -1;            /* 1: the layout is read; set by the first consumer */
static int64_t g_header_lookups;          /* qh_kafka_header_lookups */

int64_t qh_kafka_header_lookups(void)
{
    return g_header_lookups;
}

static int may_have_headers(const rd_kafka_message_t *rkm)
{
    if (g_header_peek != 1) return 1;
    const rdkafka_2_0_2_msg *m = (const rdkafka_2_0_2_msg *)rkm;
    if (m->headers || (m->flags & RDK_MSG_F_PRODUCER)) return 1;
    if (m->binhdrs.len == 0) return 0;
    return !(m->binhdrs.len == 1 && *(const unsigned char *)m->binhdrs.data == 0);
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
    if (rkm->err || !may_have_headers(rkm)) return;
    g_header_lookups++;
    if (rd_kafka_message_headers(rkm, &hdrs) == 0 && hdrs)
        m->header_count = (int32_t)rd_kafka_header_cnt(hdrs);
}

/* The end offset the broker gave in its last fetch response of a
 * partition, or -1 when none came yet. Asks no broker. */
static int64_t last_high(rd_kafka_t *rk, const rd_kafka_topic_partition_t *tp)
{
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(rk, tp->topic, tp->partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return high < 0 ? -1 : high;
}

/* Sets each partition's offset in *parts to the app's position there (one
 * past the last message polled; -1001 before the first). *parts NULL: the
 * assigned partitions, in a new list (rd_kafka_assignment: a round trip to
 * librdkafka's main thread). On an error *parts is destroyed and NULL. */
static rd_kafka_resp_err_t fill_positions(rd_kafka_t *rk, rd_kafka_topic_partition_list_t **parts)
{
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!*parts) err = rd_kafka_assignment(rk, parts);
    if (!err) err = rd_kafka_position(rk, *parts);
    if (err && *parts) {
        rd_kafka_topic_partition_list_destroy(*parts);
        *parts = NULL;
    }
    return err;
}

/* librdkafka 2.0.2 stops fetching while the consumer queue holds
 * queued.min.messages or queued.max.messages.kbytes, and its broker thread
 * looks again only when something wakes it (a response, an op) or after
 * its 1 s timer. An app that empties the queue sooner waits with data at
 * the broker: a pipeline's run spent a third of its wall time so, and the
 * smaller the queue bounds, the more. So, once the queue is down to half
 * its bound (or empty) while the last fetch of an assigned partition said
 * that more is there, a request to that partition's leader (a watermark
 * query) wakes its broker thread, which then fetches again while the app
 * works through the other half. The waker thread sends it: the app never
 * waits for it. One partition each time (round robin: with several
 * brokers, each in turn), one request at a time; it looks for one at most
 * every WAKE_MIN_MS while messages come, else every WAKE_IDLE_MS (the
 * queue empty for another reason: a paused partition, an open
 * transaction). WAKE_MIN_MS is short: a fast app takes a whole fetch
 * (1 MB, some 6,000 messages of 150 bytes) in under 10 ms, and with 10
 * it emptied the queue between two looks every few fetches, then waited
 * out its poll's timeout (the run loop's 100 ms) before the next look: a
 * third of the benchmark pipeline's wall time. */
enum { WAKE_MIN_MS = 2, WAKE_IDLE_MS = 50, WAKE_TIMEOUT_MS = 200, WAKE_BUSY_RETRY_MS = 20 };

static void *waker_main(void *arg)
{
    fetch_waker *w = arg;
    char topic[sizeof w->topic];
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->stop && !w->asked) pthread_cond_wait(&w->cond, &w->lock);
        if (w->stop) break;
        memcpy(topic, w->topic, sizeof topic);
        int32_t partition = w->partition;
        w->asked = 0;
        pthread_mutex_unlock(&w->lock);
        int64_t low = 0, high = 0;
        rd_kafka_query_watermark_offsets(w->rk, topic, partition, &low, &high, WAKE_TIMEOUT_MS);
        pthread_mutex_lock(&w->lock);
        w->busy = 0;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Asks the waker thread (started now if need be) to wake tp's broker.
 * 0 when asked; -1 when a request is still under way or the thread cannot
 * start. */
static int waker_ask(fetch_waker *w, rd_kafka_t *rk, const rd_kafka_topic_partition_t *tp)
{
    if (strlen(tp->topic) >= sizeof w->topic) return -1;
    if (!w->started) {
        w->rk = rk;
        if (pthread_mutex_init(&w->lock, NULL) != 0) return -1;
        if (pthread_cond_init(&w->cond, NULL) != 0) {
            pthread_mutex_destroy(&w->lock);
            return -1;
        }
        /* (the thread leaves SIGINT and SIGTERM to the Lua thread) */
        sigset_t old;
        qh_hostlib_block_signals(&old);
        int rc = pthread_create(&w->thread, NULL, waker_main, w);
        qh_hostlib_restore_signals(&old);
        if (rc != 0) {
            pthread_cond_destroy(&w->cond);
            pthread_mutex_destroy(&w->lock);
            return -1;
        }
        w->started = 1;
    }
    pthread_mutex_lock(&w->lock);
    int busy = w->busy;
    if (!busy) {
        strcpy(w->topic, tp->topic);
        w->partition = tp->partition;
        w->asked = w->busy = 1;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    return busy ? -1 : 0;
}

/* Ends the waker thread (waiting for a request under way, at most
 * WAKE_TIMEOUT_MS): before the consumer's handle goes. */
static void waker_stop(fetch_waker *w)
{
    if (!w->started) return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    w->started = 0;
}

/* How few messages in the queue mean half its bound: by count, or by bytes
 * at the recent mean size, whichever is lower. */
static int64_t wake_below(const qh_consumer *c)
{
    int64_t by_count = c->queued_min / 2;
    if (c->value_bytes < 1) return by_count;
    int64_t by_bytes = (int64_t)((double)c->queued_max_bytes / 2 / c->value_bytes);
    return by_bytes < by_count ? by_bytes : by_count;
}

/* Returns how long the poll that follows may wait for a message: -1 as
 * long as it was asked to. With the queue empty while messages come, a
 * fetch may have nothing to wake it but the broker thread's own timer, up
 * to 1 s away; so when the look is put off (WAKE_MIN_MS), or found the
 * waker still busy with a wake asked less than WAKE_BUSY_RETRY_MS ago
 * (one that takes longer waits on a broker that does not answer: no
 * point in looking every WAKE_MIN_MS), the poll waits only until the next
 * look is due. On Kafka, polls that waited out their timeout after a busy
 * look cost the 8,000-message test in clients_spec 1-8 s more. */
static int wake_fetch(qh_consumer *c)
{
    int64_t queued = rd_kafka_queue_length(c->queue);
    if (queued > 0 && queued >= wake_below(c)) return -1;
    int64_t now = qh_kafka_monotonic_ms();
    int64_t since = now - c->last_look_ms;
    if (since < (c->fetched_since_look ? WAKE_MIN_MS : WAKE_IDLE_MS))
        return queued == 0 && c->fetched_since_look ? (int)(WAKE_MIN_MS - since) : -1;
    int streaming = c->fetched_since_look;
    c->last_look_ms = now;
    c->fetched_since_look = 0;
    int due = -1;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (fill_positions(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
    for (int k = 0; k < parts->cnt; k++) {
        int i = (c->wake_next + k) % parts->cnt;
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        /* Behind the end its last fetch saw; or never fetched (no end seen
         * yet, no message): the fetcher stopped at the bounds before it got
         * there, as when another topic filled the queue first. */
        int64_t high = last_high(c->rk, tp);
        int behind = tp->offset >= 0 ? tp->offset < high : high < 0;
        if (!behind) continue;
        if (waker_ask(&c->waker, c->rk, tp) == 0) {
            c->wakes++;
            c->wake_next = i + 1;
            c->last_wake_ms = now;
        } else if (queued == 0 && streaming && now - c->last_wake_ms < WAKE_BUSY_RETRY_MS) {
            c->fetched_since_look = 1;   /* (still streaming: look again soon) */
            due = WAKE_MIN_MS;
        }
        break;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return due;
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
    if (c->queue) {
        int due = wake_fetch(c);
        if (due >= 0 && (wait < 0 || due < wait)) wait = due;
    }
    /* A rebalance event ends the batch (the callback yields, so the poll
     * returns NULL): what was fetched before it is processed first. */
    while (c->batch_len < max && c->events_len == events) {
        if (c->batch_len > 0 && c->queue) {
            /* The rest of what is fetched already, in one call: without the
             * per-message clock read and error bookkeeping of consumer_poll.
             * Never with a wait: librdkafka's batch call waits for a full
             * batch. A yield (a rebalance) stops it as it stops the poll. */
            ssize_t n = rd_kafka_consume_batch_queue(c->queue, 0, c->batch + c->batch_len,
                                                     (size_t)(max - c->batch_len));
            for (ssize_t i = 0; i < n; i++) fill_msg(&c->msgs[c->batch_len + i], c->batch[c->batch_len + i]);
            if (n > 0) c->batch_len += (int)n;
            break;
        }
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, wait);
        if (!rkm) break;
        fill_msg(&c->msgs[c->batch_len], rkm);
        c->batch[c->batch_len++] = rkm;
        wait = 0;   /* only the first message is waited for */
    }
    if (c->batch_len > 0) {
        c->fetched_since_look = 1;
        size_t bytes = 0;
        for (int i = 0; i < c->batch_len; i++) bytes += c->batch[i]->len;
        c->value_bytes = (double)bytes / c->batch_len;
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
    return luaL_checkudata(L, 1, QH_CONSUMER_MT);
}

static qh_consumer *check_consumer(lua_State *L)
{
    qh_consumer **ud = check_consumer_ud(L);
    if (!*ud) luaL_error(L, "kafka consumer is closed");
    return *ud;
}

rd_kafka_t *qh_kafka_check_consumer_rk(lua_State *L, int idx)
{
    qh_consumer **ud = luaL_checkudata(L, idx, QH_CONSUMER_MT);
    if (!*ud) luaL_error(L, "kafka consumer is closed");
    return (*ud)->rk;
}

/* A numeric property of conf (librdkafka's default when not set); 0 when
 * it cannot be read. */
static int conf_int(rd_kafka_conf_t *conf, const char *name)
{
    char buf[32];
    size_t size = sizeof buf;
    if (rd_kafka_conf_get(conf, name, buf, &size) != RD_KAFKA_CONF_OK) return 0;
    return atoi(buf);
}

/* kafka.consumer(config) -> consumer | nil, err. The host's own setting:
 * qhost.rebalance = "callback" (default: the rebalance callback assigns
 * with resolved start offsets and commits on revoke, and assign() resolves
 * them too) or "deferred" (see struct qh_consumer; assign() is then a plain
 * manual assignment, reported as no event). */
int qh_kafka_consumer_new(lua_State *L)
{
    static const char *const own[] = { "qhost.rebalance", NULL };
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_consumer **ud = qh_luaclass_new(L, QH_CONSUMER_MT, sizeof *ud);

    int deferred = 0;
    lua_getfield(L, 1, own[0]);
    if (!lua_isnil(L, -1)) {
        const char *mode = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(mode, "deferred") == 0) deferred = 1;
        else if (strcmp(mode, "callback") != 0)
            return qh_kafka_push_fail(L, "kafka config: qhost.rebalance must be \"callback\" or \"deferred\"");
    }
    lua_pop(L, 1);

    if (g_header_peek < 0) g_header_peek = rd_kafka_version() == QH_KAFKA_HEADER_PEEK_VERSION;
    qh_consumer *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "out of memory");
    c->deferred = deferred;
    conf = qh_kafka_conf_from_table(L, 1, own, err, sizeof err);
    if (!conf) goto fail;
    lua_getfield(L, 1, "auto.offset.reset");
    const char *reset = lua_tostring(L, -1);
    if (!reset || !strcmp(reset, "latest") || !strcmp(reset, "largest") || !strcmp(reset, "end"))
        c->reset_to = 1;
    else if (!strcmp(reset, "earliest") || !strcmp(reset, "smallest") || !strcmp(reset, "beginning"))
        c->reset_to = -1;
    lua_pop(L, 1);
    c->queued_min = conf_int(conf, "queued.min.messages");
    c->queued_max_bytes = (int64_t)conf_int(conf, "queued.max.messages.kbytes") * 1024;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    qh_kafka_conf_count_errors(conf);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);   /* takes conf on success */
    if (!c->rk) goto fail;
    /* Serve everything (rebalances, errors) from consumer_poll. */
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    *ud = c;   /* the userdata owns it from here */
    return 1;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    free(c);
    return qh_kafka_push_fail(L, err);
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
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

void qh_kafka_push_partitions(lua_State *L, const rd_kafka_topic_partition_list_t *parts)
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
        qh_kafka_push_partitions(L, c->events[i].partitions);
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
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    qh_kafka_push_partitions(L, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return 1;
}

rd_kafka_topic_partition_list_t *qh_kafka_partitions_from_table(lua_State *L, int idx)
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
    rd_kafka_topic_partition_list_t *parts = qh_kafka_partitions_from_table(L, 2);
    if (!c->deferred) resolve_start_or_warn(c, parts);
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, parts);
    if (!err && !c->deferred && push_event(c, 1, 0, parts) != 0)
        qh_kafka_warn(c->rk, "out of memory recording an assignment");
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
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
    int ms = qh_kafka_timeout_arg(L, 3, 30.0);
    rd_kafka_topic_partition_list_t *parts = qh_kafka_partitions_from_table(L, 2);
    char err[512] = "";
    if (resolve_start(c, parts, ms, err, sizeof err) != 0) {
        rd_kafka_topic_partition_list_destroy(parts);
        return qh_kafka_push_fail(L, err);
    }
    qh_kafka_push_partitions(L, parts);
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
    rd_kafka_topic_partition_list_t *parts = qh_kafka_partitions_from_table(L, 2);
    char err[512];
    int rc = apply_assign(c, parts, err, sizeof err);
    rd_kafka_topic_partition_list_destroy(parts);
    if (c->awaiting == AWAIT_ASSIGN) clear_awaiting(c);
    if (rc != 0) return qh_kafka_push_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:finish_revoke(partitions) -> true | nil, err: gives up the
 * partitions of a "revoke" event, once Lua has checkpointed them. */
static int l_consumer_finish_revoke(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    rd_kafka_topic_partition_list_t *parts = qh_kafka_partitions_from_table(L, 2);
    char err[512];
    int rc = apply_revoke(c, parts, err, sizeof err);
    rd_kafka_topic_partition_list_destroy(parts);
    if (c->awaiting == AWAIT_REVOKE) clear_awaiting(c);
    if (rc != 0) return qh_kafka_push_fail(L, err);
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
    rd_kafka_topic_partition_list_t *parts = qh_kafka_partitions_from_table(L, 2);
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err && err != RD_KAFKA_RESP_ERR__STATE && err != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
        return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:commit() commits the stored offsets synchronously -> true | nil, err.
 * consumer:commit({ { topic, partition, offset = next offset } }) commits
 * those instead, assigned or not (a checkpoint kept in a group). */
static int l_consumer_commit(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    rd_kafka_topic_partition_list_t *parts = lua_istable(L, 2) ? qh_kafka_partitions_from_table(L, 2) : NULL;
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, parts, 0);
    for (int i = 0; !err && parts && i < parts->cnt; i++) err = parts->elems[i].err;
    if (parts) rd_kafka_topic_partition_list_destroy(parts);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

/* consumer:committed({ {topic, partition} }, timeout_s) -> same list with offsets */
static int l_consumer_committed(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ms = qh_kafka_timeout_arg(L, 3, 10.0);
    rd_kafka_topic_partition_list_t *parts = qh_kafka_partitions_from_table(L, 2);
    rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, parts, ms);
    if (err) {
        rd_kafka_topic_partition_list_destroy(parts);
        return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    }
    qh_kafka_push_partitions(L, parts);
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
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    lua_pushnumber(L, (lua_Number)low);
    lua_pushnumber(L, (lua_Number)high);
    return 2;
}

/* consumer:positions([partitions]) -> { { topic =, partition =, offset =,
 * high = }, ... }: offset is the next one the app gets (one past the last
 * message polled; -1001 before the first), high the end offset the broker
 * gave in its last fetch response (absent before one). Neither asks the
 * broker: cheap enough for the metrics' every second.
 * Without partitions: every assigned partition, in new tables. With a list
 * of { topic =, partition = }: those, written into the caller's tables
 * (returned), which spares the per-batch caller (qhost.runtime.aligned)
 * rd_kafka_assignment, a round trip to librdkafka's main thread (about
 * 50 us a call with 16 partitions), and 16 new tables. */
static int l_consumer_positions(lua_State *L)
{
    qh_consumer *c = check_consumer(L);
    int given = lua_istable(L, 2);
    rd_kafka_topic_partition_list_t *parts = given ? qh_kafka_partitions_from_table(L, 2) : NULL;
    rd_kafka_resp_err_t err = fill_positions(c->rk, &parts);
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    if (given) lua_pushvalue(L, 2);
    else qh_kafka_push_partitions(L, parts);
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t high = last_high(c->rk, tp);
        if (high < 0 && !given) continue;
        lua_rawgeti(L, -1, i + 1);
        if (given) {
            lua_pushnumber(L, (lua_Number)tp->offset);
            lua_setfield(L, -2, "offset");
        }
        if (high < 0) lua_pushnil(L);
        else lua_pushnumber(L, (lua_Number)high);
        lua_setfield(L, -2, "high");
        lua_pop(L, 1);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return 1;
}

/* consumer:pause(partitions), consumer:resume(partitions) -> true | nil, err:
 * stop and start fetching those partitions ({ { topic =, partition = }, ...
 * }), for consuming in timestamp order (qhost.runtime.aligned). librdkafka
 * drops what it fetched of a paused partition and not handed out yet, and
 * fetches again from there on resume. */
static int pause_or_resume(lua_State *L, int pause)
{
    qh_consumer *c = check_consumer(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    rd_kafka_topic_partition_list_t *parts = qh_kafka_partitions_from_table(L, 2);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, parts) : rd_kafka_resume_partitions(c->rk, parts);
    for (int i = 0; !err && i < parts->cnt; i++) err = parts->elems[i].err;
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

static int l_consumer_pause(lua_State *L) { return pause_or_resume(L, 1); }
static int l_consumer_resume(lua_State *L) { return pause_or_resume(L, 0); }

/* consumer:fetch_wakes() -> how many times a poll found the queue low (or
 * empty) with data at the broker and asked for a stalled fetch to be woken
 * (wake_fetch). */
static int l_consumer_fetch_wakes(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)check_consumer(L)->wakes);
    return 1;
}

static int l_consumer_take_errors(lua_State *L)
{
    return qh_kafka_push_take_errors(L, &check_consumer(L)->errors);
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
            qh_kafka_warn(c->rk, "close: finishing the pending assign failed: %s", why);
        if (c->awaiting == AWAIT_REVOKE && apply_revoke(c, c->awaiting_parts, why, sizeof why) != 0)
            qh_kafka_warn(c->rk, "close: finishing the pending revoke failed: %s", why);
        clear_awaiting(c);
        c->closing = 1;
        waker_stop(&c->waker);
        if (c->queue) rd_kafka_queue_destroy(c->queue);
        c->queue = NULL;
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

void qh_kafka_consumer_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "ptr", l_consumer_ptr }, { "subscribe", l_consumer_subscribe },
        { "take_events", l_consumer_take_events }, { "assignment", l_consumer_assignment },
        { "assign", l_consumer_assign }, { "resolve_start", l_consumer_resolve_start },
        { "finish_assign", l_consumer_finish_assign }, { "finish_revoke", l_consumer_finish_revoke },
        { "store_offsets", l_consumer_store_offsets }, { "commit", l_consumer_commit },
        { "committed", l_consumer_committed }, { "watermarks", l_consumer_watermarks },
        { "positions", l_consumer_positions }, { "pause", l_consumer_pause }, { "resume", l_consumer_resume },
        { "take_errors", l_consumer_take_errors }, { "fetch_wakes", l_consumer_fetch_wakes },
        { "close", l_consumer_close },
        { NULL, NULL },
    };
    qh_luaclass_register(L, QH_CONSUMER_MT, methods, l_consumer_close);
}
