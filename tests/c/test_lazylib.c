/* test_lazylib.c: tests of host/lazylib.c, on libm (present wherever this
 * runs): a table filled on first use, a missing library and a missing
 * function each an error that names it, and the same error again after. */
#include <math.h>
#include <string.h>

#include "helpers.h"
#include "lazylib.h"

/* Declared, never defined: only its type is taken (QH_LAZY_SLOT). */
double qh_test_no_such_function(double x);

#define GOOD_FUNCTIONS(X) X(cos) X(sqrt)
static struct { GOOD_FUNCTIONS(QH_LAZY_SLOT) } good;
static qh_lazylib good_lib = { .soname = "libm.so.6" };

static int good_load(char *err, size_t errlen)
{
#define FILL(name) QH_LAZY_FILL(good_lib, good, name)
    QH_LAZY_LOAD(good_lib, GOOD_FUNCTIONS(FILL));
#undef FILL
}

#define PARTLY_FUNCTIONS(X) X(sin) X(qh_test_no_such_function)
static struct { PARTLY_FUNCTIONS(QH_LAZY_SLOT) } partly;
static qh_lazylib partly_lib = { .soname = "libm.so.6" };

static int partly_load(char *err, size_t errlen)
{
#define FILL(name) QH_LAZY_FILL(partly_lib, partly, name)
    QH_LAZY_LOAD(partly_lib, PARTLY_FUNCTIONS(FILL));
#undef FILL
}

#define ABSENT_FUNCTIONS(X) X(cos)
static struct { ABSENT_FUNCTIONS(QH_LAZY_SLOT) } absent;
static qh_lazylib absent_lib = { .soname = "libqhost-no-such-library.so.9" };

static int absent_load(char *err, size_t errlen)
{
#define FILL(name) QH_LAZY_FILL(absent_lib, absent, name)
    QH_LAZY_LOAD(absent_lib, ABSENT_FUNCTIONS(FILL));
#undef FILL
}

TEST(functions_are_found_on_first_use_and_kept)
{
    char err[256] = "";
    CHECK(good.cos == NULL);
    CHECK_EQ_INT(good_load(err, sizeof err), 0);
    CHECK_EQ_STR(err, "");
    CHECK(good.cos != NULL && good.sqrt != NULL);
    if (good.cos && good.sqrt) {
        CHECK(good.cos(0.0) == 1.0);
        CHECK(good.sqrt(16.0) == 4.0);
    }
    double (*first)(double) = good.cos;
    CHECK_EQ_INT(good_load(err, sizeof err), 0);   /* loaded: nothing again */
    CHECK(good.cos == first);
}

TEST(a_missing_function_is_named_and_fails_for_good)
{
    char err[256] = "";
    CHECK_EQ_INT(partly_load(err, sizeof err), -1);
    CHECK_EQ_STR(err, "libm.so.6 has no qh_test_no_such_function: not the version qhost was built with");
    err[0] = '\0';
    CHECK_EQ_INT(partly_load(err, sizeof err), -1);
    CHECK_EQ_STR(err, "libm.so.6 has no qh_test_no_such_function: not the version qhost was built with");
}

TEST(a_missing_library_is_named_and_fails_for_good)
{
    char err[256] = "", again[256] = "";
    CHECK_EQ_INT(absent_load(err, sizeof err), -1);
    CHECK(strncmp(err, "cannot load libqhost-no-such-library.so.9: ", 43) == 0);
    CHECK_EQ_INT(absent_load(again, sizeof again), -1);
    CHECK_EQ_STR(again, err);
    CHECK(absent.cos == NULL);
}

int main(void)
{
    RUN(functions_are_found_on_first_use_and_kept);
    RUN(a_missing_function_is_named_and_fails_for_good);
    RUN(a_missing_library_is_named_and_fails_for_good);
    return check_summary();
}
