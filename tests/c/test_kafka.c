/* test_kafka.c: tests of the `qhost.kafka` units (host/kafka*.c) on the
 * embedded broker (librdkafka's mock cluster, started through the module in
 * this process), and of the C logger (hostlib's qh_log) that librdkafka's
 * lines go through. Handles are made through the `qhost.kafka` Lua module in
 * a real lua_State (tests/c/helpers.h runs the chunks); messages go through
 * the qh_ffi_* functions with the handles' ptr(), as the Lua library does.
 * Every test has its own topics and groups on the one mock cluster.
 * Transactions are tested here as far as the mock goes (it isolates
 * nothing); tests/lua/clients_spec.lua tests them on a real Kafka.
 * Waits are upper bounds against hanging (30 s); every check is on an exact
 * value. One test joins a group with subscribe: the mock completes a join
 * after session.timeout.ms - 1 s, so it uses session.timeout.ms=6000.
 * The state's allocator can be made to fail once (arm_alloc_failure()), to
 * see what a constructor leaves behind when Lua runs out of memory. The
 * last test requests a stop (SIGTERM to this process, counted by hostlib's
 * handler), which stays requested: it must stay last. */
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <librdkafka/rdkafka.h>

#include "check.h"
#include "helpers.h"
#include "hostlib.h"
#include "kafka.h"
#include "kafka_internal.h"
#include "vm.h"

static lua_State *L;

/* The state's allocator, passing through to LuaJIT's own until armed: then
 * the next allocation that grows something fails (once). */
static lua_Alloc real_alloc;
static void *real_alloc_ud;
static int alloc_armed;

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (alloc_armed && nsize > osize) {
        alloc_armed = 0;
        return NULL;
    }
    return real_alloc(real_alloc_ud, ptr, osize, nsize);
}

static int l_arm_alloc_failure(lua_State *L1)
{
    (void)L1;
    alloc_armed = 1;
    return 0;
}

static const char lua_prelude[] =
    "mock = assert(kafka.mock_cluster(1))\n"
    "BOOT = mock:bootstraps()\n"
    "function producer(extra)\n"
    "  local conf = { ['bootstrap.servers'] = BOOT, ['linger.ms'] = 5,\n"
    "                 ['partitioner'] = 'murmur2_random' }\n"
    "  for k, v in pairs(extra or {}) do conf[k] = v end\n"
    "  return assert(kafka.producer(conf))\n"
    "end\n"
    /* Manual offset management, as the Lua library configures it. */
    "function consumer(group, reset, extra)\n"
    "  local conf = { ['bootstrap.servers'] = BOOT, ['group.id'] = group,\n"
    "                 ['auto.offset.reset'] = reset, ['enable.auto.commit'] = false,\n"
    "                 ['enable.auto.offset.store'] = false, ['fetch.wait.max.ms'] = 50 }\n"
    "  for k, v in pairs(extra or {}) do conf[k] = v end\n"
    "  return assert(kafka.consumer(conf))\n"
    "end\n"
    "function parts(topic, offsets)\n"
    "  local t = {}\n"
    "  for i, off in ipairs(offsets) do\n"
    "    t[i] = { topic = topic, partition = i - 1, offset = off >= 0 and off or nil }\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "function list_str(list)\n"
    "  local out = {}\n"
    "  for _, p in ipairs(list) do\n"
    "    out[#out + 1] = string.format('%s/%d@%d', p.topic, p.partition, p.offset)\n"
    "  end\n"
    "  table.sort(out)\n"
    "  return table.concat(out, ',')\n"
    "end\n"
    /* take_events as text: 'assign:t/0@5,t/1@-1001;revoke:...'. */
    "function events_str(c)\n"
    "  local out = {}\n"
    "  for _, e in ipairs(c:take_events()) do\n"
    "    out[#out + 1] = e.type .. ':' .. list_str(e.partitions)\n"
    "  end\n"
    "  return table.concat(out, ';')\n"
    "end\n";

/* A chunk's results joined by "|", or "ERROR: <message>" (helpers.h). */
static const char *run(const char *chunk)
{
    return th_run(L, chunk);
}

/* The C handle behind a Lua global holding a producer or consumer. */
static void *ptr_of(const char *global)
{
    char chunk[128];
    snprintf(chunk, sizeof chunk, "return %s:ptr()", global);
    if (th_run_n(L, chunk) < 1) return NULL;
    void *p = lua_touserdata(L, 1);
    lua_settop(L, 0);
    return p;
}

/* Milliseconds since the epoch (message timestamps). */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kafka's murmur2 (the Java client's Utils.murmur2), to know where
 * partitioner=murmur2_random must put a key. */
static int32_t murmur2(const char *data, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t k = (uint32_t)(unsigned char)data[i] | (uint32_t)(unsigned char)data[i + 1] << 8 |
                     (uint32_t)(unsigned char)data[i + 2] << 16 | (uint32_t)(unsigned char)data[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len & 3) {
    case 3: h ^= (uint32_t)(unsigned char)data[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)(unsigned char)data[i + 1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)(unsigned char)data[i]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

static int java_partition(const char *key, int partitions)
{
    return (int)((uint32_t)murmur2(key, strlen(key)) & 0x7fffffff) % partitions;
}

/* ---- one message as sent and as received --------------------------------- */

#define MAX_HEADERS 4

typedef struct sent {
    int32_t partition;          /* asked for; -1: the partitioner */
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    int64_t timestamp;          /* 0: now */
    int header_count;
    const char *hnames[MAX_HEADERS];
    const char *hvalues[MAX_HEADERS];
    size_t hlens[MAX_HEADERS];
} sent;

typedef struct got {
    char topic[64];
    int32_t partition, timestamp_type, header_count;
    int64_t offset, timestamp;
    int key_null, value_null;
    char key[64], value[128];
    size_t key_len, value_len;
    struct {
        char name[32];
        int null;
        char value[32];
        size_t len;
    } h[MAX_HEADERS];
} got;

static int produce(qh_producer *p, const char *topic, const sent *s)
{
    /* qh_ffi_produce takes const char ** (the FFI's view): local copies. */
    const char *names[MAX_HEADERS], *values[MAX_HEADERS];
    memcpy(names, s->hnames, sizeof names);
    memcpy(values, s->hvalues, sizeof values);
    return qh_ffi_produce(p, topic, s->partition, s->key, s->key_len, s->value, s->value_len,
                          s->timestamp, s->header_count, names, values, s->hlens);
}

static int produce_kv(qh_producer *p, const char *topic, int32_t partition, const char *key,
                      const char *value)
{
    return qh_ffi_produce(p, topic, partition, key, key ? strlen(key) : 0, value,
                          value ? strlen(value) : 0, 0, 0, NULL, NULL, NULL);
}

static void copy_bytes(char *dst, size_t cap, int *is_null, size_t *len, const char *src, size_t n)
{
    *is_null = src == NULL;
    *len = n;
    memset(dst, 0, cap);
    if (src) memcpy(dst, src, n < cap ? n : cap - 1);
}

/* Polls c until `want` messages have arrived or 30 s passed; copies them
 * (sorted by partition, offset) to out. Returns how many arrived; error
 * events are printed and fail the test. */
static int consume(qh_consumer *c, got *out, int want, int max_ms)
{
    int have = 0;
    int64_t deadline = th_now_ms() + max_ms;
    while (have < want && th_now_ms() < deadline) {
        qh_msg *msgs = NULL;
        int n = qh_ffi_consumer_poll(c, 8, 100, &msgs);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            const qh_msg *m = &msgs[i];
            if (m->err) {
                fprintf(stderr, "%s: consumer error %d: %s\n", check_current_name, m->err,
                        qh_ffi_msg_errstr(c, i));
                check_current_ok = 0;
                continue;
            }
            CHECK_EQ_STR(qh_ffi_msg_errstr(c, i), "");
            if (have >= want) {
                have++;   /* more than asked for: counted, not kept */
                continue;
            }
            got *g = &out[have++];
            memset(g, 0, sizeof *g);
            snprintf(g->topic, sizeof g->topic, "%s", m->topic);
            g->partition = m->partition;
            g->offset = m->offset;
            g->timestamp = m->timestamp;
            g->timestamp_type = m->timestamp_type;
            g->header_count = m->header_count;
            copy_bytes(g->key, sizeof g->key, &g->key_null, &g->key_len, m->key, m->key_len);
            copy_bytes(g->value, sizeof g->value, &g->value_null, &g->value_len, m->value,
                       m->value_len);
            for (int h = 0; h < m->header_count && h < MAX_HEADERS; h++) {
                const char *name = NULL, *value = NULL;
                size_t len = 0;
                CHECK_EQ_INT(qh_ffi_msg_header(c, i, h, &name, &value, &len), 0);
                snprintf(g->h[h].name, sizeof g->h[h].name, "%s", name ? name : "(null)");
                copy_bytes(g->h[h].value, sizeof g->h[h].value, &g->h[h].null, &g->h[h].len, value, len);
            }
            /* Past the last header, and past the batch: -1. */
            const char *name, *value;
            size_t len;
            CHECK_EQ_INT(qh_ffi_msg_header(c, i, m->header_count, &name, &value, &len), -1);
            CHECK_EQ_INT(qh_ffi_msg_header(c, n, 0, &name, &value, &len), -1);
            CHECK_EQ_INT(qh_ffi_msg_header(c, -1, 0, &name, &value, &len), -1);
        }
        CHECK_EQ_STR(qh_ffi_msg_errstr(c, n), "");
    }
    int kept = have < want ? have : want;
    for (int i = 0; i < kept; i++)
        for (int j = i + 1; j < kept; j++)
            if (out[j].partition < out[i].partition ||
                (out[j].partition == out[i].partition && out[j].offset < out[i].offset)) {
                got t = out[i];
                out[i] = out[j];
                out[j] = t;
            }
    return have;
}

/* How many messages arrive within ms (for "nothing more"). */
static int count_more(qh_consumer *c, int ms)
{
    got extra[4];
    return consume(c, extra, 4, ms);
}

static void check_message(const got *g, const char *topic, const sent *s, int32_t partition,
                          int64_t offset)
{
    CHECK_EQ_STR(g->topic, topic);
    CHECK_EQ_INT(g->partition, partition);
    CHECK_EQ_INT(g->offset, offset);
    CHECK_EQ_INT(g->key_null, s->key == NULL);
    CHECK_EQ_INT(g->key_len, s->key ? s->key_len : 0);
    if (s->key) CHECK(memcmp(g->key, s->key, s->key_len) == 0);
    CHECK_EQ_INT(g->value_null, s->value == NULL);
    CHECK_EQ_INT(g->value_len, s->value ? s->value_len : 0);
    if (s->value) CHECK(memcmp(g->value, s->value, s->value_len) == 0);
    CHECK_EQ_INT(g->timestamp_type, 1);   /* create time */
    if (s->timestamp > 0) CHECK_EQ_INT(g->timestamp, s->timestamp);
    CHECK_EQ_INT(g->header_count, s->header_count);
    for (int h = 0; h < s->header_count && h < g->header_count; h++) {
        CHECK_EQ_STR(g->h[h].name, s->hnames[h]);
        CHECK_EQ_INT(g->h[h].null, s->hvalues[h] == NULL);
        CHECK_EQ_INT(g->h[h].len, s->hvalues[h] ? s->hlens[h] : 0);
        if (s->hvalues[h]) CHECK(memcmp(g->h[h].value, s->hvalues[h], s->hlens[h]) == 0);
    }
}

/* ---- the module and the embedded broker ---------------------------------- */

TEST(murmur2_matches_the_java_client)
{
    /* Vectors from Kafka's UtilsTest; the helper the tests below rely on. */
    CHECK_EQ_INT(murmur2("21", 2), -973932308);
    CHECK_EQ_INT(murmur2("foobar", 6), -790332482);
    CHECK_EQ_INT(murmur2("a-little-bit-long-string", 24), -985981536);
    CHECK_EQ_INT(murmur2("a-little-bit-longer-string", 26), -1486304829);
    CHECK_EQ_INT(murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 48), -58897971);
    CHECK_EQ_INT(murmur2("abc", 3), 479470107);
}

TEST(module_fields)
{
    CHECK_EQ_STR(run("return kafka.librdkafka_version"), "2.0.2");
    CHECK_EQ_STR(run("return type(kafka.producer), type(kafka.consumer), type(kafka.admin),\n"
                     "  type(kafka.mock_cluster), type(kafka.set_log_prefix)"),
                 "function|function|function|function|function");
    CHECK_EQ_STR(run("return type(kafka.set_log_level)"), "function");
    CHECK_EQ_STR(run("return select('#', kafka.set_log_prefix('test_kafka'))"), "0");
}

TEST(mock_bootstraps_and_topics)
{
    const char *boot = run("return BOOT");
    int port = 0;
    char rest[8] = "";
    CHECK_EQ_INT(sscanf(boot, "127.0.0.1:%d%7s", &port, rest), 1);
    CHECK(port > 0 && port < 65536);
    /* Creating a topic twice is fine; the second call changes nothing. */
    CHECK_EQ_STR(run("return mock:create_topic('mt', 3)"), "true");
    CHECK_EQ_STR(run("return mock:create_topic('mt', 3)"), "true");
    CHECK_EQ_STR(run("return mock:create_topic('mt', 5)"), "true");
    CHECK_EQ_STR(run("return mock:create_topic('mt-one')"), "true");
    CHECK_EQ_STR(run("admin = assert(kafka.admin({ ['bootstrap.servers'] = BOOT }))\n"
                     "return admin:partitions('mt', 10), admin:partitions('mt-one', 10)"),
                 "3|1");
    CHECK_EQ_STR(run("return admin:partitions('no-such-topic', 10)"), "nil|unknown topic");
    /* Several in one request: the ones that exist. */
    CHECK_EQ_STR(run("local c = admin:partitions({ 'mt', 'no-such-topic', 'mt-one' }, 10)\n"
                     "local n = 0\n"
                     "for _ in pairs(c) do n = n + 1 end\n"
                     "return c.mt, c['mt-one'], c['no-such-topic'], n"),
                 "3|1|nil|2");
    CHECK_EQ_STR(run("admin:close(); return true"), "true");
    /* A second cluster is independent of the first. */
    CHECK_EQ_STR(run("local m2 = assert(kafka.mock_cluster(1))\n"
                     "local other = m2:bootstraps() ~= BOOT\n"
                     "m2:close()\n"
                     "return other"), "true");
}

/* ---- produce and consume every field ------------------------------------- */

TEST(produce_and_consume_every_field)
{
    static const char topic[] = "fields";
    CHECK_EQ_STR(run("return mock:create_topic('fields', 3)"), "true");
    CHECK_EQ_STR(run("p = producer(); return p:outq_len()"), "0");
    qh_producer *p = ptr_of("p");
    if (!p) return;

    const int64_t T = 1700000000000LL;
    sent msgs[] = {
        { 0, "k0", 2, "v0", 2, T, 2, { "trace", "nothing" }, { "abc", NULL }, { 3, 0 } },
        { 1, NULL, 0, "no key", 6, T + 1, 0, { 0 }, { 0 }, { 0 } },
        { 2, "tomb", 4, NULL, 0, T + 2, 1, { "empty" }, { "" }, { 0 } },
        { 0, "bin\0k", 5, "a\0b", 3, T + 3, 3, { "dup", "dup", "bytes" }, { "1", "2", "y\0z" },
          { 1, 1, 3 } },
        { 1, NULL, 0, NULL, 0, T + 4, 0, { 0 }, { 0 }, { 0 } },
        { -1, "user-42", 7, "routed", 6, T + 5, 0, { 0 }, { 0 }, { 0 } },
        { 2, "", 0, "", 0, T + 6, 0, { 0 }, { 0 }, { 0 } },
        { 2, "now", 3, "ts0", 3, 0, 0, { 0 }, { 0 }, { 0 } },
    };
    enum { N = sizeof msgs / sizeof *msgs };
    int32_t want_part[N];
    int64_t want_off[N], per_part[3] = { 0, 0, 0 };
    for (int i = 0; i < N; i++) {
        want_part[i] = msgs[i].partition >= 0 ? msgs[i].partition : java_partition(msgs[i].key, 3);
        want_off[i] = per_part[want_part[i]]++;
    }

    int64_t before = wall_ms();
    for (int i = 0; i < N; i++) CHECK_EQ_INT(produce(p, topic, &msgs[i]), 0);
    CHECK_EQ_STR(run("return p:flush(30)"), "0");
    int64_t after = wall_ms();
    CHECK_EQ_STR(run("return p:outq_len(), select('#', p:take_errors())"), "0|0");
    char failure[512] = "untouched";
    CHECK_EQ_INT(qh_ffi_producer_take_failures(p, failure, sizeof failure), 0);
    CHECK_EQ_STR(failure, "untouched");
    CHECK(qh_ffi_producer_poll(p, 0) >= 0);

    CHECK_EQ_STR(run("c = consumer('g-fields', 'earliest')\n"
                     "return c:assign(parts('fields', { -1, -1, -1 }))"), "true");
    /* earliest, nothing committed: the start is pinned at the beginning. */
    CHECK_EQ_STR(run("return events_str(c)"), "assign:fields/0@0,fields/1@0,fields/2@0");
    CHECK_EQ_STR(run("return list_str(c:assignment())"), "fields/0@0,fields/1@0,fields/2@0");
    qh_consumer *c = ptr_of("c");
    if (!c) return;
    qh_msg *none;
    CHECK_EQ_INT(qh_ffi_consumer_poll(c, 0, 0, &none), -1);

    got g[N];
    int64_t lookups_before = qh_kafka_header_lookups();
    CHECK_EQ_INT(consume(c, g, N, 30000), N);
    /* Only the 3 messages with headers were asked for them, on the
     * librdkafka whose record layout fill_msg reads (every one elsewhere). */
    int with_headers = 0;
    for (int i = 0; i < N; i++) with_headers += msgs[i].header_count > 0;
    CHECK_EQ_INT(with_headers, 3);
    CHECK_EQ_INT(qh_kafka_header_lookups() - lookups_before, rd_kafka_version() == QH_KAFKA_HEADER_PEEK_VERSION ? 3 : N);
    /* consume() sorted them by (partition, offset): match each to its spec. */
    for (int k = 0; k < N; k++) {
        int i = -1;
        for (int j = 0; j < N; j++)
            if (want_part[j] == g[k].partition && want_off[j] == g[k].offset) i = j;
        CHECK(i >= 0);
        if (i < 0) continue;
        check_message(&g[k], topic, &msgs[i], want_part[i], want_off[i]);
        if (msgs[i].timestamp == 0) CHECK(g[k].timestamp >= before - 60000 && g[k].timestamp <= after + 60000);
    }
    CHECK_EQ_INT(count_more(c, 300), 0);

    /* The high watermarks, from the last fetch and from the broker. */
    char want[128];
    snprintf(want, sizeof want, "0|%lld|0|%lld|0|%lld", (long long)per_part[0],
             (long long)per_part[1], (long long)per_part[2]);
    CHECK_EQ_STR(run("local a, b = c:watermarks('fields', 0)\n"
                     "local d, e = c:watermarks('fields', 1)\n"
                     "local f, g = c:watermarks('fields', 2)\n"
                     "return a, b, d, e, f, g"), want);
    CHECK_EQ_STR(run("admin = assert(kafka.admin({ ['bootstrap.servers'] = BOOT }))\n"
                     "local a, b = admin:watermarks('fields', 0, 10)\n"
                     "local d, e = admin:watermarks('fields', 1, 10)\n"
                     "local f, g = admin:watermarks('fields', 2, 10)\n"
                     "admin:close()\n"
                     "return a, b, d, e, f, g"), want);
    /* What the metrics read: deliveries per partition, and each assigned
     * partition's position and end offset, all asked of no broker. */
    snprintf(want, sizeof want, "fields/0=%lld,fields/1=%lld,fields/2=%lld", (long long)per_part[0],
             (long long)per_part[1], (long long)per_part[2]);
    CHECK_EQ_STR(run("local list = {}\n"
                     "for _, d in ipairs(p:delivered()) do\n"
                     "  list[#list + 1] = string.format('%s/%d=%d', d.topic, d.partition, d.count)\n"
                     "end\n"
                     "table.sort(list); return table.concat(list, ',')"), want);
    snprintf(want, sizeof want, "fields/0@%lld<%lld,fields/1@%lld<%lld,fields/2@%lld<%lld",
             (long long)per_part[0], (long long)per_part[0], (long long)per_part[1], (long long)per_part[1],
             (long long)per_part[2], (long long)per_part[2]);
    CHECK_EQ_STR(run("local list = {}\n"
                     "for _, tp in ipairs(c:positions()) do\n"
                     "  list[#list + 1] = string.format('%s/%d@%d<%s', tp.topic, tp.partition, tp.offset,\n"
                     "    tostring(tp.high))\n"
                     "end\n"
                     "table.sort(list); return table.concat(list, ',')"), want);
    CHECK_EQ_STR(run("c:close(); p:close(); return true"), "true");
}

/* The producer keeps a handle per topic (16 of them): past that it still
 * delivers, through a handle of the moment. */
TEST(produce_to_many_topics)
{
    CHECK_EQ_STR(run("for i = 0, 19 do assert(mock:create_topic('many' .. i, 1)) end\n"
                     "p = producer(); return true"), "true");
    qh_producer *p = ptr_of("p");
    if (!p) return;
    CHECK_EQ_INT(qh_ffi_producer_topic(p, "many0"), 0);
    CHECK_EQ_INT(qh_ffi_producer_topic(p, "many0"), 0);
    char topic[16];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 20; i++) {
            snprintf(topic, sizeof topic, "many%d", i);
            CHECK_EQ_INT(produce_kv(p, topic, 0, "k", "v"), 0);
        }
    CHECK_EQ_STR(run("return p:flush(30)"), "0");
    CHECK_EQ_INT(qh_ffi_producer_take_failures(p, NULL, 0), 0);
    CHECK_EQ_STR(run("local admin = assert(kafka.admin({ ['bootstrap.servers'] = BOOT }))\n"
                     "local highs = {}\n"
                     "for i = 0, 19 do highs[#highs + 1] = select(2, admin:watermarks('many' .. i, 0, 10)) end\n"
                     "admin:close()\n"
                     "return table.concat(highs, ',')"),
                 "2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2");
    /* Deliveries are counted through the kept handles and the others alike. */
    CHECK_EQ_STR(run("local n, sum = 0, 0\n"
                     "for _, d in ipairs(p:delivered()) do n = n + 1; sum = sum + d.count end\n"
                     "p:close(); return n, sum"), "20|40");
}

/* ---- offsets: store, commit, resume -------------------------------------- */

TEST(committed_offsets_are_where_the_group_resumes)
{
    CHECK_EQ_STR(run("return mock:create_topic('resume', 3)"), "true");
    CHECK_EQ_STR(run("p = producer(); return true"), "true");
    qh_producer *p = ptr_of("p");
    if (!p) return;
    static const int32_t parts[] = { 0, 0, 0, 1, 1, 2 };
    for (int i = 0; i < 6; i++) {
        char key[16];
        snprintf(key, sizeof key, "r%d", i);
        CHECK_EQ_INT(produce_kv(p, "resume", parts[i], key, key), 0);
    }
    CHECK_EQ_STR(run("return p:flush(30)"), "0");

    CHECK_EQ_STR(run("c1 = consumer('g-resume', 'earliest')\n"
                     "return c1:assign(parts('resume', { -1, -1, -1 }))"), "true");
    qh_consumer *c1 = ptr_of("c1");
    got g[6];
    CHECK_EQ_INT(consume(c1, g, 6, 30000), 6);
    /* Nothing stored yet: commit has nothing to do, and says so as success. */
    CHECK_EQ_STR(run("return c1:commit()"), "true");
    /* Processed: all of partition 1, two of three on partition 0, none of 2.
     * A partition this consumer does not own is skipped, not an error. */
    CHECK_EQ_STR(run("return c1:store_offsets({ { topic = 'resume', partition = 0, offset = 2 },\n"
                     "  { topic = 'resume', partition = 1, offset = 2 } })"), "true");
    CHECK_EQ_STR(run("return c1:store_offsets({ { topic = 'fields', partition = 0, offset = 1 } })"),
                 "true");
    CHECK_EQ_STR(run("return c1:commit()"), "true");
    CHECK_EQ_STR(run("return list_str(c1:committed(parts('resume', { -1, -1, -1 }), 10))"),
                 "resume/0@2,resume/1@2,resume/2@-1001");
    CHECK_EQ_STR(run("c1:close(); return true"), "true");

    /* The same group, latest: the committed offsets, and the end where
     * nothing was committed, are the explicit starts of the assignment. */
    CHECK_EQ_STR(run("c2 = consumer('g-resume', 'latest')\n"
                     "return c2:assign(parts('resume', { -1, -1, -1 }))"), "true");
    CHECK_EQ_STR(run("return events_str(c2)"), "assign:resume/0@2,resume/1@2,resume/2@1");
    CHECK_EQ_STR(run("return list_str(c2:committed(parts('resume', { -1, -1, -1 }), 10))"),
                 "resume/0@2,resume/1@2,resume/2@-1001");
    qh_consumer *c2 = ptr_of("c2");
    CHECK_EQ_INT(consume(c2, g, 1, 30000), 1);
    CHECK_EQ_INT(g[0].partition, 0);
    CHECK_EQ_INT(g[0].offset, 2);
    CHECK_EQ_STR(g[0].key, "r2");
    CHECK_EQ_INT(produce_kv(p, "resume", 2, "after", "after"), 0);
    CHECK_EQ_STR(run("return p:flush(30)"), "0");
    CHECK_EQ_INT(consume(c2, g, 1, 30000), 1);
    CHECK_EQ_INT(g[0].partition, 2);
    CHECK_EQ_INT(g[0].offset, 1);
    CHECK_EQ_STR(g[0].value, "after");
    CHECK_EQ_INT(count_more(c2, 300), 0);
    /* An explicit offset in assign is kept as given. */
    CHECK_EQ_STR(run("c3 = consumer('g-resume', 'latest')\n"
                     "return c3:assign(parts('resume', { 0, -1, 1 }))"), "true");
    CHECK_EQ_STR(run("return events_str(c3)"), "assign:resume/0@0,resume/1@2,resume/2@1");
    CHECK_EQ_STR(run("c2:close(); c3:close(); p:close(); return true"), "true");
}

/* commit(list) writes those offsets for the group, assigned or not: a
 * checkpoint the next member of the group starts from. */
TEST(commit_of_a_list_is_a_checkpoint_for_the_group)
{
    CHECK_EQ_STR(run("return mock:create_topic('ckpt', 2)"), "true");
    CHECK_EQ_STR(run("p = producer(); return true"), "true");
    qh_producer *p = ptr_of("p");
    if (!p) return;
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(produce_kv(p, "ckpt", 0, i == 2 ? "third" : "x", "v"), 0);
    CHECK_EQ_STR(run("return p:flush(30)"), "0");

    CHECK_EQ_STR(run("k = consumer('g-ckpt', 'earliest')\n"
                     "return k:commit({ { topic = 'ckpt', partition = 0, offset = 2 } })"), "true");
    CHECK_EQ_STR(run("return list_str(k:committed(parts('ckpt', { -1, -1 }), 10))"),
                 "ckpt/0@2,ckpt/1@-1001");
    CHECK_EQ_STR(run("k:close(); return true"), "true");

    CHECK_EQ_STR(run("c = consumer('g-ckpt', 'earliest')\n"
                     "return c:assign(parts('ckpt', { -1, -1 }))"), "true");
    CHECK_EQ_STR(run("return events_str(c)"), "assign:ckpt/0@2,ckpt/1@0");
    qh_consumer *c = ptr_of("c");
    got g[1];
    CHECK_EQ_INT(consume(c, g, 1, 30000), 1);
    CHECK_EQ_INT(g[0].partition, 0);
    CHECK_EQ_INT(g[0].offset, 2);
    CHECK_EQ_STR(g[0].key, "third");
    CHECK_EQ_INT(count_more(c, 300), 0);
    CHECK_EQ_STR(run("c:close(); p:close(); return true"), "true");
}

/* An error event comes through the same poll as data: err set, no
 * timestamp, and its text from qh_ffi_msg_errstr. (A deferred-mode consumer:
 * assign looks nothing up, librdkafka's own committed-offset fetch fails.) */
TEST(error_events_come_through_poll)
{
    CHECK_EQ_STR(run("return mock:create_topic('fields', 3)"), "true");
    CHECK_EQ_STR(run("c = consumer('g-err', 'earliest', { ['qhost.rebalance'] = 'deferred' })\n"
                     "return c:assign({ { topic = 'fields', partition = 7 } })"), "true");
    CHECK_EQ_STR(run("return events_str(c)"), "");
    qh_consumer *c = ptr_of("c");
    if (!c) return;
    qh_msg *m = NULL;
    int n = 0;
    int64_t deadline = th_now_ms() + 30000;
    while (n == 0 && th_now_ms() < deadline) n = qh_ffi_consumer_poll(c, 8, 100, &m);
    CHECK(n >= 1);
    if (n >= 1) {
        CHECK_EQ_INT(m[0].err, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
        CHECK_EQ_STR(m[0].topic, "fields");
        CHECK_EQ_INT(m[0].partition, 7);
        CHECK_EQ_INT(m[0].offset, RD_KAFKA_OFFSET_INVALID);
        CHECK_EQ_INT(m[0].timestamp, -1);
        CHECK_EQ_INT(m[0].timestamp_type, 0);
        CHECK_EQ_INT(m[0].header_count, 0);
        CHECK_EQ_STR(qh_ffi_msg_errstr(c, 0), "Failed to fetch committed offset for group \"g-err\" "
                                              "topic fields [7]: Broker: Unknown topic or partition");
        const char *name, *value;
        size_t len;
        CHECK_EQ_INT(qh_ffi_msg_header(c, 0, 0, &name, &value, &len), -1);
    }
    CHECK_EQ_STR(run("c:close(); return true"), "true");
}

/* A new group with latest starts at the high watermark, pinned at the
 * assignment: what is produced right after is never skipped. */
TEST(new_group_latest_starts_at_the_high_watermark)
{
    CHECK_EQ_STR(run("return mock:create_topic('latest', 3)"), "true");
    CHECK_EQ_STR(run("p = producer(); return true"), "true");
    qh_producer *p = ptr_of("p");
    if (!p) return;
    CHECK_EQ_INT(produce_kv(p, "latest", 0, "old", "a"), 0);
    CHECK_EQ_INT(produce_kv(p, "latest", 0, "old", "b"), 0);
    CHECK_EQ_INT(produce_kv(p, "latest", 1, "old", "c"), 0);
    CHECK_EQ_STR(run("return p:flush(30)"), "0");

    CHECK_EQ_STR(run("c = consumer('g-latest-new', 'latest')\n"
                     "return c:assign(parts('latest', { -1, -1, -1 }))"), "true");
    CHECK_EQ_STR(run("return events_str(c)"), "assign:latest/0@2,latest/1@1,latest/2@0");
    CHECK_EQ_STR(run("return events_str(c)"), "");   /* taken */
    /* No auto.offset.reset at all is librdkafka's default, latest: the same. */
    CHECK_EQ_STR(run("d = consumer('g-latest-default', nil)\n"
                     "return d:assign(parts('latest', { -1, -1, -1 }))"), "true");
    CHECK_EQ_STR(run("return events_str(d)"), "assign:latest/0@2,latest/1@1,latest/2@0");
    CHECK_EQ_STR(run("d:close(); return true"), "true");

    /* Produced right after the assignment, before any poll. */
    static const int32_t parts[] = { 0, 1, 2, 0, 1 };
    for (int i = 0; i < 5; i++) {
        char key[8];
        snprintf(key, sizeof key, "n%d", i);
        CHECK_EQ_INT(produce_kv(p, "latest", parts[i], key, key), 0);
    }
    CHECK_EQ_STR(run("return p:flush(30)"), "0");
    qh_consumer *c = ptr_of("c");
    got g[5];
    CHECK_EQ_INT(consume(c, g, 5, 30000), 5);
    static const struct { int32_t partition; int64_t offset; const char *key; } want[] = {
        { 0, 2, "n0" }, { 0, 3, "n3" }, { 1, 1, "n1" }, { 1, 2, "n4" }, { 2, 0, "n2" },
    };
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(g[i].partition, want[i].partition);
        CHECK_EQ_INT(g[i].offset, want[i].offset);
        CHECK_EQ_STR(g[i].key, want[i].key);
        CHECK_EQ_STR(g[i].value, want[i].key);
    }
    CHECK_EQ_INT(count_more(c, 300), 0);
    CHECK_EQ_STR(run("c:close(); p:close(); return true"), "true");
}

/* The one group join (subscribe): the assignment starts at the end (latest,
 * pinned), and closing the consumer commits what was stored (the revoke). */
TEST(subscribe_joins_and_close_commits_stored_offsets)
{
    CHECK_EQ_STR(run("return mock:create_topic('sub', 3)"), "true");
    CHECK_EQ_STR(run("p = producer(); return true"), "true");
    qh_producer *p = ptr_of("p");
    if (!p) return;
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(produce_kv(p, "sub", i, "before", "before"), 0);
    CHECK_EQ_STR(run("return p:flush(30)"), "0");

    CHECK_EQ_STR(run("s = consumer('g-sub', 'latest', { ['session.timeout.ms'] = 6000 })\n"
                     "return s:subscribe({ 'sub' })"), "true");
    qh_consumer *s = ptr_of("s");
    if (!s) return;
    /* Poll until the join completes (the mock takes ~5 s; 30 s at most). */
    char events[512] = "";
    int64_t deadline = th_now_ms() + 30000;
    int early = 0;
    while (!events[0] && th_now_ms() < deadline) {
        qh_msg *msgs;
        early += qh_ffi_consumer_poll(s, 8, 100, &msgs);
        snprintf(events, sizeof events, "%s", run("return events_str(s)"));
    }
    CHECK_EQ_STR(events, "assign:sub/0@1,sub/1@1,sub/2@1");
    CHECK_EQ_INT(early, 0);
    CHECK_EQ_STR(run("return list_str(s:assignment())"), "sub/0@1,sub/1@1,sub/2@1");

    for (int i = 0; i < 3; i++) CHECK_EQ_INT(produce_kv(p, "sub", i, "after", "after"), 0);
    CHECK_EQ_STR(run("return p:flush(30)"), "0");
    got g[3];
    CHECK_EQ_INT(consume(s, g, 3, 30000), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(g[i].partition, i);
        CHECK_EQ_INT(g[i].offset, 1);
        CHECK_EQ_STR(g[i].key, "after");
    }
    CHECK_EQ_STR(run("return s:store_offsets(parts('sub', { 2, 2, 2 }))"), "true");
    CHECK_EQ_STR(run("s:close(); return true"), "true");

    CHECK_EQ_STR(run("local q = consumer('g-sub', 'latest')\n"
                     "local got = list_str(q:committed(parts('sub', { -1, -1, -1 }), 10))\n"
                     "q:close()\n"
                     "return got"), "sub/0@2,sub/1@2,sub/2@2");
    CHECK_EQ_STR(run("p:close(); return true"), "true");
}

/* ---- failures ------------------------------------------------------------ */

TEST(conf_errors_name_the_property)
{
    CHECK_EQ_STR(run("return kafka.producer({ ['no.such.property'] = '1' })"),
                 "nil|kafka config: No such configuration property: \"no.such.property\"");
    CHECK_EQ_STR(run("return kafka.consumer({ ['no.such.property'] = '1' })"),
                 "nil|kafka config: No such configuration property: \"no.such.property\"");
    CHECK_EQ_STR(run("return kafka.admin({ ['no.such.property'] = '1' })"),
                 "nil|kafka config: No such configuration property: \"no.such.property\"");
    CHECK_EQ_STR(run("return kafka.producer({ ['acks'] = 'banana' })"),
                 "nil|kafka config: Invalid value for configuration property \"request.required.acks\"");
    /* An alias is named by its canonical name, as librdkafka does. */
    CHECK_EQ_STR(run("return kafka.producer({ ['linger.ms'] = 'soon' })"),
                 "nil|kafka config: Invalid value for configuration property \"queue.buffering.max.ms\"");
    CHECK_EQ_STR(run("return kafka.producer({ ['compression.codec'] = 'banana' })"),
                 "nil|kafka config: Invalid value \"banana\" for configuration property \"compression.codec\"");
    CHECK_EQ_STR(run("return kafka.producer({ ['client.id'] = {} })"),
                 "nil|kafka config: property client.id must be a string, number or boolean, got table");
    CHECK_EQ_STR(run("return kafka.consumer({ ['client.id'] = print })"),
                 "nil|kafka config: property client.id must be a string, number or boolean, got function");
    CHECK_EQ_STR(run("return kafka.admin({ ['client.id'] = io.stdout })"),
                 "nil|kafka config: property client.id must be a string, number or boolean, got userdata");
    /* Names must be strings: never converted (a number key turned into a
     * string in place would break the table walk: "invalid key to 'next'"). */
    CHECK_EQ_STR(run("return kafka.consumer({ [true] = 'x' })"),
                 "nil|kafka config: property names must be strings, got boolean true");
    CHECK_EQ_STR(run("return kafka.producer({ 'positional' })"),
                 "nil|kafka config: property names must be strings, got number 1");
    CHECK_EQ_STR(run("return kafka.producer({ [2.5] = 'x' })"),
                 "nil|kafka config: property names must be strings, got number 2.5");
    CHECK_EQ_STR(run("local t = { ['client.id'] = 'a', ['linger.ms'] = 5 }\n"
                     "for i = 1, 40 do t[i * 7] = 'x' end\n"
                     "local p, err = kafka.producer(t)\n"
                     "return p, err:match('^kafka config: property names must be strings, got number %d+$') ~= nil"),
                 "nil|true");
    CHECK_EQ_STR(run("return kafka.admin({ [{}] = 'x' })"),
                 "nil|kafka config: property names must be strings, got table");
    /* The host's own settings: checked, not passed to librdkafka. */
    CHECK_EQ_STR(run("return kafka.consumer({ ['qhost.rebalance'] = 'later' })"),
                 "nil|kafka config: qhost.rebalance must be \"callback\" or \"deferred\"");
    CHECK_EQ_STR(run("return kafka.producer({ ['qhost.queue.full.timeout.ms'] = 'soon' })"),
                 "nil|kafka config: qhost.queue.full.timeout.ms must be a number of milliseconds");
    CHECK_EQ_STR(run("return kafka.producer({ ['qhost.rebalance'] = 'deferred' })"),
                 "nil|kafka config: No such configuration property: \"qhost.rebalance\"");
    CHECK_EQ_STR(run("local c = kafka.consumer({ ['qhost.rebalance'] = 'deferred', ['group.id'] = 'g',\n"
                     "  ['bootstrap.servers'] = BOOT })\n"
                     "local p = kafka.producer({ ['qhost.queue.full.timeout.ms'] = 10, ['bootstrap.servers'] = BOOT })\n"
                     "local t = type(c) .. ' ' .. type(p); c:close(); p:close(); return t"),
                 "userdata userdata");
    /* Caught by rd_kafka_new rather than by one property. */
    CHECK_EQ_STR(run("return kafka.producer({ ['enable.idempotence'] = true, ['acks'] = 1 })"),
                 "nil|`acks` must be set to `all` when `enable.idempotence` is true");
    /* Numbers and booleans are converted. */
    CHECK_EQ_STR(run("local p = kafka.producer({ ['bootstrap.servers'] = BOOT, ['linger.ms'] = 7,\n"
                     "  ['enable.idempotence'] = false })\n"
                     "local t = type(p); p:close(); return t"), "userdata");
    CHECK_EQ_STR(run("local p = kafka.producer('bootstrap.servers=x')"),
                 "ERROR: test:1: bad argument #1 to 'producer' (table expected, got string)");
}

/* A partition that does not exist: before the producer knows the topic the
 * message is queued and fails in its delivery report; once it knows, the
 * produce call itself fails. A failed report is recorded for its own
 * message (topic, partition, key, error), never returned by a later
 * produce: the messages after it are sent. */
TEST(unknown_partition_fails_in_the_report_then_at_once)
{
    CHECK_EQ_STR(run("return mock:create_topic('fields', 3)"), "true");
    CHECK_EQ_STR(run("pf = producer(); return select('#', pf:take_failures())"), "0");
    qh_producer *p = ptr_of("pf");
    if (!p) return;
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 0);
    CHECK_EQ_INT(produce_kv(p, "fields", 99, "k99", "v"), 0);
    CHECK_EQ_STR(run("return pf:flush(30)"), "0");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 1);
    CHECK_EQ_STR(run("local f = pf:take_failures()\n"
                     "return #f, f.dropped, f[1].topic, f[1].partition, f[1].key, f[1].key_truncated,\n"
                     "  f[1].code, f[1].error"),
                 "1|nil|fields|99|k99|nil|-190|Local: Unknown partition");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 0);
    CHECK_EQ_STR(run("return select('#', pf:take_failures())"), "0");

    CHECK_EQ_INT(produce_kv(p, "fields", 99, "k", "v"), RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION);
    CHECK_EQ_STR(qh_ffi_producer_errstr(p), "produce to fields [99] failed: Local: Unknown partition");
    CHECK_EQ_STR(run("return pf:flush(30)"), "0");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 0);

    /* Two failed reports among good messages: each recorded, in order; a
     * null key is absent; the good ones are delivered. The text-only take
     * gives the count and the first one. */
    CHECK_EQ_STR(run("local admin = assert(kafka.admin({ ['bootstrap.servers'] = BOOT }))\n"
                     "FIELDS_HIGH = { select(2, admin:watermarks('fields', 1, 10)),\n"
                     "                select(2, admin:watermarks('fields', 2, 10)) }\n"
                     "admin:close()\n"
                     "pg = producer(); return #FIELDS_HIGH"), "2");
    qh_producer *q = ptr_of("pg");
    CHECK_EQ_INT(produce_kv(q, "fields", 98, "k98", "v"), 0);
    CHECK_EQ_INT(produce_kv(q, "fields", 1, "k", "fine"), 0);
    CHECK_EQ_INT(produce_kv(q, "fields", 97, NULL, "v"), 0);
    CHECK_EQ_INT(produce_kv(q, "fields", 2, "k", "fine"), 0);
    CHECK_EQ_STR(run("return pg:flush(30)"), "0");
    CHECK_EQ_STR(run("local f = pg:take_failures()\n"
                     "return #f, f[1].partition, f[1].key, f[2].partition, f[2].key, f[2].error"),
                 "2|98|k98|97|nil|Local: Unknown partition");
    CHECK_EQ_STR(run("ph = producer(); return true"), "true");
    qh_producer *r = ptr_of("ph");
    CHECK_EQ_INT(produce_kv(r, "fields", 96, "k", "v"), 0);
    CHECK_EQ_INT(produce_kv(r, "fields", 95, "k", "v"), 0);
    CHECK_EQ_STR(run("return ph:flush(30)"), "0");
    char failure[512] = "";
    CHECK_EQ_INT(qh_ffi_producer_take_failures(r, failure, sizeof failure), 2);
    CHECK_EQ_STR(failure, "delivery to fields [96] failed: Local: Unknown partition");
    snprintf(failure, sizeof failure, "untouched");
    CHECK_EQ_INT(qh_ffi_producer_take_failures(r, failure, sizeof failure), 0);
    CHECK_EQ_STR(failure, "untouched");
    CHECK_EQ_STR(run("local admin = assert(kafka.admin({ ['bootstrap.servers'] = BOOT }))\n"
                     "local _, h1 = admin:watermarks('fields', 1, 10)\n"
                     "local _, h2 = admin:watermarks('fields', 2, 10)\n"
                     "admin:close()\n"
                     "return h1 - FIELDS_HIGH[1], h2 - FIELDS_HIGH[2]"), "1|1");
    CHECK_EQ_STR(run("pf:close(); pg:close(); ph:close(); return true"), "true");
}

/* The failures kept between takes are bounded (64, then counted as
 * dropped), and so is each key (its first 256 bytes). */
TEST(delivery_failures_are_bounded)
{
    CHECK_EQ_STR(run("return mock:create_topic('bounded', 1)"), "true");
    CHECK_EQ_STR(run("pb = producer(); return true"), "true");
    qh_producer *p = ptr_of("pb");
    if (!p) return;
    char key[300];
    memset(key, 'k', sizeof key);
    key[0] = '<';
    key[299] = '>';
    CHECK_EQ_INT(qh_ffi_produce(p, "bounded", 5, key, sizeof key, "v", 1, 0, 0, NULL, NULL, NULL), 0);
    for (int i = 1; i < 70; i++) CHECK_EQ_INT(produce_kv(p, "bounded", 5, "k", "v"), 0);
    CHECK_EQ_STR(run("return pb:flush(30)"), "0");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 70);
    CHECK_EQ_STR(run("local f = pb:take_failures()\n"
                     "return #f, f.dropped, #f[1].key, f[1].key:sub(1, 2), f[1].key_truncated, f[64].key,\n"
                     "  f[2].key_truncated"),
                 "64|6|256|<k|true|k|nil");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 0);
    CHECK_EQ_STR(run("pb:close(); return true"), "true");
}

/* Client-level errors (here: no broker at the address) are counted by the
 * error callback and taken from Lua: nothing when there are none. */
TEST(client_errors_are_counted_and_taken)
{
    CHECK_EQ_STR(run("lost = assert(kafka.producer({ ['bootstrap.servers'] = '127.0.0.1:1',\n"
                     "  ['log_level'] = 0, ['reconnect.backoff.ms'] = 10 }))\n"
                     "return select('#', lost:take_errors())"), "0");
    qh_producer *p = ptr_of("lost");
    if (!p) return;
    const char *res = "";
    int64_t deadline = th_now_ms() + 30000;
    while (th_now_ms() < deadline) {
        qh_ffi_producer_poll(p, 100);
        res = run("local e = lost:take_errors()\n"
                  "if not e then return 'none' end\n"
                  "local kind = e.last:match('^(_[A-Z_]+): ')\n"
                  "return e.count >= 1, e.fatal, kind == '_TRANSPORT' or kind == '_ALL_BROKERS_DOWN'");
        if (strcmp(res, "none") != 0) break;
    }
    CHECK_EQ_STR(res, "true|false|true");
    CHECK_EQ_STR(run("lost:close(); return true"), "true");
}

/* Each constructor makes its userdata before its librdkafka handle: when
 * Lua cannot allocate it, the call raises and leaves no handle (and none of
 * its threads) behind. */
TEST(constructors_leave_nothing_behind_when_lua_is_out_of_memory)
{
    static const char *const calls[] = {
        "local conf = { ['bootstrap.servers'] = BOOT }\n"
        "arm_alloc_failure(); return pcall(kafka.producer, conf)",
        "local conf = { ['bootstrap.servers'] = BOOT, ['group.id'] = 'g-oom' }\n"
        "arm_alloc_failure(); return pcall(kafka.consumer, conf)",
        "local conf = { ['bootstrap.servers'] = BOOT }\n"
        "arm_alloc_failure(); return pcall(kafka.admin, conf)",
        "arm_alloc_failure(); return pcall(kafka.mock_cluster, 1)",
    };
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
        int threads = rd_kafka_thread_cnt();
        CHECK_EQ_STR(run(calls[i]), "false|not enough memory");
        CHECK_EQ_STR(run("collectgarbage(); collectgarbage(); return true"), "true");
        CHECK_EQ_INT(rd_kafka_thread_cnt(), threads);
    }
    /* A handle that fails later leaves a userdata holding nothing: collected
     * without trouble. */
    CHECK_EQ_STR(run("local p = kafka.producer({ ['enable.idempotence'] = true, ['acks'] = 1 })\n"
                     "collectgarbage(); collectgarbage(); return p"), "nil");
}

/* create_topics checks every entry before sending anything, and names the
 * topic and the property that is wrong (it used to skip such properties
 * silently and create the topic without them). */
TEST(create_topics_names_the_topic_and_property_of_a_bad_entry)
{
    CHECK_EQ_STR(run("ad = assert(kafka.admin({ ['bootstrap.servers'] = BOOT })); return true"), "true");
    CHECK_EQ_STR(run("return ad:create_topics({ { name = 'ct-a', config = { ['retention.ms'] = {} } } }, 1)"),
                 "nil|creating topic ct-a: config property retention.ms must be a string, number or boolean, "
                 "got table");
    CHECK_EQ_STR(run("return ad:create_topics({ { name = 'ct-b', config = { 'compact' } } }, 1)"),
                 "nil|creating topic ct-b: config property names must be strings, got number 1");
    CHECK_EQ_STR(run("local config = { ['cleanup.policy'] = 'compact' }\n"
                     "for i = 1, 20 do config[i + 0.5] = 'x' end\n"
                     "local ok, err = ad:create_topics({ { name = 'ct-c', config = config } }, 1)\n"
                     "return ok, err:match('^creating topic ct%-c: config property names must be strings, "
                     "got number %d+%.5$') ~= nil"), "nil|true");
    CHECK_EQ_STR(run("return ad:create_topics({ { name = 'ct-d', config = 'compact' } }, 1)"),
                 "nil|creating topic ct-d: config must be a table");
    CHECK_EQ_STR(run("return ad:create_topics({ { name = 'ct-e', num_partitions = 'many' } }, 1)"),
                 "nil|creating topic ct-e: num_partitions must be a number");
    CHECK_EQ_STR(run("return ad:create_topics({ { name = 'ct-f', replication_factor = {} } }, 1)"),
                 "nil|creating topic ct-f: replication_factor must be a number");
    CHECK_EQ_STR(run("return ad:create_topics({ { num_partitions = 1 } }, 1)"), "nil|topic entry 1 has no name");
    CHECK_EQ_STR(run("return ad:create_topics({ { name = 'ok' }, 'ct-g' }, 1)"), "nil|topic entry 2 is not a table");
    CHECK_EQ_STR(run("local ok, err = ad:create_topics({ { name = 'ct-h', num_partitions = -5 } }, 1)\n"
                     "return ok, err:match('^creating topic ct%-h: num_partitions') ~= nil"), "nil|true");
    CHECK_EQ_STR(run("ad:close(); return true"), "true");
}

/* resolve_start: committed offsets, else the end (latest) or beginning
 * (earliest), for all partitions at once; explicit offsets kept; bounded
 * by its timeout, naming what it could not resolve. */
TEST(resolve_start_finds_every_start_and_is_bounded)
{
    CHECK_EQ_STR(run("return mock:create_topic('rs', 3)"), "true");
    CHECK_EQ_STR(run("p = producer(); return true"), "true");
    qh_producer *p = ptr_of("p");
    if (!p) return;
    static const int32_t parts[] = { 0, 0, 0, 1 };
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(produce_kv(p, "rs", parts[i], "k", "v"), 0);
    CHECK_EQ_STR(run("return p:flush(30)"), "0");
    CHECK_EQ_STR(run("local k = consumer('g-rs', 'latest')\n"
                     "local ok, err = k:commit({ { topic = 'rs', partition = 0, offset = 1 } })\n"
                     "k:close(); return ok, err"), "true|nil");

    CHECK_EQ_STR(run("c = consumer('g-rs', 'latest', { ['qhost.rebalance'] = 'deferred' })\n"
                     "return list_str(assert(c:resolve_start(parts('rs', { -1, -1, -1 }), 10)))"),
                 "rs/0@1,rs/1@1,rs/2@0");
    CHECK_EQ_STR(run("return list_str(assert(c:resolve_start(parts('rs', { 2, -1, 7 }), 10)))"),
                 "rs/0@2,rs/1@1,rs/2@7");
    CHECK_EQ_STR(run("e = consumer('g-rs', 'earliest', { ['qhost.rebalance'] = 'deferred' })\n"
                     "return list_str(assert(e:resolve_start(parts('rs', { -1, -1, -1 }), 10)))"),
                 "rs/0@1,rs/1@0,rs/2@0");
    /* Nothing is looked up under another reset policy: librdkafka's own. */
    CHECK_EQ_STR(run("local x = consumer('g-rs', 'error', { ['qhost.rebalance'] = 'deferred' })\n"
                     "local got = list_str(assert(x:resolve_start(parts('rs', { -1, 3 }), 10)))\n"
                     "x:close(); return got"), "rs/0@-1001,rs/1@3");
    /* A partition that does not exist, and a topic that does not: an error
     * within the timeout, naming them and not the partitions that are fine. */
    CHECK_EQ_STR(run("local list, err = c:resolve_start({ { topic = 'rs', partition = 1 },\n"
                     "  { topic = 'rs', partition = 7 } }, 1)\n"
                     "return list, err:match('^start offsets not resolved within the timeout %(.*%) for rs %[7%]$') ~= nil"),
                 "nil|true");
    CHECK_EQ_STR(run("local list, err = e:resolve_start({ { topic = 'no-such-topic-rs', partition = 0 } }, 1)\n"
                     "return list, err:match(' for no%-such%-topic%-rs %[0%]$') ~= nil"),
                 "nil|true");
    CHECK_EQ_STR(run("return pcall(c.resolve_start, c, { { topic = 'rs' } })"),
                 "false|partition list entry 1 has no partition");
    /* Deferred mode: assign takes what it is given, as it is (librdkafka
     * shows an unset start as STORED, -1000), and reports no event. */
    CHECK_EQ_STR(run("assert(c:assign(parts('rs', { 1, -1, 0 })))\n"
                     "return events_str(c), list_str(c:assignment())"), "|rs/0@1,rs/1@-1000,rs/2@0");
    CHECK_EQ_STR(run("c:close(); e:close(); p:close(); return true"), "true");
}

/* ---- a producer that holds its plain messages (qhost.produce.batch) ------ */

/* Held messages (no headers, partition or timestamp of their own, small)
 * and the ones produced directly (the rest, and one past the 16 KB a held
 * message may have) reach the partition in the order they were produced,
 * every byte and null as given; outq_len counts the held ones. */
TEST(held_messages_keep_their_order_among_direct_ones)
{
    enum { N = 300, BIG = 20000 };
    CHECK_EQ_STR(run("return mock:create_topic('held', 1)"), "true");
    CHECK_EQ_STR(run("hp = producer({ ['qhost.produce.batch'] = true }); return hp:outq_len()"), "0");
    qh_producer *p = ptr_of("hp");
    if (!p) return;
    static char keys[N][16], values[N][16];
    static char big[BIG];
    memset(big, 'b', sizeof big);
    sent msgs[N];
    const int64_t T = 1700000000000LL;
    for (int i = 0; i < N; i++) {
        sent *m = &msgs[i];
        memset(m, 0, sizeof *m);
        m->partition = -1;
        m->key_len = (size_t)snprintf(keys[i], sizeof keys[i], "k%d", i);
        m->value_len = (size_t)snprintf(values[i], sizeof values[i], "v%d", i);
        m->key = keys[i];
        m->value = values[i];
        if (i % 41 == 3) {                 /* a header: produced directly */
            m->header_count = 1;
            m->hnames[0] = "h";
            m->hvalues[0] = "x";
            m->hlens[0] = 1;
        }
        if (i % 53 == 7) m->timestamp = T + i;   /* a timestamp: directly */
        if (i % 59 == 11) m->partition = 0;      /* a partition: directly */
        if (i % 67 == 13) m->key = NULL;         /* held, null key */
        if (i % 71 == 17) m->value = NULL;       /* held, tombstone */
        if (i % 73 == 19) {                      /* held, empty: not null */
            m->key_len = 0;
            m->value_len = 0;
        }
        if (i == 150) {                          /* too large to hold */
            m->value = big;
            m->value_len = BIG;
        }
        CHECK_EQ_INT(produce(p, "held", m), 0);
        if (i == 0) CHECK_EQ_STR(run("return hp:outq_len()"), "1");
    }
    CHECK_EQ_STR(run("return hp:flush(30)"), "0");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 0);

    CHECK_EQ_STR(run("hc = consumer('g-held', 'earliest'); return hc:assign(parts('held', { -1 }))"), "true");
    qh_consumer *c = ptr_of("hc");
    if (!c) return;
    static got g[N];
    CHECK_EQ_INT(consume(c, g, N, 30000), N);
    for (int i = 0; i < N; i++) {
        if (i == 150) {
            CHECK_EQ_INT(g[i].offset, i);
            CHECK_EQ_INT(g[i].value_len, BIG);
            CHECK_EQ_STR(g[i].key, "k150");
            continue;
        }
        check_message(&g[i], "held", &msgs[i], 0, i);
    }
    CHECK_EQ_INT(count_more(c, 300), 0);
    CHECK_EQ_STR(run("hc:close(); hp:close(); return true"), "true");
}

/* Held messages to a topic of one partition go to partition 0 without
 * librdkafka's partitioner, once it said the topic has one (kafka_batch.c);
 * held to a topic of three, interleaved with those in the same producer,
 * each keyed one still goes where murmur2_random puts its key, every run. */
TEST(held_keyed_messages_go_to_their_keys_partitions)
{
    enum { N = 600 };
    CHECK_EQ_STR(run("return mock:create_topic('held3', 3) and mock:create_topic('held1', 1)"), "true");
    CHECK_EQ_STR(run("kp = producer({ ['qhost.produce.batch'] = true }); return kp:outq_len()"), "0");
    qh_producer *p = ptr_of("kp");
    if (!p) return;
    static char keys[N][16];
    int per_topic[2] = { 0, 0 };
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i);
        /* runs of 1 to 7 messages per topic, so hand-overs mix them */
        const char *topic = (i / (1 + i % 7)) % 2 ? "held1" : "held3";
        per_topic[topic[4] == '1']++;
        CHECK_EQ_INT(produce_kv(p, topic, -1, keys[i], topic), 0);
    }
    CHECK_EQ_STR(run("return kp:flush(30)"), "0");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 0);
    CHECK_EQ_STR(run("kc = consumer('g-heldkeys', 'earliest')\n"
                     "local t = parts('held3', { -1, -1, -1 })\n"
                     "t[4] = { topic = 'held1', partition = 0 }\n"
                     "return kc:assign(t)"), "true");
    qh_consumer *c = ptr_of("kc");
    if (!c) return;
    static got g[N];
    CHECK_EQ_INT(consume(c, g, N, 30000), N);
    int seen[2] = { 0, 0 }, spread[3] = { 0, 0, 0 };
    for (int i = 0; i < N; i++) {
        int one = strcmp(g[i].topic, "held1") == 0;
        seen[one]++;
        CHECK_EQ_STR(g[i].value, g[i].topic);
        int want = one ? 0 : java_partition(g[i].key, 3);
        if (g[i].partition != want)
            fprintf(stderr, "%s: %s on %s [%d], not [%d]\n", check_current_name, g[i].key, g[i].topic,
                    (int)g[i].partition, want);
        CHECK_EQ_INT(g[i].partition, want);
        if (!one) spread[g[i].partition]++;
    }
    CHECK_EQ_INT(seen[0], per_topic[0]);
    CHECK_EQ_INT(seen[1], per_topic[1]);
    CHECK(spread[0] > 0 && spread[1] > 0 && spread[2] > 0);
    CHECK_EQ_INT(count_more(c, 300), 0);
    CHECK_EQ_STR(run("kc:close(); kp:close(); return true"), "true");
}

/* A source may produce one message and then block in its own I/O: a held
 * message leaves without another call on its producer (the batch's timer),
 * both when the timer was asleep (the first message) and when it was
 * ticking (the second, right after the first arrived). */
TEST(a_held_message_leaves_without_another_call)
{
    CHECK_EQ_STR(run("return mock:create_topic('quiet', 1)"), "true");
    CHECK_EQ_STR(run("qp = producer({ ['qhost.produce.batch'] = true }); return true"), "true");
    qh_producer *p = ptr_of("qp");
    if (!p) return;
    CHECK_EQ_STR(run("qc = consumer('g-quiet', 'earliest'); return qc:assign(parts('quiet', { -1 }))"), "true");
    qh_consumer *c = ptr_of("qc");
    if (!c) return;
    got g[2];
    CHECK_EQ_INT(produce_kv(p, "quiet", -1, "k", "first"), 0);
    CHECK_EQ_INT(consume(c, g, 1, 30000), 1);
    CHECK_EQ_STR(g[0].value, "first");
    CHECK_EQ_INT(produce_kv(p, "quiet", -1, "k", "second"), 0);
    CHECK_EQ_INT(consume(c, g, 1, 30000), 1);
    CHECK_EQ_STR(g[0].value, "second");
    CHECK_EQ_STR(run("qc:close(); return qp:flush(30)"), "0");
    CHECK_EQ_STR(run("qp:close(); return true"), "true");
}

/* A message librdkafka refuses at its hand-over fails as a delivery does,
 * with its key, where a direct produce would have failed at once. The
 * refusal here: a producer in a fatal state (librdkafka's own test hook;
 * the real ones are a fenced idempotent producer, or a topic the cluster
 * says does not exist, which the embedded broker creates instead). */
TEST(a_held_message_refused_fails_as_a_delivery)
{
    CHECK_EQ_STR(run("return mock:create_topic('refusing', 1)"), "true");
    CHECK_EQ_STR(run("rp = producer({ ['qhost.produce.batch'] = true, ['enable.idempotence'] = true,\n"
                     "  ['log_level'] = 0 })\n"
                     "return true"), "true");
    qh_producer *p = ptr_of("rp");
    if (!p) return;
    CHECK_EQ_INT(produce_kv(p, "refusing", -1, "k1", "before"), 0);
    CHECK_EQ_STR(run("return rp:flush(30)"), "0");
    CHECK_EQ_INT(th_run_n(L, "return rp"), 1);
    rd_kafka_t *rk = qh_kafka_check_producer_rk(L, 1);
    lua_settop(L, 0);
    CHECK_EQ_INT(rd_kafka_test_fatal_error(rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "test"), 0);
    CHECK_EQ_INT(produce_kv(p, "refusing", -1, "gone", "lost"), 0);
    CHECK_EQ_STR(run("return rp:flush(30)"), "0");
    CHECK_EQ_INT(qh_ffi_producer_failures(p), 1);
    CHECK_EQ_STR(run("local f = rp:take_failures()\n"
                     "return #f, f[1].topic, f[1].partition, f[1].key, f[1].error"),
                 "1|refusing|-1|gone|Local: Fatal error");
    CHECK_EQ_STR(run("rp:close(); return true"), "true");
}

/* A full queue: held messages wait in order, and the produce that finds the
 * ring full waits for room as a direct one does, up to the bound, and then
 * fails without holding its message. (No broker: nothing ever leaves.) */
TEST(a_full_queue_keeps_held_messages_and_bounds_the_wait)
{
    CHECK_EQ_STR(run("hfull = assert(kafka.producer({ ['bootstrap.servers'] = '127.0.0.1:1', ['log_level'] = 0,\n"
                     "  ['queue.buffering.max.messages'] = 1, ['qhost.queue.full.timeout.ms'] = 200,\n"
                     "  ['qhost.produce.batch'] = true }))\n"
                     "return true"), "true");
    qh_producer *p = ptr_of("hfull");
    if (!p) return;
    int rc = 0, i;
    for (i = 0; i < 200 && rc == 0; i++) rc = produce_kv(p, "hq", -1, "k", "v");
    /* one queued, 64 held, and the produce after them waits, then fails */
    CHECK_EQ_INT(rc, RD_KAFKA_RESP_ERR__QUEUE_FULL);
    CHECK_EQ_INT(i, 66);
    CHECK_EQ_STR(qh_ffi_producer_errstr(p), "produce to hq [-1] failed: the producer's queue is still full "
                 "after 200 ms (1 messages queued); this message was not produced");
    /* (outq_len also counts the client's events not yet served: the
     * refused connections' errors, which a poll serves; it hands over
     * nothing here) */
    qh_ffi_producer_poll(p, 0);
    CHECK_EQ_STR(run("return hfull:outq_len()"), "65");
    CHECK_EQ_STR(run("return hfull:flush(0.2)"), "65");
    CHECK_EQ_STR(run("hfull:close(); return true"), "true");
}

/* A full queue is waited out while delivery reports are served, up to the
 * producer's qhost.queue.full.timeout.ms when it has one; the message is
 * then not produced. (No broker at the address: nothing ever leaves.) */
TEST(a_full_queue_is_waited_out_up_to_the_bound)
{
    CHECK_EQ_STR(run("full = assert(kafka.producer({ ['bootstrap.servers'] = '127.0.0.1:1', ['log_level'] = 0,\n"
                     "  ['queue.buffering.max.messages'] = 1, ['qhost.queue.full.timeout.ms'] = 200 }))\n"
                     "return true"), "true");
    qh_producer *p = ptr_of("full");
    if (!p) return;
    CHECK_EQ_INT(produce_kv(p, "qf", 0, "k", "first"), 0);
    CHECK_EQ_INT(produce_kv(p, "qf", 0, "k", "second"), RD_KAFKA_RESP_ERR__QUEUE_FULL);
    CHECK_EQ_STR(qh_ffi_producer_errstr(p), "produce to qf [0] failed: the producer's queue is still full "
                 "after 200 ms (1 messages queued); this message was not produced");
    qh_ffi_producer_poll(p, 0);   /* (serves the refused connections' errors, which outq_len counts) */
    CHECK_EQ_STR(run("local n = full:outq_len(); full:close(); return n"), "1");
}

static void *request_stop(void *arg)
{
    (void)arg;
    raise(SIGTERM);   /* hostlib's handler counts it: a stop request */
    return NULL;
}

/* A stop ends the wait for room in a full queue (the broker may never come
 * back): QUEUE_FULL, and this message is not produced. The bound here is an
 * upper bound against hanging; the error says which of the two ended it. */
TEST(a_stop_interrupts_the_wait_for_a_full_queue)
{
    qh_hostlib_install_signals(0);
    CHECK_EQ_INT(qh_ffi_stop_requested(), 0);
    CHECK_EQ_STR(run("stopper = assert(kafka.producer({ ['bootstrap.servers'] = '127.0.0.1:1', ['log_level'] = 0,\n"
                     "  ['queue.buffering.max.messages'] = 1, ['qhost.queue.full.timeout.ms'] = 60000 }))\n"
                     "return true"), "true");
    qh_producer *p = ptr_of("stopper");
    if (!p) return;
    CHECK_EQ_INT(produce_kv(p, "qs", 0, "k", "first"), 0);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, request_stop, NULL), 0);
    CHECK_EQ_INT(produce_kv(p, "qs", 0, "k", "second"), RD_KAFKA_RESP_ERR__QUEUE_FULL);
    pthread_join(t, NULL);
    CHECK_EQ_INT(qh_ffi_stop_requested(), 1);
    CHECK_EQ_STR(qh_ffi_producer_errstr(p), "produce to qs [0] interrupted by the stop: the producer's queue "
                 "is full (1 messages queued); this message was not produced");
    /* (outq_len also counts the client's events not yet served: the
     * refused connections' errors) */
    qh_ffi_producer_poll(p, 0);
    CHECK_EQ_STR(run("local n = stopper:outq_len(); stopper:close(); return n"), "1");
}

TEST(closed_handles_raise_and_close_twice_is_fine)
{
    CHECK_EQ_STR(run("local p = producer(); p:close(); p:close()\n"
                     "local _, e1 = pcall(p.ptr, p)\n"
                     "local _, e2 = pcall(p.flush, p, 1)\n"
                     "local _, e3 = pcall(p.outq_len, p)\n"
                     "local _, e4 = pcall(p.take_errors, p)\n"
                     "return e1, e2, e3, e4"),
                 "kafka producer is closed|kafka producer is closed|kafka producer is closed|"
                 "kafka producer is closed");
    CHECK_EQ_STR(run("local c = consumer('g-closed', 'earliest'); c:close(); c:close()\n"
                     "local _, e1 = pcall(c.ptr, c)\n"
                     "local _, e2 = pcall(c.assign, c, {})\n"
                     "local _, e3 = pcall(c.take_events, c)\n"
                     "local _, e4 = pcall(c.commit, c)\n"
                     "local _, e5 = pcall(c.subscribe, c, { 'x' })\n"
                     "return e1, e2, e3, e4, e5"),
                 "kafka consumer is closed|kafka consumer is closed|kafka consumer is closed|"
                 "kafka consumer is closed|kafka consumer is closed");
    CHECK_EQ_STR(run("local a = assert(kafka.admin({ ['bootstrap.servers'] = BOOT }))\n"
                     "a:close(); a:close()\n"
                     "local _, e = pcall(a.partitions, a, 'x')\n"
                     "return e"), "kafka admin client is closed");
    CHECK_EQ_STR(run("local m = assert(kafka.mock_cluster(1)); m:close(); m:close()\n"
                     "local _, e1 = pcall(m.bootstraps, m)\n"
                     "local _, e2 = pcall(m.create_topic, m, 'x', 1)\n"
                     "return e1, e2"), "embedded broker is stopped|embedded broker is stopped");
    /* A method given the wrong object names what it wanted. */
    CHECK_EQ_STR(run("local p, c = producer(), consumer('g-closed', 'earliest')\n"
                     "local _, e = pcall(p.flush, c)\n"
                     "p:close(); c:close()\n"
                     "return e"),
                 "bad argument #1 to '?' (qhost.kafka.producer expected, got userdata)");
    /* Left to the collector: __gc closes them. */
    CHECK_EQ_STR(run("local p, c = producer(), consumer('g-gc', 'earliest')\n"
                     "p, c = nil, nil\n"
                     "collectgarbage(); collectgarbage()\n"
                     "return true"), "true");
}

/* ---- transactions -------------------------------------------------------- */

/* What every broker does alike: a producer without a transactional.id has
 * no transactions; calls out of order are refused as "fatal" (a misuse,
 * nothing to retry or abort); a broker that cannot be reached times the
 * call out as "retriable". The calls check their arguments. */
TEST(transactions_need_a_transactional_id_and_their_order)
{
    CHECK_EQ_STR(run("plain = producer(); return true"), "true");
    static const char *const calls[] = { "init_transactions(5)", "begin_transaction()",
                                         "commit_transaction(5)", "abort_transaction(5)" };
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
        char chunk[128], want[256];
        snprintf(chunk, sizeof chunk, "return plain:%s", calls[i]);
        snprintf(want, sizeof want, "nil|%.*s failed: The Transactional API requires transactional.id to be "
                 "configured|fatal", (int)(strchr(calls[i], '(') - calls[i]), calls[i]);
        CHECK_EQ_STR(run(chunk), want);
    }
    CHECK_EQ_STR(run("local c = consumer('g-txn-plain', 'earliest')\n"
                     "local r = { plain:send_offsets_to_transaction(c, { { topic = 't', partition = 0, offset = 1 } }, 5) }\n"
                     "c:close(); return unpack(r, 1, 3)"),
                 "nil|send_offsets_to_transaction failed: The Transactional API requires transactional.id to be "
                 "configured|fatal");

    CHECK_EQ_STR(run("tx = producer({ ['transactional.id'] = 'txn-order' }); return true"), "true");
    CHECK_EQ_STR(run("return tx:begin_transaction()"),
                 "nil|begin_transaction failed: Operation not valid in state Init|fatal");
    CHECK_EQ_STR(run("return tx:init_transactions(30)"), "true");
    CHECK_EQ_STR(run("return tx:init_transactions(30)"),
                 "nil|init_transactions failed: Operation not valid in state Ready|fatal");
    CHECK_EQ_STR(run("return tx:commit_transaction(5)"),
                 "nil|commit_transaction failed: Operation not valid in state Ready|fatal");
    CHECK_EQ_STR(run("return tx:begin_transaction()"), "true");
    CHECK_EQ_STR(run("return tx:begin_transaction()"),
                 "nil|begin_transaction failed: Operation not valid in state InTransaction|fatal");
    /* send_offsets_to_transaction: the consumer must be in a group; no
     * offsets (or only unset ones) send nothing and succeed. */
    CHECK_EQ_STR(run("local c = kafka.consumer({ ['bootstrap.servers'] = BOOT })\n"
                     "local r = { tx:send_offsets_to_transaction(c, { { topic = 't', partition = 0, offset = 1 } }) }\n"
                     "c:close(); return unpack(r, 1, 3)"),
                 "nil|send_offsets_to_transaction failed: the consumer has no group.id|fatal");
    CHECK_EQ_STR(run("local c = consumer('g-txn-order', 'earliest')\n"
                     "local a = tx:send_offsets_to_transaction(c, {}, 5)\n"
                     "local b = tx:send_offsets_to_transaction(c, { { topic = 't', partition = 0 } }, 5)\n"
                     "local e1 = select(2, pcall(tx.send_offsets_to_transaction, tx, c, { { topic = 't' } }))\n"
                     "local e2 = select(2, pcall(tx.send_offsets_to_transaction, tx, tx, {}))\n"
                     "local e3 = select(2, pcall(tx.send_offsets_to_transaction, tx, c, 'offsets'))\n"
                     "c:close(); return a, b, e1, e2, e3"),
                 "true|true|partition list entry 1 has no partition|"
                 "bad argument #2 to '?' (qhost.kafka.consumer expected, got userdata)|"
                 "bad argument #3 to '?' (table expected, got string)");
    CHECK_EQ_STR(run("return tx:abort_transaction(30)"), "true");
    CHECK_EQ_STR(run("tx:close(); plain:close()\n"
                     "return select(2, pcall(tx.begin_transaction, tx))"), "kafka producer is closed");

    /* Nobody at the address: the call times out, and may be made again. */
    CHECK_EQ_STR(run("local lost = assert(kafka.producer({ ['bootstrap.servers'] = '127.0.0.1:1', ['log_level'] = 0,\n"
                     "  ['transactional.id'] = 'txn-lost' }))\n"
                     "local a = { lost:init_transactions(0.05) }\n"
                     "local b = { lost:init_transactions(0.05) }\n"
                     "lost:close()\n"
                     "return a[1], a[2], a[3], b[3]"),
                 "nil|init_transactions failed: Timed out waiting for operation to finish, retry call to resume|"
                 "retriable|retriable");
}

/* The embedded broker (librdkafka 2.0.2's mock cluster) accepts every
 * transactional call, but isolates nothing: a read_committed consumer sees
 * the messages of an aborted transaction and of one still open, and the
 * offsets sent to a committed transaction are not committed. Exactly-once
 * needs a real Kafka. If a librdkafka upgrade makes the mock isolate
 * transactions, this test fails: then exactly-once can be tested on it.
 * The probe a broker can be told by: with one transactional message
 * flushed and its transaction open, the high watermark admin:watermarks
 * reads (its handle reads as read_committed, librdkafka's default: the
 * last stable offset) stays where it was on Kafka; the mock counts the
 * message. */
TEST(transactions_on_the_embedded_broker_pass_but_isolate_nothing)
{
    CHECK_EQ_STR(run("return mock:create_topic('txn', 1)"), "true");
    CHECK_EQ_STR(run("tx = producer({ ['transactional.id'] = 'txn-mock' })\n"
                     "ad = assert(kafka.admin({ ['bootstrap.servers'] = BOOT }))\n"
                     "return tx:init_transactions(30)"), "true");
    qh_producer *p = ptr_of("tx");
    if (!p) return;
    CHECK_EQ_STR(run("return tx:begin_transaction()"), "true");
    CHECK_EQ_INT(produce_kv(p, "txn", 0, "k", "aborted"), 0);
    CHECK_EQ_STR(run("return tx:flush(30), select(2, ad:watermarks('txn', 0, 10))"), "0|1");
    CHECK_EQ_STR(run("return tx:abort_transaction(30)"), "true");
    CHECK_EQ_STR(run("return tx:begin_transaction()"), "true");
    CHECK_EQ_INT(produce_kv(p, "txn", 0, "k", "committed"), 0);
    CHECK_EQ_STR(run("src = consumer('g-txn-mock', 'earliest')\n"
                     "return tx:send_offsets_to_transaction(src, { { topic = 'txn', partition = 0, offset = 1 } }, 30)"),
                 "true");
    CHECK_EQ_STR(run("return tx:commit_transaction(30)"), "true");
    CHECK_EQ_STR(run("return list_str(src:committed({ { topic = 'txn', partition = 0 } }, 10))"), "txn/0@-1001");
    CHECK_EQ_STR(run("return tx:begin_transaction()"), "true");
    CHECK_EQ_INT(produce_kv(p, "txn", 0, "k", "open"), 0);
    CHECK_EQ_STR(run("return tx:flush(30)"), "0");

    CHECK_EQ_STR(run("rc = consumer('g-txn-mock-rc', 'earliest', { ['isolation.level'] = 'read_committed' })\n"
                     "return rc:assign({ { topic = 'txn', partition = 0, offset = 0 } })"), "true");
    qh_consumer *c = ptr_of("rc");
    if (!c) return;
    got g[3];
    CHECK_EQ_INT(consume(c, g, 3, 30000), 3);
    CHECK_EQ_STR(g[0].value, "aborted");
    CHECK_EQ_STR(g[1].value, "committed");
    CHECK_EQ_STR(g[2].value, "open");
    /* No transaction markers either: the three are at offsets 0, 1, 2. */
    CHECK_EQ_INT(g[2].offset, 2);
    CHECK_EQ_STR(run("local r = tx:abort_transaction(30)\n"
                     "rc:close(); src:close(); tx:close(); ad:close(); return r"), "true");
}

/* ---- the log: librdkafka's lines and the host's own, as the Lua logger's -- */

/* stderr (fd 2) goes to a file between capture_begin and capture_end, which
 * returns what was written (malloc'd). No CHECK in between: its messages
 * would land in the file. */
static int saved_stderr = -1;
static char capture_path[512];

static void capture_begin(void)
{
    const char *dir = th_tmpdir("kafka_log");
    snprintf(capture_path, sizeof capture_path, "%s/stderr", dir ? dir : "/tmp");
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
}

static char *capture_text(void)
{
    fflush(stderr);
    return th_read_file(capture_path, NULL);
}

static char *capture_end(void)
{
    char *text = capture_text();
    dup2(saved_stderr, 2);
    close(saved_stderr);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", capture_path);
    *strrchr(dir, '/') = '\0';
    remove(capture_path);
    if (strncmp(dir, TH_TMP_PREFIX, strlen(TH_TMP_PREFIX)) == 0) th_remove_tree(dir);
    return text ? text : strdup("");
}

/* Whether every line of text is "YYYY-mm-dd HH:MM:SS LEVEL prefix: ...";
 * the lines without their time stamp go to out (joined by '\n'). */
static int strip_times(const char *text, char *out, size_t outlen)
{
    regex_t re;
    regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} "
                 "(DEBUG|INFO|WARNING|ERROR|CRITICAL) [^:]+: ", REG_EXTENDED | REG_NOSUB);
    int ok = 1;
    size_t n = 0;
    out[0] = '\0';
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char one[4096];
        snprintf(one, sizeof one, "%.*s", (int)len, line);
        if (!nl || regexec(&re, one, 0, NULL, 0) != 0) ok = 0;
        if (len >= 20 && n < outlen) n += (size_t)snprintf(out + n, outlen - n, "%s%s", n ? "\n" : "", one + 20);
        line += len + (nl ? 1 : 0);
    }
    regfree(&re);
    return ok;
}

TEST(the_c_logger_writes_the_lua_loggers_lines)
{
    qh_log_set_prefix(NULL);   /* module_fields set one */
    capture_begin();
    qh_log(QH_LOG_WARNING, "plain %d", 7);
    qh_log(QH_LOG_DEBUG, "below the default level");
    const char *named = run("kafka.set_log_prefix(\"source 'orders'[42]\"); return true");
    qh_log(QH_LOG_ERROR, "named");
    const char *raised = run("kafka.set_log_level(40); return true");
    qh_log(QH_LOG_WARNING, "below ERROR");
    qh_log(QH_LOG_CRITICAL, "above");
    int enabled = qh_log_enabled(QH_LOG_ERROR) * 10 + qh_log_enabled(QH_LOG_WARNING);
    const char *reset = run("kafka.set_log_level(20); kafka.set_log_prefix(''); return true");
    qh_log(QH_LOG_INFO, "back to %s", "qhost[pid]");
    char *text = capture_end();

    CHECK_EQ_STR(named, "true");
    CHECK_EQ_STR(raised, "true");
    CHECK_EQ_STR(reset, "true");
    CHECK_EQ_INT(enabled, 10);
    char lines[4096], want[1024];
    CHECK(strip_times(text, lines, sizeof lines));
    snprintf(want, sizeof want,
             "WARNING qhost[%d]: plain 7\n"
             "ERROR source 'orders'[42]: named\n"
             "CRITICAL source 'orders'[42]: above\n"
             "INFO qhost[%d]: back to qhost[pid]", (int)getpid(), (int)getpid());
    CHECK_EQ_STR(lines, want);
    /* The time is now's, local time, as os.date gives it in log.lua. */
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%d %H:", localtime_r(&t, &tm));
    CHECK(strncmp(text, now, 14) == 0 || t % 3600 < 5);
    free(text);
    CHECK_EQ_STR(run("return pcall(kafka.set_log_level, 'INFO')"),
                 "false|bad argument #1 to '?' (number expected, got string)");
}

/* librdkafka's syslog levels as the Lua logger's; its lines name the
 * client and the facility. */
TEST(librdkafka_lines_go_through_the_c_logger)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);   /* no CONFWARN of its own */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    CHECK(rk != NULL);
    if (!rk) return;
    capture_begin();
    qh_log_set_level(QH_LOG_DEBUG);
    for (int level = 0; level <= 7; level++) {
        char msg[16];
        snprintf(msg, sizeof msg, "syslog %d", level);
        qh_kafka_on_log(rk, level, "FAC", msg);
    }
    qh_log_set_level(QH_LOG_INFO);
    qh_kafka_on_log(rk, 7, "FAC", "debug, hidden at INFO");
    /* A real one: a client that cannot connect says so at ERROR (log_level
     * 3, as log.librdkafka_level() gives at the ERROR level). */
    const char *made = run("lonely = assert(kafka.producer({ ['bootstrap.servers'] = '127.0.0.1:1',\n"
                           "  ['log_level'] = 3, ['reconnect.backoff.ms'] = 10 })); return true");
    char *partial = NULL;
    int seen = TH_WAIT_UNTIL((free(partial), partial = capture_text(),
                              partial && strstr(partial, "127.0.0.1:1")), 30000);
    free(partial);
    const char *closed = run("lonely:close(); return true");
    char *text = capture_end();

    CHECK_EQ_STR(made, "true");
    CHECK_EQ_STR(closed, "true");
    CHECK(seen);
    char lines[8192], want[1024];
    CHECK(strip_times(text, lines, sizeof lines));
    const char *name = rd_kafka_name(rk);
    int pid = (int)getpid();
    snprintf(want, sizeof want,
             "CRITICAL qhost[%d]: librdkafka %s FAC: syslog 0\n"
             "CRITICAL qhost[%d]: librdkafka %s FAC: syslog 1\n"
             "CRITICAL qhost[%d]: librdkafka %s FAC: syslog 2\n"
             "ERROR qhost[%d]: librdkafka %s FAC: syslog 3\n"
             "WARNING qhost[%d]: librdkafka %s FAC: syslog 4\n"
             "INFO qhost[%d]: librdkafka %s FAC: syslog 5\n"
             "INFO qhost[%d]: librdkafka %s FAC: syslog 6\n"
             "DEBUG qhost[%d]: librdkafka %s FAC: syslog 7\n"
             "ERROR qhost[%d]: librdkafka rdkafka#producer-",
             pid, name, pid, name, pid, name, pid, name, pid, name, pid, name, pid, name, pid, name, pid);
    CHECK(strncmp(lines, want, strlen(want)) == 0);
    if (strncmp(lines, want, strlen(want)) != 0) fprintf(stderr, "got:\n%s\n", lines);
    free(text);
    rd_kafka_destroy(rk);
}

#define LOG_THREADS 4
#define LOG_LINES 500

static void *log_lines(void *arg)
{
    char payload[301];
    memset(payload, 'a' + (int)(intptr_t)arg, 300);
    payload[300] = '\0';
    for (int i = 0; i < LOG_LINES; i++) qh_log(QH_LOG_WARNING, "%d %d %s", (int)(intptr_t)arg, i, payload);
    return NULL;
}

/* librdkafka logs from its own threads: every line stays whole, and the
 * prefix may change meanwhile. */
TEST(log_lines_from_many_threads_stay_whole)
{
    pthread_t t[LOG_THREADS];
    capture_begin();
    for (int i = 0; i < LOG_THREADS; i++) pthread_create(&t[i], NULL, log_lines, (void *)(intptr_t)i);
    for (int i = 0; i < 50; i++) qh_log_set_prefix(i % 2 ? "source 'x'[1]" : NULL);
    for (int i = 0; i < LOG_THREADS; i++) pthread_join(t[i], NULL);
    qh_log_set_prefix(NULL);
    char *text = capture_end();

    static char lines[LOG_THREADS * LOG_LINES * 360];
    CHECK(strip_times(text, lines, sizeof lines));
    int count[LOG_THREADS] = { 0 }, bad = 0;
    for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n")) {
        int th = -1, i = -1, at = 0;
        char *msg = strstr(line, "]: ");
        if (!msg || sscanf(msg + 3, "%d %d %n", &th, &i, &at) != 2 || th < 0 || th >= LOG_THREADS) {
            bad++;
            continue;
        }
        const char *p = msg + 3 + at;
        int whole = strlen(p) == 300;
        for (int k = 0; whole && k < 300; k++) whole = p[k] == 'a' + th;
        if (!whole || i != count[th]) bad++;
        count[th]++;
    }
    CHECK_EQ_INT(bad, 0);
    for (int i = 0; i < LOG_THREADS; i++) CHECK_EQ_INT(count[i], LOG_LINES);
    free(text);
}

int main(void)
{
    L = th_lua_new("kafka", qh_kafka_open);
    /* From here on every allocation goes through test_alloc, which passes
     * them to LuaJIT's allocator until armed. */
    real_alloc = lua_getallocf(L, &real_alloc_ud);
    lua_setallocf(L, test_alloc, NULL);
    lua_register(L, "arm_alloc_failure", l_arm_alloc_failure);
    th_lua_prelude(L, lua_prelude);

    RUN(murmur2_matches_the_java_client);
    RUN(module_fields);
    RUN(mock_bootstraps_and_topics);
    RUN(produce_and_consume_every_field);
    RUN(produce_to_many_topics);
    RUN(committed_offsets_are_where_the_group_resumes);
    RUN(new_group_latest_starts_at_the_high_watermark);
    RUN(commit_of_a_list_is_a_checkpoint_for_the_group);
    RUN(error_events_come_through_poll);
    RUN(conf_errors_name_the_property);
    RUN(unknown_partition_fails_in_the_report_then_at_once);
    RUN(delivery_failures_are_bounded);
    RUN(client_errors_are_counted_and_taken);
    RUN(closed_handles_raise_and_close_twice_is_fine);
    RUN(the_c_logger_writes_the_lua_loggers_lines);
    RUN(librdkafka_lines_go_through_the_c_logger);
    RUN(log_lines_from_many_threads_stay_whole);
    RUN(subscribe_joins_and_close_commits_stored_offsets);
    RUN(constructors_leave_nothing_behind_when_lua_is_out_of_memory);
    RUN(create_topics_names_the_topic_and_property_of_a_bad_entry);
    RUN(transactions_need_a_transactional_id_and_their_order);
    RUN(transactions_on_the_embedded_broker_pass_but_isolate_nothing);
    RUN(resolve_start_finds_every_start_and_is_bounded);
    RUN(a_full_queue_is_waited_out_up_to_the_bound);
    RUN(held_messages_keep_their_order_among_direct_ones);
    RUN(held_keyed_messages_go_to_their_keys_partitions);
    RUN(a_held_message_leaves_without_another_call);
    RUN(a_held_message_refused_fails_as_a_delivery);
    RUN(a_full_queue_keeps_held_messages_and_bounds_the_wait);
    /* Last: the stop it requests stays requested. */
    RUN(a_stop_interrupts_the_wait_for_a_full_queue);

    run("mock:close()");
    lua_close(L);
    return check_summary();
}
