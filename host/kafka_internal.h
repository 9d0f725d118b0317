/* kafka_internal.h: what the units of the `qhost.kafka` module share, and
 * nothing the rest of the host needs (that is kafka.h). The units:
 *   kafka.c           opens the module: the classes and module functions
 *   kafka_config.c    config tables from Lua, the qhost.* properties, the
 *                     log and error callbacks every client gets
 *   kafka_producer.c  the producer: produce, delivery reports, flush
 *   kafka_txn.c       the producer's transactions (exactly-once)
 *   kafka_consumer.c  the consumer: polls, rebalances, start offsets, commits
 *   kafka_admin.c     topic creation and metadata
 *   kafka_mock.c      the embedded broker (librdkafka's mock cluster)
 * Lua objects are full userdata (luaclass.h) holding a pointer to the C
 * handle; the userdata owns the handle: close() or __gc destroys it, after
 * which the methods raise "... is closed".
 * Uses: librdkafka, the Lua C API, luaclass.h, hostlib.h (the logger). */
#ifndef QH_KAFKA_INTERNAL_H
#define QH_KAFKA_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <librdkafka/rdkafka.h>

#include "kafka.h"

/* The classes' metatable names (they appear in Lua's "bad argument" errors). */
#define QH_PRODUCER_MT "qhost.kafka.producer"
#define QH_CONSUMER_MT "qhost.kafka.consumer"
#define QH_ADMIN_MT    "qhost.kafka.admin"
#define QH_MOCK_MT     "qhost.kafka.mock"

/* ---- kafka_config.c ------------------------------------------------------ */

/* Client-level errors (the error callback's), counted until Lua takes them.
 * librdkafka runs the error callback inside rd_kafka_poll/consumer_poll on
 * the calling (Lua) thread: no lock. */
typedef struct qh_client_errors {
    int count;        /* errors since the last take */
    int fatal;
    char last[512];
} qh_client_errors;

/* Builds a conf from the Lua table of librdkafka properties at idx. The
 * names in `own` (NULL-terminated, may be NULL) are the host's own settings
 * ("qhost.*"), read by the caller and not passed to librdkafka. The conf
 * logs through the host's logger. Returns it (the caller owns it), or NULL
 * with err set on a bad property. Never raises. */
rd_kafka_conf_t *qh_kafka_conf_from_table(lua_State *L, int idx, const char *const *own,
                                          char *err, size_t errlen);
/* Installs the error callback, which counts the client's errors into the
 * qh_client_errors that the conf's opaque must begin with. */
void qh_kafka_conf_count_errors(rd_kafka_conf_t *conf);
/* Pushes {count=, fatal=, last=} and resets the count: 1, or 0 (nothing
 * pushed) when there were none. */
int qh_kafka_push_take_errors(lua_State *L, qh_client_errors *e);

/* The text of a config value at stack index idx: strings as they are,
 * numbers converted (in place: idx must be a copy, never a key that
 * lua_next still needs), booleans as "true"/"false"; NULL for anything
 * else. */
const char *qh_kafka_config_value(lua_State *L, int idx);
/* Describes a table key that is not a string, for an error message. */
void qh_kafka_describe_key(lua_State *L, int idx, char *buf, size_t len);

/* The log callback every handle gets (the mock's too). */
void qh_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
/* A warning of the host's own about client rk, through the logger. */
void qh_kafka_warn(const rd_kafka_t *rk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* kafka.set_log_prefix(prefix), kafka.set_log_level(level) */
int qh_kafka_l_set_log_prefix(lua_State *L);
int qh_kafka_l_set_log_level(lua_State *L);

/* ---- Lua conventions every client method follows ------------------------- */

/* nil, msg: an expected failure. */
static inline int qh_kafka_push_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* A timeout argument in seconds as librdkafka's milliseconds: <= 0 or NaN
 * is 0, anything beyond an int's range waits forever. */
static inline int qh_kafka_timeout_arg(lua_State *L, int idx, double default_s)
{
    double s = luaL_optnumber(L, idx, default_s);
    if (!(s > 0)) return 0;
    if (s * 1000.0 >= (double)(INT_MAX - 5000)) return -1;   /* RD_POLL_INFINITE */
    return (int)(s * 1000.0);
}

static inline int64_t qh_kafka_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the classes: each unit registers its own and makes its objects ------- */

void qh_kafka_producer_register(lua_State *L);
int qh_kafka_producer_new(lua_State *L);        /* kafka.producer(config) */
/* The librdkafka handle of the producer at idx; raises when it is not
 * one or is closed. Borrowed: valid while that producer is open. */
rd_kafka_t *qh_kafka_check_producer_rk(lua_State *L, int idx);

void qh_kafka_consumer_register(lua_State *L);
int qh_kafka_consumer_new(lua_State *L);        /* kafka.consumer(config) */
/* As qh_kafka_check_producer_rk, for a consumer. */
rd_kafka_t *qh_kafka_check_consumer_rk(lua_State *L, int idx);
/* The librdkafka (rd_kafka_version()) whose record layout the consumer
 * reads to skip asking for the headers of a message that has none
 * (may_have_headers in kafka_consumer.c): 2.0.2. */
#define QH_KAFKA_HEADER_PEEK_VERSION 0x020002ff
/* How many consumed messages this process asked librdkafka for their
 * headers (rd_kafka_message_headers): with librdkafka 2.0.2 only those whose
 * record has some (see may_have_headers), else every one. For the tests. */
int64_t qh_kafka_header_lookups(void);
/* Reads { { topic =, partition =, offset = }, ... } at stack index idx
 * (offset absent: RD_KAFKA_OFFSET_INVALID). Raises on a malformed entry,
 * before allocating anything. The caller owns the list. */
rd_kafka_topic_partition_list_t *qh_kafka_partitions_from_table(lua_State *L, int idx);
/* Pushes the list as { { topic =, partition =, offset = }, ... }. */
void qh_kafka_push_partitions(lua_State *L, const rd_kafka_topic_partition_list_t *parts);

void qh_kafka_admin_register(lua_State *L);
int qh_kafka_admin_new(lua_State *L);           /* kafka.admin(config) */

void qh_kafka_mock_register(lua_State *L);
int qh_kafka_mock_new(lua_State *L);            /* kafka.mock_cluster(brokers) */

/* ---- kafka_batch.c: the messages a producer holds (qhost.produce.batch) --- */

typedef struct qh_batch qh_batch;
/* A held message librdkafka refused for good at its hand-over (m->err; not
 * a full queue, which keeps it held): the producer records it as a failed
 * delivery. Called with the producer's lock held, on either thread. */
typedef void (*qh_batch_refused_fn)(void *opaque, rd_kafka_topic_t *rkt, const rd_kafka_message_t *m);
/* Starts the timer thread that hands over what a quiet producer holds.
 * lock: the producer's, borrowed for the batch's life; every hand-over
 * and every rd_kafka_poll/flush of the producer happens under it. NULL
 * when out of memory or no thread could be made. */
qh_batch *qh_batch_new(rd_kafka_t *rk, pthread_mutex_t *lock, qh_batch_refused_fn refused, void *opaque);
enum {
    QH_BATCH_HELD,       /* held */
    QH_BATCH_NOW_FULL,   /* held, and the ring is full: hand over now */
    QH_BATCH_FULL,       /* not held: the ring is full (hand over, then hold it) */
    QH_BATCH_TOO_LARGE,  /* not held: produce it directly (after a hand-over) */
};
/* What the batch knows of a held topic's partitions (kafka_batch.c says
 * why), given with its messages. */
typedef struct qh_batch_topic qh_batch_topic;
/* The conf for the handle of a topic whose messages a producer holds (for
 * rd_kafka_topic_new, which takes it; NULL when out of memory), with, when
 * its partitioner can be watched, *topic set to the watch, owned by the
 * caller, freed with qh_batch_topic_free after rd_kafka_destroy (librdkafka
 * may partition on its own threads until then); else *topic NULL. */
rd_kafka_topic_conf_t *qh_batch_topic_conf(rd_kafka_t *rk, qh_batch_topic **topic);
/* Accepts NULL. */
void qh_batch_topic_free(qh_batch_topic *t);
/* Holds a copy of one message for rkt (a handle that outlives the batch;
 * topic: its qh_batch_topic_conf watch, or NULL), partitioned by its key,
 * timestamped when handed over. Only ever called by one thread, the
 * producing one; takes no lock. */
int qh_batch_hold(qh_batch *b, rd_kafka_topic_t *rkt, qh_batch_topic *topic, const char *key,
                  size_t key_len, const char *value, size_t value_len);
/* With the lock held: hands over what is held, in order. 0, or
 * RD_KAFKA_RESP_ERR__QUEUE_FULL when librdkafka's queue has no room for
 * the rest (still held). */
rd_kafka_resp_err_t qh_batch_hand_over(qh_batch *b);
/* Messages held now. */
int qh_batch_held(qh_batch *b);
/* Stops the timer (the lock must not be held) and frees what is held
 * without handing it over: hand over first. Accepts NULL. */
void qh_batch_destroy(qh_batch *b);

/* ---- kafka_txn.c: producer methods (registered with the producer's) ------- */

int qh_kafka_txn_init(lua_State *L);            /* producer:init_transactions(timeout_s) */
int qh_kafka_txn_begin(lua_State *L);           /* producer:begin_transaction() */
int qh_kafka_txn_send_offsets(lua_State *L);    /* producer:send_offsets_to_transaction(...) */
int qh_kafka_txn_commit(lua_State *L);          /* producer:commit_transaction(timeout_s) */
int qh_kafka_txn_abort(lua_State *L);           /* producer:abort_transaction(timeout_s) */

#endif
