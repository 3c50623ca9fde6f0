/*
 * test_model.c - C tests of the packed GEMM (pcn_gemm.h), its fused epilogues, the safetensors
 * loader and the C model (pcn_model.h), spec clause 16, on every ISA this CPU runs:
 *   - GEMM against a double-precision reference with clause 11.1's bound c * sqrt(n) * u * m
 *     (c from spec/tolerance.toml through build/pcn_tolerance.h); threads 1, 2, 3 and the row's
 *     position (M) give bit-identical results;
 *   - each fused epilogue equals, bit for bit, the plain GEMM followed by the library's separate
 *     kernel of the same operation (pcn_bias_gelu, pcn_gelu_gate, pcn_residual_norm);
 *   - weights files: valid ones load (F32, F16, BF16, F64, "module." prefixes), hostile or wrong
 *     ones give the right error code;
 *   - the model: threads 1/2/3 and concurrent callers bit-identical, an image's logits do not
 *     depend on its batch position, the kernel modes and paths run, plan and run errors.
 * Exit status 0 when everything passes.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define HAVE_PTHREADS 1
#endif
#include "../src/pcn_internal.h"
#include "pcn_fused.h"
#include "pcn_gemm.h"
#include "pcn_model.h"
#include "pcn_tolerance.h"

#include "check.h"
#include "st_writer.h"

#define U (1.0 / 16777216.0) /* unit roundoff of float32 */

/* ---------------------------------------------------------- GEMM */

static void test_gemm_shape(pcn_isa isa, size_t M, size_t K, size_t N, int transposed, int with_bias) {
    const size_t ldb = (transposed ? K : N) + 3, lda = K + 2, ldc = N + 1;
    float *a = rand_buf(M * lda, 1.0f), *b = rand_buf((transposed ? N : K) * ldb, 1.0f), *bias = rand_buf(N, 1.0f);
    float *c[3], *row = (float *)malloc(ldc * sizeof(float));
    pcn_packed_matrix *pm = NULL;
    pcn_error e;
    size_t i, j, k, t;
    double worst = 0;
    CHECK(pcn_gemm_pack(&pm, b, ldb, transposed, with_bias ? bias : NULL, K, N, isa, &e) == PCN_OK, "pack: %s",
          e.message);
    if (!pm) return;
    CHECK(pcn_gemm_packed_k(pm) == K && pcn_gemm_packed_n(pm) == N, "packed sizes");
    for (t = 0; t < 3; t++) {
        pcn_options o = opts(isa, (int)t + 1);
        c[t] = (float *)calloc(M * ldc, sizeof(float));
        CHECK(pcn_gemm_packed(pm, a, lda, c[t], ldc, M, &o, &e) == PCN_OK, "gemm: %s", e.message);
        if (t)
            CHECK(memcmp(c[0], c[t], M * ldc * sizeof(float)) == 0,
                  "gemm %s M=%zu K=%zu N=%zu: threads 1 and %zu differ", pcn_isa_name(isa), M, K, N, t + 1);
    }
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            double r = with_bias ? bias[j] : 0.0, m = with_bias ? fabs(bias[j]) : 0.0, d, bound;
            for (k = 0; k < K; k++) {
                const double bv = transposed ? b[j * ldb + k] : b[k * ldb + j];
                r += (double)a[i * lda + k] * bv;
                m += fabs((double)a[i * lda + k] * bv);
            }
            d = fabs((double)c[0][i * ldc + j] - r);
            bound = PCN_TOL_FACTOR_C * sqrt((double)(K + 1)) * U * m + FLT_MIN;
            if (d / bound > worst) worst = d / bound;
            if (!(d <= bound)) {
                CHECK(0, "gemm %s M=%zu K=%zu N=%zu (%zu,%zu): got %.9g want %.17g (bound %.3g)", pcn_isa_name(isa), M,
                      K, N, i, j, (double)c[0][i * ldc + j], r, bound);
                i = M;
                break;
            }
        }
    /* a row alone (M = 1) computes exactly what it computes inside M rows */
    {
        pcn_options o = opts(isa, 1);
        const size_t r = M / 2;
        CHECK(pcn_gemm_packed(pm, a + r * lda, lda, row, ldc, 1, &o, &e) == PCN_OK, "gemm row: %s", e.message);
        CHECK(memcmp(row, c[0] + r * ldc, N * sizeof(float)) == 0, "gemm %s M=%zu K=%zu N=%zu: row %zu depends on M",
              pcn_isa_name(isa), M, K, N, r);
    }
    (void)worst;
    for (t = 0; t < 3; t++) free(c[t]);
    pcn_gemm_free(pm);
    free(a);
    free(b);
    free(bias);
    free(row);
}

static void test_gemm_errors(void) {
    float buf[64] = {0};
    pcn_packed_matrix *pm = NULL;
    pcn_options o = pcn_options_default();
    char ws[200];
    pcn_error e;
    CHECK(pcn_gemm_pack(NULL, buf, 4, 0, NULL, 4, 4, PCN_ISA_AUTO, &e) == PCN_ERR_NULL, "pack out NULL");
    CHECK(pcn_gemm_pack(&pm, NULL, 4, 0, NULL, 4, 4, PCN_ISA_AUTO, &e) == PCN_ERR_NULL && !pm, "pack b NULL");
    CHECK(pcn_gemm_pack(&pm, buf, 4, 2, NULL, 4, 4, PCN_ISA_AUTO, &e) == PCN_ERR_ARG, "pack b_transposed 2");
    CHECK(pcn_gemm_pack(&pm, buf, 4, 0, NULL, 0, 4, PCN_ISA_AUTO, &e) == PCN_ERR_SHAPE, "pack K 0");
    CHECK(pcn_gemm_pack(&pm, buf, 3, 0, NULL, 4, 4, PCN_ISA_AUTO, &e) == PCN_ERR_SHAPE && strstr(e.message, "ldb"),
          "pack ldb < N: %s", e.message);
    CHECK(pcn_gemm_pack(&pm, buf, 4, 0, NULL, 4, 4, (pcn_isa)99, &e) == PCN_ERR_ARG, "pack isa 99");
    CHECK(pcn_gemm_pack(&pm, buf, (size_t)1 << 60, 0, NULL, (size_t)1 << 40, 4, PCN_ISA_AUTO, &e) == PCN_ERR_OVERFLOW,
          "pack huge: %s", e.message);
    if (!pcn_isa_available(PCN_ISA_NEON))
        CHECK(pcn_gemm_pack(&pm, buf, 4, 0, NULL, 4, 4, PCN_ISA_NEON, &e) == PCN_ERR_ISA, "pack unavailable isa");
    CHECK(pcn_gemm_pack(&pm, buf, 4, 0, NULL, 4, 4, PCN_ISA_SCALAR, &e) == PCN_OK, "pack");
    CHECK(pcn_gemm_packed(pm, NULL, 4, buf, 4, 1, &o, &e) == PCN_ERR_NULL, "gemm a NULL");
    CHECK(pcn_gemm_packed(pm, buf, 4, buf + 16, 4, 0, &o, &e) == PCN_ERR_SHAPE, "gemm M 0");
    CHECK(pcn_gemm_packed(pm, buf, 3, buf + 16, 4, 1, &o, &e) == PCN_ERR_SHAPE && strstr(e.message, "lda"), "lda < K");
    CHECK(pcn_gemm_packed(pm, buf, 4, buf + 16, 3, 1, &o, &e) == PCN_ERR_SHAPE && strstr(e.message, "ldc"), "ldc < N");
    CHECK(pcn_gemm_packed(pm, buf, 4, buf + 16, 4, SIZE_MAX / 2, &o, &e) == PCN_ERR_OVERFLOW, "M huge");
    o.isa = pcn_isa_best();
    if (o.isa != PCN_ISA_SCALAR)
        CHECK(pcn_gemm_packed(pm, buf, 4, buf + 16, 4, 1, &o, &e) == PCN_ERR_ARG && strstr(e.message, "packed for"),
              "isa mismatch: %s", e.message);
    o = pcn_options_default();
    o.workspace = ws;
    o.workspace_bytes = 16;
    CHECK(pcn_gemm_packed(pm, buf, 4, buf + 16, 4, 1, &o, &e) == PCN_ERR_NOMEM, "workspace too small");
    o.workspace_bytes = sizeof ws;
    CHECK(pcn_gemm_workspace_size(pm, 1, &o, &e) <= sizeof ws, "workspace size %zu",
          pcn_gemm_workspace_size(pm, 1, &o, &e));
    CHECK(pcn_gemm_packed(pm, buf, 4, buf + 16, 4, 1, &o, &e) == PCN_OK, "caller workspace: %s", e.message);
    o.nchw_kernel = 7;
    CHECK(pcn_gemm_packed(pm, buf, 4, buf + 16, 4, 1, &o, &e) == PCN_ERR_ARG, "bad option");
    CHECK(pcn_gemm_workspace_size(NULL, 1, NULL, &e) == 0 && e.code == PCN_ERR_NULL, "workspace NULL");
    pcn_gemm_free(pm);
    pcn_gemm_free(NULL);
}

/* The struct forms (clause 16.5): shape queries refuse before anything is allocated, and the
 * positional forms compute exactly the struct forms' results. */
static void test_struct_forms(void) {
    pcn_shape4 s = {2, 3, 9, 7}, out;
    pcn_window w = {3, 5, 1, 1, 1, 2};
    float *x = rand_buf(2 * 3 * 9 * 7, 1.0f), *wt = rand_buf(3 * 15, 1.0f), *y1, *y2;
    size_t rows, cols;
    pcn_options o = pcn_options_default();
    pcn_error e;
    CHECK(pcn_depthwise_shape(s, w, &out, &e) == PCN_OK && out.n == 2 && out.c == 3 && out.h == 9 && out.w == 7,
          "depthwise shape %zux%zu", out.h, out.w);
    y1 = (float *)malloc(2 * 3 * 9 * 7 * sizeof(float));
    y2 = (float *)malloc(2 * 3 * 9 * 7 * sizeof(float));
    CHECK(pcn_depthwise(x, wt, NULL, y1, s, w, PCN_NHWC, &o, &e) == PCN_OK, "depthwise: %s", e.message);
    CHECK(pcn_depthwise(x, wt, NULL, y2, s4(2, 3, 9, 7), win1(3, 5, 1, 2), PCN_NHWC, &o, &e) == PCN_OK, "dwconv2d");
    CHECK(memcmp(y1, y2, 2 * 3 * 9 * 7 * sizeof(float)) == 0, "struct literal and helper forms differ");
    CHECK(pcn_oversized_shape(s, 4, 6, &out, &e) == PCN_OK && out.n == 2 && out.c == 3 && out.h == 10 && out.w == 8,
          "oversized shape %zux%zu: %s", out.h, out.w, e.message);
    CHECK(pcn_oversized_shape(s, 256, 3, &out, &e) == PCN_ERR_SHAPE && strstr(e.message, "256"), "oversized 256: %s",
          e.message);
    CHECK(pcn_oversized_shape(s, 3, 3, NULL, &e) == PCN_ERR_NULL, "oversized shape NULL");
    o.threads = PCN_MAX_THREADS + 1;
    CHECK(pcn_depthwise(x, wt, NULL, y1, s, w, PCN_NHWC, &o, &e) == PCN_ERR_ARG && strstr(e.message, "PCN_MAX_THREADS"),
          "threads over the limit: %s", e.message);
    CHECK(pcn_erf(x, y1, 4, &o, &e) == PCN_ERR_ARG, "erf threads over the limit: %s", e.message);
    o.threads = PCN_MAX_THREADS;
    CHECK(pcn_erf(x, y1, 4, &o, &e) == PCN_OK, "erf threads at the limit: %s", e.message);
    o.threads = 0;
    w.sh = 2;
    CHECK(pcn_depthwise(x, wt, NULL, y1, s, w, PCN_NHWC, &o, &e) == PCN_ERR_ARG && strstr(e.message, "stride"),
          "depthwise stride 2: %s", e.message);
    w.sh = 1;
    w.kh = 256;
    CHECK(pcn_depthwise_shape(s, w, &out, &e) == PCN_ERR_SHAPE && strstr(e.message, "KH = 256"), "kernel 256: %s",
          e.message);
    w.kh = 3;
    CHECK(pcn_patches_shape(s, w, 1, &rows, &cols, &e) == PCN_OK && rows == 2 * 9 * 7 && cols == 3 * 5 * 3 + 1,
          "patches shape %zu x %zu", rows, cols);
    w.kh = 256;
    CHECK(pcn_patches_shape(s, w, 0, &rows, &cols, &e) == PCN_ERR_SHAPE, "patches kernel 256");
    w.kh = 3;
    w.sw = 0;
    CHECK(pcn_patches_shape(s, w, 0, &rows, &cols, &e) == PCN_ERR_SHAPE && strstr(e.message, "stride"), "stride 0");
    w.sw = 1;
    s.n = SIZE_MAX / 2;
    CHECK(pcn_patches_shape(s, w, 0, &rows, &cols, &e) == PCN_ERR_OVERFLOW, "patches overflow");
    free(x), free(wt), free(y1), free(y2);
}

/* ---------------------------------------------------------- fused epilogues == separate kernels */

/* Runs every unit of a job on one thread (as a plan does, any order gives the same result). */
static void run_job(const pcn_gemm_kernels *k, pcn_gemm_job *j, float *scratch) {
    size_t u, units = pcn_gemm_partition(j, 2);
    for (u = units; u-- > 0;) k->unit(j, u, scratch);
    if (pcn_gemm_rowop_separate(j)) k->rows(j, 0, j->M);
}

static void test_epilogues(pcn_isa isa, size_t M, size_t K, size_t Nh) {
    const pcn_gemm_kernels *k = pcn_select_gemm(isa);
    const size_t N = 2 * Nh;
    float *a = rand_buf(M * K, 1.0f), *w = rand_buf(N * K, 0.5f), *bias = rand_buf(N, 1.0f), *sc = rand_buf(Nh, 1.0f);
    float *nw = rand_buf(Nh, 1.0f), *plain = (float *)malloc(M * N * sizeof(float));
    float *y1 = (float *)malloc(M * Nh * sizeof(float)), *y2 = (float *)malloc(M * Nh * sizeof(float));
    float *r1 = (float *)malloc(M * Nh * sizeof(float)), *r2 = (float *)malloc(M * Nh * sizeof(float));
    float *x0 = rand_buf(M * Nh, 2.0f), *xa = (float *)malloc(M * Nh * sizeof(float));
    float *xb = (float *)malloc(M * Nh * sizeof(float)), *scratch;
    pcn_gemm_b pair, half;
    pcn_packed_matrix *pm = NULL;
    pcn_options o = opts(isa, 1);
    pcn_gemm_job j;
    pcn_error e;
    size_t i;
    pcn_gemm_b_pack(&pair, k, w, (ptrdiff_t)K, 1, bias, (ptrdiff_t)K, (ptrdiff_t)N, 1, &e);
    pcn_gemm_b_pack(&half, k, w, (ptrdiff_t)K, 1, NULL, (ptrdiff_t)K, (ptrdiff_t)Nh, 0, &e);
    pcn_gemm_pack(&pm, w, K, 1, NULL, K, N, isa, &e);
    scratch = (float *)malloc(pcn_gemm_scratch_floats(&pair) * sizeof(float) + 64);
    pcn_gemm_packed(pm, a, K, plain, N, M, &o, &e); /* acc of both halves, no bias */
    /* pwconv1: y1 = acc1 + b1, y2 = GELU(acc2 + b2) */
    memset(&j, 0, sizeof j);
    j.b = &pair;
    j.M = (ptrdiff_t)M;
    j.a = a;
    j.lda = (ptrdiff_t)K;
    j.epi = PCN_EPI_PAIR_SPLIT;
    j.y = y1;
    j.ldy = (ptrdiff_t)Nh;
    j.y2 = y2;
    j.ldy2 = (ptrdiff_t)Nh;
    run_job(k, &j, scratch);
    pcn_bias_gelu(plain + Nh, N, bias + Nh, r2, Nh, M, Nh, &o, &e);
    for (i = 0; i < M * Nh; i++) r1[i] = plain[(i / Nh) * N + i % Nh] + bias[i % Nh];
    CHECK(memcmp(y1, r1, M * Nh * sizeof(float)) == 0 && memcmp(y2, r2, M * Nh * sizeof(float)) == 0,
          "%s pair split M=%zu K=%zu Nh=%zu differs from gemm + pcn_bias_gelu", pcn_isa_name(isa), M, K, Nh);
    /* fc1: y = (acc1 + b1) * GELU(acc2 + b2) */
    j.epi = PCN_EPI_PAIR_GATE;
    run_job(k, &j, scratch);
    pcn_gelu_gate(plain, N, bias, r1, Nh, M, Nh, &o, &e);
    CHECK(memcmp(y1, r1, M * Nh * sizeof(float)) == 0, "%s pair gate M=%zu K=%zu Nh=%zu differs from pcn_gelu_gate",
          pcn_isa_name(isa), M, K, Nh);
    /* pwconv2 / fc2: x = x * scale + acc, then b = LNG(x) * w (fused rows or not) */
    memcpy(xa, x0, M * Nh * sizeof(float));
    memcpy(xb, x0, M * Nh * sizeof(float));
    memset(&j, 0, sizeof j);
    j.b = &half;
    j.M = (ptrdiff_t)M;
    j.a = a;
    j.lda = (ptrdiff_t)K;
    j.epi = PCN_EPI_RESIDUAL;
    j.y = xa;
    j.ldy = (ptrdiff_t)Nh;
    j.scale = sc;
    j.rowop = PCN_ROW_NORM;
    j.n1 = y1;
    j.w1 = nw;
    j.ldn = (ptrdiff_t)Nh;
    j.eps = 1e-6f;
    run_job(k, &j, scratch);
    pcn_gemm_packed(pm, a, K, plain, N, M, &o, &e);
    pcn_residual_norm(xb, Nh, sc, plain, N, nw, r1, Nh, M, Nh, 1e-6f, &o, &e);
    CHECK(memcmp(xa, xb, M * Nh * sizeof(float)) == 0 && memcmp(y1, r1, M * Nh * sizeof(float)) == 0,
          "%s residual + norm M=%zu K=%zu N=%zu differs from gemm + pcn_residual_norm", pcn_isa_name(isa), M, K, Nh);
    pcn_gemm_b_free(&pair);
    pcn_gemm_b_free(&half);
    pcn_gemm_free(pm);
    free(a), free(w), free(bias), free(sc), free(nw), free(plain), free(y1), free(y2), free(r1), free(r2);
    free(x0), free(xa), free(xb), free(scratch);
}

/* ---------------------------------------------------------- weights files */

static const size_t DEPTHS[4] = {1, 1, 2, 1}, DIMS[4] = {8, 16, 24, 32}, KERNELS[4] = {13, 7, 5, 3};

static pcn_status load_bytes(const unsigned char *data, size_t size, pcn_error *e) {
    pcn_model *m = NULL;
    pcn_status st = pcn_model_load_memory(&m, data, size, NULL, e);
    CHECK((st == PCN_OK) == (m != NULL), "model pointer and status agree");
    pcn_model_free(m);
    return st;
}

/* A safetensors file whose header is `json` (padded) followed by `data_len` zero bytes. */
static unsigned char *raw_file(const char *json, size_t data_len, size_t *size) {
    const size_t len = strlen(json);
    unsigned char *out = (unsigned char *)calloc(8 + len + data_len + 1, 1);
    int b;
    for (b = 0; b < 8; b++) out[b] = (unsigned char)((uint64_t)len >> (8 * b));
    memcpy(out + 8, json, len);
    *size = 8 + len + data_len;
    return out;
}

static void expect_header(const char *json, size_t data_len, pcn_status want, const char *what) {
    size_t size;
    unsigned char *f = raw_file(json, data_len, &size);
    pcn_error e;
    pcn_status st = load_bytes(f, size, &e);
    CHECK(st == want, "%s: status %d (%s), want %d", what, (int)st, st ? e.message : "ok", (int)want);
    free(f);
}

static void test_weights_files(void) {
    st_model sm;
    unsigned char *f;
    size_t size, i;
    pcn_error e;
    pcn_model *m = NULL;
    pcn_model_info info;
    char deep[1024];
    st_model_make(&sm, 4, DEPTHS, DIMS, KERNELS, 10, 1);
    f = st_write(sm.t, sm.n, &size);
    CHECK(pcn_model_load_memory(&m, f, size, NULL, &e) == PCN_OK, "valid file: %s", e.message);
    if (m) {
        pcn_model_get_info(m, &info, &e);
        CHECK(info.stages == 4 && info.depths[2] == 2 && info.dims[3] == 32 && info.kernel_sizes[0] == 13 &&
                  info.num_classes == 10,
              "inferred architecture");
        pcn_model_free(m);
    }
    /* truncations and corruptions of a valid file */
    CHECK(load_bytes(f, 7, &e) == PCN_ERR_FORMAT, "7 bytes");
    CHECK(load_bytes(f, size - 1, &e) == PCN_ERR_FORMAT, "one byte short: %s", e.message);
    CHECK(load_bytes(f, 100, &e) == PCN_ERR_FORMAT, "header cut");
    f[8] = '[';
    CHECK(load_bytes(f, size, &e) == PCN_ERR_FORMAT, "not an object");
    f[8] = '{';
    f[0] = 0xFF, f[1] = 0xFF, f[2] = 0xFF, f[3] = 0x7F;
    CHECK(load_bytes(f, size, &e) == PCN_ERR_FORMAT && strstr(e.message, "header length"), "huge header length");
    free(f);
    /* names: a "module." prefix is stripped; a missing, an extra and a misshapen tensor */
    for (i = 0; i < sm.n; i++) {
        char t[96];
        snprintf(t, sizeof t, "module.%s", sm.t[i].name);
        strcpy(sm.t[i].name, t);
    }
    f = st_write(sm.t, sm.n, &size);
    CHECK(load_bytes(f, size, &e) == PCN_OK, "module. prefix: %s", e.message);
    free(f);
    for (i = 0; i < sm.n; i++) memmove(sm.t[i].name, sm.t[i].name + 7, strlen(sm.t[i].name + 7) + 1);
    f = st_write(sm.t, sm.n - 1, &size); /* head.bias missing */
    CHECK(load_bytes(f, size, &e) == PCN_ERR_WEIGHTS && strstr(e.message, "missing keys (1): head.bias"), "missing: %s",
          e.message);
    free(f);
    strcpy(sm.t[5].name, "stages.0.0.norm9.weight");
    f = st_write(sm.t, sm.n, &size);
    CHECK(load_bytes(f, size, &e) == PCN_ERR_WEIGHTS && strstr(e.message, "unexpected keys (1): stages.0.0.norm9"),
          "unexpected: %s", e.message);
    free(f);
    st_model_free(&sm);
    st_model_make(&sm, 4, DEPTHS, DIMS, KERNELS, 10, 1);
    sm.t[sm.n - 2].shape[1] = 31; /* head.weight (10, 31) */
    sm.t[sm.n - 2].count = 310;
    f = st_write(sm.t, sm.n, &size);
    CHECK(load_bytes(f, size, &e) == PCN_ERR_WEIGHTS && strstr(e.message, "head.weight has shape (10, 31)"),
          "shape: %s", e.message);
    free(f);
    st_model_free(&sm);
    st_model_make(&sm, 4, DEPTHS, DIMS, KERNELS, 10, 1);
    strcpy(sm.t[3].dtype, "I32");
    f = st_write(sm.t, sm.n, &size);
    CHECK(load_bytes(f, size, &e) == PCN_ERR_WEIGHTS && strstr(e.message, "I32"), "int dtype: %s", e.message);
    free(f);
    st_model_free(&sm);
    /* hostile headers (the data section sized to the declared tensors where that matters) */
    expect_header("{}", 0, PCN_ERR_WEIGHTS, "no tensors");
    expect_header("{}", 4, PCN_ERR_FORMAT, "data nobody declares");
    expect_header(
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
        "\"data_offsets\":[4,8]}}",
        8, PCN_ERR_FORMAT, "duplicate name");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"module.a\":{\"dtype\":\"F32\","
                  "\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, PCN_ERR_FORMAT, "names colliding after the prefix");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, PCN_ERR_FORMAT, "short data");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, PCN_ERR_FORMAT, "gap");
    expect_header(
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
        "\"data_offsets\":[0,4]}}",
        4, PCN_ERR_FORMAT, "overlap");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, PCN_ERR_FORMAT,
                  "float size");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, PCN_ERR_FORMAT, "negative");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999999],\"data_offsets\":[0,4]}}", 4,
                  PCN_ERR_FORMAT, "huge number");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                  PCN_ERR_FORMAT, "overflowing product");
    expect_header("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PCN_ERR_FORMAT, "dtype");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, PCN_ERR_FORMAT, "no offsets");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"__metadata__\":{\"k\":1}}", 4,
                  PCN_ERR_FORMAT, "metadata value not a string");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, PCN_ERR_FORMAT,
                  "extra data");
    expect_header("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PCN_ERR_FORMAT,
                  "not UTF-8");
    expect_header("{\"stages.0.99999999999.norm1.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"downsample_layers.0.conv.weight\":{\"dtype\":\"F32\",\"shape\":[2,3,7,7],\"data_offsets\":[4,"
                  "1180]},\"head.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[1180,1188]}}",
                  1188, PCN_ERR_WEIGHTS, "a huge block index");
    for (i = 0; i < 500; i++) deep[i] = '[';
    deep[500] = '\0';
    {
        char json[1200];
        snprintf(json, sizeof json, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":%s}}", deep);
        expect_header(json, 4, PCN_ERR_FORMAT, "deep nesting");
    }
    /* files */
    CHECK(pcn_model_load_file(&m, "/nonexistent/weights.safetensors", NULL, &e) == PCN_ERR_FILE && !m, "missing file");
#if defined(__unix__)
    CHECK(pcn_model_load_file(&m, "/", NULL, &e) == PCN_ERR_FILE, "a directory");
    CHECK(pcn_model_load_file(&m, "/dev/zero", NULL, &e) == PCN_ERR_FILE, "a device: %s", e.message);
#endif
    {
        pcn_model_options mo = pcn_model_options_default();
        mo.oversized = PCN_OVERSIZED_SIZE;
        mo.oversized_size = 4;
        CHECK(pcn_model_load_memory(&m, "x", 1, &mo, &e) == PCN_ERR_ARG && strstr(e.message, "odd"), "even size");
        mo.oversized = (pcn_oversized_mode)7;
        CHECK(pcn_model_load_memory(&m, "x", 1, &mo, &e) == PCN_ERR_ARG, "bad mode");
        CHECK(pcn_model_from_tensors(&m, NULL, 1, NULL, &e) == PCN_ERR_NULL, "tensors NULL");
        CHECK(pcn_model_load_memory(NULL, "x", 1, NULL, &e) == PCN_ERR_NULL, "out NULL");
    }
}

/* ---------------------------------------------------------- the model */

static pcn_model *make_model(const st_model *sm, pcn_isa isa, pcn_oversized_mode mode, size_t size, int dtype_f64) {
    pcn_tensor *t = (pcn_tensor *)calloc(sm->n, sizeof *t);
    double **d = (double **)calloc(sm->n, sizeof *d);
    pcn_model_options mo = pcn_model_options_default();
    pcn_model *m = NULL;
    pcn_error e;
    size_t i, k;
    for (i = 0; i < sm->n; i++) {
        t[i].name = sm->t[i].name;
        t[i].ndim = sm->t[i].ndim;
        for (k = 0; k < sm->t[i].ndim; k++) t[i].shape[k] = sm->t[i].shape[k];
        if (dtype_f64) { /* exactly the float32 values, as float64 */
            d[i] = (double *)malloc(sizeof(double) * (sm->t[i].count + 1));
            for (k = 0; k < sm->t[i].count; k++) d[i][k] = sm->t[i].data[k];
            t[i].dtype = PCN_DTYPE_F64;
            t[i].data = d[i];
        } else {
            t[i].dtype = PCN_DTYPE_F32;
            t[i].data = sm->t[i].data;
        }
    }
    mo.isa = isa;
    mo.oversized = mode;
    mo.oversized_size = size;
    CHECK(pcn_model_from_tensors(&m, t, sm->n, &mo, &e) == PCN_OK, "from_tensors: %s", e.message);
    for (i = 0; i < sm->n; i++) free(d[i]);
    free(d);
    free(t);
    return m;
}

static float *run_model(pcn_model *m, pcn_shape4 in, const float *x, int threads, pcn_path path) {
    pcn_plan_options po = pcn_plan_options_default();
    pcn_plan *p = NULL;
    pcn_model_info info;
    pcn_error e;
    float *y;
    pcn_model_get_info(m, &info, &e);
    y = (float *)malloc(sizeof(float) * in.n * info.num_classes);
    po.max_threads = 3;
    po.path = path;
    CHECK(pcn_plan_create(&p, m, in, &po, &e) == PCN_OK, "plan: %s", e.message);
    if (!p) return y;
    CHECK(pcn_plan_run(p, x, in.n * in.c * in.h * in.w, y, in.n * info.num_classes, threads, &e) == PCN_OK, "run: %s",
          e.message);
    pcn_plan_free(p);
    return y;
}

static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if (fabs((double)a[i] - b[i]) > d) d = fabs((double)a[i] - b[i]);
        if (fabs((double)b[i]) > s) s = fabs((double)b[i]);
    }
    return d / s;
}

/* The reader of test_reader: tensors[index]'s float32 data, counting the calls per tensor. */
typedef struct reader_ctx {
    const st_model *sm;
    size_t calls[512];
    int fail_at; /* index whose read fails, or -1 */
} reader_ctx;
static int read_tensor_data(void *context, size_t index, void *data, size_t bytes) {
    reader_ctx *r = (reader_ctx *)context;
    r->calls[index]++;
    if ((int)index == r->fail_at || bytes != r->sm->t[index].count * sizeof(float)) return 1;
    memcpy(data, r->sm->t[index].data, bytes);
    return 0;
}

/* pcn_model_from_reader: each tensor read exactly once, the model equal to pcn_model_from_tensors',
 * a failing read refused with *out NULL. */
static void test_reader(void) {
    static const size_t dims[4] = {8, 16, 24, 32};
    st_model sm;
    reader_ctx r;
    pcn_tensor *t;
    pcn_model *a = NULL, *b = NULL;
    pcn_error e;
    pcn_shape4 in = {2, 3, 21, 17};
    float *x = rand_buf(2 * 3 * 21 * 17, 1.0f), *ya, *yb;
    size_t i, k, once = 0;
    st_model_make(&sm, 4, DEPTHS, dims, KERNELS, 10, 9);
    t = (pcn_tensor *)calloc(sm.n, sizeof *t);
    for (i = 0; i < sm.n; i++) {
        t[i].name = sm.t[i].name;
        t[i].dtype = PCN_DTYPE_F32;
        t[i].ndim = sm.t[i].ndim;
        for (k = 0; k < sm.t[i].ndim; k++) t[i].shape[k] = sm.t[i].shape[k];
        t[i].data = sm.t[i].data;
    }
    CHECK(pcn_model_from_tensors(&a, t, sm.n, NULL, &e) == PCN_OK, "from_tensors: %s", e.message);
    for (i = 0; i < sm.n; i++) t[i].data = NULL; /* ignored by the reader form */
    memset(&r, 0, sizeof r);
    r.sm = &sm;
    r.fail_at = -1;
    CHECK(pcn_model_from_reader(&b, t, sm.n, read_tensor_data, &r, NULL, &e) == PCN_OK, "from_reader: %s", e.message);
    for (i = 0; i < sm.n; i++) once += r.calls[i] == 1;
    CHECK(once == sm.n, "each tensor read once: %zu of %zu", once, sm.n);
    if (a && b) {
        ya = run_model(a, in, x, 2, PCN_PATH_AUTO);
        yb = run_model(b, in, x, 2, PCN_PATH_AUTO);
        CHECK(memcmp(ya, yb, 2 * 10 * sizeof(float)) == 0, "reader and tensors models differ");
        free(yb);
        { /* the step barrier's two ways of waiting: sleep at once, spin a whole second */
            static const int spins[2] = {-1, 1000000};
            int q;
            for (q = 0; q < 2; q++) {
                pcn_plan_options po = pcn_plan_options_default();
                pcn_plan *p = NULL;
                float y[20];
                po.max_threads = 3;
                po.spin_us = spins[q];
                CHECK(pcn_plan_create(&p, a, in, &po, &e) == PCN_OK, "plan spin %d: %s", spins[q], e.message);
                CHECK(p && pcn_plan_run(p, x, 2 * 3 * 21 * 17, y, 20, 3, &e) == PCN_OK, "run spin %d", spins[q]);
                CHECK(p && memcmp(y, ya, sizeof y) == 0, "spin %d changes the logits", spins[q]);
                pcn_plan_free(p);
            }
        }
        free(ya);
    }
    pcn_model_free(b);
    b = (pcn_model *)&r;
    r.fail_at = (int)(sm.n / 2);
    CHECK(pcn_model_from_reader(&b, t, sm.n, read_tensor_data, &r, NULL, &e) == PCN_ERR_FILE && b == NULL &&
              strstr(e.message, "reader"),
          "failing reader: %s", e.message);
    CHECK(pcn_model_from_reader(&b, t, sm.n, NULL, &r, NULL, &e) == PCN_ERR_NULL && b == NULL, "NULL reader");
    t[0].shape[0]++; /* checked before anything is read */
    memset(r.calls, 0, sizeof r.calls);
    CHECK(pcn_model_from_reader(&b, t, sm.n, read_tensor_data, &r, NULL, &e) == PCN_ERR_WEIGHTS && r.calls[0] == 0,
          "wrong shape: %s", e.message);
    pcn_model_free(a);
    free(t);
    free(x);
    st_model_free(&sm);
}

#ifdef HAVE_PTHREADS
typedef struct caller {
    pcn_model *m;
    pcn_shape4 in;
    const float *x, *want;
    size_t n;
    int ok;
} caller;
static void *call_model(void *arg) {
    caller *c = (caller *)arg;
    int r;
    c->ok = 1;
    for (r = 0; r < 3; r++) {
        float *y = run_model(c->m, c->in, c->x, 2, PCN_PATH_AUTO);
        c->ok &= memcmp(y, c->want, c->n * sizeof(float)) == 0;
        free(y);
    }
    return NULL;
}
#endif

static void test_model(pcn_isa isa, const size_t *dims, pcn_shape4 in) {
    st_model sm;
    pcn_model *m, *m64;
    float *x, *y[3], *one;
    const size_t classes = 10, nx = in.n * 3 * in.h * in.w, per = 3 * in.h * in.w;
    size_t i, t;
    st_model_make(&sm, 4, DEPTHS, dims, KERNELS, classes, 3);
    m = make_model(&sm, isa, PCN_OVERSIZED_FIXED, 0, 0);
    m64 = make_model(&sm, isa, PCN_OVERSIZED_FIXED, 0, 1);
    if (!m || !m64) {
        st_model_free(&sm);
        return;
    }
    x = rand_buf(nx, 1.0f);
    for (t = 0; t < 3; t++) y[t] = run_model(m, in, x, (int)t + 1, PCN_PATH_AUTO);
    CHECK(memcmp(y[0], y[1], in.n * classes * 4) == 0 && memcmp(y[0], y[2], in.n * classes * 4) == 0,
          "model %s dims %zu..: threads 1, 2, 3 differ", pcn_isa_name(isa), dims[0]);
    free(y[1]);
    y[1] = run_model(m64, in, x, 2, PCN_PATH_AUTO);
    CHECK(memcmp(y[0], y[1], in.n * classes * 4) == 0, "model %s: float64 weights of float32 values differ",
          pcn_isa_name(isa));
    /* each image of the batch alone */
    for (i = 0; i < in.n; i++) {
        pcn_shape4 one_in = in;
        one_in.n = 1;
        one = run_model(m, one_in, x + i * per, 2, PCN_PATH_AUTO);
        CHECK(memcmp(one, y[0] + i * classes, classes * 4) == 0, "model %s: image %zu alone differs from its batch",
              pcn_isa_name(isa), i);
        free(one);
    }
    /* the dense path: another float32 evaluation, within clause 11.3's tolerance */
    free(y[2]);
    y[2] = run_model(m, in, x, 2, PCN_PATH_DENSE);
    CHECK(rel_diff(y[2], y[0], in.n * classes) <= PCN_TOL_RELATIVE_FLOAT32, "model %s: dense path off by %.3g",
          pcn_isa_name(isa), rel_diff(y[2], y[0], in.n * classes));
#ifdef HAVE_PTHREADS
    {
        pthread_t th[4];
        caller c[4];
        for (t = 0; t < 4; t++) {
            c[t].m = m;
            c[t].in = in;
            c[t].x = x;
            c[t].want = y[0];
            c[t].n = in.n * classes;
            pthread_create(&th[t], NULL, call_model, &c[t]);
        }
        for (t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            CHECK(c[t].ok, "model %s: concurrent caller %zu differs", pcn_isa_name(isa), t);
        }
    }
#endif
    for (t = 0; t < 3; t++) free(y[t]);
    free(x);
    pcn_model_free(m);
    pcn_model_free(m64);
    st_model_free(&sm);
}

static void test_modes_and_errors(void) {
    static const size_t dims[4] = {8, 16, 24, 32};
    st_model sm;
    pcn_model *m;
    pcn_plan *p = NULL;
    pcn_plan_options po = pcn_plan_options_default();
    pcn_plan_info pi;
    pcn_error e;
    pcn_shape4 in = {2, 3, 37, 29};
    float *x = rand_buf(2 * 3 * 37 * 29, 1.0f), y[20];
    int mode;
    st_model_make(&sm, 4, DEPTHS, dims, KERNELS, 10, 5);
    for (mode = 0; mode < 3; mode++) {
        m = make_model(&sm, PCN_ISA_AUTO, (pcn_oversized_mode)mode, 5, 0);
        if (!m) continue;
        CHECK(pcn_plan_create(&p, m, in, NULL, &e) == PCN_OK, "mode %d plan: %s", mode, e.message);
        pcn_plan_get_info(p, &pi, &e);
        CHECK(pi.map_h[0] == 9 && pi.map_w[0] == 7, "maps %zux%zu", pi.map_h[0], pi.map_w[0]);
        CHECK(pi.kernel_h[0] == (mode == 0   ? 13
                                 : mode == 1 ? 17
                                             : 5) &&
                  pi.kernel_w[0] == (mode == 0   ? 13
                                     : mode == 1 ? 13
                                                 : 5),
              "mode %d kernel %zux%zu", mode, pi.kernel_h[0], pi.kernel_w[0]);
        CHECK(pcn_plan_run(p, x, 2 * 3 * 37 * 29, y, 20, 0, &e) == PCN_OK, "mode %d run: %s", mode, e.message);
        CHECK(pcn_plan_run(p, x, 2 * 3 * 37 * 29 - 1, y, 20, 0, &e) == PCN_ERR_SHAPE && strstr(e.message, "x_count"),
              "x_count");
        CHECK(pcn_plan_run(p, x, 2 * 3 * 37 * 29, y, 19, 0, &e) == PCN_ERR_SHAPE, "logits_count");
        CHECK(pcn_plan_run(p, x, 2 * 3 * 37 * 29, y, 20, pi.max_threads + 1, &e) == PCN_ERR_ARG, "threads > max");
        CHECK(pcn_plan_run(p, NULL, 2 * 3 * 37 * 29, y, 20, 0, &e) == PCN_ERR_NULL, "x NULL");
        pcn_plan_free(p);
        p = NULL;
        if (mode == 1) { /* interpolate=True on a 130-row map needs 259 taps: refused, nothing allocated */
            pcn_shape4 big = {1, 3, 520, 16};
            CHECK(pcn_plan_create(&p, m, big, NULL, &e) == PCN_ERR_SHAPE && strstr(e.message, "at most 255"),
                  "kernel over 255: %s", e.message);
        }
        {
            pcn_shape4 bad = in;
            bad.c = 4;
            CHECK(pcn_plan_create(&p, m, bad, NULL, &e) == PCN_ERR_SHAPE, "C = 4");
            bad = in;
            bad.h = 2;
            CHECK(pcn_plan_create(&p, m, bad, NULL, &e) == PCN_ERR_SHAPE, "H = 2");
            bad = in;
            bad.n = 0;
            CHECK(pcn_plan_create(&p, m, bad, NULL, &e) == PCN_ERR_SHAPE, "N = 0");
            bad.n = SIZE_MAX / 4;
            CHECK(pcn_plan_create(&p, m, bad, NULL, &e) == PCN_ERR_OVERFLOW, "N huge");
            po.path = (pcn_path)9;
            CHECK(pcn_plan_create(&p, m, in, &po, &e) == PCN_ERR_ARG, "bad path");
            po.path = PCN_PATH_AUTO;
            po.max_threads = PCN_MAX_THREADS + 1;
            CHECK(pcn_plan_create(&p, m, in, &po, &e) == PCN_ERR_ARG && !p, "max_threads over the limit");
            po.max_threads = 0;
            po.spin_us = 1000001;
            CHECK(pcn_plan_create(&p, m, in, &po, &e) == PCN_ERR_ARG && !p, "spin_us over a second");
            po.spin_us = 0;
            CHECK(pcn_plan_create(&p, NULL, in, &po, &e) == PCN_ERR_NULL && !p, "model NULL");
        }
        pcn_model_free(m);
    }
    free(x);
    st_model_free(&sm);
}

int main(void) {
    static const pcn_isa isas[] = {PCN_ISA_SCALAR, PCN_ISA_AVX2, PCN_ISA_AVX512, PCN_ISA_NEON};
    static const size_t shapes[][3] = {{1, 1, 1},      {7, 3, 5},     {13, 17, 33}, {49, 64, 80},  {30, 160, 64},
                                       {100, 64, 130}, {12, 300, 48}, {2, 77, 257}, {61, 128, 256}};
    static const size_t dims_tail[4] = {8, 16, 24, 32}, dims_full[4] = {32, 48, 64, 80};
    pcn_shape4 in = {3, 3, 35, 29}, in1 = {1, 3, 24, 40};
    size_t s, ii;
    printf("%s\n", pcn_build_info());
    test_gemm_errors();
    test_struct_forms();
    test_weights_files();
    test_modes_and_errors();
    test_reader();
    for (ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        if (!pcn_isa_available(isas[ii])) continue;
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            test_gemm_shape(isas[ii], shapes[s][0], shapes[s][1], shapes[s][2], (int)(s % 2), s % 3 != 0);
        test_epilogues(isas[ii], 37, 48, 40);
        test_epilogues(isas[ii], 5, 7, 3);
        test_model(isas[ii], dims_tail, in);
        test_model(isas[ii], dims_full, in1);
        printf("%s: done\n", pcn_isa_name(isas[ii]));
    }
    return CHECK_SUMMARY();
}
