/* kafka_mock.c: the embedded broker of `qhost.kafka` (kafka_internal.h):
 * librdkafka's mock cluster, living in this process on a handle of its own;
 * kafka.mock_cluster(brokers) and its methods bootstraps, create_topic and
 * push_request_errors (for tests of the error paths). Other processes reach
 * it over loopback; its data lives until it is closed. KAFKA.md lists what
 * it does and does not do (it hides no aborted transaction, see kafka_txn.c).
 * Uses: librdkafka's rdkafka_mock.h, luaclass.h, kafka_config.c (log). */
#include "kafka_internal.h"

#include <stdio.h>

#include <librdkafka/rdkafka_mock.h>

#include "luaclass.h"

typedef struct qh_mock {
    rd_kafka_t *rk;                 /* the handle the cluster lives on */
    rd_kafka_mock_cluster_t *mc;
} qh_mock;

static qh_mock *check_mock(lua_State *L)
{
    qh_mock *m = luaL_checkudata(L, 1, QH_MOCK_MT);
    if (!m->mc) luaL_error(L, "embedded broker is stopped");
    return m;
}

/* kafka.mock_cluster(brokers) -> mock | nil, err */
int qh_kafka_mock_new(lua_State *L)
{
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    int brokers = (int)luaL_optinteger(L, 1, 1);
    luaL_argcheck(L, brokers >= 1, 1, "broker count must be at least 1");
    qh_mock *m = qh_luaclass_new(L, QH_MOCK_MT, sizeof *m);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, qh_kafka_on_log);
    /* The mock logs every unsupported request at warning level; the user
     * only needs to hear about real trouble. */
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);   /* takes conf on success */
    if (!rk) goto fail;
    conf = NULL;
    mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        snprintf(err, sizeof err, "cannot start the embedded broker (librdkafka mock cluster)");
        goto fail;
    }
    m->rk = rk;   /* the userdata owns both from here */
    m->mc = mc;
    return 1;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    if (rk) rd_kafka_destroy(rk);
    return qh_kafka_push_fail(L, err);
}

static int l_mock_bootstraps(lua_State *L)
{
    lua_pushstring(L, rd_kafka_mock_cluster_bootstraps(check_mock(L)->mc));
    return 1;
}

/* mock:create_topic(name, partitions) -> true | nil, err */
static int l_mock_create_topic(lua_State *L)
{
    qh_mock *m = check_mock(L);
    int partitions = (int)luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, partitions >= 1, 3, "partition count must be at least 1");
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(m->mc, luaL_checkstring(L, 2), partitions, 1);
    if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    lua_pushboolean(L, 1);
    return 1;
}

/* mock:push_request_errors(api_key, { err, ... }) -> true: the next
 * requests of that Kafka API (0 is Produce) get these errors, one per
 * request, in order: for tests of the paths that handle broker errors. */
static int l_mock_push_request_errors(lua_State *L)
{
    qh_mock *m = check_mock(L);
    int api = (int)luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    rd_kafka_resp_err_t errs[64];
    int n = (int)lua_objlen(L, 3);
    luaL_argcheck(L, n >= 1 && n <= 64, 3, "1 to 64 error codes");
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 3, i + 1);
        errs[i] = (rd_kafka_resp_err_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    rd_kafka_mock_push_request_errors_array(m->mc, (int16_t)api, (size_t)n, errs);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_mock_close(lua_State *L)
{
    qh_mock *m = luaL_checkudata(L, 1, QH_MOCK_MT);
    if (m->mc) {
        rd_kafka_mock_cluster_destroy(m->mc);
        rd_kafka_destroy(m->rk);
    }
    m->mc = NULL;
    m->rk = NULL;
    return 0;
}

void qh_kafka_mock_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "bootstraps", l_mock_bootstraps }, { "create_topic", l_mock_create_topic },
        { "push_request_errors", l_mock_push_request_errors },
        { "close", l_mock_close }, { NULL, NULL },
    };
    qh_luaclass_register(L, QH_MOCK_MT, methods, l_mock_close);
}
