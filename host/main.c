/* main.c: the qhost command line.
 *   qhost run SCRIPT [args]   run a pipeline (or, spawned by one, a source)
 *   qhost lua SCRIPT [args]   a plain interpreter with the host's modules
 *   qhost version | --help
 * Only main exits; every error reaches it as a string with a traceback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <librdkafka/rdkafka.h>

#include "hostlib.h"
#include "vm.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: qhost run SCRIPT [ARGS...]   run a pipeline script\n"
        "       qhost lua SCRIPT [ARGS...]   run a Lua script with qhost's modules (tests, tools)\n"
        "       qhost version                print the version\n"
        "       qhost --help                 this text\n"
        "\n"
        "Environment: QHOST_BROKER=host:port uses that Kafka; without it (and without\n"
        "broker_address) `qhost run` starts an embedded broker in the process.\n"
        "QHOST_METRICS_PORT=port serves /metrics, /health and /ready (as metrics_port).\n");
}

/* The error that ends the run, in the log's format (its first line is the
 * reason, the rest the traceback). A nil error (error() with no message) is
 * a script asking to exit non-zero after reporting its own failure (busted
 * does this): say only that. */
static void report_error(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    if (msg)
        qh_log(QH_LOG_ERROR, "%s", msg);
    else
        qh_log(QH_LOG_ERROR, "the script raised error() without a message: exit status 1");
}

static int run(const char *mode, int argc, char **argv)
{
    char err[512];
    qh_paths paths;
    if (qh_vm_locate(&paths, err, sizeof err) != 0) {
        fprintf(stderr, "qhost: %s\n", err);
        return 1;
    }
    int is_child = getenv("QHOST_SPEC_FD") != NULL;
    qh_hostlib_install_signals(is_child);

    lua_State *L = qh_vm_new(mode, is_child ? QH_VM_OWN_HEAP : QH_VM_LUAJIT_MEMORY);
    if (!L) {
        fprintf(stderr, "qhost: cannot create a Lua state (out of memory)\n");
        return 1;
    }
    int rc;
    if (strcmp(mode, "lua") == 0) {
        rc = qh_vm_run_script(L, argv[0], argc - 1, argv + 1);
    } else {
        /* The runner handles both the app and, in a spawned child, the source. */
        lua_getglobal(L, "require");
        lua_pushstring(L, "qhost.runtime.main");
        rc = qh_vm_pcall(L, 1, 1);
        if (rc == 0) {
            lua_getfield(L, -1, "main");
            lua_remove(L, -2);
            lua_createtable(L, argc, 0);
            for (int i = 0; i < argc; i++) {
                lua_pushstring(L, argv[i]);
                lua_rawseti(L, -2, i + 1);
            }
            rc = qh_vm_pcall(L, 1, 1);
        }
    }
    int code = 0;
    if (rc != 0) {
        report_error(L);
        code = 1;
    } else if (lua_isnumber(L, -1)) {
        code = (int)lua_tointeger(L, -1);
    }
    fflush(stdout);
    qh_vm_close(L);
    return code;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("qhost %s (%s, librdkafka %s)\n", QHOST_VERSION, LUAJIT_VERSION, rd_kafka_version_str());
        return 0;
    }
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "lua") == 0) {
        if (argc < 3) {
            fprintf(stderr, "qhost %s: missing SCRIPT\n", cmd);
            usage(stderr);
            return 2;
        }
        return run(cmd, argc - 2, argv + 2);
    }
    fprintf(stderr, "qhost: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
