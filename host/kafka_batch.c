/* kafka_batch.c: the messages a producer holds before librdkafka has them
 * (kafka_internal.h declares the interface). A source's producer takes
 * a million small messages a second, and librdkafka's rd_kafka_produce does
 * per message what could be done per batch: a clock read, a time of day,
 * the producer-state check and the topic's lock, 60-70 ns of a source's
 * ~750 ns a message. So a producer made with qhost.produce.batch holds its
 * plain messages (no headers, partition or timestamp of their own; small)
 * here, and hands them over with rd_kafka_produce_batch, up to 64 at a time.
 *
 * A held message must still leave when its source goes quiet (a source may
 * produce one message and then block in its own I/O for minutes): a timer
 * thread hands over what is held at a tick (every 2 ms) when the producing
 * thread has not handed over since the last one: a held message waits at
 * most two ticks, less than librdkafka's own linger (5 ms). So two threads
 * hand over, the producing one and the timer, each under the producer's
 * lock; holding a message takes no lock: the slots are a ring with one
 * writer (the producing thread, which owns `head`) and the hand-over, which
 * owns `tail`. A slot between tail and head is only read; the writer writes
 * the slot at head once the hand-over has moved tail past it. The timer
 * sleeps once it has found the ring empty for a while, and the producing
 * thread wakes it with the first message into an empty ring.
 *
 * Order: slots are handed over oldest first, and a hand-over stops at the
 * first message librdkafka refuses for a full queue (it refuses every later
 * one of the call too), so the rest go later in the same order. A message
 * refused for good (an unknown topic, a fatal producer) is reported through
 * the refused callback, as a failed delivery would be.
 *
 * A topic of one partition: produce_batch to RD_KAFKA_PARTITION_UA runs
 * the partitioner per message (the topic's state, a hash of the key, a
 * reference on the partition taken and dropped, a clock read); given a
 * partition, it finds it once and only queues. The benchmark's counter
 * source took 10% less CPU (0.59 s against 0.66 s a million messages).
 * For a topic of one partition the partitioner can only answer 0, so a run
 * for such a topic is handed over to partition 0. What librdkafka knows of
 * the count it passes to the partitioner, which a held topic's handle has
 * wrapped for that (qh_batch_topic_conf); one run in RECHECK_RUNS goes
 * through the partitioner again, so that a topic that gains partitions is
 * partitioned by key again within that many runs of librdkafka knowing.
 * Uses: librdkafka, pthreads, C11 atomics. */
#include "kafka_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 64                  /* messages held at most; a hand-over's size */
#define TICK_MS 2                 /* the timer's period: a quiet source's message waits at most two */
#define IDLE_TICKS 8              /* empty ticks before the timer sleeps */
#define MESSAGE_MAX 16384         /* key + value bytes of a message it holds */
/* librdkafka refuses a message whose key, value and record overhead exceed
 * message.max.bytes; one that comes this close is produced directly, so
 * that the refusal is the produce call's own error, as without a batch. */
#define RECORD_OVERHEAD 64
#define RECHECK_RUNS 64           /* runs to partition 0 before one through the partitioner */

typedef int32_t (*partitioner_fn)(const rd_kafka_topic_t *rkt, const void *key, size_t key_len,
                                  int32_t partition_cnt, void *rkt_opaque, void *msg_opaque);

struct qh_batch_topic {
    partitioner_fn partitioner;   /* the configured one, which the wrapper calls */
    /* The partition count the partitioner was last given; 0: unknown. Written
     * by the wrapper on whichever thread librdkafka partitions on. */
    atomic_int partitions;
    int runs_to_one;              /* runs handed to partition 0 since the last check; under the lock */
};

typedef struct slot {
    rd_kafka_topic_t *rkt;        /* borrowed: the producer's cached handle */
    qh_batch_topic *topic;        /* borrowed: rkt's partitions, or NULL */
    char *bytes;                  /* key, then value; owned, reused */
    size_t cap;
    size_t key_len, value_len;
    int key_null, value_null;
} slot;

struct qh_batch {
    pthread_mutex_t *lock;        /* borrowed: the producer's; guards every hand-over */
    qh_batch_refused_fn refused;
    void *opaque;
    size_t message_max;           /* key + value bytes of a message it holds */
    slot slots[SLOTS];
    _Atomic uint64_t head;        /* next slot to fill; written by the producing thread */
    _Atomic uint64_t tail;        /* next slot to hand over; written under the lock */
    rd_kafka_message_t out[SLOTS];   /* a hand-over's messages, under the lock */
    /* The timer, under the lock but for `idle`, which the producing thread
     * reads without it (see wake_timer). */
    pthread_t timer;
    pthread_cond_t wake;
    int stopping;
    atomic_int idle;
};

/* How many bytes of key and value a message may have to be held, given the
 * producer's message.max.bytes. */
static size_t held_message_max(rd_kafka_t *rk)
{
    char text[32];
    size_t len = sizeof text;
    size_t limit = MESSAGE_MAX;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", text, &len) == RD_KAFKA_CONF_OK) {
        long max = strtol(text, NULL, 10);
        if (max - RECORD_OVERHEAD < (long)limit) limit = max > RECORD_OVERHEAD ? (size_t)(max - RECORD_OVERHEAD) : 0;
    }
    return limit;
}

/* The partitioner of a held topic's handle: notes the count it is given. */
static int32_t note_partitions(const rd_kafka_topic_t *rkt, const void *key, size_t key_len,
                               int32_t partition_cnt, void *rkt_opaque, void *msg_opaque)
{
    qh_batch_topic *t = rkt_opaque;
    atomic_store_explicit(&t->partitions, partition_cnt, memory_order_relaxed);
    return t->partitioner(rkt, key, key_len, partition_cnt, rkt_opaque, msg_opaque);
}

rd_kafka_topic_conf_t *qh_batch_topic_conf(rd_kafka_t *rk, qh_batch_topic **topic)
{
    *topic = NULL;
    rd_kafka_topic_conf_t *conf = rd_kafka_default_topic_conf_dup(rk);
    if (!conf) return NULL;
    /* Only the partitioners whose handling of null and empty keys does not
     * depend on being librdkafka's own function (it compares the pointer
     * with consistent_random, consistent, murmur2 and fnv1a): a wrapper of
     * those would change where such keys go. */
    char name[32];
    size_t len = sizeof name;
    partitioner_fn fn = NULL;
    if (rd_kafka_topic_conf_get(conf, "partitioner", name, &len) == RD_KAFKA_CONF_OK) {
        if (strcmp(name, "murmur2_random") == 0) fn = rd_kafka_msg_partitioner_murmur2_random;
        else if (strcmp(name, "fnv1a_random") == 0) fn = rd_kafka_msg_partitioner_fnv1a_random;
    }
    if (!fn) return conf;
    qh_batch_topic *t = calloc(1, sizeof *t);
    if (!t) return conf;
    t->partitioner = fn;
    rd_kafka_topic_conf_set_partitioner_cb(conf, note_partitions);
    rd_kafka_topic_conf_set_opaque(conf, t);
    *topic = t;
    return conf;
}

void qh_batch_topic_free(qh_batch_topic *t)
{
    free(t);
}

/* The partition a run for topic t is handed to: 0 while the partitioner
 * last said the topic has one, else RD_KAFKA_PARTITION_UA (partitioned per
 * message), which is also every RECHECK_RUNS-th run's: the partitioner
 * then says the count again (it is not asked for a message with a null
 * key, which goes to librdkafka's sticky partition: a run of only those
 * leaves the count unknown, and the next run is partitioned too). */
static int32_t run_partition(qh_batch_topic *t)
{
    if (!t) return RD_KAFKA_PARTITION_UA;
    if (t->runs_to_one < RECHECK_RUNS && atomic_load_explicit(&t->partitions, memory_order_relaxed) == 1) {
        t->runs_to_one++;
        return 0;
    }
    t->runs_to_one = 0;
    atomic_store_explicit(&t->partitions, 0, memory_order_relaxed);
    return RD_KAFKA_PARTITION_UA;
}

/* Hands over the held messages oldest first, in runs of one topic. The lock
 * is held. Returns 0 when none is left, or RD_KAFKA_RESP_ERR__QUEUE_FULL
 * when librdkafka's queue is full (the rest stay held, in order). */
rd_kafka_resp_err_t qh_batch_hand_over(qh_batch *b)
{
    uint64_t head = atomic_load_explicit(&b->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&b->tail, memory_order_relaxed);
    while (tail < head) {
        rd_kafka_topic_t *rkt = b->slots[tail % SLOTS].rkt;
        int n = 0;
        while (tail + (uint64_t)n < head && b->slots[(tail + (uint64_t)n) % SLOTS].rkt == rkt) {
            const slot *s = &b->slots[(tail + (uint64_t)n) % SLOTS];
            rd_kafka_message_t *m = &b->out[n++];
            memset(m, 0, sizeof *m);
            m->partition = RD_KAFKA_PARTITION_UA;   /* what a refused message's report says */
            m->key = s->key_null ? NULL : s->bytes;
            m->key_len = s->key_len;
            m->payload = s->value_null ? NULL : s->bytes + s->key_len;
            m->len = s->value_len;
        }
        rd_kafka_produce_batch(rkt, run_partition(b->slots[tail % SLOTS].topic), RD_KAFKA_MSG_F_COPY, b->out, n);
        int taken = 0;
        for (; taken < n && b->out[taken].err != RD_KAFKA_RESP_ERR__QUEUE_FULL; taken++)
            if (b->out[taken].err) b->refused(b->opaque, rkt, &b->out[taken]);
        tail += (uint64_t)taken;
        /* the slots before tail are free for the producing thread again:
         * librdkafka copied what it took */
        atomic_store_explicit(&b->tail, tail, memory_order_release);
        if (taken < n) return RD_KAFKA_RESP_ERR__QUEUE_FULL;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int qh_batch_held(qh_batch *b)
{
    return (int)(atomic_load_explicit(&b->head, memory_order_relaxed) -
                 atomic_load_explicit(&b->tail, memory_order_acquire));
}

/* The first message into an empty ring wakes a sleeping timer. Its head
 * was stored sequentially consistent, as is this look at `idle`; the timer
 * sets idle before its last look at head, both the same way (timer_main),
 * so one of the two sees the other. The producing thread's view of tail is
 * current here: the ring was empty for IDLE_TICKS before the timer slept,
 * with no hand-over since. */
static void wake_timer(qh_batch *b)
{
    if (!atomic_load_explicit(&b->idle, memory_order_seq_cst)) return;
    pthread_mutex_lock(b->lock);
    atomic_store_explicit(&b->idle, 0, memory_order_relaxed);
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(b->lock);
}

int qh_batch_hold(qh_batch *b, rd_kafka_topic_t *rkt, qh_batch_topic *topic, const char *key,
                  size_t key_len, const char *value, size_t value_len)
{
    size_t kl = key ? key_len : 0, vl = value ? value_len : 0;
    if (kl > b->message_max || vl > b->message_max - kl) return QH_BATCH_TOO_LARGE;
    uint64_t head = atomic_load_explicit(&b->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&b->tail, memory_order_acquire);
    if (head - tail == SLOTS) return QH_BATCH_FULL;
    slot *s = &b->slots[head % SLOTS];
    /* (bytes is never NULL once used: an empty key or value stays one,
     * not a null, which librdkafka would take a NULL pointer for) */
    if (!s->bytes || kl + vl > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < kl + vl) cap *= 2;
        char *grown = realloc(s->bytes, cap);
        if (!grown) return QH_BATCH_TOO_LARGE;   /* produced directly instead */
        s->bytes = grown;
        s->cap = cap;
    }
    s->rkt = rkt;
    s->topic = topic;
    s->key_null = key == NULL;
    s->value_null = value == NULL;
    s->key_len = kl;
    s->value_len = vl;
    if (kl) memcpy(s->bytes, key, kl);
    if (vl) memcpy(s->bytes + kl, value, vl);
    if (head == tail) {
        atomic_store_explicit(&b->head, head + 1, memory_order_seq_cst);
        wake_timer(b);
    } else {
        atomic_store_explicit(&b->head, head + 1, memory_order_release);
    }
    return head + 1 - tail == SLOTS ? QH_BATCH_NOW_FULL : QH_BATCH_HELD;
}

/* At every tick, hands over what is held unless the producing thread
 * handed over since the last tick (a busy source hands over every 64
 * messages itself); sleeps (until wake_timer) once the ring was empty at
 * IDLE_TICKS ticks in a row, and then hands over the message that woke it
 * at once. A full queue is left to the next tick or the producing thread:
 * only the thread that serves delivery reports can make room. */
static void *timer_main(void *arg)
{
    qh_batch *b = arg;
    int empty_ticks = 0;
    uint64_t last_tail = 0;
    pthread_mutex_lock(b->lock);
    while (!b->stopping) {
        uint64_t tail = atomic_load_explicit(&b->tail, memory_order_relaxed);
        if (qh_batch_held(b) > 0) {
            /* a producing thread that handed over since the last tick will
             * again: the timer is for the one that went quiet */
            empty_ticks = 0;
            if (tail == last_tail) qh_batch_hand_over(b);
        } else if (++empty_ticks >= IDLE_TICKS) {
            atomic_store_explicit(&b->idle, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&b->head, memory_order_seq_cst) == tail) {
                while (atomic_load_explicit(&b->idle, memory_order_relaxed) && !b->stopping)
                    pthread_cond_wait(&b->wake, b->lock);
            }
            atomic_store_explicit(&b->idle, 0, memory_order_relaxed);
            empty_ticks = 0;
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        last_tail = atomic_load_explicit(&b->tail, memory_order_relaxed);
        pthread_cond_timedwait(&b->wake, b->lock, &until);
    }
    pthread_mutex_unlock(b->lock);
    return NULL;
}

qh_batch *qh_batch_new(rd_kafka_t *rk, pthread_mutex_t *lock, qh_batch_refused_fn refused, void *opaque)
{
    qh_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->lock = lock;
    b->refused = refused;
    b->opaque = opaque;
    b->message_max = held_message_max(rk);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&b->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(b);
        return NULL;
    }
    if (pthread_create(&b->timer, NULL, timer_main, b) != 0) {
        pthread_cond_destroy(&b->wake);
        free(b);
        return NULL;
    }
    pthread_setname_np(b->timer, "qh:batch");   /* how ps and perf tell it */
    return b;
}

void qh_batch_destroy(qh_batch *b)
{
    if (!b) return;
    pthread_mutex_lock(b->lock);   /* (a batch always has its timer running) */
    b->stopping = 1;
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(b->lock);
    pthread_join(b->timer, NULL);
    pthread_cond_destroy(&b->wake);
    for (int i = 0; i < SLOTS; i++) free(b->slots[i].bytes);
    free(b);
}
