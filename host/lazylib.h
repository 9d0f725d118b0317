/* lazylib.h: shared libraries opened on first use. RocksDB (with the C++
 * runtime it pulls in), SQLite and libmicrohttpd cost every process that
 * links them at start-up (the dynamic loader's relocations: about 7 ms of
 * qhost's 20 ms to run an empty script), yet most apps and every source
 * process use none of them. Each module that wraps one lists the functions
 * it calls in an X-macro and calls them through a table that the first use
 * fills with dlopen/dlsym:
 *
 *   #define SQLITE_FUNCTIONS(X) X(sqlite3_open_v2) X(sqlite3_close_v2) ...
 *   static struct { SQLITE_FUNCTIONS(QH_LAZY_SLOT) } sqlite;
 *   static qh_lazylib sqlite_lib = { .soname = QH_SQLITE_SONAME };
 *   static int sqlite_load(char *err, size_t errlen)
 *   {
 *   #define FILL(name) QH_LAZY_FILL(sqlite_lib, sqlite, name)
 *       QH_LAZY_LOAD(sqlite_lib, SQLITE_FUNCTIONS(FILL));
 *   #undef FILL
 *   }
 *   ... if (sqlite_load(err, sizeof err) < 0) ...; sqlite.sqlite3_open_v2(...)
 *
 * The sonames come from the build (Makefile: QH_*_SONAME, read off the
 * development libraries), so the library loaded is the one compiled
 * against. Main thread only: the tables are filled without locking.
 * Uses: dlopen/dlsym. */
#ifndef QH_LAZYLIB_H
#define QH_LAZYLIB_H

#include <stddef.h>

typedef struct qh_lazylib {
    const char *soname;
    void *handle;        /* once opened; never closed (the process keeps it) */
    int state;           /* 0: not tried; 1: every function found; -1: failed
                            for good, error says why */
    char error[256];
} qh_lazylib;

/* Where a load stands: 0 when lib is ready (loaded before), -1 with err set
 * when it failed (now or before), 1 when it was just opened and its
 * functions are to be looked up (QH_LAZY_FILL), then state set to 1. */
int qh_lazylib_begin(qh_lazylib *lib, char *err, size_t errlen);

/* One function of an opened lib; NULL with err set and the lib failed for
 * good when it is missing. */
void *qh_lazylib_sym(qh_lazylib *lib, const char *name, char *err, size_t errlen);

/* A table member: a pointer of the function's own type. */
#define QH_LAZY_SLOT(name) __typeof__(name) *name;

/* Looks up `name` into table.name, or returns -1 (in a load function with
 * char *err, size_t errlen in scope). */
#define QH_LAZY_FILL(lib, table, name)                                                    \
    if (!((table).name = (__typeof__((table).name))qh_lazylib_sym(&(lib), #name, err, errlen))) \
        return -1;

/* The body of a load function (char *err, size_t errlen in scope): returns
 * 0 once every FILL of `fills` succeeded (at once after the first time),
 * else -1 with err set. */
#define QH_LAZY_LOAD(lib, fills)                                                          \
    do {                                                                                  \
        int qh_lazy_begun = qh_lazylib_begin(&(lib), err, errlen);                        \
        if (qh_lazy_begun <= 0) return qh_lazy_begun;                                     \
        fills                                                                             \
        (lib).state = 1;                                                                  \
        return 0;                                                                         \
    } while (0)

#endif
