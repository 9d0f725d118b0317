/* lazylib.h: shared libraries opened on first use. RocksDB (with the C++
 * runtime it pulls in), SQLite and libmicrohttpd cost every process that
 * links them at start-up (the dynamic loader's relocations: about 7 ms of
 * qhost's 20 ms to run an empty script), yet most apps and every source
 * process use none of them. Each module that wraps one lists the functions
 * it calls in an X-macro and calls them through a table that the first use
 * fills with dlopen/dlsym:
 *
 *   #define SQLITE_FUNCTIONS(X) X(sqlite3_open_v2) X(sqlite3_close_v2) ...
 *   QH_LAZY_LIBRARY(sqlite, QH_SQLITE_SONAME, SQLITE_FUNCTIONS)
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
 * functions are to be looked up (QH_LAZY_FILL), then state set to 1
 * (QH_LAZY_LIBRARY's load function does all this). */
int qh_lazylib_begin(qh_lazylib *lib, char *err, size_t errlen);

/* One function of an opened lib; NULL with err set and the lib failed for
 * good when it is missing. */
void *qh_lazylib_sym(qh_lazylib *lib, const char *name, char *err, size_t errlen);

/* A table member: a pointer of the function's own type. */
#define QH_LAZY_SLOT(name) __typeof__(name) *name;

/* Looks up `name` into the table, or returns -1 (inside the load function
 * QH_LAZY_LIBRARY writes, where lazy_lib, lazy_table, err and errlen are). */
#define QH_LAZY_FILL(name)                                                                      \
    if (!(lazy_table->name = (__typeof__(lazy_table->name))qh_lazylib_sym(lazy_lib, #name, err, errlen))) \
        return -1;

/* Declares a library loaded on first use: `t`, the table of LIST's
 * functions (t.name(...)); t_lib; and int t_load(char *err, size_t errlen):
 * 0 once every function of LIST is in t (at once after the first time),
 * else -1 with err set. */
#define QH_LAZY_LIBRARY(t, soname_, LIST)                                                       \
    static struct { LIST(QH_LAZY_SLOT) } t;                                                     \
    static qh_lazylib t##_lib = { .soname = soname_ };                                          \
    static int t##_load(char *err, size_t errlen)                                               \
    {                                                                                           \
        int begun = qh_lazylib_begin(&t##_lib, err, errlen);                                    \
        if (begun <= 0) return begun;                                                           \
        qh_lazylib *lazy_lib = &t##_lib;                                                        \
        __typeof__(t) *lazy_table = &t;                                                         \
        LIST(QH_LAZY_FILL)                                                                      \
        t##_lib.state = 1;                                                                      \
        return 0;                                                                               \
    }

#endif
