/* kafka_config.c: how every client of `qhost.kafka` is configured (see
 * kafka_internal.h): librdkafka properties from a Lua table, with the
 * host's own qhost.* properties left to the caller; the log callback, which
 * writes librdkafka's lines to stderr; the error callback, which counts
 * client errors for Lua to take; and kafka.set_log_prefix. */
#include "kafka_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>


rd_kafka_conf_t *qh_kafka_conf_from_table(lua_State *L, int idx, const char *const *own,
                                          char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* lua_tostring on a number key would turn it into a string in the
         * table's iteration slot and break lua_next: check, never convert. */
        if (lua_type(L, -2) != LUA_TSTRING) {
            char what[64];
            qh_kafka_describe_key(L, -2, what, sizeof what);
            snprintf(err, errlen, "kafka config: property names must be strings, got %s", what);
            lua_pop(L, 2);
            goto fail;
        }
        const char *key = lua_tostring(L, -2);
        const char *value = qh_kafka_config_value(L, -1);
        if (!value) {
            snprintf(err, errlen, "kafka config: property %s must be a string, number or boolean, got %s",
                     key, luaL_typename(L, -1));
            lua_pop(L, 2);
            goto fail;
        }
        int skip = 0;
        for (int i = 0; own && own[i]; i++) skip |= strcmp(key, own[i]) == 0;
        char cerr[256];
        if (!skip && rd_kafka_conf_set(conf, key, value, cerr, sizeof cerr) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka config: %s", cerr);
            lua_pop(L, 2);
            goto fail;
        }
        lua_pop(L, 1);
    }
    rd_kafka_conf_set_log_cb(conf, qh_kafka_on_log);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

const char *qh_kafka_config_value(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:  return lua_tostring(L, idx);
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "true" : "false";
    default:           return NULL;
    }
}

void qh_kafka_describe_key(lua_State *L, int idx, char *buf, size_t len)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        snprintf(buf, len, "number %.14g", lua_tonumber(L, idx));
    else if (lua_type(L, idx) == LUA_TBOOLEAN)
        snprintf(buf, len, "boolean %s", lua_toboolean(L, idx) ? "true" : "false");
    else
        snprintf(buf, len, "%s", luaL_typename(L, idx));
}

/* ---------------------------------------------------------------------
 * Logging. librdkafka calls the log callback on its own threads, so it only
 * writes to stderr (stdio is thread-safe). */

static char g_log_prefix[256] = "qhost";

void qh_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    static const char *names[] = { "EMERG", "ALERT", "CRITICAL", "ERROR",
                                   "WARNING", "NOTICE", "INFO", "DEBUG" };
    const char *name = level >= 0 && level < 8 ? names[level] : "LOG";
    fprintf(stderr, "%s %s: librdkafka %s %s: %s\n", name, g_log_prefix,
            rd_kafka_name(rk), fac, buf);
}

/* A warning of the host's own, in the same shape as librdkafka's lines. */
void qh_kafka_warn(const rd_kafka_t *rk, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "WARNING %s: %s: %s\n", g_log_prefix, rd_kafka_name(rk), buf);
}

int qh_kafka_l_set_log_prefix(lua_State *L)
{
    snprintf(g_log_prefix, sizeof g_log_prefix, "%s", luaL_checkstring(L, 1));
    return 0;
}

/* ---------------------------------------------------------------------
 * Client errors */

/* The conf's opaque is a producer or consumer, whose first member is its
 * qh_client_errors. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    qh_client_errors *e = opaque;
    (void)rk;
    if (!e) return;
    e->count++;
    if (err == RD_KAFKA_RESP_ERR__FATAL) e->fatal = 1;
    snprintf(e->last, sizeof e->last, "%s: %s", rd_kafka_err2name(err), reason);
}

void qh_kafka_conf_count_errors(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_error_cb(conf, on_error);
}

int qh_kafka_push_take_errors(lua_State *L, qh_client_errors *e)
{
    if (e->count == 0) return 0;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, e->count);
    lua_setfield(L, -2, "count");
    lua_pushboolean(L, e->fatal);
    lua_setfield(L, -2, "fatal");
    lua_pushstring(L, e->last);
    lua_setfield(L, -2, "last");
    e->count = 0;
    return 1;
}
