/* kafka_admin.c: the admin client of `qhost.kafka` (kafka_internal.h):
 * kafka.admin(config) and its methods partitions (a topic's partition count
 * from metadata), create_topics (entries checked before anything is sent),
 * create_partitions (a topic grown),
 * watermarks and end_offsets (asked of the broker), over a handle of its
 * own, so its requests never wait behind a consumer's fetch. The handle is of the
 * consumer type, never assigned (it fetches nothing), because the
 * isolation.level it is given decides what watermarks answers for the end
 * of a partition with transactions: read_committed (librdkafka's default)
 * the last stable offset, read_uncommitted the high watermark.
 * Uses: librdkafka's admin API, luaclass.h, kafka_config.c. */
#include "kafka_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luaclass.h"

typedef struct qh_admin {
    rd_kafka_t *rk;
} qh_admin;

static qh_admin *check_admin(lua_State *L)
{
    qh_admin *a = luaL_checkudata(L, 1, QH_ADMIN_MT);
    if (!a->rk) luaL_error(L, "kafka admin client is closed");
    return a;
}

/* kafka.admin(config) -> admin | nil, err */
int qh_kafka_admin_new(lua_State *L)
{
    char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    qh_admin *a = qh_luaclass_new(L, QH_ADMIN_MT, sizeof *a);
    rd_kafka_conf_t *conf = qh_kafka_conf_from_table(L, 1, NULL, err, sizeof err);
    if (!conf) goto fail;
    a->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);   /* takes conf on success */
    if (!a->rk) goto fail;
    return 1;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    return qh_kafka_push_fail(L, err);
}

/* The partition count of `topic` in md, or -1 when it is not there. */
static int partition_count(const struct rd_kafka_metadata *md, const char *topic)
{
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err) return md->topics[i].partition_cnt;
    return -1;
}

/* admin:partitions(topic, timeout_s) -> count | nil, err ("unknown topic"
 * when it does not exist);
 * admin:partitions({ topic, ... }, timeout_s) -> { [topic] = count } (those
 * that exist) | nil, err: one request for them all.
 * Asks for all topics so that the request itself never auto-creates one. */
static int l_admin_partitions(lua_State *L)
{
    qh_admin *a = check_admin(L);
    int many = lua_istable(L, 2);
    if (!many) luaL_checkstring(L, 2);
    int ms = qh_kafka_timeout_arg(L, 3, 10.0);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(a->rk, 1, NULL, &md, ms);
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    if (!many) {
        int count = partition_count(md, lua_tostring(L, 2));
        rd_kafka_metadata_destroy(md);
        if (count < 0) return qh_kafka_push_fail(L, "unknown topic");
        lua_pushinteger(L, count);
        return 1;
    }
    lua_newtable(L);
    int n = (int)lua_objlen(L, 2);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        const char *topic = lua_tostring(L, -1);
        int count = topic ? partition_count(md, topic) : -1;
        if (count >= 0) {
            lua_pushinteger(L, count);
            lua_rawset(L, -3);   /* [topic] = count */
        } else {
            lua_pop(L, 1);
        }
    }
    rd_kafka_metadata_destroy(md);
    return 1;
}

/* One entry of create_topics' list (the table at the top of the stack) as
 * a NewTopic: NULL with err naming the topic (or the entry) and the
 * property when anything is wrong. Never raises. */
static rd_kafka_NewTopic_t *new_topic_from_table(lua_State *L, int i, char *err, size_t errlen)
{
    rd_kafka_NewTopic_t *t = NULL;
    int top = lua_gettop(L);
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "topic entry %d is not a table", i);
        goto fail;
    }
    lua_getfield(L, top, "name");
    lua_getfield(L, top, "num_partitions");
    lua_getfield(L, top, "replication_factor");
    if (lua_type(L, -3) != LUA_TSTRING) {
        snprintf(err, errlen, "topic entry %d has no name", i);
        goto fail;
    }
    const char *name = lua_tostring(L, -3);
    if (!lua_isnil(L, -2) && lua_type(L, -2) != LUA_TNUMBER) {
        snprintf(err, errlen, "creating topic %s: num_partitions must be a number", name);
        goto fail;
    }
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER) {
        snprintf(err, errlen, "creating topic %s: replication_factor must be a number", name);
        goto fail;
    }
    int parts = lua_isnil(L, -2) ? 1 : (int)lua_tointeger(L, -2);
    int rf = lua_isnil(L, -1) ? 1 : (int)lua_tointeger(L, -1);
    char why[256];
    t = rd_kafka_NewTopic_new(name, parts, rf, why, sizeof why);
    if (!t) {
        snprintf(err, errlen, "creating topic %s: %s", name, why);
        goto fail;
    }
    lua_getfield(L, top, "config");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
        snprintf(err, errlen, "creating topic %s: config must be a table", name);
        goto fail;
    }
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING) {    /* converting it would break lua_next */
                char what[64];
                qh_kafka_describe_key(L, -2, what, sizeof what);
                snprintf(err, errlen, "creating topic %s: config property names must be strings, got %s",
                         name, what);
                goto fail;
            }
            const char *k = lua_tostring(L, -2), *v = qh_kafka_config_value(L, -1);
            if (!v) {
                snprintf(err, errlen, "creating topic %s: config property %s must be a string, "
                         "number or boolean, got %s", name, k, luaL_typename(L, -1));
                goto fail;
            }
            rd_kafka_resp_err_t cerr = rd_kafka_NewTopic_set_config(t, k, v);
            if (cerr) {
                snprintf(err, errlen, "creating topic %s: config property %s: %s", name, k,
                         rd_kafka_err2str(cerr));
                goto fail;
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    return t;
fail:
    if (t) rd_kafka_NewTopic_destroy(t);
    lua_settop(L, top);
    return NULL;
}

/* admin:create_topics({ { name=, num_partitions=, replication_factor=,
 * config = { k = v } }, ... }, timeout_s) -> { [name] = "created" | "exists" }
 * | nil, err (the first failure, naming the topic, and the property when
 * one is wrong; a wrong entry fails before anything is sent). */
static int l_admin_create_topics(lua_State *L)
{
    qh_admin *a = check_admin(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ms = qh_kafka_timeout_arg(L, 3, 30.0);
    int n = (int)lua_objlen(L, 2);
    char err[512] = "";
    rd_kafka_NewTopic_t **topics = calloc((size_t)(n ? n : 1), sizeof *topics);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    int made = 0;
    if (!topics) goto fail;
    rd_kafka_AdminOptions_set_operation_timeout(opts, ms, err, sizeof err);
    rd_kafka_AdminOptions_set_request_timeout(opts, ms, err, sizeof err);
    err[0] = '\0';
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        topics[made] = new_topic_from_table(L, i, err, sizeof err);
        lua_pop(L, 1);
        if (!topics[made]) goto fail;
        made++;
    }
    rd_kafka_CreateTopics(a->rk, topics, (size_t)made, opts, queue);
    ev = rd_kafka_queue_poll(queue, ms < 0 ? -1 : ms + 5000);
    if (!ev) {
        snprintf(err, sizeof err, "creating topics timed out after %d ms", ms);
        goto fail;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, sizeof err, "creating topics: %s", rd_kafka_event_error_string(ev));
        goto fail;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(res, &cnt);
    lua_createtable(L, 0, (int)cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(results[i]);
        const char *name = rd_kafka_topic_result_name(results[i]);
        if (terr && terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            const char *why = rd_kafka_topic_result_error_string(results[i]);
            snprintf(err, sizeof err, "creating topic %s: %s", name, why ? why : rd_kafka_err2str(terr));
            lua_pop(L, 1);
            goto fail;
        }
        lua_pushstring(L, terr ? "exists" : "created");
        lua_setfield(L, -2, name);
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy_array(topics, (size_t)made);
    free(topics);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(queue);
    return 1;
fail:
    if (ev) rd_kafka_event_destroy(ev);
    if (topics) rd_kafka_NewTopic_destroy_array(topics, (size_t)made);
    free(topics);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(queue);
    return qh_kafka_push_fail(L, err[0] ? err : "out of memory");
}

/* admin:create_partitions(topic, count, timeout_s) -> true | nil, err:
 * grows topic to count partitions (Kafka never shrinks one). */
static int l_admin_create_partitions(lua_State *L)
{
    qh_admin *a = check_admin(L);
    const char *topic = luaL_checkstring(L, 2);
    lua_Integer count = luaL_checkinteger(L, 3);
    int ms = qh_kafka_timeout_arg(L, 4, 30.0);
    char err[512] = "";
    rd_kafka_NewPartitions_t *np = NULL;
    rd_kafka_queue_t *queue = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS);
    rd_kafka_event_t *ev = NULL;
    if (count < 1 || count > INT32_MAX) {
        snprintf(err, sizeof err, "creating partitions of %s: a count of %lld", topic, (long long)count);
        goto fail;
    }
    np = rd_kafka_NewPartitions_new(topic, (size_t)count, err, sizeof err);
    if (!np) goto fail;
    rd_kafka_AdminOptions_set_operation_timeout(opts, ms, err, sizeof err);
    rd_kafka_AdminOptions_set_request_timeout(opts, ms, err, sizeof err);
    err[0] = '\0';
    rd_kafka_CreatePartitions(a->rk, &np, 1, opts, queue);
    ev = rd_kafka_queue_poll(queue, ms < 0 ? -1 : ms + 5000);
    if (!ev) {
        snprintf(err, sizeof err, "creating partitions of %s timed out after %d ms", topic, ms);
        goto fail;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, sizeof err, "creating partitions of %s: %s", topic, rd_kafka_event_error_string(ev));
        goto fail;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(results[i]);
        if (terr) {
            const char *why = rd_kafka_topic_result_error_string(results[i]);
            snprintf(err, sizeof err, "creating partitions of %s: %s", topic, why ? why : rd_kafka_err2str(terr));
            goto fail;
        }
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_NewPartitions_destroy(np);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(queue);
    lua_pushboolean(L, 1);
    return 1;
fail:
    if (ev) rd_kafka_event_destroy(ev);
    if (np) rd_kafka_NewPartitions_destroy(np);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(queue);
    return qh_kafka_push_fail(L, err[0] ? err : "out of memory");
}

/* admin:watermarks(topic, partition, timeout_s) -> low, high, asked of the
 * broker now, or nil, err. On this handle of its own the request never waits
 * behind a consumer's long-polling fetch. high is the last stable offset or
 * the high watermark, as the handle's isolation.level says (above). */
static int l_admin_watermarks(lua_State *L)
{
    qh_admin *a = check_admin(L);
    int64_t low = 0, high = 0;
    int ms = qh_kafka_timeout_arg(L, 4, 10.0);
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        a->rk, luaL_checkstring(L, 2), (int32_t)luaL_checkinteger(L, 3), &low, &high, ms);
    if (err) return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    lua_pushnumber(L, (lua_Number)low);
    lua_pushnumber(L, (lua_Number)high);
    return 2;
}

/* admin:end_offsets(topic, { partition, ... }, timeout_s) -> ends, failures
 * | nil, err: the end of each listed partition (the high watermark or the
 * last stable offset, as watermarks) in one ListOffsets request per leader
 * (rd_kafka_offsets_for_times with END as the time), not a round trip per
 * partition. ends: { [partition] = offset } of those that answered;
 * failures: { [partition] = err } of the others (a leader not known yet,
 * not ready). nil, err: no partition asked (e.g. no leader found in time). */
static int l_admin_end_offsets(lua_State *L)
{
    qh_admin *a = check_admin(L);
    const char *topic = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    int ms = qh_kafka_timeout_arg(L, 4, 10.0);
    int n = (int)lua_objlen(L, 3);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);
        lua_Integer p = lua_tointeger(L, -1);
        int ok = lua_type(L, -1) == LUA_TNUMBER && p >= 0 && p <= INT32_MAX && (lua_Number)p == lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (!ok) {
            rd_kafka_topic_partition_list_destroy(parts);
            return luaL_error(L, "admin:end_offsets: partitions[%d] is not a partition number", i);
        }
        rd_kafka_topic_partition_list_add(parts, topic, (int32_t)p)->offset = RD_KAFKA_OFFSET_END;
    }
    rd_kafka_resp_err_t err = n > 0 ? rd_kafka_offsets_for_times(a->rk, parts, ms) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err) {
        rd_kafka_topic_partition_list_destroy(parts);
        return qh_kafka_push_fail(L, rd_kafka_err2str(err));
    }
    lua_createtable(L, 0, n);    /* ends */
    lua_createtable(L, 0, 0);    /* failures */
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        if (!e->err && e->offset >= 0) {
            lua_pushnumber(L, (lua_Number)e->offset);
            lua_rawseti(L, -3, e->partition);
        } else {
            lua_pushstring(L, e->err ? rd_kafka_err2str(e->err) : "no offset in the answer");
            lua_rawseti(L, -2, e->partition);
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return 2;
}

static int l_admin_close(lua_State *L)
{
    qh_admin *a = luaL_checkudata(L, 1, QH_ADMIN_MT);
    if (a->rk) rd_kafka_destroy(a->rk);
    a->rk = NULL;
    return 0;
}

void qh_kafka_admin_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "partitions", l_admin_partitions }, { "create_topics", l_admin_create_topics },
        { "create_partitions", l_admin_create_partitions },
        { "watermarks", l_admin_watermarks }, { "end_offsets", l_admin_end_offsets },
        { "close", l_admin_close }, { NULL, NULL },
    };
    qh_luaclass_register(L, QH_ADMIN_MT, methods, l_admin_close);
}
