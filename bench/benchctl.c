/* benchctl: the measuring side of bench/run.sh, over librdkafka.
 *
 *   benchctl create BROKER TOPIC PARTITIONS      create a topic (ok if it exists)
 *   benchctl delete BROKER TOPIC...              delete topics (errors ignored)
 *   benchctl gen-pipe BROKER TOPIC N             produce workload 1's N JSON messages
 *                                                (8 fields, keys "user-NNNN") and print the
 *                                                expected checksums of input and output
 *   benchctl gen-state BROKER TOPIC N KEYS       the stateful workload's N messages
 *                                                (keys "key-NNNNN") and its checksums
 *   benchctl gen-window BROKER TOPIC N KEYS      the window workload's N messages (keys
 *                                                "key-NNNNN", 10 s of event times) and the
 *                                                checksums of its 1 s tumbling windows
 *   benchctl gen-join BROKER LEFT RIGHT N KEYS   the join workload's inputs: 2 versions of
 *                                                metadata per key in RIGHT, N messages in
 *                                                LEFT, and the checksums of their as-of join
 *   benchctl gen-csv FILE N                      write workload 2's CSV (10 columns) and
 *                                                print the expected checksum of its topic
 *   benchctl expect-counter N                    expected checksum of the counter source
 *   benchctl count BROKER TOPIC                  messages in TOPIC (sum of high watermarks)
 *   benchctl verify [--canon] BROKER TOPIC       read TOPIC from the beginning to its end:
 *                                                count=N sum=HEX (order-independent);
 *                                                --canon: numbers written "5.0" (Python's
 *                                                float) hash as "5" (qhost's), see canon_json
 *   benchctl run [--first TOPIC] [--poll-ms MS] [--timeout S] [--stop-timeout S]
 *                BROKER DONE_TOPIC N -- CMD ARGS...
 *        starts CMD in a process group of its own and polls the end offsets of
 *        DONE_TOPIC until they sum to N (all outputs are in Kafka); then sends
 *        SIGINT to CMD (the same clean stop for qhost, Quix and the raw
 *        programs) and waits for it. Prints one line of key=value:
 *          wall_s    start of CMD -> N messages seen in DONE_TOPIC
 *          first_s   start of CMD -> first message in --first TOPIC (else DONE_TOPIC)
 *          cpu_s     user+sys CPU of CMD and every descendant it reaped (wait4
 *                    rusage: the app and its source processes, not the broker)
 *          app_rss_kb, src_rss_kb   peak RSS (VmHWM) of CMD and the largest of
 *                    its descendants, sampled from /proc (every 10 ms for 3 s, then 100 ms)
 *          exit      CMD's exit code (128+signal when killed), reached=0|1
 *
 * Message checksum: bench_util.h msg_hash, summed mod 2^64. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "benchctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *msg)
{
    (void)rk;
    if (level <= 3) fprintf(stderr, "benchctl: librdkafka %s: %s\n", fac, msg);
}

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *broker, const char **extra)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", broker, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("%s", err);
    for (; extra && extra[0]; extra += 2)
        if (rd_kafka_conf_set(conf, extra[0], extra[1], err, sizeof err) != RD_KAFKA_CONF_OK)
            die("%s", err);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) die("%s", err);
    return rk;
}

/* Partition count of an existing topic, or -1. */
static int topic_partitions(rd_kafka_t *rk, const char *topic)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        int n = -1;
        if (!err && md->topic_cnt == 1 && !md->topics[0].err) n = md->topics[0].partition_cnt;
        if (md) rd_kafka_metadata_destroy(md);
        if (n > 0) return n;
        usleep(100000);
    }
    return -1;
}

/* ------------------------------------------------------------------ admin */

static int admin_wait(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *what)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev) die("%s timed out", what);
    int rc = 0;
    if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "benchctl: %s: %s\n", what, rd_kafka_event_error_string(ev));
        rc = 1;
    } else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_CREATETOPICS_RESULT) {
        size_t n;
        const rd_kafka_topic_result_t **r =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(r[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                fprintf(stderr, "benchctl: create %s: %s\n", rd_kafka_topic_result_name(r[i]),
                        rd_kafka_topic_result_error_string(r[i]));
                rc = 1;
            }
        }
    }
    rd_kafka_event_destroy(ev);
    (void)rk;
    return rc;
}

static int cmd_create(const char *broker, const char *topic, int partitions)
{
    char err[256];
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, broker, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof err);
    if (!nt) die("%s", err);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    int rc = admin_wait(rk, q, "create topic");
    rd_kafka_NewTopic_destroy(nt);
    /* Wait until the metadata shows it, so the apps never race its creation. */
    if (!rc && topic_partitions(rk, topic) != partitions) {
        fprintf(stderr, "benchctl: topic %s does not show %d partitions\n", topic, partitions);
        rc = 1;
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

static int cmd_delete(const char *broker, int n, char **topics)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, broker, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t **dt = calloc((size_t)n, sizeof *dt);
    for (int i = 0; i < n; i++) dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
    rd_kafka_DeleteTopics(rk, dt, (size_t)n, NULL, q);
    admin_wait(rk, q, "delete topics");
    rd_kafka_DeleteTopic_destroy_array(dt, (size_t)n);
    free(dt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return 0;
}

/* ------------------------------------------------------------- generators */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Workload 1's message i: key "user-NNNN"; value, 8 fields, ~140 bytes:
 * {"id":..,"user":..,"email":..,"kind":"buy"|"sell","qty":1..100,
 *  "price":D.DD (odd cents: never integral, no trailing zero, so every JSON
 *  encoder prints it back the same),"ts":..,"region":..}.
 * *passes: kind == "buy"; *total: the field the pipeline adds. */
static void pipe_message(long i, char *key, size_t kcap, char *value, size_t vcap,
                         int *passes, long long *total)
{
    static const char *regions[] = { "eu-west-1", "us-east-1", "ap-south-1", "sa-east-1" };
    uint64_t r = splitmix((uint64_t)i);
    unsigned user = (unsigned)(r % 5000);
    int buy = (int)((r >> 13) & 1);
    unsigned qty = 1 + (unsigned)((r >> 20) % 100);
    unsigned cents = (100 + (unsigned)((r >> 28) % 99900)) | 1;
    const char *region = regions[(r >> 40) % 4];
    snprintf(key, kcap, "user-%04u", user);
    char price[32];
    snprintf(price, sizeof price, "%u.%02u", cents / 100, cents % 100);
    snprintf(value, vcap,
             "{\"id\":%ld,\"user\":\"user-%04u\",\"email\":\"user-%04u@mail.example.com\","
             "\"kind\":\"%s\",\"qty\":%u,\"price\":%s,\"ts\":%lld,\"region\":\"%s\"}",
             i, user, user, buy ? "buy" : "sell", qty, price, 1700000000000LL + i * 10, region);
    *passes = buy;
    /* The same double operations, in the same order, as the Lua and Python
     * pipelines: qty * price * 100 + 0.5, floored (built with
     * -ffp-contract=off so no FMA changes the rounding). */
    double p = strtod(price, NULL);
    *total = (long long)floor((double)qty * p * 100.0 + 0.5);
}

static void dr_count(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err) {
        fprintf(stderr, "benchctl: delivery failed: %s\n", rd_kafka_err2str(m->err));
        (*(long *)opaque)++;
    }
}

static void produce_retry(rd_kafka_t *rk, const char *topic, const char *key, size_t klen,
                          const char *value, size_t vlen)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key ? klen : 0), RD_KAFKA_V_VALUE((void *)value, vlen),
            RD_KAFKA_V_END);
        if (!err) return;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) die("produce: %s", rd_kafka_err2str(err));
        rd_kafka_poll(rk, 50);
    }
}

/* The generators' producer: the Java partitioner (as qhost and Quix), some
 * batching, idempotence (a batch retried on a broker that has just started
 * lands where it was sent, not after later ones: the window and join
 * workloads' expected outputs assume each partition in event-time order);
 * failed deliveries are counted into *failed. */
static rd_kafka_t *gen_producer(const char *broker, long *failed)
{
    const char *extra[] = { "partitioner", "murmur2_random", "linger.ms", "20", "enable.idempotence", "true",
                            NULL };
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_conf_set(conf, "bootstrap.servers", broker, err, sizeof err);
    for (const char **e = extra; *e; e += 2) rd_kafka_conf_set(conf, e[0], e[1], err, sizeof err);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_count);
    rd_kafka_conf_set_opaque(conf, failed);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) die("%s", err);
    return rk;
}

/* The stateful workload's input: message i has the key "key-NNNNN" (one of
 * `keys`, spread by splitmix) and the value {"id":i}; the pipeline's output
 * for it is the key's running count as a JSON number, same key. */
static int cmd_gen_state(const char *broker, const char *topic, long n, long keys)
{
    long failed = 0;
    rd_kafka_t *rk = gen_producer(broker, &failed);
    long *counts = calloc((size_t)keys, sizeof *counts);
    if (!counts) die("%s", "out of memory");
    uint64_t in_sum = 0, out_sum = 0;
    char key[32], value[64], out[32];
    for (long i = 0; i < n; i++) {
        long k = (long)(splitmix((uint64_t)i) % (uint64_t)keys);
        int klen = snprintf(key, sizeof key, "key-%05ld", k);
        int vlen = snprintf(value, sizeof value, "{\"id\":%ld}", i);
        int olen = snprintf(out, sizeof out, "%ld", ++counts[k]);
        in_sum += msg_hash(key, (size_t)klen, value, (size_t)vlen);
        out_sum += msg_hash(key, (size_t)klen, out, (size_t)olen);
        produce_retry(rk, topic, key, (size_t)klen, value, (size_t)vlen);
        if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    if (rd_kafka_outq_len(rk) > 0 || failed) die("%s: not every message was delivered", topic);
    rd_kafka_destroy(rk);
    free(counts);
    printf("in_count=%ld in_sum=%016llx out_count=%ld out_sum=%016llx\n", n, (unsigned long long)in_sum, n,
           (unsigned long long)out_sum);
    return 0;
}

/* A double as Python's repr writes it (the shortest digits that read back
 * the same), except that an integral value is written as an integer: the
 * canonical form of verify --canon. */
static int fmt_double(char *out, size_t cap, double x)
{
    if (x == floor(x) && fabs(x) < 9007199254740992.0) return snprintf(out, cap, "%lld", (long long)x);
    int n = 0;
    for (int p = 1; p <= 17; p++) {
        n = snprintf(out, cap, "%.*g", p, x);
        if (strtod(out, NULL) == x) break;
    }
    return n;
}

/* The window workload's input: message i has the key "key-NNNNN" (one of
 * `keys`, spread by splitmix), the value {"v":0..999} and the event time
 * t0 + i * 10000 / n ms (10 s for any n: n / 10 messages per 1 s window),
 * with t0 a whole second a minute before now (Kafka keeps records near
 * now). The
 * pipeline: a 1 s tumbling window per key with Count, Mean("v") and
 * Sum("v"), final: a window's result comes when the key's next message is
 * in a later window, as {"count":..,"mean":..,"sum":..,"start":..,"end":..}
 * with the key, timestamp the start. Per key the messages stay in order (one
 * partition), so none is late. The last window of each key never closes. */
static int cmd_gen_window(const char *broker, const char *topic, long n, long keys)
{
    long failed = 0;
    rd_kafka_t *rk = gen_producer(broker, &failed);
    struct win { long long start; long count, sum; } *open = calloc((size_t)keys, sizeof *open);
    if (!open) die("%s", "out of memory");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long t0 = ((long long)now.tv_sec - 70) * 1000;
    uint64_t in_sum = 0, out_sum = 0;
    long out_count = 0;
    char key[32], value[64], out[160], mean[40];
    for (long i = 0; i < n; i++) {
        uint64_t r = splitmix((uint64_t)i);
        long k = (long)(r % (uint64_t)keys);
        long v = (long)((r >> 32) % 1000);
        long long ts = t0 + (long long)i * 10000 / n;
        long long start = ts - ts % 1000;
        int klen = snprintf(key, sizeof key, "key-%05ld", k);
        int vlen = snprintf(value, sizeof value, "{\"v\":%ld}", v);
        struct win *w = &open[k];
        if (w->count > 0 && w->start < start) {
            fmt_double(mean, sizeof mean, (double)w->sum / (double)w->count);
            int olen = snprintf(out, sizeof out, "{\"count\":%ld,\"mean\":%s,\"sum\":%ld,\"start\":%lld,\"end\":%lld}",
                                w->count, mean, w->sum, w->start, w->start + 1000);
            out_sum += msg_hash(key, (size_t)klen, out, (size_t)olen);
            out_count++;
            w->count = 0;
            w->sum = 0;
        }
        if (w->count == 0) w->start = start;
        w->count++;
        w->sum += v;
        in_sum += msg_hash(key, (size_t)klen, value, (size_t)vlen);
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, (size_t)klen), RD_KAFKA_V_VALUE(value, (size_t)vlen),
                RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_END);
            if (!err) break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) die("produce: %s", rd_kafka_err2str(err));
            rd_kafka_poll(rk, 50);
        }
        if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    if (rd_kafka_outq_len(rk) > 0 || failed) die("%s: not every message was delivered", topic);
    rd_kafka_destroy(rk);
    free(open);
    printf("in_count=%ld in_sum=%016llx out_count=%ld out_sum=%016llx\n", n, (unsigned long long)in_sum,
           out_count, (unsigned long long)out_sum);
    return 0;
}

static void produce_at(rd_kafka_t *rk, const char *topic, const char *key, size_t klen, const char *value,
                       size_t vlen, long long ts)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
            RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_END);
        if (!err) return;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) die("produce: %s", rd_kafka_err2str(err));
        rd_kafka_poll(rk, 50);
    }
}

/* The join workload's inputs. RIGHT: per key "key-NNNNN" (`keys` of them)
 * two versions of its metadata, {"device":k,"ver":1|2,"site":"sNN"}, the
 * first at t0 + (odd ms within the first second), the second 5 s later.
 * LEFT: message i has the key "key-NNNNN" (spread by splitmix), the value
 * {"id":i,"v":0..999} and an even event time from t0 + 1 s to t0 + 9 s
 * (in order), with t0 a whole second 70 s before now. The pipeline: an
 * as-of join of LEFT with RIGHT, inner, keep-left: each left message comes
 * out with its key's latest version at its time, as
 * {"device":k,"ver":V,"site":"sNN","id":i,"v":v} (the right's keys first).
 * Times are even on the left and odd on the right: no ties across topics. */
static int cmd_gen_join(const char *broker, const char *left, const char *right, long n, long keys)
{
    long failed = 0;
    rd_kafka_t *rk = gen_producer(broker, &failed);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long t0 = ((long long)now.tv_sec - 70) * 1000;
    uint64_t in_sum = 0, out_sum = 0;
    char key[32], value[96], out[160];
    long right_n = 0;
    for (int ver = 1; ver <= 2; ver++) {
        for (long k = 0; k < keys; k++) {
            long long ts = t0 + (ver == 2 ? 5000 : 0) + 2 * (k * 500 / keys) + 1;
            int klen = snprintf(key, sizeof key, "key-%05ld", k);
            int vlen = snprintf(value, sizeof value, "{\"device\":%ld,\"ver\":%d,\"site\":\"s%02ld\"}", k, ver, k % 50);
            produce_at(rk, right, key, (size_t)klen, value, (size_t)vlen, ts);
            right_n++;
            if ((k & 1023) == 0) rd_kafka_poll(rk, 0);
        }
    }
    for (long i = 0; i < n; i++) {
        uint64_t r = splitmix((uint64_t)i);
        long k = (long)(r % (uint64_t)keys);
        long v = (long)((r >> 32) % 1000);
        long long ts = t0 + 1000 + 2 * ((long long)i * 4000 / n);
        long long v2_at = t0 + 5000 + 2 * (k * 500 / keys) + 1;
        int ver = ts >= v2_at ? 2 : 1;
        int klen = snprintf(key, sizeof key, "key-%05ld", k);
        int vlen = snprintf(value, sizeof value, "{\"id\":%ld,\"v\":%ld}", i, v);
        int olen = snprintf(out, sizeof out, "{\"device\":%ld,\"ver\":%d,\"site\":\"s%02ld\",\"id\":%ld,\"v\":%ld}", k,
                            ver, k % 50, i, v);
        in_sum += msg_hash(key, (size_t)klen, value, (size_t)vlen);
        out_sum += msg_hash(key, (size_t)klen, out, (size_t)olen);
        produce_at(rk, left, key, (size_t)klen, value, (size_t)vlen, ts);
        if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    if (rd_kafka_outq_len(rk) > 0 || failed) die("%s: not every message was delivered", left);
    rd_kafka_destroy(rk);
    printf("in_count=%ld right_count=%ld in_sum=%016llx out_count=%ld out_sum=%016llx\n", n, right_n,
           (unsigned long long)in_sum, n, (unsigned long long)out_sum);
    return 0;
}

static int cmd_gen_pipe(const char *broker, const char *topic, long n)
{
    long failed = 0;
    rd_kafka_t *rk = gen_producer(broker, &failed);

    uint64_t in_sum = 0, out_sum = 0;
    long out_count = 0;
    size_t bytes = 0;
    char key[32], value[512], out[600];
    for (long i = 0; i < n; i++) {
        int passes;
        long long total;
        pipe_message(i, key, sizeof key, value, sizeof value, &passes, &total);
        size_t klen = strlen(key), vlen = strlen(value);
        bytes += vlen;
        in_sum += msg_hash(key, klen, value, vlen);
        if (passes) {
            int olen = snprintf(out, sizeof out, "%.*s,\"total\":%lld}", (int)vlen - 1, value, total);
            out_sum += msg_hash(key, klen, out, (size_t)olen);
            out_count++;
        }
        produce_retry(rk, topic, key, klen, value, vlen);
        if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    if (rd_kafka_outq_len(rk) > 0 || failed) die("%s: not every message was delivered", topic);
    rd_kafka_destroy(rk);
    printf("in_count=%ld in_sum=%016llx out_count=%ld out_sum=%016llx avg_value_bytes=%.1f\n", n,
           (unsigned long long)in_sum, out_count, (unsigned long long)out_sum,
           n ? (double)bytes / (double)n : 0.0);
    return 0;
}

/* Workload 2's CSV: 10 columns, one quoted field with a comma (RFC 4180,
 * read the same by libcsv and Python's csv). Expected message: the row as a
 * JSON object of strings in header order, no key. */
static int cmd_gen_csv(const char *path, long n)
{
    static const char *cols[] = { "id", "name", "email", "city", "country", "amount", "qty",
                                  "ts", "status", "note" };
    static const char *countries[] = { "DE", "FR", "US", "IN", "BR", "JP" };
    static const char *statuses[] = { "new", "paid", "shipped", "delivered" };
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write %s", path);
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    for (int c = 0; c < 10; c++) fprintf(f, "%s%s", c ? "," : "", cols[c]);
    fputs("\r\n", f);
    uint64_t sum = 0;
    buf json = { 0 };
    char field[10][64];
    for (long i = 0; i < n; i++) {
        uint64_t r = splitmix((uint64_t)i ^ 0x5eed);
        snprintf(field[0], 64, "%ld", i);
        snprintf(field[1], 64, "name%ld", i);
        snprintf(field[2], 64, "name%ld@example.org", i);
        snprintf(field[3], 64, "city%u", (unsigned)(r % 1000));
        snprintf(field[4], 64, "%s", countries[(r >> 10) % 6]);
        snprintf(field[5], 64, "%u.%02u", (unsigned)((r >> 16) % 10000), (unsigned)((r >> 32) % 100));
        snprintf(field[6], 64, "%u", (unsigned)((r >> 40) % 50) + 1);
        snprintf(field[7], 64, "%lld", 1700000000000LL + i * 1000);
        snprintf(field[8], 64, "%s", statuses[(r >> 48) % 4]);
        snprintf(field[9], 64, "note, %ld", i);
        json.len = 0;
        buf_puts(&json, "{");
        for (int c = 0; c < 10; c++) {
            if (c) buf_puts(&json, ",");
            buf_json_string(&json, cols[c], strlen(cols[c]));
            buf_puts(&json, ":");
            buf_json_string(&json, field[c], strlen(field[c]));
            fprintf(f, c == 9 ? "\"%s\"" : "%s,", field[c]);
        }
        buf_puts(&json, "}");
        fputs("\r\n", f);
        sum += msg_hash(NULL, 0, json.data, json.len);
    }
    if (fclose(f) != 0) die("cannot write %s", path);
    free(json.data);
    printf("count=%ld sum=%016llx\n", n, (unsigned long long)sum);
    return 0;
}

static int cmd_expect_counter(long n)
{
    uint64_t sum = 0;
    char k[32], v[48];
    for (long i = 0; i < n; i++) {
        int kl = counter_key(k, sizeof k, i), vl = counter_value(v, sizeof v, i);
        sum += msg_hash(k, (size_t)kl, v, (size_t)vl);
    }
    printf("count=%ld sum=%016llx\n", n, (unsigned long long)sum);
    return 0;
}

/* ------------------------------------------------------- counting, verify */

typedef struct watcher {
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *parts;   /* reused for every query */
} watcher;

static void watcher_init(watcher *w, rd_kafka_t *rk, const char *topic)
{
    int n = topic_partitions(rk, topic);
    if (n < 0) die("topic %s not found", topic);
    w->rk = rk;
    w->parts = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) rd_kafka_topic_partition_list_add(w->parts, topic, p);
}

/* Messages in the topic: the sum of its end offsets (the topics are fresh,
 * so they start at 0), asked of the broker in one ListOffsets request.
 * -1 on error. */
static long watcher_count(watcher *w, int timeout_ms)
{
    for (int i = 0; i < w->parts->cnt; i++) {
        w->parts->elems[i].offset = RD_KAFKA_OFFSET_END;
        w->parts->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(w->rk, w->parts, timeout_ms);
    long sum = 0;
    for (int i = 0; !err && i < w->parts->cnt; i++) {
        if (w->parts->elems[i].err) err = w->parts->elems[i].err;
        else if (w->parts->elems[i].offset < 0) err = RD_KAFKA_RESP_ERR__BAD_MSG;
        else sum += (long)w->parts->elems[i].offset;
    }
    const char *debug = getenv("BENCHCTL_DEBUG");
    if (debug && *debug)
        fprintf(stderr, "benchctl: %.3f count %s: %ld (%s)\n", now_s(), w->parts->elems[0].topic, sum,
                rd_kafka_err2name(err));
    return err ? -1 : sum;
}

static int cmd_count(const char *broker, const char *topic)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, broker, NULL);
    watcher w;
    watcher_init(&w, rk, topic);
    printf("%ld\n", watcher_count(&w, 10000));
    rd_kafka_topic_partition_list_destroy(w.parts);
    rd_kafka_destroy(rk);
    return 0;
}

/* verify --canon: a JSON text with each number written as Python writes
 * an integral float ("5.0") turned into the integer ("5"), as qhost writes
 * it (Lua has one number type). Only ".0" right after a digit and before
 * , } ] or the end is dropped; strings holding such text would be changed
 * too (the workloads using it have none). */
static size_t canon_json(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '.' && i > 0 && isdigit((unsigned char)in[i - 1]) && i + 1 < n && in[i + 1] == '0' &&
            (i + 2 == n || in[i + 2] == ',' || in[i + 2] == '}' || in[i + 2] == ']')) {
            i++;
            continue;
        }
        out[o++] = in[i];
    }
    return o;
}

static int cmd_verify(const char *broker, const char *topic, int canon)
{
    const char *extra[] = { "group.id", "benchctl-verify", "enable.auto.commit", "false",
                            "enable.partition.eof", "true", "auto.offset.reset", "earliest", NULL };
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, broker, extra);
    rd_kafka_poll_set_consumer(rk);
    int n = topic_partitions(rk, topic);
    if (n < 0) die("topic %s not found", topic);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    int64_t *high = calloc((size_t)n, sizeof *high);
    int pending = 0;
    for (int p = 0; p < n; p++) {
        int64_t lo = 0;
        int attempt = 0;
        while (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &high[p], 10000)) {
            if (++attempt == 100) die("%s: cannot read watermarks", topic);
            usleep(100000);
        }
        if (high[p] > lo) {
            rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
            pending++;
        }
    }
    uint64_t sum = 0;
    long count = 0;
    if (pending) rd_kafka_assign(rk, parts);
    double deadline = now_s() + 300;
    while (pending > 0) {
        if (now_s() > deadline) die("%s: verify timed out", topic);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* counted at its last message below */
        } else if (m->err) {
            die("consume: %s", rd_kafka_message_errstr(m));
        } else if (m->offset < high[m->partition]) {
            if (canon && m->payload) {
                char *c = malloc(m->len + 1);
                if (!c) die("%s", "out of memory");
                size_t clen = canon_json(m->payload, m->len, c);
                sum += msg_hash(m->key, m->key_len, c, clen);
                free(c);
            } else {
                sum += msg_hash(m->key, m->key_len, m->payload, m->len);
            }
            count++;
            if (m->offset == high[m->partition] - 1) pending--;
        }
        rd_kafka_message_destroy(m);
    }
    printf("count=%ld sum=%016llx\n", count, (unsigned long long)sum);
    rd_kafka_topic_partition_list_destroy(parts);
    free(high);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

/* -------------------------------------------------------------------- run */

static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig) { g_interrupted = sig; }

/* Reads field `idx` (1-based, as in proc(5)) of /proc/PID/stat. */
static long proc_stat_field(pid_t pid, int idx)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strrchr(text, ')');   /* the command name may hold spaces */
    if (!p) return -1;
    p += 2;                          /* field 3, the state */
    for (int field = 3; field < idx && *p; field++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    return strtol(p, NULL, 10);
}

static long vm_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
    fclose(f);
    return kb;
}

typedef struct tracked {
    pid_t pid;
    long hwm_kb;
} tracked;

/* Samples the peak RSS of root and of each of its descendants (found by
 * parent pid). Keeps the last value seen of processes that are gone. */
static void sample_tree(pid_t root, tracked *t, int *nt, int cap, long *root_hwm)
{
    long h = vm_hwm_kb(root);
    if (h > *root_hwm) *root_hwm = h;
    pid_t tree[512];
    int ntree = 1;
    tree[0] = root;
    pid_t pids[4096], ppids[4096];
    int np = 0;
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && np < 4096) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        long ppid = proc_stat_field(pid, 4);
        if (ppid < 0) continue;
        pids[np] = pid;
        ppids[np++] = (pid_t)ppid;
    }
    closedir(d);
    for (int changed = 1; changed;) {       /* transitive closure */
        changed = 0;
        for (int i = 0; i < np; i++) {
            if (pids[i] == 0) continue;
            for (int j = 0; j < ntree; j++) {
                if (ppids[i] == tree[j] && ntree < 512) {
                    tree[ntree++] = pids[i];
                    pids[i] = 0;
                    changed = 1;
                    break;
                }
            }
        }
    }
    for (int j = 1; j < ntree; j++) {
        long kb = vm_hwm_kb(tree[j]);
        if (kb < 0) continue;
        int k;
        for (k = 0; k < *nt; k++) if (t[k].pid == tree[j]) break;
        if (k == *nt) {
            if (*nt >= cap) continue;
            t[k].pid = tree[j];
            t[k].hwm_kb = 0;
            (*nt)++;
        }
        if (kb > t[k].hwm_kb) t[k].hwm_kb = kb;
    }
}

static int cmd_run(int argc, char **argv)
{
    const char *first_topic = NULL;
    int poll_ms = 20;
    double timeout = 900, stop_timeout = 60;
    int i = 0;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2]; i += 2) {
        if (i + 1 >= argc) die("option %s needs a value", argv[i]);
        if (!strcmp(argv[i], "--first")) first_topic = argv[i + 1];
        else if (!strcmp(argv[i], "--poll-ms")) poll_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout")) timeout = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--stop-timeout")) stop_timeout = atof(argv[i + 1]);
        else die("unknown option %s", argv[i]);
    }
    if (argc - i < 5 || strcmp(argv[i + 3], "--")) die("%s", "usage: run [opts] BROKER DONE_TOPIC N -- CMD...");
    const char *broker = argv[i], *done_topic = argv[i + 1];
    long want = atol(argv[i + 2]);
    char **cmd = argv + i + 4;

    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, broker, NULL);
    watcher done_w, first_w;
    watcher_init(&done_w, rk, done_topic);
    if (first_topic) watcher_init(&first_w, rk, first_topic);
    long before = -1;
    for (int attempt = 0; attempt < 100 && before < 0; attempt++) {
        before = watcher_count(&done_w, 10000);
        if (before < 0) usleep(100000);   /* a new topic's leaders are not known at once */
    }
    if (before != 0) die("%s is not empty (or has no leader)", done_topic);

    struct sigaction sa = { 0 };
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execvp(cmd[0], cmd);
        fprintf(stderr, "benchctl: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);

    tracked tr[64];
    int ntr = 0;
    long root_hwm = 0;
    double first_at = -1, done_at = -1, exited_at = -1, last_sample = 0;
    int status = 0, reaped = 0;
    struct rusage ru = { 0 };
    const char *why = NULL;
    while (!why) {
        double now = now_s();
        if (!reaped) {
            pid_t r = wait4(pid, &status, WNOHANG, &ru);
            if (r == pid) { reaped = 1; exited_at = now; }
        }
        /* Every 10 ms at first (a short-lived source process must be seen
         * at least once), every 100 ms later: walking /proc costs CPU on a
         * machine whose cores the measured processes need. */
        if (!reaped && now - last_sample >= (now - t0 < 3 ? 0.01 : 0.1)) {
            sample_tree(pid, tr, &ntr, 64, &root_hwm);
            last_sample = now;
        }
        if (first_at < 0) {
            long c = watcher_count(first_topic ? &first_w : &done_w, 5000);
            if (c > 0) first_at = now_s();
        }
        long c = watcher_count(&done_w, 5000);
        if (c >= want) { done_at = now_s(); break; }
        if (reaped && now - exited_at > 5) why = "exited before all outputs were in the topic";
        if (now - t0 > timeout) why = "timed out";
        if (g_interrupted) why = "interrupted";
        if (!why) usleep((useconds_t)poll_ms * 1000);
    }
    if (!reaped) {
        sample_tree(pid, tr, &ntr, 64, &root_hwm);
        kill(pid, why ? SIGKILL : SIGINT);
        double stop_deadline = now_s() + stop_timeout;
        while (!reaped) {
            pid_t r = wait4(pid, &status, WNOHANG, &ru);
            if (r == pid) { reaped = 1; break; }
            if (now_s() > stop_deadline) {
                fprintf(stderr, "benchctl: %s did not stop within %.0f s of SIGINT: killing it\n",
                        cmd[0], stop_timeout);
                kill(-pid, SIGKILL);
                stop_deadline = now_s() + 3600;
            }
            sample_tree(pid, tr, &ntr, 64, &root_hwm);
            usleep(10000);
        }
    }
    kill(-pid, SIGKILL);    /* anything of its group left behind */
    double stopped_at = now_s();

    long src_hwm = 0;
    for (int k = 0; k < ntr; k++) if (tr[k].hwm_kb > src_hwm) src_hwm = tr[k].hwm_kb;
    /* With no descendant, wait4's peak is CMD's own: exact even for a run
     * shorter than the sampling interval. */
    if (ntr == 0 && ru.ru_maxrss > root_hwm) root_hwm = ru.ru_maxrss;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("wall_s=%.3f first_s=%.3f cpu_s=%.3f user_s=%.3f sys_s=%.3f app_rss_kb=%ld "
           "src_rss_kb=%ld tree_maxrss_kb=%ld stop_s=%.3f exit=%d reached=%d\n",
           done_at >= 0 ? done_at - t0 : -1.0, first_at >= 0 ? first_at - t0 : -1.0,
           user + sys, user, sys, root_hwm, src_hwm, ru.ru_maxrss,
           stopped_at - (done_at >= 0 ? done_at : stopped_at), code, done_at >= 0);
    if (why) fprintf(stderr, "benchctl: %s: %s\n", cmd[0], why);
    rd_kafka_topic_partition_list_destroy(done_w.parts);
    if (first_topic) rd_kafka_topic_partition_list_destroy(first_w.parts);
    rd_kafka_destroy(rk);
    return why ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) die("%s", "usage: see the comment at the top of bench/benchctl.c");
    const char *c = argv[1];
    if (!strcmp(c, "create") && argc == 5) return cmd_create(argv[2], argv[3], atoi(argv[4]));
    if (!strcmp(c, "delete") && argc >= 4) return cmd_delete(argv[2], argc - 3, argv + 3);
    if (!strcmp(c, "gen-pipe") && argc == 5) return cmd_gen_pipe(argv[2], argv[3], atol(argv[4]));
    if (!strcmp(c, "gen-state") && argc == 6)
        return cmd_gen_state(argv[2], argv[3], atol(argv[4]), atol(argv[5]));
    if (!strcmp(c, "gen-csv") && argc == 4) return cmd_gen_csv(argv[2], atol(argv[3]));
    if (!strcmp(c, "expect-counter") && argc == 3) return cmd_expect_counter(atol(argv[2]));
    if (!strcmp(c, "count") && argc == 4) return cmd_count(argv[2], argv[3]);
    if (!strcmp(c, "verify") && argc == 4) return cmd_verify(argv[2], argv[3], 0);
    if (!strcmp(c, "verify") && argc == 5 && !strcmp(argv[2], "--canon")) return cmd_verify(argv[3], argv[4], 1);
    if (!strcmp(c, "gen-window") && argc == 6)
        return cmd_gen_window(argv[2], argv[3], atol(argv[4]), atol(argv[5]));
    if (!strcmp(c, "gen-join") && argc == 7)
        return cmd_gen_join(argv[2], argv[3], argv[4], atol(argv[5]), atol(argv[6]));
    if (!strcmp(c, "run")) return cmd_run(argc - 2, argv + 2);
    die("bad command or arguments: %s", c);
    return 2;
}
