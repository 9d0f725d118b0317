/* vm.h: LuaJIT states for qhost.
 * Provides: a state with the standard libraries, the qhost Lua library and
 * built-in sources on package.path, the host's C modules in package.preload,
 * and the one protected-call helper through which all Lua code runs (it
 * appends a traceback to errors).
 * Uses: LuaJIT, lua_heap.h, and the qh_*_open functions of the other host
 * units. */
#ifndef QH_VM_H
#define QH_VM_H

#include <stddef.h>
#include <lua.h>

/* Where the binary found its Lua files, and the binary itself. Filled once by
 * qh_vm_locate() before any state is created. */
typedef struct qh_paths {
    char exe[4096];   /* absolute path of the running qhost binary */
    char root[4096];  /* folder holding lua/ and sources/ */
    char bytecode[4096];  /* the library's compiled modules (bytecode.h), or "" */
} qh_paths;

/* Finds the binary (/proc/self/exe) and its Lua root: <bindir>/.. for a
 * checkout (build/qhost beside lua/), <bindir>/../share/qhost when installed.
 * QHOST_ROOT in the environment overrides. Returns 0, or -1 with err set. */
int qh_vm_locate(qh_paths *out, char *err, size_t errlen);

/* The paths found by qh_vm_locate (valid after it succeeded). */
const qh_paths *qh_vm_paths(void);

/* Where a state's memory comes from: LuaJIT's allocator, or a heap of its
 * own (lua_heap.h), which a source's process takes (lua_heap.c says why
 * only there). */
typedef enum qh_vm_memory { QH_VM_LUAJIT_MEMORY, QH_VM_OWN_HEAP } qh_vm_memory;

/* A new state with libraries, paths and preloads; `mode` ("run" or "lua")
 * is exposed as qhost.host.mode. NULL on allocation failure. Closed with
 * qh_vm_close. */
lua_State *qh_vm_new(const char *mode, qh_vm_memory memory);

/* Closes a state of qh_vm_new's, and frees its heap when it has one. */
void qh_vm_close(lua_State *L);

/* lua_pcall with a traceback handler. On error returns non-zero and leaves
 * one string on the stack: the message followed by the traceback. */
int qh_vm_pcall(lua_State *L, int nargs, int nresults);

/* Loads and runs a script with global `arg` set as the standalone lua
 * interpreter does (arg[0] = script, arg[1..] = args). Returns 0, or
 * non-zero with the error (and traceback) string on the stack. */
int qh_vm_run_script(lua_State *L, const char *script, int argc, char **argv);

#endif
