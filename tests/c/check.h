/* check.h: a minimal unit-test harness for the host's C units.
 * Provides CHECK(cond), CHECK_EQ_INT, CHECK_EQ_STR, TEST(name) blocks and
 * check_summary(), which prints "N passed, N failed" and returns the exit code.
 * Uses only libc. */
#ifndef QH_CHECK_H
#define QH_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed, check_current_ok;
static const char *check_current_name;

#define TEST(name) \
    static void test_##name(void); \
    static void test_##name(void)

#define RUN(name) do { \
        check_current_name = #name; check_current_ok = 1; \
        test_##name(); \
        if (check_current_ok) check_passed++; else check_failed++; \
        printf("%s %s\n", check_current_ok ? "ok  " : "FAIL", #name); \
    } while (0)

#define CHECK(cond) do { if (!(cond)) { \
        fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, \
                check_current_name, #cond); \
        check_current_ok = 0; } } while (0)

#define CHECK_EQ_INT(a, b) do { long long check_a_ = (a), check_b_ = (b); \
    if (check_a_ != check_b_) { \
        fprintf(stderr, "%s:%d: %s: %s == %lld, expected %lld\n", __FILE__, \
                __LINE__, check_current_name, #a, check_a_, check_b_); \
        check_current_ok = 0; } } while (0)

#define CHECK_EQ_STR(a, b) do { const char *check_a_ = (a), *check_b_ = (b); \
    if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) { \
        fprintf(stderr, "%s:%d: %s: %s == \"%s\", expected \"%s\"\n", __FILE__, \
                __LINE__, check_current_name, #a, check_a_ ? check_a_ : "(null)", \
                check_b_ ? check_b_ : "(null)"); \
        check_current_ok = 0; } } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
