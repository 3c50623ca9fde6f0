/*
 * ops.c - public entry points: argument validation, error messages, workspace, threads (OpenMP),
 * the cost model and reparameterization (spec clauses 5, 6, 7 and 12). Kernels: kernels_impl.h.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "pcn_model_internal.h"

#define PCN_STR2(x) #x
#define PCN_STR(x)  PCN_STR2(x)
#define ALIGN       64

pcn_status pcn_fail(pcn_error *err, pcn_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

pcn_status pcn_ok(pcn_error *err) {
    if (err) {
        err->code = PCN_OK;
        err->message[0] = '\0';
    }
    return PCN_OK;
}

const char *pcn_version(void) {
    return PCN_STR(PCN_VERSION_MAJOR) "." PCN_STR(PCN_VERSION_MINOR) "." PCN_STR(PCN_VERSION_PATCH);
}

const char *pcn_build_info(void) {
    return "parcnetv2 " PCN_STR(PCN_VERSION_MAJOR) "." PCN_STR(PCN_VERSION_MINOR) "." PCN_STR(
        PCN_VERSION_PATCH) "; isa: scalar"
#ifdef PCN_HAVE_X86
                           " avx2 avx512"
#endif
#ifdef PCN_HAVE_NEON
                           " neon"
#endif
#ifdef _OPENMP
                           "; openmp"
#else
                           "; serial"
#endif
        ;
}

const char *pcn_status_name(pcn_status code) {
    switch (code) {
    case PCN_OK: return "ok";
    case PCN_ERR_NULL: return "null pointer";
    case PCN_ERR_SHAPE: return "invalid shape";
    case PCN_ERR_OVERFLOW: return "size overflow";
    case PCN_ERR_NOMEM: return "out of memory or workspace too small";
    case PCN_ERR_ISA: return "ISA not available";
    case PCN_ERR_ARG: return "invalid argument";
    case PCN_ERR_FILE: return "file error";
    case PCN_ERR_FORMAT: return "invalid weights file format";
    case PCN_ERR_WEIGHTS: return "weights do not fit the model";
    case PCN_ERR_BUSY: return "plan busy";
    }
    return "unknown status";
}

const char *pcn_isa_name(pcn_isa isa) {
    switch (isa) {
    case PCN_ISA_AUTO: return "auto";
    case PCN_ISA_SCALAR: return "scalar";
    case PCN_ISA_AVX2: return "avx2";
    case PCN_ISA_AVX512: return "avx512";
    case PCN_ISA_NEON: return "neon";
    case PCN_ISA_COUNT: break;
    }
    return "unknown";
}

int pcn_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

pcn_options pcn_options_default(void) {
    pcn_options o;
    memset(&o, 0, sizeof o);
    o.threads = 0;
    o.isa = PCN_ISA_AUTO;
    o.path = PCN_PATH_AUTO;
    return o;
}

/* ------------------------------------------------------------------ validation */

/* Range checks of every option field (shared with the fused kernels, fused.c). */
pcn_status pcn_check_option_values(const pcn_options *opt, pcn_error *err) {
    pcn_isa isa = opt ? opt->isa : PCN_ISA_AUTO;
    if ((int)isa < PCN_ISA_AUTO || (int)isa > PCN_ISA_NEON)
        return pcn_fail(err, PCN_ERR_ARG, "options.isa = %d is not a pcn_isa value", (int)isa);
    if (opt && (opt->nchw_kernel < 0 || opt->nchw_kernel > 2))
        return pcn_fail(err, PCN_ERR_ARG, "options.nchw_kernel = %d is not 0 (auto), 1 (plane) or 2 (slab)",
                        opt->nchw_kernel);
    if (opt && ((int)opt->path < PCN_PATH_AUTO || (int)opt->path > PCN_PATH_DENSE))
        return pcn_fail(err, PCN_ERR_ARG, "options.path = %d is not a pcn_path value", (int)opt->path);
    if (opt && opt->threads > PCN_MAX_THREADS)
        return pcn_fail(err, PCN_ERR_ARG, "options.threads = %d is more than PCN_MAX_THREADS = %d", opt->threads,
                        PCN_MAX_THREADS);
    if (opt && opt->workspace == NULL && opt->workspace_bytes != 0)
        return pcn_fail(err, PCN_ERR_NULL, "options.workspace is NULL but workspace_bytes = %zu", opt->workspace_bytes);
    return PCN_OK;
}

static pcn_status check_options(const pcn_options *opt, const pcn_kernels **k, pcn_error *err) {
    pcn_isa isa = opt ? opt->isa : PCN_ISA_AUTO;
    pcn_status st = pcn_check_option_values(opt, err);
    if (st != PCN_OK) return st;
    *k = pcn_select_kernels(isa);
    if (*k == NULL)
        return pcn_fail(err, PCN_ERR_ISA, "ISA %s is not available in this build or on this CPU", pcn_isa_name(isa));
    return PCN_OK;
}

static pcn_status check_tensor(size_t N, size_t C, size_t H, size_t W, pcn_layout layout, const char *op,
                               pcn_error *err) {
    size_t n;
    if (layout != PCN_NCHW && layout != PCN_NHWC)
        return pcn_fail(err, PCN_ERR_ARG, "%s: layout = %d is neither PCN_NCHW nor PCN_NHWC", op, (int)layout);
    if (N == 0 || C == 0 || H == 0 || W == 0)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: every size must be >= 1, got N=%zu C=%zu H=%zu W=%zu", op, N, C, H, W);
    if (pcn_mul4_ovf(N, C, H, W, &n) || n > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: tensor N=%zu C=%zu H=%zu W=%zu is too large", op, N, C, H, W);
    return PCN_OK;
}

static pcn_status check_kernel(size_t k, const char *name, const char *op, int odd, pcn_error *err) {
    if (k < 1 || k > PCN_MAX_KERNEL)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: %s = %zu must be in 1..%d", op, name, k, PCN_MAX_KERNEL);
    if (odd && k % 2 == 0)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: %s = %zu must be odd so that the kernel centres align", op, name, k);
    return PCN_OK;
}

/* Output length of a stride-1 conv: n + 2p - k + 1, or 0 when empty/overflowing. */
static size_t out_len(size_t n, size_t p, size_t k) {
    size_t t;
    if (pcn_mul_ovf(p, 2, &t) || pcn_add_ovf(t, n, &t) || pcn_add_ovf(t, 1, &t) || t <= k) return 0;
    return t - k;
}

/* ------------------------------------------------------------------ workspace and threads */

static size_t round_up(size_t v) {
    return (v + ALIGN - 1) / ALIGN * ALIGN;
}

typedef struct plan {
    size_t scratch_bytes; /* per thread */
    size_t units;
    int threads;
    size_t total;
} plan;

int pcn_requested_threads(const pcn_options *opt) {
#ifdef _OPENMP
    int t = (opt && opt->threads > 0) ? opt->threads : omp_get_max_threads();
    return t < 1 ? 1 : t;
#else
    (void)opt;
    return 1;
#endif
}

/* NCHW kernel route (options.nchw_kernel): the plane kernels vectorize along W, the channel-slab
 * kernels along C after gathering VL planes. Measured (README), the slab route wins whenever a
 * row is short compared with a few vectors; "auto" uses planes only for wide rows. */
#define PCN_NCHW_PLANE_MIN_VECTORS 6

static void choose_route(pcn_job *job, const pcn_kernels *k, const pcn_options *opt) {
    int mode = opt ? opt->nchw_kernel : 0;
    if (job->layout == PCN_NHWC)
        job->slab = 1;
    else if (mode == 1)
        job->slab = 0;
    else if (mode == 2)
        job->slab = 1;
    else
        job->slab = k->vl > 1 && job->W < (ptrdiff_t)k->vl * PCN_NCHW_PLANE_MIN_VECTORS;
}

static pcn_status make_plan(const pcn_kernels *k, pcn_job *job, const pcn_options *opt, plan *p, const char *op,
                            pcn_error *err) {
    size_t sf, t;
    int nt = pcn_requested_threads(opt);
    choose_route(job, k, opt);
    sf = k->scratch_floats(job);
    if (sf == PCN_SIZE_BAD || pcn_mul_ovf(sf, sizeof(float), &t) || t > PCN_MAX_ELEMS * sizeof(float))
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: workspace size overflows", op);
    p->scratch_bytes = round_up(t);
    p->units = k->units(job);
    if ((size_t)nt > p->units) nt = (int)p->units;
    if (nt < 1) nt = 1;
    /* a caller workspace bounds the thread count (results do not depend on it) */
    if (opt && opt->workspace) {
        size_t fit = opt->workspace_bytes > ALIGN ? (opt->workspace_bytes - ALIGN) / p->scratch_bytes : 0;
        if (fit < 1)
            return pcn_fail(err, PCN_ERR_NOMEM, "%s: workspace of %zu bytes is too small (need >= %zu)", op,
                            opt->workspace_bytes, p->scratch_bytes + ALIGN);
        if ((size_t)nt > fit) nt = (int)fit;
    }
    p->threads = nt;
    if (pcn_mul_ovf(p->scratch_bytes, (size_t)nt, &t) || pcn_add_ovf(t, ALIGN, &p->total))
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: workspace size overflows", op);
    return PCN_OK;
}

/* Run a job: the units split statically over the threads, each with its own scratch. */
static void execute(const pcn_kernels *k, const pcn_job *job, const plan *p, unsigned char *base) {
#ifdef _OPENMP
    if (p->threads > 1) {
#pragma omp parallel num_threads(p->threads)
        {
            size_t tid = (size_t)omp_get_thread_num(), nth = (size_t)omp_get_num_threads();
            size_t chunk = p->units / nth, rem = p->units % nth;
            size_t u0 = tid * chunk + (tid < rem ? tid : rem);
            size_t u1 = u0 + chunk + (tid < rem ? 1 : 0);
            k->run(job, u0, u1, (float *)(void *)(base + tid * p->scratch_bytes));
        }
        return;
    }
#endif
    k->run(job, 0, p->units, (float *)(void *)base);
}

/* Workspace: the caller's, or allocated here (once per call, never inside kernels). */
static unsigned char *acquire(const pcn_options *opt, const plan *p, void **owned) {
    uintptr_t a;
    unsigned char *raw;
    *owned = NULL;
    if (opt && opt->workspace) {
        raw = (unsigned char *)opt->workspace;
    } else {
        raw = (unsigned char *)malloc(p->total);
        if (!raw) return NULL;
        *owned = raw;
    }
    a = ((uintptr_t)raw + ALIGN - 1) / ALIGN * ALIGN;
    return (unsigned char *)a;
}

/* ------------------------------------------------------------------ dense depthwise conv */

static pcn_status setup_dense(pcn_job *j, size_t N, size_t C, size_t H, size_t W, size_t KH, size_t KW, size_t PH,
                              size_t PW, pcn_layout layout, pcn_error *err) {
    const char *op = "pcn_depthwise";
    size_t OH, OW, n;
    pcn_status st;
    if ((st = check_tensor(N, C, H, W, layout, op, err)) != PCN_OK) return st;
    if ((st = check_kernel(KH, "KH", op, 0, err)) != PCN_OK) return st;
    if ((st = check_kernel(KW, "KW", op, 0, err)) != PCN_OK) return st;
    if (PH > PCN_MAX_ELEMS || PW > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: padding PH=%zu PW=%zu is too large", op, PH, PW);
    OH = out_len(H, PH, KH);
    OW = out_len(W, PW, KW);
    if (OH == 0 || OW == 0)
        return pcn_fail(err, PCN_ERR_SHAPE,
                        "%s: kernel %zux%zu does not fit the padded input %zux%zu (H=%zu W=%zu PH=%zu PW=%zu)", op, KH,
                        KW, H + 2 * PH, W + 2 * PW, H, W, PH, PW);
    if (pcn_mul4_ovf(N, C, OH, OW, &n) || n > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: output N=%zu C=%zu OH=%zu OW=%zu is too large", op, N, C, OH, OW);
    memset(j, 0, sizeof *j);
    j->kind = PCN_JOB_DENSE;
    j->layout = layout;
    j->N = (ptrdiff_t)N;
    j->C = (ptrdiff_t)C;
    j->H = (ptrdiff_t)H;
    j->W = (ptrdiff_t)W;
    j->OH = (ptrdiff_t)OH;
    j->OW = (ptrdiff_t)OW;
    j->KH = (ptrdiff_t)KH;
    j->KW = (ptrdiff_t)KW;
    j->PH = (ptrdiff_t)PH;
    j->PW = (ptrdiff_t)PW;
    return PCN_OK;
}

/* The window of a depthwise call: stride 1 (clause 12.1). */
static pcn_status check_stride1(pcn_window win, const char *op, pcn_error *err) {
    if (win.sh != 1 || win.sw != 1)
        return pcn_fail(err, PCN_ERR_ARG, "%s: window stride %zux%zu must be 1x1 (stride-1 convolutions only)", op,
                        win.sh, win.sw);
    return PCN_OK;
}

pcn_status pcn_depthwise_shape(pcn_shape4 shape, pcn_window window, pcn_shape4 *PCN_RESTRICT out,
                               pcn_error *PCN_RESTRICT err) {
    pcn_job j;
    pcn_status st;
    memset(&j, 0, sizeof j);
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "pcn_depthwise_shape: out is NULL");
    if ((st = check_stride1(window, "pcn_depthwise", err)) ||
        (st = setup_dense(&j, shape.n, shape.c, shape.h, shape.w, window.kh, window.kw, window.ph, window.pw, PCN_NCHW,
                          err)))
        return st;
    out->n = shape.n;
    out->c = shape.c;
    out->h = (size_t)j.OH;
    out->w = (size_t)j.OW;
    return pcn_ok(err);
}

size_t pcn_depthwise_workspace(pcn_shape4 shape, pcn_window window, pcn_layout layout,
                               const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    pcn_job j;
    plan p;
    const pcn_kernels *k;
    pcn_options o = opt ? *opt : pcn_options_default();
    o.workspace = NULL;
    o.workspace_bytes = 0;
    if (check_options(&o, &k, err) || check_stride1(window, "pcn_depthwise", err) ||
        setup_dense(&j, shape.n, shape.c, shape.h, shape.w, window.kh, window.kw, window.ph, window.pw, layout, err) ||
        make_plan(k, &j, &o, &p, "pcn_depthwise", err))
        return 0;
    pcn_ok(err);
    return p.total;
}

pcn_status pcn_depthwise(const float *PCN_RESTRICT x, const float *PCN_RESTRICT w, const float *PCN_RESTRICT bias,
                         float *PCN_RESTRICT y, pcn_shape4 shape, pcn_window window, pcn_layout layout,
                         const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    pcn_job j;
    plan p;
    const pcn_kernels *k;
    pcn_status st;
    void *owned;
    unsigned char *base;
    if (!x || !w || !y) return pcn_fail(err, PCN_ERR_NULL, "pcn_depthwise: %s is NULL", !x ? "x" : !w ? "w" : "y");
    if ((st = check_options(opt, &k, err)) != PCN_OK) return st;
    if ((st = check_stride1(window, "pcn_depthwise", err)) != PCN_OK) return st;
    if ((st = setup_dense(&j, shape.n, shape.c, shape.h, shape.w, window.kh, window.kw, window.ph, window.pw, layout,
                          err)) != PCN_OK)
        return st;
    if ((st = make_plan(k, &j, opt, &p, "pcn_depthwise", err)) != PCN_OK) return st;
    j.x = x;
    j.y = y;
    j.w_raw = w;
    j.bias_raw = bias;
    base = acquire(opt, &p, &owned);
    if (!base) return pcn_fail(err, PCN_ERR_NOMEM, "pcn_depthwise: cannot allocate %zu bytes of workspace", p.total);
    execute(k, &j, &p, base);
    free(owned);
    return pcn_ok(err);
}

/* ------------------------------------------------------------------ separable OC (+ DW7) */

static pcn_status setup_separable(pcn_job *j, size_t N, size_t C, size_t H, size_t W, size_t KV, size_t KW,
                                  pcn_layout layout, int with_dw7, const char *op, pcn_error *err) {
    pcn_status st;
    size_t n, OH, OW;
    if ((st = check_tensor(N, C, H, W, layout, op, err)) != PCN_OK) return st;
    if ((st = check_kernel(KV, "KV (length of k_h)", op, with_dw7, err)) != PCN_OK) return st;
    if ((st = check_kernel(KW, "KW (length of k_w)", op, with_dw7, err)) != PCN_OK) return st;
    OH = H + 2 * (KV / 2) + 1 - KV;
    OW = W + 2 * (KW / 2) + 1 - KW;
    if (pcn_mul4_ovf(N, C, OH, OW, &n) || n > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: output is too large", op);
    memset(j, 0, sizeof *j);
    j->kind = PCN_JOB_SEPARABLE;
    j->layout = layout;
    j->with_dw7 = with_dw7;
    j->N = (ptrdiff_t)N;
    j->C = (ptrdiff_t)C;
    j->H = (ptrdiff_t)H;
    j->W = (ptrdiff_t)W;
    j->OH = (ptrdiff_t)OH;
    j->OW = (ptrdiff_t)OW;
    j->KH = (ptrdiff_t)KV;
    j->PH = (ptrdiff_t)(KV / 2);
    j->KW = (ptrdiff_t)KW;
    j->PW = (ptrdiff_t)(KW / 2);
    return PCN_OK;
}

pcn_status pcn_oversized_shape(pcn_shape4 shape, size_t KV, size_t KW, pcn_shape4 *PCN_RESTRICT out,
                               pcn_error *PCN_RESTRICT err) {
    pcn_job j;
    pcn_status st;
    memset(&j, 0, sizeof j);
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "pcn_oversized_shape: out is NULL");
    if ((st = setup_separable(&j, shape.n, shape.c, shape.h, shape.w, KV, KW, PCN_NCHW, 0, "pcn_oversized", err)))
        return st;
    out->n = shape.n;
    out->c = shape.c;
    out->h = (size_t)j.OH;
    out->w = (size_t)j.OW;
    return pcn_ok(err);
}

size_t pcn_oversized_workspace(pcn_shape4 shape, size_t KV, size_t KW, pcn_layout layout,
                               const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    pcn_job j;
    plan p;
    const pcn_kernels *k;
    pcn_options o = opt ? *opt : pcn_options_default();
    o.workspace = NULL;
    o.workspace_bytes = 0;
    if (check_options(&o, &k, err) ||
        setup_separable(&j, shape.n, shape.c, shape.h, shape.w, KV, KW, layout, 0, "pcn_oversized", err) ||
        make_plan(k, &j, &o, &p, "pcn_oversized", err))
        return 0;
    pcn_ok(err);
    return p.total;
}

pcn_status pcn_oversized(const float *PCN_RESTRICT x, const float *PCN_RESTRICT k_h, const float *PCN_RESTRICT k_w,
                         float *PCN_RESTRICT y, pcn_shape4 shape, size_t KV, size_t KW, pcn_layout layout,
                         const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_oversized";
    pcn_job j;
    plan p;
    const pcn_kernels *k;
    pcn_status st;
    void *owned;
    unsigned char *base;
    if (!x || !k_h || !k_w || !y)
        return pcn_fail(err, PCN_ERR_NULL, "%s: %s is NULL", op, !x ? "x" : !k_h ? "k_h" : !k_w ? "k_w" : "y");
    if ((st = check_options(opt, &k, err)) != PCN_OK) return st;
    if ((st = setup_separable(&j, shape.n, shape.c, shape.h, shape.w, KV, KW, layout, 0, op, err)) != PCN_OK) return st;
    if ((st = make_plan(k, &j, opt, &p, op, err)) != PCN_OK) return st;
    j.x = x;
    j.y = y;
    j.kh_raw = k_h;
    j.kw_raw = k_w;
    base = acquire(opt, &p, &owned);
    if (!base) return pcn_fail(err, PCN_ERR_NOMEM, "%s: cannot allocate %zu bytes of workspace", op, p.total);
    execute(k, &j, &p, base);
    free(owned);
    return pcn_ok(err);
}

/* ------------------------------------------------------------------ reparameterization */

static void reparam(const float *k_h, const float *k_w, const float *k7, float *out, size_t C, size_t KV, size_t KW) {
    const ptrdiff_t RH = (ptrdiff_t)(KV > 7 ? KV : 7), RW = (ptrdiff_t)(KW > 7 ? KW : 7);
    ptrdiff_t c;
    for (c = 0; c < (ptrdiff_t)C; c++)
        pcn_reparam_channel(k_h + c * (ptrdiff_t)KV, k_w + c * (ptrdiff_t)KW, k7 + c * 49, (ptrdiff_t)KV, (ptrdiff_t)KW,
                            out + c * RH * RW, RW, 1);
}

static pcn_status check_reparameterize(size_t C, size_t KV, size_t KW, const char *op, pcn_error *err) {
    pcn_status st;
    size_t n;
    if (C == 0) return pcn_fail(err, PCN_ERR_SHAPE, "%s: C must be >= 1", op);
    if ((st = check_kernel(KV, "KV (length of k_h)", op, 1, err)) != PCN_OK) return st;
    if ((st = check_kernel(KW, "KW (length of k_w)", op, 1, err)) != PCN_OK) return st;
    if (pcn_mul3_ovf(C, KV > 7 ? KV : 7, KW > 7 ? KW : 7, &n) || n > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: C=%zu is too large", op, C);
    return PCN_OK;
}

pcn_status pcn_reparameterize_shape(size_t C, size_t KV, size_t KW, pcn_shape4 *PCN_RESTRICT out,
                                    pcn_error *PCN_RESTRICT err) {
    pcn_status st;
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "pcn_reparameterize_shape: out is NULL");
    if ((st = check_reparameterize(C, KV, KW, "pcn_reparameterize", err)) != PCN_OK) return st;
    out->n = C;
    out->c = 1;
    out->h = KV > 7 ? KV : 7;
    out->w = KW > 7 ? KW : 7;
    return pcn_ok(err);
}

pcn_status pcn_reparameterize(const float *PCN_RESTRICT k_h, const float *PCN_RESTRICT k_w,
                              const float *PCN_RESTRICT k7, float *PCN_RESTRICT out, size_t C, size_t KV, size_t KW,
                              pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_reparameterize";
    pcn_status st;
    if (!k_h || !k_w || !k7 || !out)
        return pcn_fail(err, PCN_ERR_NULL, "%s: %s is NULL", op, !k_h ? "k_h" : !k_w ? "k_w" : !k7 ? "k7" : "out");
    if ((st = check_reparameterize(C, KV, KW, op, err)) != PCN_OK) return st;
    reparam(k_h, k_w, k7, out, C, KV, KW);
    return pcn_ok(err);
}

/* ------------------------------------------------------------------ cost model and ParC op */

/* Sum over output positions 0..n-1 of the number of kernel taps (length k, padding p) that land
 * on real input: the valid-MAC count along one axis. */
static double valid_taps(size_t n, size_t k, size_t p) {
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        long lo = (long)i - (long)p, hi = lo + (long)k - 1;
        if (lo < 0) lo = 0;
        if (hi > (long)n - 1) hi = (long)n - 1;
        if (hi >= lo) s += (double)(hi - lo + 1);
    }
    return s;
}

/* Cost model (spec clause 12.5), in multiply-add equivalents, per (n, c) plane:
 *   separable = valid MACs of the vertical pass + horizontal pass + DW7  + 2 * PASS * H * W
 *   dense     = valid MACs of the RH x RW reparameterized kernel          +     PASS * H * W
 *               + PREP * RH * RW   (each unit rebuilds its dense kernel from k_h, k_w, k7)
 * PASS and PREP were fitted to measurements on the benchmark machine (README, AVX2). */
#define PCN_PASS_COST 6.0
#define PCN_PREP_COST 20.0

pcn_path pcn_parc_path(pcn_shape4 shape, size_t KV, size_t KW, double *PCN_RESTRICT cost_separable,
                       double *PCN_RESTRICT cost_dense) {
    const size_t N = shape.n, C = shape.c, H = shape.h, W = shape.w;
    double hw, sep, dense;
    size_t RH, RW;
    if (N == 0 || C == 0 || H == 0 || W == 0 || KV < 1 || KW < 1 || KV > PCN_MAX_KERNEL || KW > PCN_MAX_KERNEL ||
        KV % 2 == 0 || KW % 2 == 0 || H > (1u << 30) || W > (1u << 30))
        return PCN_PATH_AUTO;
    RH = KV > 7 ? KV : 7;
    RW = KW > 7 ? KW : 7;
    hw = (double)H * (double)W;
    sep = valid_taps(H, KV, KV / 2) * (double)W + valid_taps(W, KW, KW / 2) * (double)H +
          valid_taps(H, 7, 3) * valid_taps(W, 7, 3) + 2.0 * PCN_PASS_COST * hw;
    sep *= (double)N * (double)C;
    dense = (valid_taps(H, RH, RH / 2) * valid_taps(W, RW, RW / 2) + PCN_PASS_COST * hw +
             PCN_PREP_COST * (double)RH * (double)RW) *
            (double)N * (double)C;
    if (cost_separable) *cost_separable = sep;
    if (cost_dense) *cost_dense = dense;
    return dense < sep ? PCN_PATH_DENSE : PCN_PATH_SEPARABLE;
}

static pcn_status setup_parc(pcn_job *j, size_t N, size_t C, size_t H, size_t W, size_t KV, size_t KW,
                             pcn_layout layout, const pcn_options *opt, pcn_error *err) {
    const char *op = "pcn_parc";
    pcn_path path = opt ? opt->path : PCN_PATH_AUTO;
    pcn_status st;
    if ((st = check_tensor(N, C, H, W, layout, op, err)) != PCN_OK) return st;
    if ((st = check_kernel(KV, "KV (length of k_h)", op, 1, err)) != PCN_OK) return st;
    if ((st = check_kernel(KW, "KW (length of k_w)", op, 1, err)) != PCN_OK) return st;
    if (path == PCN_PATH_AUTO) {
        pcn_shape4 sh;
        sh.n = N, sh.c = C, sh.h = H, sh.w = W;
        path = pcn_parc_path(sh, KV, KW, NULL, NULL);
    }
    if (path == PCN_PATH_DENSE) {
        const size_t RH = KV > 7 ? KV : 7, RW = KW > 7 ? KW : 7;
        if ((st = setup_dense(j, N, C, H, W, RH, RW, RH / 2, RW / 2, layout, err)) != PCN_OK) return st;
        j->reparam = 1;
        j->RKV = (ptrdiff_t)KV;
        j->RKW = (ptrdiff_t)KW;
        return PCN_OK;
    }
    return setup_separable(j, N, C, H, W, KV, KW, layout, 1, op, err);
}

size_t pcn_parc_workspace(pcn_shape4 shape, size_t KV, size_t KW, pcn_layout layout,
                          const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    pcn_job j;
    plan p;
    const pcn_kernels *k;
    pcn_options o = opt ? *opt : pcn_options_default();
    o.workspace = NULL;
    o.workspace_bytes = 0;
    if (check_options(&o, &k, err) || setup_parc(&j, shape.n, shape.c, shape.h, shape.w, KV, KW, layout, &o, err) ||
        make_plan(k, &j, &o, &p, "pcn_parc", err))
        return 0;
    pcn_ok(err);
    return p.total;
}

pcn_status pcn_parc(const float *PCN_RESTRICT x, const float *PCN_RESTRICT k_h, const float *PCN_RESTRICT k_w,
                    const float *PCN_RESTRICT k7, float *PCN_RESTRICT y, pcn_shape4 shape, size_t KV, size_t KW,
                    pcn_layout layout, const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_parc";
    pcn_job j;
    plan p;
    const pcn_kernels *k;
    pcn_status st;
    void *owned;
    unsigned char *base;
    if (!x || !k_h || !k_w || !k7 || !y)
        return pcn_fail(err, PCN_ERR_NULL, "%s: %s is NULL", op,
                        !x     ? "x"
                        : !k_h ? "k_h"
                        : !k_w ? "k_w"
                        : !k7  ? "k7"
                               : "y");
    if ((st = check_options(opt, &k, err)) != PCN_OK) return st;
    if ((st = setup_parc(&j, shape.n, shape.c, shape.h, shape.w, KV, KW, layout, opt, err)) != PCN_OK) return st;
    if ((st = make_plan(k, &j, opt, &p, op, err)) != PCN_OK) return st;
    base = acquire(opt, &p, &owned);
    if (!base) return pcn_fail(err, PCN_ERR_NOMEM, "%s: cannot allocate %zu bytes of workspace", op, p.total);
    j.x = x;
    j.y = y;
    j.kh_raw = k_h;
    j.kw_raw = k_w;
    j.k7_raw = k7;
    execute(k, &j, &p, base);
    free(owned);
    return pcn_ok(err);
}

/* ------------------------------------------------------------------ the model's spatial job */

pcn_status pcn_parc_job_nhwc(pcn_job *job, size_t N, size_t C, size_t H, size_t W, size_t KV, size_t KW, pcn_path path,
                             pcn_error *err) {
    pcn_options o = pcn_options_default();
    pcn_status st;
    o.path = path;
    if ((st = setup_parc(job, N, C, H, W, KV, KW, PCN_NHWC, &o, err)) != PCN_OK) return st;
    job->slab = 1; /* NHWC: channel slabs (choose_route) */
    return PCN_OK;
}
