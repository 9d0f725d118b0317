/* kafka.h: Kafka clients for qhost over librdkafka.
 * Provides the `qhost.kafka` Lua module (producer with transactions,
 * consumer, admin, the embedded mock broker, the C logger's prefix and
 * level: set-up and control through the classic Lua C API) and the flat
 * qh_ffi_* functions of the per-message hot path, which the Lua library
 * calls through LuaJIT's FFI (declared again in lua/qhost/kafka/ffi.lua:
 * keep both in step). The module is split into units, one job each:
 * kafka_internal.h lists them.
 * Uses: librdkafka (rdkafka.h, rdkafka_mock.h), hostlib.h for the stop
 * flag and the logger. librdkafka callbacks never call into Lua: they
 * record into the handle (delivery failures per message, rebalance events)
 * and Lua pulls. */
#ifndef QH_KAFKA_H
#define QH_KAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

int qh_kafka_open(lua_State *L);

typedef struct qh_producer qh_producer;
typedef struct qh_consumer qh_consumer;

/* One consumed message, flat for the FFI. Borrowed: every pointer is valid
 * until the next qh_ffi_consumer_poll on the same consumer. */
typedef struct qh_msg {
    const char *topic;
    const char *key;
    const char *value;
    size_t key_len;
    size_t value_len;
    int64_t offset;
    int64_t timestamp;      /* ms since the epoch, -1 when absent */
    int32_t partition;
    int32_t timestamp_type; /* 0 none, 1 create time, 2 log append time */
    int32_t err;            /* rd_kafka_resp_err_t; non-zero: an error event, not data */
    int32_t header_count;
} qh_msg;

/* Polls up to `max` messages (waiting at most timeout_ms for the first).
 * Returns how many, and the array of them in *out. Releases the previous
 * batch. A rebalance event ends the batch: the messages fetched before it
 * come first, then the caller takes the event (take_events). -1 on misuse. */
int qh_ffi_consumer_poll(qh_consumer *c, int max, int timeout_ms, qh_msg **out);
/* Header `idx` of message `i` of the current batch: 0 and name/value/len
 * filled (value NULL for a null header), or -1. */
int qh_ffi_msg_header(qh_consumer *c, int i, int idx, const char **name,
                      const char **value, size_t *len);
/* librdkafka's text for the error of message `i` of the current batch. */
const char *qh_ffi_msg_errstr(qh_consumer *c, int i);

/* Produces one message (copied by librdkafka). partition -1: the
 * partitioner (murmur2 of the key, like the Java client and Quix); timestamp
 * 0: now. Headers are header_count pairs in names/values/value_lens; every
 * pointer is borrowed for the call only. Returns 0, or an
 * rd_kafka_resp_err_t about this message only (an earlier message's failed
 * delivery is recorded, see qh_ffi_producer_failures); the text is in
 * qh_ffi_producer_errstr. A full queue is waited out by serving delivery
 * reports until there is room, a stop is requested (qh_ffi_stop_requested)
 * or the producer's qhost.queue.full.timeout.ms passed: then
 * RD_KAFKA_RESP_ERR__QUEUE_FULL, and the message was not produced. Every
 * 64th call serves the delivery reports first (rd_kafka_poll, no wait).
 * A producer made with qhost.produce.batch holds a copy of a plain message
 * instead (kafka_internal.h, kafka_batch.c) and returns 0: if librdkafka
 * refuses it when it is handed over, that is recorded as a failed
 * delivery; a produce that finds the held messages at their bound waits
 * for room for them as above. */
int qh_ffi_produce(qh_producer *p, const char *topic, int32_t partition,
                   const char *key, size_t key_len, const char *value, size_t value_len,
                   int64_t timestamp, int header_count, const char **header_names,
                   const char **header_values, const size_t *header_value_lens);
/* Borrowed: valid until the next call on p. */
const char *qh_ffi_producer_errstr(qh_producer *p);
/* Makes (once) and keeps the producer's handle for `topic`, so that its
 * metadata is fetched now rather than at the first message. 0, or -1. */
int qh_ffi_producer_topic(qh_producer *p, const char *topic);
/* Serves delivery reports; returns how many were served. */
int qh_ffi_producer_poll(qh_producer *p, int timeout_ms);
/* How many deliveries failed since the last take (the cheap check before
 * producer:take_failures(), which returns each with its topic, partition,
 * key and error). */
int qh_ffi_producer_failures(qh_producer *p);
/* Takes the failures: returns their count, the first one's text in buf
 * ("delivery to T [p] failed: ..."). */
int qh_ffi_producer_take_failures(qh_producer *p, char *buf, size_t buflen);

#endif
