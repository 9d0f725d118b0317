/* kafka_txn.c: transactions of the `qhost.kafka` producer, the ground of
 * exactly-once processing (kafka_internal.h): the producer methods
 *   init_transactions(timeout_s), begin_transaction(),
 *   send_offsets_to_transaction(consumer, offsets, timeout_s),
 *   commit_transaction(timeout_s), abort_transaction(timeout_s)
 * over librdkafka's transactional API. Each returns true, or nil, err, kind,
 * where kind tells the caller what to do next:
 *   "retriable"  the call may be made again (e.g. it timed out);
 *   "abortable"  the transaction cannot commit: abort_transaction, then
 *                process again from the last committed offsets;
 *   "fatal"      the producer cannot go on (fenced by a newer instance with
 *                the same transactional.id, or another fatal error), or the
 *                call was a misuse (no transactional.id in the config, a
 *                commit with no transaction begun): stop.
 * A timeout_s left out (nil) is librdkafka's own bound, derived from
 * transaction.timeout.ms. The calls block the calling (Lua) thread; the
 * delivery reports of the messages they flush are served on it as in
 * flush().
 * On librdkafka 2.0.2's mock cluster (the embedded broker) the calls
 * succeed but isolate nothing: read_committed consumers see the messages of
 * aborted and of open transactions, the offsets sent to a transaction are
 * never committed, and a newer producer does not fence an older one. Only a
 * real Kafka gives exactly-once (tests/c/test_kafka.c shows the mock's
 * behaviour, tests/lua/clients_spec.lua Kafka's and a probe for it).
 * Uses: librdkafka, kafka_producer.c and kafka_consumer.c for the handles,
 * partition lists from Lua. */
#include "kafka_internal.h"

#include <stdio.h>

/* Pushes what a transactional call returned: true, or nil, err, kind. Takes
 * (destroys) `error`. Fatal first: a fatal error is never worth a retry;
 * then abortable: retrying a call the transaction can no longer make fails
 * again. An error with none of the three flags is a misuse (a state the
 * call is not valid in, no transactional.id): nothing to retry or abort. */
static int push_result(lua_State *L, const char *what, rd_kafka_error_t *error)
{
    if (!error) {
        lua_pushboolean(L, 1);
        return 1;
    }
    const char *kind = rd_kafka_error_is_fatal(error)            ? "fatal"
                       : rd_kafka_error_txn_requires_abort(error) ? "abortable"
                       : rd_kafka_error_is_retriable(error)       ? "retriable"
                                                                  : "fatal";
    lua_pushnil(L);
    lua_pushfstring(L, "%s failed: %s", what, rd_kafka_error_string(error));
    lua_pushstring(L, kind);
    rd_kafka_error_destroy(error);
    return 3;
}

/* The optional timeout at idx: nil is -1, librdkafka's own bound. */
static int txn_timeout(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? -1 : qh_kafka_timeout_arg(L, idx, 0);
}

/* producer:init_transactions(timeout_s) -> true | nil, err, kind. Once per
 * producer, before the first transaction: fences off an older producer
 * with the same transactional.id and finishes what it left open. */
int qh_kafka_txn_init(lua_State *L)
{
    rd_kafka_t *rk = qh_kafka_check_producer_rk(L, 1);
    int ms = txn_timeout(L, 2);
    return push_result(L, "init_transactions", rd_kafka_init_transactions(rk, ms));
}

/* producer:begin_transaction() -> true | nil, err, kind. What the producer
 * sends from here to the commit or abort is one transaction. */
int qh_kafka_txn_begin(lua_State *L)
{
    rd_kafka_t *rk = qh_kafka_check_producer_rk(L, 1);
    return push_result(L, "begin_transaction", rd_kafka_begin_transaction(rk));
}

/* producer:send_offsets_to_transaction(consumer, offsets, timeout_s)
 * -> true | nil, err, kind. offsets: { { topic =, partition =, offset =
 * the next offset to consume }, ... }; they are committed for the
 * consumer's group when, and only if, the transaction commits. Entries
 * without an offset (or a negative one) are left out; none at all is a
 * success that sends nothing. Raises on a malformed list or a consumer
 * argument that is not one. */
int qh_kafka_txn_send_offsets(lua_State *L)
{
    rd_kafka_t *rk = qh_kafka_check_producer_rk(L, 1);
    rd_kafka_t *consumer = qh_kafka_check_consumer_rk(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    int ms = txn_timeout(L, 4);
    rd_kafka_topic_partition_list_t *offsets = qh_kafka_partitions_from_table(L, 3);   /* owned */
    /* The group's id, generation and member id: the broker refuses the
     * offsets of a member the group has since replaced (zombie fencing). */
    rd_kafka_consumer_group_metadata_t *group = rd_kafka_consumer_group_metadata(consumer);   /* owned */
    if (!group) {
        rd_kafka_topic_partition_list_destroy(offsets);
        lua_pushnil(L);
        lua_pushstring(L, "send_offsets_to_transaction failed: the consumer has no group.id");
        lua_pushstring(L, "fatal");
        return 3;
    }
    rd_kafka_error_t *error = rd_kafka_send_offsets_to_transaction(rk, offsets, group, ms);
    rd_kafka_consumer_group_metadata_destroy(group);
    rd_kafka_topic_partition_list_destroy(offsets);
    return push_result(L, "send_offsets_to_transaction", error);
}

/* producer:commit_transaction(timeout_s) -> true | nil, err, kind. Flushes
 * the transaction's messages first: a failed delivery makes it abortable. */
int qh_kafka_txn_commit(lua_State *L)
{
    rd_kafka_t *rk = qh_kafka_check_producer_rk(L, 1);
    int ms = txn_timeout(L, 2);
    return push_result(L, "commit_transaction", rd_kafka_commit_transaction(rk, ms));
}

/* producer:abort_transaction(timeout_s) -> true | nil, err, kind. Drops
 * what is still queued of the transaction; read_committed consumers never
 * see its messages, and its offsets are not committed. */
int qh_kafka_txn_abort(lua_State *L)
{
    rd_kafka_t *rk = qh_kafka_check_producer_rk(L, 1);
    int ms = txn_timeout(L, 2);
    return push_result(L, "abort_transaction", rd_kafka_abort_transaction(rk, ms));
}
