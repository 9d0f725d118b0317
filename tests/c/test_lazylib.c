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
QH_LAZY_LIBRARY(good, "libm.so.6", GOOD_FUNCTIONS)

#define PARTLY_FUNCTIONS(X) X(sin) X(qh_test_no_such_function)
QH_LAZY_LIBRARY(partly, "libm.so.6", PARTLY_FUNCTIONS)

#define ABSENT_FUNCTIONS(X) X(cos)
QH_LAZY_LIBRARY(absent, "libqhost-no-such-library.so.9", ABSENT_FUNCTIONS)

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
