/*
 * fused.c - entry points of pcn_fused.h (spec clause 15): argument validation, error messages,
 * the thread count and the OpenMP driver of the fused kernels (fused_impl.h), the im2col patch
 * copy of strided convolutions (data movement only, no ISA variants).
 */
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "pcn_fused.h"
#include "pcn_internal.h"

/* rows x cols matrix with leading dimension ld: not NULL, ld >= cols, addressable. */
static pcn_status check_matrix(const char *op, const char *name, const void *p, size_t rows, size_t cols, size_t ld,
                               pcn_error *err) {
    size_t last;
    if (!p) return pcn_fail(err, PCN_ERR_NULL, "%s: %s is NULL", op, name);
    if (ld < cols)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: %s has leading dimension %zu < its %zu columns", op, name, ld, cols);
    if (pcn_mul_ovf(rows - 1, ld, &last) || pcn_add_ovf(last, cols, &last) || last > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: %s (%zu rows, ld %zu) is too large", op, name, rows, ld);
    return PCN_OK;
}

static pcn_status check_sizes(const char *op, size_t rows, size_t C, pcn_error *err) {
    size_t n;
    if (rows == 0 || C == 0)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: rows and C must be >= 1, got rows=%zu C=%zu", op, rows, C);
    if (pcn_mul_ovf(rows, C, &n) || n > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: rows=%zu x C=%zu is too large", op, rows, C);
    return PCN_OK;
}

/* Threads for `work` elements in `units` units: the request, capped by the units and by
 * PCN_FUSED_MIN_WORK elements per thread. */
static int fused_threads(const pcn_options *opt, size_t units, size_t work) {
    size_t nt = (size_t)pcn_requested_threads(opt), by_work = work / PCN_FUSED_MIN_WORK;
    if (nt > units) nt = units;
    if (nt > by_work) nt = by_work;
    return nt < 1 ? 1 : (int)nt;
}

/* Run a validated job: units split statically over the threads (each unit on one thread). */
static pcn_status run(const pcn_fjob *job, size_t work, const pcn_options *opt, const char *op, pcn_error *err) {
    const pcn_isa isa = opt ? opt->isa : PCN_ISA_AUTO;
    const pcn_fused_kernels *k;
    size_t units;
    int nt;
    pcn_status st = pcn_check_option_values(opt, err);
    if (st != PCN_OK) return st;
    k = pcn_select_fused(isa);
    if (!k)
        return pcn_fail(err, PCN_ERR_ISA, "%s: ISA %s is not available in this build or on this CPU", op,
                        pcn_isa_name(isa));
    units = k->units(job);
    nt = fused_threads(opt, units, work);
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            size_t tid = (size_t)omp_get_thread_num(), nth = (size_t)omp_get_num_threads();
            size_t chunk = units / nth, rem = units % nth;
            size_t u0 = tid * chunk + (tid < rem ? tid : rem);
            k->run(job, u0, u0 + chunk + (tid < rem ? 1 : 0));
        }
        return pcn_ok(err);
    }
#endif
    (void)nt;
    k->run(job, 0, units);
    return pcn_ok(err);
}

pcn_status pcn_erf(const float *PCN_RESTRICT x, float *PCN_RESTRICT y, size_t n, const pcn_options *PCN_RESTRICT opt,
                   pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_erf";
    pcn_fjob j;
    pcn_status st;
    if ((st = check_sizes(op, 1, n, err)) || (st = check_matrix(op, "x", x, 1, n, n, err)) ||
        (st = check_matrix(op, "y", y, 1, n, n, err)))
        return st;
    memset(&j, 0, sizeof j);
    j.op = PCN_F_ERF;
    j.rows = 1;
    j.C = (ptrdiff_t)n;
    j.x = x;
    j.y = y;
    return run(&j, n, opt, op, err);
}

/* The common part of the row operations: sizes, x (ldx, x_cols columns) and y (ldy, C). */
static pcn_status setup_rows(pcn_fjob *j, int kind, const char *op, const float *x, size_t ldx, size_t x_cols, float *y,
                             size_t ldy, size_t rows, size_t C, pcn_error *err) {
    pcn_status st;
    if ((st = check_sizes(op, rows, C, err)) || (st = check_matrix(op, "x", x, rows, x_cols, ldx, err)) ||
        (st = check_matrix(op, "y", y, rows, C, ldy, err)))
        return st;
    memset(j, 0, sizeof *j);
    j->op = kind;
    j->rows = (ptrdiff_t)rows;
    j->C = (ptrdiff_t)C;
    j->x = x;
    j->ldx = (ptrdiff_t)ldx;
    j->y = y;
    j->ldy = (ptrdiff_t)ldy;
    return PCN_OK;
}

pcn_status pcn_bias_gelu(const float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT bias, float *PCN_RESTRICT y,
                         size_t ldy, size_t rows, size_t C, const pcn_options *PCN_RESTRICT opt,
                         pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_bias_gelu";
    pcn_fjob j;
    pcn_status st = setup_rows(&j, PCN_F_BIAS_GELU, op, x, ldx, C, y, ldy, rows, C, err);
    if (st) return st;
    j.bias = bias;
    return run(&j, rows * C, opt, op, err);
}

pcn_status pcn_gate(const float *PCN_RESTRICT a, size_t lda, const float *PCN_RESTRICT bias,
                    const float *PCN_RESTRICT s, size_t lds, float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C,
                    const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_gate";
    pcn_fjob j;
    pcn_status st = setup_rows(&j, PCN_F_GATE, op, a, lda, C, y, ldy, rows, C, err);
    if (st || (st = check_matrix(op, "s", s, rows, C, lds, err))) return st;
    j.bias = bias;
    j.s = s;
    j.lds = (ptrdiff_t)lds;
    return run(&j, rows * C, opt, op, err);
}

pcn_status pcn_gelu_gate(const float *PCN_RESTRICT h, size_t ldh, const float *PCN_RESTRICT bias, float *PCN_RESTRICT y,
                         size_t ldy, size_t rows, size_t C, const pcn_options *PCN_RESTRICT opt,
                         pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_gelu_gate";
    pcn_fjob j;
    pcn_status st;
    if (C > PCN_MAX_ELEMS / 2) return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: C=%zu is too large", op, C);
    st = setup_rows(&j, PCN_F_GELU_GATE, op, h, ldh, 2 * C, y, ldy, rows, C, err);
    if (st) return st;
    j.bias = bias;
    return run(&j, rows * C, opt, op, err);
}

pcn_status pcn_layer_norm_general(const float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT w,
                                  float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C, float eps,
                                  const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_layer_norm_general";
    pcn_fjob j;
    pcn_status st = setup_rows(&j, PCN_F_LNG, op, x, ldx, C, y, ldy, rows, C, err);
    if (st || (st = check_matrix(op, "w", w, 1, C, C, err))) return st;
    j.w = w;
    j.eps = eps;
    return run(&j, rows * C, opt, op, err);
}

pcn_status pcn_residual_norm(float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT scale,
                             const float *PCN_RESTRICT branch, size_t ldb, const float *PCN_RESTRICT w,
                             float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C, float eps,
                             const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_residual_norm";
    pcn_fjob j;
    pcn_status st;
    if ((st = check_sizes(op, rows, C, err)) || (st = check_matrix(op, "x", x, rows, C, ldx, err)) ||
        (st = check_matrix(op, "branch", branch, rows, C, ldb, err)) ||
        (w && (st = check_matrix(op, "y", y, rows, C, ldy, err))))
        return st;
    memset(&j, 0, sizeof j);
    j.op = PCN_F_RESIDUAL_NORM;
    j.rows = (ptrdiff_t)rows;
    j.C = (ptrdiff_t)C;
    j.xio = x;
    j.ldx = (ptrdiff_t)ldx;
    j.scale = scale;
    j.s = branch;
    j.lds = (ptrdiff_t)ldb;
    j.w = w;
    j.y = y;
    j.ldy = (ptrdiff_t)ldy;
    j.eps = eps;
    return run(&j, rows * C, opt, op, err);
}

pcn_status pcn_layer_norm(const float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT w,
                          const float *PCN_RESTRICT b, float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C,
                          float eps, const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_layer_norm";
    pcn_fjob j;
    pcn_status st = setup_rows(&j, PCN_F_LN, op, x, ldx, C, y, ldy, rows, C, err);
    if (st || (st = check_matrix(op, "w", w, 1, C, C, err)) || (st = check_matrix(op, "b", b, 1, C, C, err))) return st;
    j.w = w;
    j.bias = b;
    j.eps = eps;
    return run(&j, rows * C, opt, op, err);
}

pcn_status pcn_head(const float *PCN_RESTRICT x, size_t N, size_t HW, size_t C, const float *PCN_RESTRICT norm_w,
                    const float *PCN_RESTRICT norm_b, float eps, const float *PCN_RESTRICT fc_wt,
                    const float *PCN_RESTRICT fc_b, size_t K, float *PCN_RESTRICT features, float *PCN_RESTRICT logits,
                    const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_head";
    pcn_fjob j;
    size_t rows, work;
    pcn_status st;
    if (N == 0 || HW == 0 || K == 0)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: N, HW and K must be >= 1, got N=%zu HW=%zu K=%zu", op, N, HW, K);
    if (pcn_mul_ovf(N, HW, &rows)) return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: N=%zu x HW=%zu is too large", op, N, HW);
    if ((st = check_sizes(op, rows, C, err)) || (st = check_matrix(op, "x", x, rows, C, C, err)) ||
        (st = check_matrix(op, "norm_w", norm_w, 1, C, C, err)) ||
        (st = check_matrix(op, "norm_b", norm_b, 1, C, C, err)) ||
        (st = check_matrix(op, "fc_wt", fc_wt, C, K, K, err)) ||
        (st = check_matrix(op, "features", features, N, C, C, err)) ||
        (st = check_matrix(op, "logits", logits, N, K, K, err)))
        return st;
    memset(&j, 0, sizeof j);
    j.op = PCN_F_POOL_NORM;
    j.rows = (ptrdiff_t)N;
    j.C = (ptrdiff_t)C;
    j.HW = (ptrdiff_t)HW;
    j.K = (ptrdiff_t)K;
    j.x = x;
    j.w = norm_w;
    j.bias = norm_b;
    j.eps = eps;
    j.y = features;
    j.fc_wt = fc_wt;
    j.fc_b = fc_b;
    j.logits = logits;
    if ((st = run(&j, rows * C, opt, op, err)) != PCN_OK) return st;
    j.op = PCN_F_CLASSIFY;
    if (pcn_mul3_ovf(N, C, K, &work)) work = SIZE_MAX; /* only sizes the thread count */
    return run(&j, work, opt, op, err);
}

/* ------------------------------------------------------------------ im2col */

static void im2col_rows(const float *PCN_RESTRICT x, float *PCN_RESTRICT cols, size_t r0, size_t r1, ptrdiff_t C,
                        ptrdiff_t H, ptrdiff_t W, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t SH, ptrdiff_t SW, ptrdiff_t PH,
                        ptrdiff_t PW, ptrdiff_t OH, ptrdiff_t OW, pcn_layout layout, int bias_column) {
    const ptrdiff_t ld = KH * KW * C + bias_column;
    size_t r;
    for (r = r0; r < r1; r++) { /* r = n * OH + oy: one output row of the map */
        const ptrdiff_t n = (ptrdiff_t)r / OH, oy = (ptrdiff_t)r % OH;
        ptrdiff_t ox, ky, kx, c;
        for (ox = 0; ox < OW; ox++) {
            float *row = cols + ((ptrdiff_t)r * OW + ox) * ld;
            for (ky = 0; ky < KH; ky++) {
                const ptrdiff_t iy = oy * SH + ky - PH;
                for (kx = 0; kx < KW; kx++) {
                    const ptrdiff_t ix = ox * SW + kx - PW;
                    const int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
                    if (layout == PCN_NHWC) {
                        float *d = row + (ky * KW + kx) * C;
                        if (inside)
                            memcpy(d, x + ((n * H + iy) * W + ix) * C, sizeof(float) * (size_t)C);
                        else
                            memset(d, 0, sizeof(float) * (size_t)C);
                    } else {
                        for (c = 0; c < C; c++)
                            row[(c * KH + ky) * KW + kx] = inside ? x[((n * C + c) * H + iy) * W + ix] : 0.0f;
                    }
                }
            }
            if (bias_column) row[ld - 1] = 1.0f;
        }
    }
}

/* Validation of pcn_patches (every check before anything is touched): OH, OW, the row count
 * and the leading dimension of cols. */
static pcn_status patches_setup(pcn_shape4 sh, pcn_window win, pcn_layout layout, int bias_column, size_t *OH,
                                size_t *OW, size_t *rows, size_t *ld, pcn_error *err) {
    const char *op = "pcn_patches";
    size_t total, nx;
    if (layout != PCN_NCHW && layout != PCN_NHWC)
        return pcn_fail(err, PCN_ERR_ARG, "%s: layout = %d is neither PCN_NCHW nor PCN_NHWC", op, (int)layout);
    if (bias_column != 0 && bias_column != 1)
        return pcn_fail(err, PCN_ERR_ARG, "%s: bias_column = %d is neither 0 nor 1", op, bias_column);
    if (sh.n == 0 || sh.c == 0 || sh.h == 0 || sh.w == 0 || win.kh == 0 || win.kw == 0 || win.sh == 0 || win.sw == 0)
        return pcn_fail(err, PCN_ERR_SHAPE,
                        "%s: sizes, kernel and stride must be >= 1, got N=%zu C=%zu H=%zu W=%zu kernel=%zux%zu "
                        "stride=%zux%zu",
                        op, sh.n, sh.c, sh.h, sh.w, win.kh, win.kw, win.sh, win.sw);
    if (win.kh > PCN_MAX_KERNEL || win.kw > PCN_MAX_KERNEL || win.ph > PCN_MAX_KERNEL || win.pw > PCN_MAX_KERNEL)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: kernel %zux%zu and padding %zux%zu must be <= %d", op, win.kh, win.kw,
                        win.ph, win.pw, PCN_MAX_KERNEL);
    if (pcn_mul4_ovf(sh.n, sh.c, sh.h, sh.w, &nx) || nx > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: input N=%zu C=%zu H=%zu W=%zu is too large", op, sh.n, sh.c, sh.h,
                        sh.w);
    if (sh.h + 2 * win.ph < win.kh || sh.w + 2 * win.pw < win.kw)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: kernel %zux%zu does not fit the padded input %zux%zu", op, win.kh,
                        win.kw, sh.h + 2 * win.ph, sh.w + 2 * win.pw);
    *OH = (sh.h + 2 * win.ph - win.kh) / win.sh + 1;
    *OW = (sh.w + 2 * win.pw - win.kw) / win.sw + 1;
    if (pcn_mul3_ovf(win.kh, win.kw, sh.c, ld) || pcn_add_ovf(*ld, (size_t)bias_column, ld) ||
        pcn_mul3_ovf(sh.n, *OH, *OW, rows) || pcn_mul_ovf(*rows, *ld, &total) || total > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: the patch matrix is too large", op);
    return PCN_OK;
}

pcn_status pcn_patches_shape(pcn_shape4 shape, pcn_window window, int bias_column, size_t *PCN_RESTRICT rows,
                             size_t *PCN_RESTRICT cols, pcn_error *PCN_RESTRICT err) {
    size_t OH = 0, OW = 0, r = 0, ld = 0;
    pcn_status st;
    if (!rows || !cols) return pcn_fail(err, PCN_ERR_NULL, "pcn_patches_shape: %s is NULL", !rows ? "rows" : "cols");
    if ((st = patches_setup(shape, window, PCN_NCHW, bias_column, &OH, &OW, &r, &ld, err)) != PCN_OK) return st;
    *rows = r;
    *cols = ld;
    return pcn_ok(err);
}

pcn_status pcn_patches(const float *PCN_RESTRICT x, float *PCN_RESTRICT cols, pcn_shape4 shape, pcn_window window,
                       pcn_layout layout, int bias_column, const pcn_options *PCN_RESTRICT opt,
                       pcn_error *PCN_RESTRICT err) {
    const size_t N = shape.n, C = shape.c, H = shape.h, W = shape.w, KH = window.kh, KW = window.kw;
    const size_t SH = window.sh, SW = window.sw, PH = window.ph, PW = window.pw;
    size_t OH = 0, OW = 0, ld = 0, rows = 0;
    int nt;
    pcn_status st;
    if (!x || !cols) return pcn_fail(err, PCN_ERR_NULL, "pcn_patches: %s is NULL", !x ? "x" : "cols");
    if ((st = patches_setup(shape, window, layout, bias_column, &OH, &OW, &rows, &ld, err)) != PCN_OK ||
        (st = pcn_check_option_values(opt, err)) != PCN_OK)
        return st;
    rows = N * OH;
    nt = fused_threads(opt, rows, rows * OW * ld);
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            size_t tid = (size_t)omp_get_thread_num(), nth = (size_t)omp_get_num_threads();
            size_t chunk = rows / nth, rem = rows % nth;
            size_t r0 = tid * chunk + (tid < rem ? tid : rem);
            im2col_rows(x, cols, r0, r0 + chunk + (tid < rem ? 1 : 0), (ptrdiff_t)C, (ptrdiff_t)H, (ptrdiff_t)W,
                        (ptrdiff_t)KH, (ptrdiff_t)KW, (ptrdiff_t)SH, (ptrdiff_t)SW, (ptrdiff_t)PH, (ptrdiff_t)PW,
                        (ptrdiff_t)OH, (ptrdiff_t)OW, layout, bias_column);
        }
        return pcn_ok(err);
    }
#endif
    (void)nt;
    im2col_rows(x, cols, 0, rows, (ptrdiff_t)C, (ptrdiff_t)H, (ptrdiff_t)W, (ptrdiff_t)KH, (ptrdiff_t)KW, (ptrdiff_t)SH,
                (ptrdiff_t)SW, (ptrdiff_t)PH, (ptrdiff_t)PW, (ptrdiff_t)OH, (ptrdiff_t)OW, layout, bias_column);
    return pcn_ok(err);
}
