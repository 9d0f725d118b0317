-- The qhost Lua library. The library needs the qhost host binary (its C
-- modules qhost.host, qhost.codec, qhost.csvreader, qhost.kafka and
-- qhost.spawn are built into it: `make`), so this rock installs the Lua
-- files for use with `qhost run` / `qhost lua`.
package = "qhost"
version = "0.1.0-1"
source = {
  url = "git+file:///dev/null",
}
description = {
  summary = "Kafka stream processing in Lua: the Lua counterpart of Quix Streams",
  detailed = [[
    qhost runs Lua pipelines (Application, topics, StreamingDataFrame) and
    Lua data sources, each source in its own process, on Kafka or on an
    embedded broker. The host is a C program embedding LuaJIT.
  ]],
  license = "Apache-2.0",
}
dependencies = {
  "lua == 5.1",
}
build = {
  type = "builtin",
  modules = {
    ["qhost"] = "lua/qhost/init.lua",
    ["qhost.app"] = "lua/qhost/app.lua",
    ["qhost.changelog"] = "lua/qhost/changelog.lua",
    ["qhost.class"] = "lua/qhost/class.lua",
    ["qhost.clients"] = "lua/qhost/clients.lua",
    ["qhost.dataframe"] = "lua/qhost/dataframe.lua",
    ["qhost.ffi"] = "lua/qhost/ffi.lua",
    ["qhost.log"] = "lua/qhost/log.lua",
    ["qhost.runloop"] = "lua/qhost/runloop.lua",
    ["qhost.runner"] = "lua/qhost/runner.lua",
    ["qhost.serializers"] = "lua/qhost/serializers.lua",
    ["qhost.series"] = "lua/qhost/series.lua",
    ["qhost.sinks"] = "lua/qhost/sinks.lua",
    ["qhost.source"] = "lua/qhost/source.lua",
    ["qhost.source_process"] = "lua/qhost/source_process.lua",
    ["qhost.stateful_source"] = "lua/qhost/stateful_source.lua",
    ["qhost.supervisor"] = "lua/qhost/supervisor.lua",
    ["qhost.table_printer"] = "lua/qhost/table_printer.lua",
    ["qhost.topic"] = "lua/qhost/topic.lua",
    ["qhost.travel"] = "lua/qhost/travel.lua",
    ["qhost.sources"] = "lua/qhost/sources/init.lua",
  },
  copy_directories = { "sources", "examples" },
}
