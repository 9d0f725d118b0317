# qhost: a C host embedding LuaJIT for Kafka stream processing.
#   make            build build/qhost (runs from the checkout, no install)
#   make example    install the Debian packages, build, run examples/csv_print.lua
#   make test       install packages, build, run every test (C, Lua, end to end,
#                   embedded broker and real Kafka, conformance with Quix Streams;
#                   also under ASan+UBSan; fuzzing 30 s per target)
#   make bench      qhost against Quix Streams and raw librdkafka (bench/README.md)
#   make faults     the fault scenarios on a real Kafka, in full (tests/faults/run.lua):
#                   lost and duplicated messages, state counts, in build/faults/results.md
#   make fuzz       the libFuzzer targets, FUZZ_SECONDS (600) each
#   make install PREFIX=/usr/local   (luarocks make qhost-<version>.rockspec: the same, as a rock)
#   make SAN=1      build with AddressSanitizer + UBSan into build/san/

VERSION    := 0.1.0
PREFIX     ?= /usr/local
CC         ?= cc
CFLAGS     ?= -O2 -g
WARN       := -Wall -Wextra -Werror -std=gnu11
PKG_CFLAGS := $(shell pkg-config --cflags luajit rdkafka rocksdb sqlite3 libmicrohttpd 2>/dev/null)
# RocksDB, SQLite and libmicrohttpd are not linked: they are loaded on first
# use (host/lazylib.h) by the sonames of the development libraries here.
PKG_LIBS   := $(shell pkg-config --libs luajit rdkafka 2>/dev/null)
CPPFLAGS   += $(PKG_CFLAGS) -DQHOST_VERSION='"$(VERSION)"' -D_GNU_SOURCE
LDLIBS     += $(PKG_LIBS) -lcsv -lm -ldl -lpthread
soname      = $(shell objdump -p "$$(readlink -f "$$($(CC) -print-file-name=lib$(1).so)")" 2>/dev/null \
                | awk '/SONAME/ { print $$2 }')
# -rdynamic: the qh_ffi_* functions are looked up by LuaJIT's FFI in the binary.
LDFLAGS    += -rdynamic

ifeq ($(SAN),1)
BUILD      ?= build/san
CFLAGS     += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS    += -fsanitize=address,undefined
else
BUILD      ?= build
endif

HOST_SRC   := $(wildcard host/*.c)
HOST_OBJ   := $(HOST_SRC:host/%.c=$(BUILD)/obj/%.o)
LIB_OBJ    := $(filter-out $(BUILD)/obj/main.o,$(HOST_OBJ))
CTEST_SRC  := $(wildcard tests/c/test_*.c)
CTEST_BIN  := $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
LUA_LIB    := $(shell find lua -name '*.lua' | LC_ALL=C sort)
BYTECODE   := build/bytecode

.PHONY: all clean install deps example test test-build test-c ctest-bins bench
all: $(BUILD)/qhost $(BYTECODE)/.stamp

$(BUILD)/qhost: $(HOST_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: host/%.c $(wildcard host/*.h) | $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

# The Lua library's modules compiled (host/bytecode.h), so that a process
# starts without parsing them; always in build/bytecode, where the binary
# looks (a file edited since is parsed from its source, as before).
$(BYTECODE)/.stamp: $(BUILD)/qhost host/compile_library.lua $(LUA_LIB)
	@mkdir -p $(@D)
	$(BUILD)/qhost lua host/compile_library.lua $(BYTECODE) "" $(LUA_LIB)
	@touch $@

$(BUILD)/obj/store.o: CPPFLAGS += -DQH_ROCKSDB_SONAME='"$(call soname,rocksdb)"'
$(BUILD)/obj/sqlite.o: CPPFLAGS += -DQH_SQLITE_SONAME='"$(call soname,sqlite3)"'
$(BUILD)/obj/metrics.o: CPPFLAGS += -DQH_MICROHTTPD_SONAME='"$(call soname,microhttpd)"'

$(BUILD)/tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(LIB_OBJ) | $(BUILD)/tests
	$(CC) $(CPPFLAGS) -Ihost $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

# test_sqlite makes its fixtures with SQLite itself.
$(BUILD)/tests/test_sqlite: LDLIBS += -lsqlite3

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

ctest-bins: $(CTEST_BIN)

# Every C unit test binary; each prints "N passed, N failed" on its last line.
test-c: $(CTEST_BIN)
	@for t in $(CTEST_BIN); do $$t || exit 1; done

# Debian packages needed to build and run (and to test: busted, kcat, java, maven).
deps:
	@./tests/install-deps.sh $(DEPS)

# Runs examples/csv_print.lua on the embedded broker; like any pipeline it
# runs until stopped, so it is stopped (SIGINT, a clean stop) after 15 s.
# --foreground: one SIGINT, to qhost only, as a Ctrl-C; without it timeout
# also signals its whole process group, and qhost takes a second signal as
# "exit now".
example:
	@./tests/install-deps.sh build
	$(MAKE) all
	cd examples && timeout --foreground -s INT 15 ../build/qhost run csv_print.lua; \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 124 ]

# Everything the tests need: packages, both builds, the Kafka jars.
test-build:
	@./tests/install-deps.sh test
	$(MAKE) all ctest-bins
	$(MAKE) SAN=1 all ctest-bins
	./tests/kafka/kafka.sh install
	./tests/quix-venv.sh >/dev/null

test: test-build
	@./tests/run-all.sh

bench:
	@./tests/install-deps.sh test
	$(MAKE) all
	./bench/run.sh

# libFuzzer targets (tests/fuzz/fuzz_*.c, built with clang): the JSON
# decoder and the CSV reader on arbitrary bytes. `make fuzz` runs each for
# FUZZ_SECONDS from its seed corpus (tests/fuzz/corpus/<name>; new inputs go
# to $(BUILD)/fuzz/corpus-<name>, crashes to $(BUILD)/fuzz/<name>-crash-*).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_NAMES   := json csv
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_BIN     := $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

# The fault scenarios in full (kills, a broker outage, damaged state, a full
# disk, odd messages) on a Kafka of their own; the table goes to stdout
# and build/faults/results.md. The tests run the short version (--short).
.PHONY: faults
faults:
	@./tests/install-deps.sh test
	$(MAKE) all
	./tests/kafka/kafka.sh install
	QHOST_BIN=$(abspath $(BUILD)/qhost) $(BUILD)/qhost lua tests/faults/run.lua

.PHONY: fuzz
fuzz: $(FUZZ_BIN)
	./tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_NAMES)

# The units under test, compiled into each target with the fuzzer's
# instrumentation: the codec module and what it wires, the CSV reader.
FUZZ_SRC     := host/codec.c host/buf.c host/json_string.c host/json_number.c \
                host/json_encode.c host/json_decode.c host/binary.c host/csv.c host/luaclass.c

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(wildcard host/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -Ihost $(FUZZ_CFLAGS) $(WARN) $(FUZZ_LDFLAGS) -o $@ $< $(FUZZ_SRC) \
	  $(PKG_LIBS) -lcsv -lm -ldl -lpthread

# fuzz_csv makes the reader's read(2) calls short through this wrapper.
$(BUILD)/fuzz/fuzz_csv: FUZZ_LDFLAGS := -Wl,--wrap=read

# The binary finds its Lua library beside it (../share/qhost), else in
# DATADIR, compiled in: luarocks copies the binary from the rock's PREFIX
# into its tree's bin/ (qhost-<version>.rockspec calls these targets with
# its PREFIX). vm.o is rebuilt when DATADIR changes.
DATADIR    ?= $(PREFIX)/share/qhost
$(BUILD)/obj/vm.o: CPPFLAGS += -DQHOST_DATADIR='"$(DATADIR)"'
$(BUILD)/obj/vm.o: $(BUILD)/datadir.txt
$(BUILD)/datadir.txt: FORCE | $(BUILD)/obj
	@echo '$(DATADIR)' | cmp -s - $@ || echo '$(DATADIR)' > $@
.PHONY: FORCE
FORCE:

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DATADIR)/lua/qhost $(DESTDIR)$(DATADIR)/sources
	install -m 755 $(BUILD)/qhost $(DESTDIR)$(PREFIX)/bin/qhost
	cp -R lua/qhost/. $(DESTDIR)$(DATADIR)/lua/qhost/
	install -m 644 sources/*.lua $(DESTDIR)$(DATADIR)/sources/
	install -d $(DESTDIR)$(DATADIR)/bytecode
	$(BUILD)/qhost lua host/compile_library.lua $(DESTDIR)$(DATADIR)/bytecode $(DATADIR) $(LUA_LIB)

clean:
	rm -rf build
