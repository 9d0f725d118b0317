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
    ["qhost.dataframe"] = "lua/qhost/dataframe.lua",
    ["qhost.kafka.clients"] = "lua/qhost/kafka/clients.lua",
    ["qhost.kafka.ffi"] = "lua/qhost/kafka/ffi.lua",
    ["qhost.kafka.topic_reader"] = "lua/qhost/kafka/topic_reader.lua",
    ["qhost.log"] = "lua/qhost/log.lua",
    ["qhost.runtime.argcheck"] = "lua/qhost/runtime/argcheck.lua",
    ["qhost.runtime.broker"] = "lua/qhost/runtime/broker.lua",
    ["qhost.runtime.checkpoint"] = "lua/qhost/runtime/checkpoint.lua",
    ["qhost.runtime.class"] = "lua/qhost/runtime/class.lua",
    ["qhost.runtime.error_policy"] = "lua/qhost/runtime/error_policy.lua",
    ["qhost.runtime.flow_control"] = "lua/qhost/runtime/flow_control.lua",
    ["qhost.runtime.loop"] = "lua/qhost/runtime/loop.lua",
    ["qhost.runtime.main"] = "lua/qhost/runtime/main.lua",
    ["qhost.runtime.outputs"] = "lua/qhost/runtime/outputs.lua",
    ["qhost.runtime.pipeline"] = "lua/qhost/runtime/pipeline.lua",
    ["qhost.runtime.printing"] = "lua/qhost/runtime/printing.lua",
    ["qhost.runtime.process_batch"] = "lua/qhost/runtime/process_batch.lua",
    ["qhost.runtime.source_process"] = "lua/qhost/runtime/source_process.lua",
    ["qhost.runtime.state.manager"] = "lua/qhost/runtime/state/manager.lua",
    ["qhost.runtime.state.partition"] = "lua/qhost/runtime/state/partition.lua",
    ["qhost.runtime.state.transaction"] = "lua/qhost/runtime/state/transaction.lua",
    ["qhost.runtime.supervisor"] = "lua/qhost/runtime/supervisor.lua",
    ["qhost.runtime.table_printer"] = "lua/qhost/runtime/table_printer.lua",
    ["qhost.runtime.transfer"] = "lua/qhost/runtime/transfer.lua",
    ["qhost.serializers"] = "lua/qhost/serializers.lua",
    ["qhost.series"] = "lua/qhost/series.lua",
    ["qhost.sinks"] = "lua/qhost/sinks.lua",
    ["qhost.sources"] = "lua/qhost/sources/init.lua",
    ["qhost.sources.source"] = "lua/qhost/sources/source.lua",
    ["qhost.sources.stateful"] = "lua/qhost/sources/stateful.lua",
    ["qhost.state"] = "lua/qhost/state.lua",
    ["qhost.topic"] = "lua/qhost/topic.lua",
  },
  copy_directories = { "sources", "examples" },
}
