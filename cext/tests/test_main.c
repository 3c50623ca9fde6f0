/*
 * test_main.c - C tests of the kernel library (spec clause 12). Every op, both layouts, every ISA
 * this CPU runs, threads 1 and 2 (bit-identical), against a naive double-precision reference in
 * this file, with the clause-11 bound |y - r| <= c * sqrt(n) * u * m + tiny (c = 4, u = 2^-24,
 * m = the reference on absolute values, n = taps feeding one output). Plus error cases.
 * Exit status 0 when everything passes. Runs in a few seconds (also under qemu and sanitizers).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "parcnetv2.h"

#include "check.h"

/* ---------------------------------------------------------- naive double reference (NCHW) */

static void ref_dense(const float *x, const float *w, const float *b, double *y, double *mag, int N, int C, int H,
                      int W, int KH, int KW, int PH, int PW, int OH, int OW) {
    int n, c, i, j, a, q;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++)
            for (i = 0; i < OH; i++)
                for (j = 0; j < OW; j++) {
                    double s = b ? b[c] : 0.0, m = b ? fabs(b[c]) : 0.0;
                    for (a = 0; a < KH; a++)
                        for (q = 0; q < KW; q++) {
                            int r = i + a - PH, t = j + q - PW;
                            if (r < 0 || r >= H || t < 0 || t >= W) continue;
                            double xv = x[((size_t)(n * C + c) * H + r) * W + t], wv = w[(c * KH + a) * KW + q];
                            s += xv * wv;
                            m += fabs(xv * wv);
                        }
                    y[((size_t)(n * C + c) * OH + i) * OW + j] = s;
                    mag[((size_t)(n * C + c) * OH + i) * OW + j] = m;
                }
}

/* OC (+ DW7): exact double sums; magnitude = same on |.| */
static void ref_parc(const float *x, const float *kh, const float *kw, const float *k7, double *y, double *mag, int N,
                     int C, int H, int W, int KV, int KW) {
    int PV = KV / 2, PW = KW / 2, OH = H + 2 * PV - KV + 1, OW = W + 2 * PW - KW + 1;
    int n, c, i, j, a, q;
    double *t = (double *)malloc(sizeof(double) * (size_t)OH * W * 2), *tm = t + (size_t)OH * W;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const float *xp = x + (size_t)(n * C + c) * H * W;
            for (i = 0; i < OH; i++)
                for (j = 0; j < W; j++) {
                    double s = 0, m = 0;
                    for (a = 0; a < KV; a++) {
                        int r = i + a - PV;
                        if (r < 0 || r >= H) continue;
                        s += (double)kh[c * KV + a] * xp[r * W + j];
                        m += fabs((double)kh[c * KV + a] * xp[r * W + j]);
                    }
                    t[i * W + j] = s;
                    tm[i * W + j] = m;
                }
            for (i = 0; i < OH; i++)
                for (j = 0; j < OW; j++) {
                    double s = 0, m = 0;
                    for (q = 0; q < KW; q++) {
                        int u = j + q - PW;
                        if (u < 0 || u >= W) continue;
                        s += (double)kw[c * KW + q] * t[i * W + u];
                        m += fabs((double)kw[c * KW + q]) * tm[i * W + u];
                    }
                    if (k7)
                        for (a = 0; a < 7; a++)
                            for (q = 0; q < 7; q++) {
                                int r = i + a - 3, u = j + q - 3;
                                if (r < 0 || r >= H || u < 0 || u >= W) continue;
                                s += (double)k7[c * 49 + a * 7 + q] * xp[r * W + u];
                                m += fabs((double)k7[c * 49 + a * 7 + q] * xp[r * W + u]);
                            }
                    y[((size_t)(n * C + c) * OH + i) * OW + j] = s;
                    mag[((size_t)(n * C + c) * OH + i) * OW + j] = m;
                }
        }
    free(t);
}

static void nchw_to_nhwc(const float *src, float *dst, int N, int C, int H, int W) {
    int n, c, h, w;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++)
            for (h = 0; h < H; h++)
                for (w = 0; w < W; w++)
                    dst[(((size_t)n * H + h) * W + w) * C + c] = src[(((size_t)n * C + c) * H + h) * W + w];
}

/* Compare y (layout) with the NCHW reference. Returns the worst error/bound ratio. */
static double compare(const char *what, const float *y, const double *ref, const double *mag, int N, int C, int OH,
                      int OW, int layout, double n_red) {
    const double u = ldexp(1.0, -24), scale = 4.0 * sqrt(n_red) * u;
    double worst = 0;
    size_t wi = 0, wy = 0;
    int n, c, h, w, bad = 0;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++)
            for (h = 0; h < OH; h++)
                for (w = 0; w < OW; w++) {
                    size_t ri = (((size_t)n * C + c) * OH + h) * OW + w;
                    size_t yi = layout == PCN_NCHW ? ri : (((size_t)n * OH + h) * OW + w) * C + c;
                    double bound = scale * mag[ri] + FLT_MIN, e = fabs((double)y[yi] - ref[ri]);
                    double ratio = e / bound;
                    if (!(ratio <= 1.0)) bad = 1;
                    if (!(ratio <= worst)) {
                        worst = ratio;
                        wi = ri;
                        wy = yi;
                    }
                }
    CHECK(!bad, "%s: worst at NCHW index %zu: got %.9g want %.9g (%.3g x the bound)", what, wi, (double)y[wy], ref[wi],
          worst);
    return worst;
}

static const pcn_isa all_isas[] = {PCN_ISA_SCALAR, PCN_ISA_AVX2, PCN_ISA_AVX512, PCN_ISA_NEON};
#define NISA 4

/* ---------------------------------------------------------- dense tests */

static void test_dense(int N, int C, int H, int W, int KH, int KW, int PH, int PW, int with_bias) {
    int OH = H + 2 * PH - KH + 1, OW = W + 2 * PW - KW + 1, layout, ii, t;
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * OH * OW;
    float *x = rand_buf(nx, 1.0f), *w = rand_buf((size_t)C * KH * KW, 1.0f), *b = with_bias ? rand_buf(C, 1.0f) : NULL;
    float *xl = (float *)malloc(nx * sizeof(float));
    float *y1 = (float *)malloc((ny + 16) * sizeof(float)), *y2 = (float *)malloc((ny + 16) * sizeof(float));
    double *ref = (double *)malloc(ny * sizeof(double)), *mag = (double *)malloc(ny * sizeof(double));
    char what[256];
    ref_dense(x, w, b, ref, mag, N, C, H, W, KH, KW, PH, PW, OH, OW);
    for (layout = 0; layout < 2; layout++) {
        const float *xin = x;
        if (layout == PCN_NHWC) {
            nchw_to_nhwc(x, xl, N, C, H, W);
            xin = xl;
        }
        for (ii = 0; ii < NISA * 2; ii++) {
            pcn_options o = pcn_options_default();
            pcn_error e;
            if (!pcn_isa_available(all_isas[ii / 2])) continue;
            if (layout == PCN_NHWC && ii % 2) continue;
            o.isa = all_isas[ii / 2];
            o.nchw_kernel = layout == PCN_NCHW ? 1 + ii % 2 : 0;
            for (t = 1; t <= 2; t++) {
                float *y = t == 1 ? y1 : y2;
                size_t k;
                for (k = 0; k < ny + 16; k++) y[k] = 12345.0f; /* canary */
                o.threads = t;
                snprintf(what, sizeof what, "dwconv2d N%d C%d H%d W%d K%dx%d P%d,%d bias%d %s%s %s t%d", N, C, H, W, KH,
                         KW, PH, PW, with_bias, layout ? "NHWC" : "NCHW", o.nchw_kernel == 2 ? "(slab)" : "",
                         pcn_isa_name(o.isa), t);
                CHECK(pcn_depthwise(xin, w, b, y, s4(N, C, H, W), win1(KH, KW, PH, PW), (pcn_layout)layout, &o, &e) ==
                          PCN_OK,
                      "%s: %s", what, e.message);
                for (k = ny; k < ny + 16; k++) CHECK(y[k] == 12345.0f, "%s: wrote past the output", what);
                compare(what, y, ref, mag, N, C, OH, OW, layout, (double)(KH * KW));
            }
            CHECK(memcmp(y1, y2, ny * sizeof(float)) == 0, "%s: threads 1 and 2 differ", what);
        }
    }
    free(x);
    free(w);
    free(b);
    free(xl);
    free(y1);
    free(y2);
    free(ref);
    free(mag);
}

/* ---------------------------------------------------------- separable / parc tests */

static void test_sep(int N, int C, int H, int W, int KV, int KW, int parc) {
    int OH = H + 2 * (KV / 2) - KV + 1, OW = W + 2 * (KW / 2) - KW + 1, layout, ii, t, path;
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * OH * OW;
    float *x = rand_buf(nx, 1.0f), *kh = rand_buf((size_t)C * KV, 1.0f), *kw = rand_buf((size_t)C * KW, 1.0f);
    float *k7 = parc ? rand_buf((size_t)C * 49, 1.0f) : NULL;
    float *xl = (float *)malloc(nx * sizeof(float));
    float *y1 = (float *)malloc((ny + 16) * sizeof(float)), *y2 = (float *)malloc((ny + 16) * sizeof(float));
    double *ref = (double *)malloc(ny * sizeof(double)), *mag = (double *)malloc(ny * sizeof(double));
    char what[256];
    ref_parc(x, kh, kw, k7, ref, mag, N, C, H, W, KV, KW);
    for (layout = 0; layout < 2; layout++) {
        const float *xin = x;
        if (layout == PCN_NHWC) {
            nchw_to_nhwc(x, xl, N, C, H, W);
            xin = xl;
        }
        for (ii = 0; ii < NISA * 2; ii++) {
            if (!pcn_isa_available(all_isas[ii / 2])) continue;
            if (layout == PCN_NHWC && ii % 2) continue;
            for (path = parc ? 0 : 1; path <= (parc ? 2 : 1); path++) {
                pcn_options o = pcn_options_default();
                pcn_error e;
                o.isa = all_isas[ii / 2];
                o.nchw_kernel = layout == PCN_NCHW ? 1 + ii % 2 : 0;
                o.path = (pcn_path)path;
                for (t = 1; t <= 2; t++) {
                    float *y = t == 1 ? y1 : y2;
                    size_t k;
                    pcn_status st;
                    for (k = 0; k < ny + 16; k++) y[k] = 12345.0f;
                    o.threads = t;
                    snprintf(what, sizeof what, "%s N%d C%d H%d W%d KV%d KW%d path%d %s%s %s t%d",
                             parc ? "parc_spatial" : "oversized_conv", N, C, H, W, KV, KW, path,
                             layout ? "NHWC" : "NCHW", o.nchw_kernel == 2 ? "(slab)" : "", pcn_isa_name(o.isa), t);
                    st = parc ? pcn_parc(xin, kh, kw, k7, y, s4(N, C, H, W), KV, KW, (pcn_layout)layout, &o, &e)
                              : pcn_oversized(xin, kh, kw, y, s4(N, C, H, W), KV, KW, (pcn_layout)layout, &o, &e);
                    CHECK(st == PCN_OK, "%s: %s", what, e.message);
                    for (k = ny; k < ny + 16; k++) CHECK(y[k] == 12345.0f, "%s: wrote past the output", what);
                    compare(what, y, ref, mag, N, C, OH, OW, layout, (double)(KV + KW + (parc ? 49 : 0)));
                }
                CHECK(memcmp(y1, y2, ny * sizeof(float)) == 0, "%s: threads 1 and 2 differ", what);
            }
        }
    }
    free(x);
    free(kh);
    free(kw);
    free(k7);
    free(xl);
    free(y1);
    free(y2);
    free(ref);
    free(mag);
}

static void test_reparam(void) {
    const int C = 3, sizes[][2] = {{3, 5}, {7, 7}, {13, 9}, {1, 1}};
    int s;
    for (s = 0; s < 4; s++) {
        int KV = sizes[s][0], KW = sizes[s][1], RH = KV > 7 ? KV : 7, RW = KW > 7 ? KW : 7, c, a, b;
        float *kh = rand_buf((size_t)C * KV, 1.0f), *kw = rand_buf((size_t)C * KW, 1.0f), *k7 = rand_buf(C * 49, 1.0f);
        float *out = (float *)malloc(sizeof(float) * (size_t)C * RH * RW);
        pcn_error e;
        CHECK(pcn_reparameterize(kh, kw, k7, out, C, KV, KW, &e) == PCN_OK, "reparameterize: %s", e.message);
        for (c = 0; c < C; c++)
            for (a = 0; a < RH; a++)
                for (b = 0; b < RW; b++) {
                    double want = 0;
                    int ia = a - (RH - KV) / 2, ib = b - (RW - KW) / 2, sa = a - (RH - 7) / 2, sb = b - (RW - 7) / 2;
                    double m = 0;
                    if (ia >= 0 && ia < KV && ib >= 0 && ib < KW) {
                        want += (double)kh[c * KV + ia] * kw[c * KW + ib];
                        m += fabs(want);
                    }
                    if (sa >= 0 && sa < 7 && sb >= 0 && sb < 7) {
                        want += k7[c * 49 + sa * 7 + sb];
                        m += fabs((double)k7[c * 49 + sa * 7 + sb]);
                    }
                    CHECK(fabs(out[(c * RH + a) * RW + b] - want) <= 4.0 * sqrt(2.0) * ldexp(1.0, -24) * m + FLT_MIN,
                          "reparameterize K%dx%d c%d (%d,%d): got %.9g want %.9g", KV, KW, c, a, b,
                          (double)out[(c * RH + a) * RW + b], want);
                }
        free(kh);
        free(kw);
        free(k7);
        free(out);
    }
}

/* ---------------------------------------------------------- errors, workspace, cost model */

static void test_errors(void) {
    float buf[4096];
    pcn_error e;
    pcn_options o = pcn_options_default();
    memset(buf, 0, sizeof buf);
    CHECK(pcn_depthwise(NULL, buf, NULL, buf + 200, s4(1, 1, 4, 4), win1(3, 3, 1, 1), PCN_NCHW, NULL, &e) ==
                  PCN_ERR_NULL &&
              e.code == PCN_ERR_NULL && strstr(e.message, "x") != NULL,
          "null x: %s", e.message);
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(0, 1, 4, 4), win1(3, 3, 1, 1), PCN_NCHW, NULL, &e) ==
              PCN_ERR_SHAPE,
          "N=0: %s", e.message);
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(1, 1, 4, 4), win1(256, 3, 1, 1), PCN_NCHW, NULL, &e) ==
              PCN_ERR_SHAPE,
          "KH=256: %s", e.message);
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(1, 1, 2, 2), win1(7, 7, 0, 0), PCN_NCHW, NULL, &e) ==
                  PCN_ERR_SHAPE &&
              strstr(e.message, "does not fit") != NULL,
          "empty output: %s", e.message);
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(1, 1, 4, 4), win1(3, 3, 1, 1), (pcn_layout)7, NULL, &e) ==
              PCN_ERR_ARG,
          "bad layout: %s", e.message);
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4((size_t)1 << 40, (size_t)1 << 40, 4, 4), win1(3, 3, 1, 1),
                        PCN_NCHW, NULL, &e) == PCN_ERR_OVERFLOW,
          "overflow: %s", e.message);
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(1, 1, 4, 4), win1(3, 3, (size_t)-1 / 2, 1), PCN_NCHW, NULL, &e) ==
              PCN_ERR_OVERFLOW,
          "huge padding: %s", e.message);
    o.nchw_kernel = 3;
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(1, 1, 4, 4), win1(3, 3, 1, 1), PCN_NCHW, &o, &e) == PCN_ERR_ARG,
          "bad nchw_kernel: %s", e.message);
    o.nchw_kernel = 0;
    o.isa = (pcn_isa)99;
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(1, 1, 4, 4), win1(3, 3, 1, 1), PCN_NCHW, &o, &e) == PCN_ERR_ARG,
          "bad isa: %s", e.message);
    o.isa = PCN_ISA_NEON;
#if defined(__aarch64__)
    o.isa = PCN_ISA_AVX2;
#endif
    CHECK(pcn_depthwise(buf, buf, NULL, buf + 100, s4(1, 1, 4, 4), win1(3, 3, 1, 1), PCN_NCHW, &o, &e) == PCN_ERR_ISA,
          "foreign isa: %s", e.message);
    o = pcn_options_default();
    o.path = (pcn_path)5;
    CHECK(pcn_parc(buf, buf, buf, buf, buf + 100, s4(1, 1, 4, 4), 7, 7, PCN_NCHW, &o, &e) == PCN_ERR_ARG,
          "bad path: %s", e.message);
    CHECK(pcn_parc(buf, buf, buf, buf, buf + 100, s4(1, 1, 4, 4), 8, 7, PCN_NCHW, NULL, &e) == PCN_ERR_SHAPE &&
              strstr(e.message, "odd") != NULL,
          "even K parc: %s", e.message);
    CHECK(pcn_reparameterize(buf, buf, buf, buf + 100, 1, 7, 6, &e) == PCN_ERR_SHAPE, "even K reparam: %s", e.message);
    CHECK(pcn_reparameterize(buf, buf, NULL, buf + 100, 1, 7, 7, &e) == PCN_ERR_NULL, "null k7: %s", e.message);
    {
        pcn_shape4 r;
        CHECK(pcn_reparameterize_shape(3, 5, 9, &r, &e) == PCN_OK && r.n == 3 && r.c == 1 && r.h == 7 && r.w == 9,
              "reparameterize shape: %s", e.message);
        CHECK(pcn_reparameterize_shape(3, 257, 9, &r, &e) == PCN_ERR_SHAPE, "reparameterize shape K 257");
        CHECK(pcn_reparameterize_shape(0, 5, 9, &r, &e) == PCN_ERR_SHAPE, "reparameterize shape C 0");
    }
    CHECK(pcn_oversized(buf, buf, buf, buf + 100, s4(1, 1, 4, 4), 0, 3, PCN_NHWC, NULL, &e) == PCN_ERR_SHAPE, "K=0: %s",
          e.message);
    CHECK(pcn_oversized(buf, buf, buf, buf + 100, s4(1, 1, 4, 4), 3, 3, PCN_NHWC, NULL, NULL) == PCN_OK,
          "NULL err pointer must be accepted");
    /* caller workspace: too small, then exact */
    {
        size_t need = pcn_parc_workspace(s4(2, 5, 9, 9), 17, 17, PCN_NHWC, NULL, &e);
        unsigned char *ws = (unsigned char *)malloc(need);
        float *x = rand_buf(2 * 5 * 81, 1.0f), *kh = rand_buf(5 * 17, 1.0f), *kw = rand_buf(5 * 17, 1.0f),
              *k7 = rand_buf(5 * 49, 1.0f);
        float y1[2 * 5 * 81], y2[2 * 5 * 81];
        CHECK(need > 0, "workspace query: %s", e.message);
        o = pcn_options_default();
        o.workspace = ws;
        o.workspace_bytes = 16;
        CHECK(pcn_parc(x, kh, kw, k7, y1, s4(2, 5, 9, 9), 17, 17, PCN_NHWC, &o, &e) == PCN_ERR_NOMEM,
              "small workspace: %s", e.message);
        o.workspace_bytes = need;
        CHECK(pcn_parc(x, kh, kw, k7, y1, s4(2, 5, 9, 9), 17, 17, PCN_NHWC, &o, &e) == PCN_OK, "caller workspace: %s",
              e.message);
        CHECK(pcn_parc(x, kh, kw, k7, y2, s4(2, 5, 9, 9), 17, 17, PCN_NHWC, NULL, &e) == PCN_OK, "own: %s", e.message);
        CHECK(memcmp(y1, y2, sizeof y1) == 0, "caller workspace changes the result");
        free(ws);
        free(x);
        free(kh);
        free(kw);
        free(k7);
    }
    CHECK(pcn_depthwise_workspace(s4(1, 1, 4, 4), win1(300, 3, 0, 0), PCN_NCHW, NULL, &e) == 0 &&
              e.code == PCN_ERR_SHAPE,
          "workspace query of a bad shape: %s", e.message);
}

static void test_cost_model(void) {
    double s, d;
    /* stage 0 of tiny: the dense kernel needs ~20x the valid MACs: separable must win */
    CHECK(pcn_parc_path(s4(1, 64, 56, 56), 111, 111, &s, &d) == PCN_PATH_SEPARABLE && d > 10 * s,
          "stage 0 cost model: sep %g dense %g", s, d);
    CHECK(pcn_parc_path(s4(1, 64, 56, 56), 110, 111, NULL, NULL) == PCN_PATH_AUTO, "even K accepted");
    /* the four stage shapes of parcnetv2_tiny: separable (measured 2-4x faster than dense) */
    CHECK(pcn_parc_path(s4(8, 128, 28, 28), 55, 55, NULL, NULL) == PCN_PATH_SEPARABLE, "stage 1");
    CHECK(pcn_parc_path(s4(8, 320, 14, 14), 27, 27, NULL, NULL) == PCN_PATH_SEPARABLE, "stage 2");
    CHECK(pcn_parc_path(s4(8, 512, 7, 7), 13, 13, NULL, NULL) == PCN_PATH_SEPARABLE, "stage 3");
    /* K = 3 on 32 x 32: the 7 x 7 dense kernel is one pass with fewer MACs (measured ~15% faster) */
    CHECK(pcn_parc_path(s4(1, 64, 32, 32), 3, 3, &s, &d) == PCN_PATH_DENSE && d < s, "small K: sep %g dense %g", s, d);
}

int main(void) {
    int ii;
    printf("%s\n", pcn_build_info());
    printf("ISAs run here:");
    for (ii = 0; ii < NISA; ii++)
        if (pcn_isa_available(all_isas[ii])) printf(" %s", pcn_isa_name(all_isas[ii]));
    printf(" (best: %s)\n", pcn_isa_name(pcn_isa_best()));
    /* dense: odd/prime channels, H != W, H = 1, K > input, KH != KW, big padding, tile edges */
    test_dense(2, 3, 5, 7, 3, 3, 1, 1, 1);
    test_dense(1, 5, 9, 4, 7, 7, 3, 3, 0);
    test_dense(1, 17, 6, 11, 5, 3, 0, 4, 1);
    test_dense(1, 2, 1, 13, 1, 5, 0, 2, 1);
    test_dense(1, 3, 4, 4, 9, 9, 4, 4, 0);
    test_dense(1, 4, 7, 19, 11, 2, 7, 0, 1);
    test_dense(1, 3, 3, 3, 1, 1, 5, 6, 1);
    test_dense(2, 19, 9, 53, 13, 13, 6, 6, 0);
    test_dense(1, 33, 5, 5, 3, 7, 1, 3, 1);
    /* oversized conv: K = 2H-1, K < H, K > 2H-1, H = 1, even K (output H+1), KV != KW */
    test_sep(1, 3, 8, 8, 15, 15, 0);
    test_sep(2, 5, 7, 12, 13, 5, 0);
    test_sep(1, 9, 1, 6, 3, 11, 0);
    test_sep(1, 4, 10, 9, 4, 6, 0);
    test_sep(1, 3, 5, 5, 21, 21, 0);
    test_sep(1, 17, 13, 37, 25, 73, 0);
    /* fused ParC op, all paths */
    test_sep(1, 3, 8, 8, 15, 15, 1);
    test_sep(2, 5, 7, 12, 13, 5, 1);
    test_sep(1, 9, 1, 6, 3, 11, 1);
    test_sep(1, 3, 5, 5, 21, 21, 1);
    test_sep(1, 6, 6, 6, 3, 3, 1);
    test_sep(1, 17, 13, 37, 25, 73, 1);
    test_sep(1, 33, 14, 14, 27, 27, 1);
    test_reparam();
    test_errors();
    test_cost_model();
    return CHECK_SUMMARY();
}
