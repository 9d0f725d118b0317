/* raw_source: the C baselines of the source workloads, one producer each,
 * configured as qhost's sources are (murmur2_random, idempotent, librdkafka
 * defaults otherwise).
 *   raw_source BROKER TOPIC csv FILE     workload 2: every row of FILE as the
 *                                        JSON object of strings in header order
 *                                        that qhost's and Quix's CSVSource make
 *                                        (parsed with libcsv, as qhost does), no key
 *   raw_source BROKER TOPIC counter N    workloads 3 and 4: key "<i>", value {"n":<i>}
 * Ends when everything is produced and flushed (or at SIGINT/SIGTERM). */
#include "bench_util.h"

#include <signal.h>
#include <csv.h>
#include <librdkafka/rdkafka.h>

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk; (void)opaque;
    if (m->err) {
        fprintf(stderr, "raw_source: delivery failed: %s\n", rd_kafka_err2str(m->err));
        exit(1);
    }
}

static rd_kafka_t *g_rk;
static rd_kafka_topic_t *g_topic;

static void produce(const char *key, size_t klen, const char *value, size_t vlen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            g_rk, RD_KAFKA_V_RKT(g_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key ? klen : 0), RD_KAFKA_V_VALUE((void *)value, vlen),
            RD_KAFKA_V_END);
        if (!e) break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "raw_source: produce: %s\n", rd_kafka_err2str(e));
            exit(1);
        }
        rd_kafka_poll(g_rk, 100);
    }
    rd_kafka_poll(g_rk, 0);
}

/* CSV rows through libcsv's callbacks: fields collected, then one JSON
 * object per row. */
typedef struct csv_state {
    buf fields;          /* field bytes back to back */
    size_t starts[64], lens[64];
    int nfields;
    char *header[64];
    size_t header_len[64];
    int ncols;
    buf json;
} csv_state;

static void on_field(void *s, size_t len, void *data)
{
    csv_state *st = data;
    if (st->nfields >= 64) return;
    st->starts[st->nfields] = st->fields.len;
    st->lens[st->nfields++] = len;
    buf_put(&st->fields, s ? s : "", len);
}

static void on_row(int term, void *data)
{
    csv_state *st = data;
    (void)term;
    if (st->ncols == 0) {
        for (int i = 0; i < st->nfields; i++) {
            st->header[i] = malloc(st->lens[i] + 1);
            memcpy(st->header[i], st->fields.data + st->starts[i], st->lens[i]);
            st->header_len[i] = st->lens[i];
        }
        st->ncols = st->nfields;
    } else {
        st->json.len = 0;
        buf_put(&st->json, "{", 1);
        for (int i = 0; i < st->ncols && i < st->nfields; i++) {
            if (i) buf_put(&st->json, ",", 1);
            buf_json_string(&st->json, st->header[i], st->header_len[i]);
            buf_put(&st->json, ":", 1);
            buf_json_string(&st->json, st->fields.data + st->starts[i], st->lens[i]);
        }
        buf_put(&st->json, "}", 1);
        produce(NULL, 0, st->json.data, st->json.len);
    }
    st->nfields = 0;
    st->fields.len = 0;
}

static int run_csv(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    struct csv_parser p;
    csv_init(&p, CSV_STRICT | CSV_APPEND_NULL);
    static csv_state st;
    char chunk[1 << 16];
    size_t n;
    while (!g_stop && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (csv_parse(&p, chunk, n, on_field, on_row, &st) != n) {
            fprintf(stderr, "raw_source: %s: %s\n", path, csv_strerror(csv_error(&p)));
            return 1;
        }
    }
    csv_fini(&p, on_field, on_row, &st);
    csv_free(&p);
    fclose(f);
    return 0;
}

static int run_counter(long n)
{
    char k[32], v[48];
    for (long i = 0; i < n && !g_stop; i++) {
        int kl = counter_key(k, sizeof k, i), vl = counter_value(v, sizeof v, i);
        produce(k, (size_t)kl, v, (size_t)vl);
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    if (argc != 5) {
        fprintf(stderr, "usage: raw_source BROKER TOPIC csv FILE | raw_source BROKER TOPIC counter N\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) ||
        rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err)) {
        fprintf(stderr, "raw_source: %s\n", err);
        return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    g_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!g_rk) { fprintf(stderr, "raw_source: %s\n", err); return 1; }
    g_topic = rd_kafka_topic_new(g_rk, argv[2], NULL);
    int rc = !strcmp(argv[3], "csv") ? run_csv(argv[4])
           : !strcmp(argv[3], "counter") ? run_counter(atol(argv[4])) : 2;
    rd_kafka_flush(g_rk, 60000);
    if (rd_kafka_outq_len(g_rk) > 0) {
        fprintf(stderr, "raw_source: %d messages not delivered\n", rd_kafka_outq_len(g_rk));
        rc = 1;
    }
    rd_kafka_topic_destroy(g_topic);
    rd_kafka_destroy(g_rk);
    return rc;
}
