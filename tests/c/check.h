/*
 * check.h: the tiny test framework of the C tests.
 *
 * CHECK(expr)      counts a check; on failure prints "file:line: check failed: expr" and
 *                  marks the running test failed. Evaluates to the truth of expr.
 * REQUIRE(expr)    CHECK, and return from the test function when it fails.
 * CHECK_STATUS(got, want, err)
 *                  checks a status; on failure also prints both status names and the
 *                  message of `err` (an rr_error *, may be NULL).
 * REQUIRE_STATUS   the same, returning on failure.
 *
 * Checks may run on any thread. The runner (main.c) prints one line per test and, at the
 * end, exactly one line "N passed, M failed" (tests), and exits non-zero on any failure.
 */
#ifndef RR_C_TESTS_CHECK_H
#define RR_C_TESTS_CHECK_H

#include <stdbool.h>

#include "rr.h"

bool check_report(bool ok, const char *file, int line, const char *expr);
bool check_status_report(rr_status got, rr_status want, const rr_error *err, const char *file, int line,
                         const char *expr);
/* Prints a note (indented, to stdout) about the running test. */
void note(const char *format, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(expr) check_report((expr) ? true : false, __FILE__, __LINE__, #expr)
#define REQUIRE(expr)                                                                                                 \
    do {                                                                                                              \
        if (!CHECK(expr))                                                                                             \
            return;                                                                                                   \
    } while (0)
#define CHECK_STATUS(got, want, err) check_status_report((got), (want), (err), __FILE__, __LINE__, #got)
#define REQUIRE_STATUS(got, want, err)                                                                                \
    do {                                                                                                              \
        if (!CHECK_STATUS(got, want, err))                                                                            \
            return;                                                                                                   \
    } while (0)

#endif
