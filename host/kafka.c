/* kafka.c: opens the `qhost.kafka` Lua module (see kafka.h): registers the
 * classes of the units that make its objects (kafka_internal.h lists them)
 * and returns the table of its functions. */
#include "kafka_internal.h"

int qh_kafka_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "producer", qh_kafka_producer_new }, { "consumer", qh_kafka_consumer_new },
        { "admin", qh_kafka_admin_new }, { "mock_cluster", qh_kafka_mock_new },
        { "set_log_prefix", qh_kafka_l_set_log_prefix },
        { "set_log_level", qh_kafka_l_set_log_level },
        { NULL, NULL },
    };
    qh_kafka_producer_register(L);
    qh_kafka_consumer_register(L);
    qh_kafka_admin_register(L);
    qh_kafka_mock_register(L);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushstring(L, rd_kafka_version_str());
    lua_setfield(L, -2, "librdkafka_version");
    return 1;
}
