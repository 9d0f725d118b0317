-- qhost as a rock: `luarocks make qhost-0.1.0-1.rockspec` in a clone builds
-- the host (a C program embedding LuaJIT: its C modules are built into it)
-- with the Makefile and installs the `qhost` command and its Lua library,
-- as `make install PREFIX=<the rock's folder>` does; luarocks puts the
-- command in its tree's bin/, where it finds the library again (the
-- Makefile's DATADIR). Then `qhost run app.lua`. The Debian packages it
-- builds against: tests/install-deps.sh build.
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
    embedded broker. The host is a C program embedding LuaJIT; this rock
    installs the qhost command and its Lua library.
  ]],
  license = "Apache-2.0",
}
-- None: the command embeds its own LuaJIT, whatever Lua luarocks runs with.
dependencies = {}
-- Checked before the build, so a missing -dev package is named up front.
external_dependencies = {
  LUAJIT = { header = "luajit-2.1/luajit.h" },
  RDKAFKA = { header = "librdkafka/rdkafka.h" },
  ROCKSDB = { header = "rocksdb/c.h" },
  CSV = { header = "csv.h" },
  SQLITE = { header = "sqlite3.h" },
  MICROHTTPD = { header = "microhttpd.h" },
}
build = {
  type = "make",
  build_variables = { PREFIX = "$(PREFIX)", CFLAGS = "-O2 -g" },
  install_variables = { PREFIX = "$(PREFIX)" },
}
