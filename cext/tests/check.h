/*
 * check.h - what the C test programs share (spec clauses 12 and 16): the assertion counter, a
 * seeded random generator, random buffers, per-call options, shapes and windows.
 * CHECK(cond, fmt, ...) counts a check and, when cond is false, prints the file, line and message
 * and counts a failure; a test program ends with CHECK_SUMMARY() as its exit status. A program
 * may define CHECK_SEED before including this file to draw other data.
 */
#ifndef PCN_TESTS_CHECK_H
#define PCN_TESTS_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "parcnetv2.h"

#ifndef CHECK_SEED
#define CHECK_SEED 0x9E3779B97F4A7C15ull
#endif

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

/* xorshift64: uniform in [-1, 1) from the state *s. */
static inline double check_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static uint64_t g_rng = CHECK_SEED;
static inline float frand(void) {
    return (float)check_rand(&g_rng);
}
/* n floats uniform in [-scale, scale) (never a zero-byte allocation). */
static inline float *rand_buf(size_t n, float scale) {
    float *p = (float *)malloc(n * sizeof(float) + 4);
    size_t i;
    for (i = 0; i < n; i++) p[i] = scale * frand();
    return p;
}
static inline pcn_options opts(pcn_isa isa, int threads) {
    pcn_options o = pcn_options_default();
    o.isa = isa;
    o.threads = threads;
    return o;
}

/* Shapes and windows of the struct-form entry points. */
static inline pcn_shape4 s4(size_t n, size_t c, size_t h, size_t w) {
    pcn_shape4 s;
    s.n = n, s.c = c, s.h = h, s.w = w;
    return s;
}
static inline pcn_window pwin(size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw) {
    pcn_window v;
    v.kh = kh, v.kw = kw, v.sh = sh, v.sw = sw, v.ph = ph, v.pw = pw;
    return v;
}
/* A stride-1 window (the depthwise convolutions). */
static inline pcn_window win1(size_t kh, size_t kw, size_t ph, size_t pw) {
    return pwin(kh, kw, 1, 1, ph, pw);
}

#endif
