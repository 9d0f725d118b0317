/* raw_pipe: workload 1's baseline, plain librdkafka with no JSON work.
 * Consumes IN (group GROUP, from earliest) and produces every message's
 * bytes unchanged (key, value, timestamp) to OUT, with the same
 * at-least-once discipline as qhost and Quix: every 5 s, and at the end,
 * flush the producer, then commit the consumed offsets. Runs until SIGINT
 * or SIGTERM.
 *   raw_pipe BROKER IN OUT GROUP
 * Client settings mirror qhost's (lua/qhost/runtime/broker.lua):
 * murmur2_random partitioner, an idempotent producer, fetch.wait.max.ms=100,
 * the same prefetch thresholds, librdkafka defaults otherwise. */
#include "bench_util.h"

#include <signal.h>
#include <librdkafka/rdkafka.h>

#define COMMIT_INTERVAL_S 5.0

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk; (void)opaque;
    if (m->err) {
        fprintf(stderr, "raw_pipe: delivery failed: %s\n", rd_kafka_err2str(m->err));
        exit(1);
    }
}

static rd_kafka_conf_t *conf_new(const char **kv)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (; kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "raw_pipe: %s\n", err);
            exit(2);
        }
    return conf;
}

int main(int argc, char **argv)
{
    char err[512];
    if (argc != 5) {
        fprintf(stderr, "usage: raw_pipe BROKER IN OUT GROUP\n");
        return 2;
    }
    const char *broker = argv[1], *in = argv[2], *out = argv[3], *group = argv[4];
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    const char *pconf[] = { "bootstrap.servers", broker, "partitioner", "murmur2_random",
                            "enable.idempotence", "true", NULL };
    rd_kafka_conf_t *conf = conf_new(pconf);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!producer) { fprintf(stderr, "raw_pipe: %s\n", err); return 1; }
    rd_kafka_topic_t *out_topic = rd_kafka_topic_new(producer, out, NULL);

    /* Offsets are stored as messages are handed to us and committed only
     * after a flush: what is committed has its output in Kafka. */
    const char *cconf[] = { "bootstrap.servers", broker, "group.id", group,
                            "auto.offset.reset", "earliest", "enable.auto.commit", "false",
                            "enable.auto.offset.store", "true", "fetch.wait.max.ms", "100",
                            "queued.min.messages", "250000", "queued.max.messages.kbytes", "32768",
                            NULL };
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf_new(cconf), err, sizeof err);
    if (!consumer) { fprintf(stderr, "raw_pipe: %s\n", err); return 1; }
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) { fprintf(stderr, "raw_pipe: subscribe: %s\n", rd_kafka_err2str(e)); return 1; }

    double last_commit = now_s();
    long since_commit = 0;
    while (!g_stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    fprintf(stderr, "raw_pipe: consume: %s\n", rd_kafka_message_errstr(m));
            } else {
                rd_kafka_timestamp_type_t tstype;
                int64_t ts = rd_kafka_message_timestamp(m, &tstype);
                for (;;) {
                    e = rd_kafka_producev(producer, RD_KAFKA_V_RKT(out_topic),
                                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_KEY(m->key, m->key_len),
                                          RD_KAFKA_V_VALUE(m->payload, m->len),
                                          RD_KAFKA_V_TIMESTAMP(ts > 0 ? ts : 0), RD_KAFKA_V_END);
                    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
                    rd_kafka_poll(producer, 100);
                }
                if (e) { fprintf(stderr, "raw_pipe: produce: %s\n", rd_kafka_err2str(e)); return 1; }
                rd_kafka_poll(producer, 0);
                since_commit++;
            }
            rd_kafka_message_destroy(m);
        }
        /* The clock is read once per 1024 messages (or when idle), not per
         * message: this baseline should be as lean as plain C gets. */
        if (since_commit && (!m || (since_commit & 1023) == 0) &&
            now_s() - last_commit >= COMMIT_INTERVAL_S) {
            rd_kafka_flush(producer, 30000);
            rd_kafka_commit(consumer, NULL, 0);
            since_commit = 0;
            last_commit = now_s();
        }
    }
    rd_kafka_flush(producer, 30000);
    if (since_commit) rd_kafka_commit(consumer, NULL, 0);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_topic_destroy(out_topic);
    rd_kafka_destroy(producer);
    return 0;
}
