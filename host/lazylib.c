/* lazylib.c: shared libraries opened on first use (see lazylib.h). */
#include "lazylib.h"

#include <dlfcn.h>
#include <stdio.h>

static int fail(qh_lazylib *lib, char *err, size_t errlen)
{
    lib->state = -1;
    snprintf(err, errlen, "%s", lib->error);
    return -1;
}

int qh_lazylib_begin(qh_lazylib *lib, char *err, size_t errlen)
{
    if (lib->state == 1) return 0;
    if (lib->state < 0) return fail(lib, err, errlen);
    if (!lib->soname || !lib->soname[0]) {
        /* (the Makefile found no development library to read it off) */
        snprintf(lib->error, sizeof lib->error, "qhost was built without the name of a library it loads");
        return fail(lib, err, errlen);
    }
    /* RTLD_NOW: a missing symbol shows here, not as a crash mid-call. */
    lib->handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib->handle) {
        const char *why = dlerror();
        snprintf(lib->error, sizeof lib->error, "cannot load %s: %s", lib->soname, why ? why : "unknown error");
        return fail(lib, err, errlen);
    }
    return 1;
}

void *qh_lazylib_sym(qh_lazylib *lib, const char *name, char *err, size_t errlen)
{
    dlerror();
    void *f = dlsym(lib->handle, name);
    if (!f) {
        snprintf(lib->error, sizeof lib->error, "%s has no %s: not the version qhost was built with",
                 lib->soname, name);
        fail(lib, err, errlen);
    }
    return f;
}
