/*
 * check.h - the assertion counter shared by the C test programs (spec clause 12).
 * CHECK(cond, fmt, ...) counts a check and, when cond is false, prints the file, line and message
 * and counts a failure; a test program ends with CHECK_SUMMARY() as its exit status.
 */
#ifndef PCN_TESTS_CHECK_H
#define PCN_TESTS_CHECK_H

#include <stdio.h>

static int g_fail = 0, g_checks = 0;
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        g_checks++;                                                                                                    \
        if (!(cond)) {                                                                                                 \
            g_fail++;                                                                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                       \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

/* Print the totals; 0 when every check passed, else 1. */
#define CHECK_SUMMARY() (printf("%d checks, %d failures\n", g_checks, g_fail), g_fail ? 1 : 0)

#endif
