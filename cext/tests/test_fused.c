/*
 * test_fused.c - C tests of the fused kernels of pcn_fused.h (spec clause 15): erf accuracy on a
 * strided sweep, GELU, the gates, both norms, the residual step, the head and im2col, on every
 * ISA this CPU runs, threads 1 and 2 (bit-identical), against double-precision references in
 * this file with clause-11 style bounds (the GEMM driver with a naive sgemm in this file) c * sqrt(n) * u * m + tiny (c
 * = 4, u = 2^-24), plus error cases. Exit status 0 when everything passes; runs in well under a second natively.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pcn_fused.h"

#define CHECK_SEED 0x2545F4914F6CDD1Dull
#include "check.h"

#define U    (1.0 / 16777216.0) /* unit roundoff of float32 */
#define NISA 4
static const pcn_isa all_isas[NISA] = {PCN_ISA_SCALAR, PCN_ISA_AVX2, PCN_ISA_AVX512, PCN_ISA_NEON};
/* Most ulps the erf may be off on this sweep: the SIMD ISAs use fused multiply-add (exhaustive
 * measurement over all float32: see spec clause 15.3); the scalar path rounds products
 * separately (-ffp-contract=off) and is a little less accurate. */
#define ERF_ULPS_FMA    1.1
#define ERF_ULPS_SCALAR 1.5

static double ulp_of(double r) { /* spacing of float32 at |r| */
    float a = (float)fabs(r);
    if (a < FLT_MIN) return ldexp(1.0, -149);
    return (double)(nextafterf(a, INFINITY) - a);
}

static double gelu_ref(double v) {
    return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
}

/* ---------------------------------------------------------- erf */

static void test_erf(void) {
    const size_t n = 70001; /* > 2 chunks: threads 2 split it */
    float *x = (float *)malloc(n * sizeof(float)), *y1 = (float *)malloc(n * sizeof(float));
    float *y2 = (float *)malloc(n * sizeof(float));
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-38f, 1.0f, -1.0f, 4.0f, 10.0f};
    size_t i, k;
    int ii;
    for (i = 0; i < n; i++) x[i] = -5.0f + 10.0f * (float)i / (float)(n - 1); /* strided sweep */
    for (k = 0; k < sizeof special / sizeof *special; k++) x[k] = special[k];
    for (ii = 0; ii < NISA; ii++) {
        pcn_options o1 = opts(all_isas[ii], 1), o2 = opts(all_isas[ii], 2);
        pcn_error e;
        double worst = 0, limit = all_isas[ii] == PCN_ISA_SCALAR ? ERF_ULPS_SCALAR : ERF_ULPS_FMA;
        size_t wi = 0;
        if (!pcn_isa_available(all_isas[ii])) continue;
        CHECK(pcn_erf(x, y1, n, &o1, &e) == PCN_OK, "erf: %s", e.message);
        CHECK(pcn_erf(x, y2, n, &o2, &e) == PCN_OK, "erf t2: %s", e.message);
        CHECK(memcmp(y1, y2, n * sizeof(float)) == 0, "erf %s: threads 1 and 2 differ", pcn_isa_name(all_isas[ii]));
        for (i = 0; i < n; i++) {
            double r, d;
            if (isnan(x[i])) {
                CHECK(isnan(y1[i]), "erf(NaN) = %g on %s", (double)y1[i], pcn_isa_name(all_isas[ii]));
                continue;
            }
            r = erf((double)x[i]);
            d = fabs((double)y1[i] - r) / ulp_of(r);
            if (d > worst) {
                worst = d;
                wi = i;
            }
        }
        printf("erf %s: max %.3f ulp on the sweep\n", pcn_isa_name(all_isas[ii]), worst);
        CHECK(worst <= limit, "erf %s: %.3f ulp at x = %.9g (got %.9g, want %.17g)", pcn_isa_name(all_isas[ii]), worst,
              (double)x[wi], (double)y1[wi], erf((double)x[wi]));
        CHECK(y1[2] == 1.0f && y1[3] == -1.0f && y1[0] == 0.0f && signbit(y1[1]), "erf(+-inf, +-0) on %s",
              pcn_isa_name(all_isas[ii]));
    }
    free(x);
    free(y1);
    free(y2);
}

/* ---------------------------------------------------------- elementwise rows */

/* GELU with bias, the two gates: rows x C with leading dimensions larger than C. */
static void test_gates(size_t rows, size_t C) {
    const size_t ld = 2 * C + 3, ldy = C + 1;
    float *h = rand_buf(rows * ld, 3.0f), *b = rand_buf(2 * C, 1.0f), *s = rand_buf(rows * ld, 2.0f);
    float *y[2];
    const double gelu_c = 4.0 * sqrt(32.0) * U;
    int ii, t, op;
    y[0] = (float *)malloc(rows * ldy * sizeof(float));
    y[1] = (float *)malloc(rows * ldy * sizeof(float));
    for (ii = 0; ii < NISA; ii++) {
        if (!pcn_isa_available(all_isas[ii])) continue;
        for (op = 0; op < 3; op++) {
            const char *name = op == 0 ? "bias_gelu" : op == 1 ? "gate" : "gelu_gate";
            size_t r, c;
            for (t = 0; t < 2; t++) {
                pcn_options o = opts(all_isas[ii], t + 1);
                pcn_error e;
                pcn_status st;
                memset(y[t], 0, rows * ldy * sizeof(float));
                st = op == 0   ? pcn_bias_gelu(h, ld, b, y[t], ldy, rows, C, &o, &e)
                     : op == 1 ? pcn_gate(h, ld, b, s, ld, y[t], ldy, rows, C, &o, &e)
                               : pcn_gelu_gate(h, ld, b, y[t], ldy, rows, C, &o, &e);
                CHECK(st == PCN_OK, "%s: %s", name, e.message);
            }
            CHECK(memcmp(y[0], y[1], rows * ldy * sizeof(float)) == 0, "%s rows %zu C %zu %s: threads differ", name,
                  rows, C, pcn_isa_name(all_isas[ii]));
            for (r = 0; r < rows; r++)
                for (c = 0; c < C; c++) {
                    const double a = (double)(h[r * ld + c] + b[c]);
                    const double g = (double)(h[r * ld + C + c] + b[C + c]);
                    double want, bound;
                    if (op == 0) {
                        want = gelu_ref(a);
                        bound = gelu_c * 0.5 * fabs(a) * (1 + fabs(erf(a / sqrt(2.0))));
                    } else if (op == 1) {
                        want = a * s[r * ld + c];
                        bound = 2 * U * fabs(want);
                    } else {
                        want = a * gelu_ref(g);
                        bound = fabs(a) * gelu_c * 0.5 * fabs(g) * (1 + fabs(erf(g / sqrt(2.0)))) + 2 * U * fabs(want);
                    }
                    CHECK(fabs(y[0][r * ldy + c] - want) <= bound + FLT_MIN, "%s %s (%zu,%zu): got %.9g want %.9g",
                          name, pcn_isa_name(all_isas[ii]), r, c, (double)y[0][r * ldy + c], want);
                }
        }
    }
    free(h);
    free(b);
    free(s);
    free(y[0]);
    free(y[1]);
}

/* ---------------------------------------------------------- norms, residual */

/* Double reference of one row: LNG (standard = 0) or LayerNorm (standard = 1), and its bound
 * c * sqrt(C) * u * |w| * (|d| + max|x - mean| / s) (+ u |b|): the rounding of the mean, the
 * deviations and the norm, each relative to the scale s of the row. */
static void norm_ref(const float *x, const float *w, const float *b, size_t C, int standard, double eps, double *want,
                     double *bound) {
    double mean = 0, ss = 0, s, big = 0;
    size_t c;
    for (c = 0; c < C; c++) mean += x[c];
    mean /= (double)C;
    for (c = 0; c < C; c++) {
        ss += (x[c] - mean) * (x[c] - mean);
        if (fabs(x[c]) > big) big = fabs(x[c]);
    }
    s = standard ? sqrt(ss / (double)C + eps) : (sqrt(ss) > eps ? sqrt(ss) : eps);
    for (c = 0; c < C; c++) {
        const double d = (x[c] - mean) / s;
        want[c] = d * w[c] + (standard ? b[c] : 0.0);
        bound[c] = 4.0 * sqrt((double)C) * U * fabs((double)w[c]) * (fabs(d) + big / s) +
                   (standard ? 2 * U * fabs(want[c]) : 0.0) + FLT_MIN;
    }
}

static void test_norms(size_t rows, size_t C) {
    const size_t ld = C + 5;
    float *x = rand_buf(rows * ld, 2.0f), *w = rand_buf(C, 1.5f), *b = rand_buf(C, 1.0f);
    float *sc = rand_buf(C, 1.0f), *br = rand_buf(rows * ld, 1.0f), *xr[2], *y[2];
    double *want = (double *)malloc(C * sizeof(double)), *bound = (double *)malloc(C * sizeof(double));
    int ii, t, op;
    size_t r, c;
    for (r = 0; r < rows; r++) x[r * ld] += 3.0f; /* a common offset: cancellation in the mean */
    for (t = 0; t < 2; t++) {
        y[t] = (float *)malloc(rows * ld * sizeof(float));
        xr[t] = (float *)malloc(rows * ld * sizeof(float));
    }
    for (ii = 0; ii < NISA; ii++) {
        if (!pcn_isa_available(all_isas[ii])) continue;
        for (op = 0; op < 3; op++) {
            const char *name = op == 0 ? "layer_norm_general" : op == 1 ? "layer_norm" : "residual_norm";
            for (t = 0; t < 2; t++) {
                pcn_options o = opts(all_isas[ii], t + 1);
                pcn_error e;
                pcn_status st;
                memcpy(xr[t], x, rows * ld * sizeof(float));
                st = op == 0   ? pcn_layer_norm_general(x, ld, w, y[t], ld, rows, C, 1e-6f, &o, &e)
                     : op == 1 ? pcn_layer_norm(x, ld, w, b, y[t], ld, rows, C, 1e-6f, &o, &e)
                               : pcn_residual_norm(xr[t], ld, sc, br, ld, w, y[t], ld, rows, C, 1e-6f, &o, &e);
                CHECK(st == PCN_OK, "%s: %s", name, e.message);
            }
            for (r = 0; r < rows; r++) {
                const float *xin = op == 2 ? xr[0] + r * ld : x + r * ld;
                CHECK(memcmp(y[0] + r * ld, y[1] + r * ld, C * sizeof(float)) == 0, "%s: threads differ", name);
                if (op == 2)
                    for (c = 0; c < C; c++) {
                        const double want_x = (double)x[r * ld + c] * sc[c] + br[r * ld + c];
                        CHECK(fabs(xr[0][r * ld + c] - want_x) <=
                                  2 * U * (fabs(want_x) + fabs(br[r * ld + c])) + FLT_MIN,
                              "residual x (%zu,%zu): got %.9g want %.9g", r, c, (double)xr[0][r * ld + c], want_x);
                    }
                norm_ref(xin, w, b, C, op == 1, 1e-6, want, bound);
                for (c = 0; c < C; c++)
                    CHECK(fabs(y[0][r * ld + c] - want[c]) <= bound[c],
                          "%s %s rows %zu C %zu (%zu,%zu): got %.9g want %.9g", name, pcn_isa_name(all_isas[ii]), rows,
                          C, r, c, (double)y[0][r * ld + c], want[c]);
            }
        }
    }
    /* residual without scale and without the norm: x + branch only, y untouched (may be NULL) */
    {
        pcn_error e;
        memcpy(xr[0], x, rows * ld * sizeof(float));
        CHECK(pcn_residual_norm(xr[0], ld, NULL, br, ld, NULL, NULL, 0, rows, C, 1e-6f, NULL, &e) == PCN_OK,
              "residual only: %s", e.message);
        for (r = 0; r < rows; r++)
            for (c = 0; c < C; c++)
                CHECK(xr[0][r * ld + c] == x[r * ld + c] + br[r * ld + c], "residual only (%zu,%zu)", r, c);
    }
    free(x);
    free(w);
    free(b);
    free(sc);
    free(br);
    free(want);
    free(bound);
    for (t = 0; t < 2; t++) {
        free(y[t]);
        free(xr[t]);
    }
}

/* ---------------------------------------------------------- head */

static void test_head(size_t N, size_t HW, size_t C, size_t K) {
    float *x = rand_buf(N * HW * C, 2.0f), *nw = rand_buf(C, 1.5f), *nb = rand_buf(C, 1.0f);
    float *wt = rand_buf(C * K, 0.5f), *fb = rand_buf(K, 1.0f), *f[2], *lg[2];
    double *pooled = (double *)malloc(C * sizeof(double)), *want = (double *)malloc(C * sizeof(double));
    double *bound = (double *)malloc(C * sizeof(double));
    float *pooled_f = (float *)malloc(C * sizeof(float));
    int ii, t;
    size_t n, c, k, p;
    for (t = 0; t < 2; t++) {
        f[t] = (float *)malloc(N * C * sizeof(float));
        lg[t] = (float *)malloc(N * K * sizeof(float));
    }
    for (ii = 0; ii < NISA; ii++) {
        if (!pcn_isa_available(all_isas[ii])) continue;
        for (t = 0; t < 2; t++) {
            pcn_options o = opts(all_isas[ii], t + 1);
            pcn_error e;
            CHECK(pcn_head(x, N, HW, C, nw, nb, 1e-6f, wt, t ? fb : fb, K, f[t], lg[t], &o, &e) == PCN_OK, "head: %s",
                  e.message);
        }
        CHECK(memcmp(lg[0], lg[1], N * K * sizeof(float)) == 0, "head %s: threads differ", pcn_isa_name(all_isas[ii]));
        for (n = 0; n < N; n++) {
            for (c = 0; c < C; c++) {
                pooled[c] = 0;
                for (p = 0; p < HW; p++) pooled[c] += x[(n * HW + p) * C + c];
                pooled[c] /= (double)HW;
                pooled_f[c] = (float)pooled[c];
            }
            /* the pooled values carry sqrt(HW) u relative error; the norm bound covers that
             * through its |x| / s term when evaluated on them */
            norm_ref(pooled_f, nw, nb, C, 1, 1e-6, want, bound);
            for (c = 0; c < C; c++)
                CHECK(fabs(f[0][n * C + c] - want[c]) <= bound[c] * sqrt((double)HW),
                      "head features %s (%zu,%zu): got %.9g want %.9g", pcn_isa_name(all_isas[ii]), n, c,
                      (double)f[0][n * C + c], want[c]);
            for (k = 0; k < K; k++) {
                double s = fb[k], m = fabs(fb[k]);
                for (c = 0; c < C; c++) {
                    s += (double)f[0][n * C + c] * wt[c * K + k];
                    m += fabs((double)f[0][n * C + c] * wt[c * K + k]);
                }
                CHECK(fabs(lg[0][n * K + k] - s) <= 4.0 * sqrt((double)C + 1) * U * m + FLT_MIN,
                      "head logits %s (%zu,%zu): got %.9g want %.9g", pcn_isa_name(all_isas[ii]), n, k,
                      (double)lg[0][n * K + k], s);
            }
        }
    }
    free(x);
    free(nw);
    free(nb);
    free(wt);
    free(fb);
    free(pooled);
    free(want);
    free(bound);
    free(pooled_f);
    for (t = 0; t < 2; t++) {
        free(f[t]);
        free(lg[t]);
    }
}

/* ---------------------------------------------------------- im2col */

static void test_im2col(size_t N, size_t C, size_t H, size_t W, size_t K, size_t S, size_t P, int bias) {
    const size_t OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1, ld = K * K * C + (size_t)bias;
    float *x = rand_buf(N * C * H * W, 1.0f), *cols = (float *)malloc(N * OH * OW * ld * sizeof(float));
    int layout;
    for (layout = 0; layout < 2; layout++) {
        pcn_error e;
        pcn_options o = opts(PCN_ISA_AUTO, 2);
        size_t n, oy, ox, c, ky, kx, bad = 0;
        CHECK(pcn_patches(x, cols, s4(N, C, H, W), pwin(K, K, S, S, P, P), (pcn_layout)layout, bias, &o, &e) == PCN_OK,
              "im2col: %s", e.message);
        for (n = 0; n < N; n++)
            for (oy = 0; oy < OH; oy++)
                for (ox = 0; ox < OW; ox++) {
                    const float *row = cols + ((n * OH + oy) * OW + ox) * ld;
                    for (c = 0; c < C; c++)
                        for (ky = 0; ky < K; ky++)
                            for (kx = 0; kx < K; kx++) {
                                const long iy = (long)(oy * S + ky) - (long)P, ix = (long)(ox * S + kx) - (long)P;
                                const int in = iy >= 0 && iy < (long)H && ix >= 0 && ix < (long)W;
                                /* x holds the same numbers read as NCHW or as NHWC */
                                const float want = !in ? 0.0f
                                                   : layout == PCN_NCHW
                                                       ? x[((n * C + c) * H + (size_t)iy) * W + (size_t)ix]
                                                       : x[((n * H + (size_t)iy) * W + (size_t)ix) * C + c];
                                const size_t col = layout == PCN_NCHW ? (c * K + ky) * K + kx : (ky * K + kx) * C + c;
                                bad += row[col] != want;
                            }
                    if (bias) bad += row[ld - 1] != 1.0f;
                }
        CHECK(bad == 0, "im2col %s N%zu C%zu %zux%zu K%zu S%zu P%zu bias%d: %zu wrong entries",
              layout ? "NHWC" : "NCHW", N, C, H, W, K, S, P, bias, bad);
    }
    free(x);
    free(cols);
}

/* ---------------------------------------------------------- errors */

static void test_errors(void) {
    float buf[64] = {0}, par[16] = {0}, out[16];
    pcn_error e;
    pcn_options o = pcn_options_default();
    CHECK(pcn_erf(NULL, buf, 4, NULL, &e) == PCN_ERR_NULL && strstr(e.message, "x") != NULL, "erf NULL: %s", e.message);
    CHECK(pcn_erf(buf, buf + 8, 0, NULL, &e) == PCN_ERR_SHAPE, "erf n=0: %s", e.message);
    CHECK(pcn_bias_gelu(buf, 2, NULL, buf + 32, 4, 2, 4, NULL, &e) == PCN_ERR_SHAPE &&
              strstr(e.message, "leading dimension") != NULL,
          "ld < C: %s", e.message);
    CHECK(pcn_layer_norm_general(buf, 4, NULL, buf + 32, 4, 2, 4, 1e-6f, NULL, &e) == PCN_ERR_NULL &&
              strstr(e.message, "w is NULL") != NULL,
          "norm without w: %s", e.message);
    CHECK(pcn_gate(buf, 4, NULL, buf, 4, buf + 32, 4, (size_t)1 << 62, (size_t)1 << 62, NULL, &e) == PCN_ERR_OVERFLOW,
          "overflow: %s", e.message);
    CHECK(pcn_residual_norm(buf, 4, NULL, buf + 16, 4, par, NULL, 4, 2, 4, 1e-6f, NULL, &e) == PCN_ERR_NULL,
          "residual with w but no y: %s", e.message);
    CHECK(pcn_head(buf, 1, 2, 2, par, par, 1e-6f, par, NULL, 0, out, out + 8, NULL, &e) == PCN_ERR_SHAPE,
          "head K=0: %s", e.message);
    o.isa = (pcn_isa)42;
    CHECK(pcn_erf(buf, buf + 8, 4, &o, &e) == PCN_ERR_ARG, "bad isa: %s", e.message);
    o.isa = PCN_ISA_NEON;
#if defined(__aarch64__)
    o.isa = PCN_ISA_AVX2;
#endif
    CHECK(pcn_erf(buf, buf + 8, 4, &o, &e) == PCN_ERR_ISA, "foreign isa: %s", e.message);
    CHECK(pcn_patches(buf, buf + 32, s4(1, 1, 2, 2), pwin(5, 5, 1, 1, 0, 0), PCN_NHWC, 0, NULL, &e) == PCN_ERR_SHAPE &&
              strstr(e.message, "does not fit") != NULL,
          "im2col kernel too big: %s", e.message);
    CHECK(pcn_patches(buf, buf + 32, s4(1, 1, 2, 2), pwin(1, 1, 0, 1, 0, 0), PCN_NHWC, 0, NULL, &e) == PCN_ERR_SHAPE,
          "im2col stride 0: %s", e.message);
    CHECK(pcn_patches(buf, buf + 32, s4(1, 1, 2, 2), pwin(1, 1, 1, 1, 0, 0), PCN_NHWC, 2, NULL, &e) == PCN_ERR_ARG,
          "im2col bias_column 2: %s", e.message);
    CHECK(pcn_erf(buf, buf + 8, 4, NULL, NULL) == PCN_OK, "NULL err pointer must be accepted");
}

int main(void) {
    printf("%s: fused kernels\n", pcn_build_info());
    test_erf();
    test_gates(1, 1);
    test_gates(5, 13);
    test_gates(300, 131); /* > 2 x PCN_FUSED_MIN_WORK: two threads run */
    test_norms(1, 2);
    test_norms(7, 17);
    test_norms(260, 131);
    test_head(1, 1, 2, 1);
    test_head(3, 5, 19, 37);
    test_head(2, 49, 64, 300);
    test_im2col(1, 3, 9, 11, 7, 4, 2, 1);
    test_im2col(2, 5, 6, 5, 3, 2, 1, 0);
    test_im2col(1, 2, 3, 3, 3, 2, 1, 1);
    test_errors();
    return CHECK_SUMMARY();
}
