/* kafka_config.c: how every client of `qhost.kafka` is configured (see
 * kafka_internal.h): librdkafka properties from a Lua table, with the
 * host's own qhost.* properties left to the caller; the log callback, which
 * writes librdkafka's lines through the host's logger (hostlib.h); the
 * error callback, which counts client errors for Lua to take; and the Lua
 * functions that set the logger's prefix and level. */
#include "kafka_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hostlib.h"

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
 * Logging. librdkafka calls the log callback on its own threads: it only
 * goes through qh_log, which is thread-safe. */

/* librdkafka's syslog levels as the Lua logger's: emergencies, alerts and
 * critical conditions are CRITICAL; NOTICE and INFO are INFO. Which of them
 * a client emits at all is its log_level (log.librdkafka_level()). */
static int log_level_of(int syslog_level)
{
    switch (syslog_level) {
    case 0: case 1: case 2: return QH_LOG_CRITICAL;
    case 3:                 return QH_LOG_ERROR;
    case 4:                 return QH_LOG_WARNING;
    case 5: case 6:         return QH_LOG_INFO;
    default:                return QH_LOG_DEBUG;
    }
}

void qh_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    qh_log(log_level_of(level), "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

void qh_kafka_warn(const rd_kafka_t *rk, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    qh_log(QH_LOG_WARNING, "%s: %s", rd_kafka_name(rk), buf);
}

/* kafka.set_log_prefix(prefix): the prefix of every line the C side logs
 * (lua/qhost/log.lua's set_name hands it over). */
int qh_kafka_l_set_log_prefix(lua_State *L)
{
    qh_log_set_prefix(luaL_checkstring(L, 1));
    return 0;
}

/* kafka.set_log_level(level): the threshold of the C side's lines, as the
 * Lua logger's number (10 DEBUG .. 50 CRITICAL; lua/qhost/log.lua's
 * set_level hands it over). */
int qh_kafka_l_set_log_level(lua_State *L)
{
    qh_log_set_level((int)luaL_checkinteger(L, 1));
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
