/*
 * plan.c - plans and the forward pass of the C model (spec clause 16.3): per input shape, every
 * buffer, prepared kernel and bound job of clause 15.2's data flow, then one OpenMP parallel
 * region per run that executes the steps in order with a barrier between them.
 *
 * Steps (activations are NHWC matrices of P = N*H*W rows by C columns):
 *   image    x (NCHW) -> img, NHWC with the stem's zero padding around each image
 *   stem     GEMM over the implicit im2col of img (7 segments of 7*3 floats per row) + bias -> t;
 *            rows: x = LNG(t) * post_norm, b = LNG(x) * (the next layer's input norm)
 *   block    pwconv1: GEMM b -> h = acc + b1[:C], g = GELU(acc + b1[C:])       (paired panels)
 *            spatial: t = h * (OC(g) + DW7(g))                                 (gate in the store)
 *            pwconv2: GEMM t -> x = x * scale1 + acc; rows: b = LNG(x) * norm2
 *            fc1:     GEMM b -> m = (acc + f1[:2.5C]) * GELU(acc + f1[2.5C:])   (paired panels)
 *            fc2:     GEMM m -> x = x * scale2 + acc; rows: b = LNG(x) * (the next input norm)
 *   down     GEMM over the implicit im2col of b (9 segments of C floats, a zero row for the
 *            padding) + bias -> x; rows: b = LNG(x) * (the next input norm)
 *   head     mean over H, W and LayerNorm per image; then the classifier into the caller's logits
 * The numerics of every step are those of the engine's C kernels (clause 15.3); the GEMMs are
 * gemm_impl.h's.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* syscall(SYS_futex), clock_gettime */
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "pcn_model_internal.h"

/* The step barrier of a run (below): spin, then sleep on a futex. Linux with GCC/Clang atomics;
 * elsewhere the OpenMP barrier (whose waiting is the OpenMP runtime's OMP_WAIT_POLICY). */
#if defined(_OPENMP) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define PCN_STEP_BARRIER 1
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define ALIGN          64
#define ROWS_PER_UNIT  16 /* rows of a separate row operation per work unit */
#define IMAGE_MAX_SIDE ((size_t)1 << 20)

enum { STEP_IMAGE = 1, STEP_GEMM, STEP_ROWS, STEP_SPATIAL, STEP_POOL, STEP_CLASSIFY, STEP_CHAIN };

/* A block's pwconv2, fc1 and fc2 depend on each other only row by row: with many row tiles and
 * weights that stay in L2, one step runs the three GEMMs per block of row tiles (STEP_CHAIN), so
 * the rows stay in cache and two barriers go. */
#define CHAIN_MAX_WEIGHT_BYTES ((size_t)1 << 20)
#define CHAIN_UNITS_PER_THREAD 8

typedef struct step {
    int kind;
    size_t units;
    pcn_gemm_job gemm;     /* GEMM, ROWS */
    pcn_gemm_job chain[3]; /* CHAIN: pwconv2, fc1, fc2 with one row partition */
    pcn_job conv;          /* SPATIAL */
    pcn_fjob fjob;         /* POOL, CLASSIFY */
} step;

struct pcn_plan {
    const pcn_model *model;
    pcn_plan_info info;
    step *steps;
    size_t nsteps;
    void *arena;       /* every buffer, one allocation */
    const float **ind; /* indirection tables of the implicit im2col */
    float *img;        /* padded NHWC input */
    size_t hp, wp;     /* padded image size */
    float *scratch;    /* per-thread scratch, scratch_floats each */
    size_t scratch_floats;
    const float *x; /* the running call's input */
    int busy;
    /* the step barrier: arrivals of the current generation, the generation, sleeping threads */
    int bar_count, bar_gen, bar_sleepers;
    double spin_seconds; /* how long a thread waits actively at a step barrier before it sleeps */
};

pcn_plan_options pcn_plan_options_default(void) {
    pcn_plan_options o;
    memset(&o, 0, sizeof o);
    o.max_threads = 0;
    o.path = PCN_PATH_AUTO;
    return o;
}

/* ------------------------------------------------------------------ kernels of the input size */

void pcn_resize_kernel(const float *k, size_t K, float *out, size_t size) {
    /* reference.oversized.resize_kernel in float32: src = float32(K-1)/float32(size-1) * t,
     * lo = min(floor(src), K-1), hi = min(lo+1, K-1), out = k[lo]*(1-f) + k[hi]*f, f = src - lo */
    const float scale = size > 1 ? (float)(K - 1) / (float)(size - 1) : 0.0f;
    size_t t;
    for (t = 0; t < size; t++) {
        const float src = scale * (float)t;
        size_t lo = (size_t)src, hi;
        float frac;
        if (lo > K - 1) lo = K - 1;
        hi = lo + 1 < K - 1 ? lo + 1 : K - 1;
        frac = src - (float)lo;
        out[t] = k[lo] * (1.0f - frac) + k[hi] * frac;
    }
}

/* Taps of the kernel a map of `map` rows (columns) uses (clauses 5.1-5.3), then cropped to the
 * 2*map - 1 central taps, the only ones that reach the map. */
static size_t resized_length(const pcn_model *m, size_t stored, size_t map) {
    switch (m->info.oversized) {
    case PCN_OVERSIZED_INTERPOLATE: return 2 * map - 1;
    case PCN_OVERSIZED_SIZE: return m->info.oversized_size;
    default: return stored;
    }
}
static size_t used_length(const pcn_model *m, size_t stored, size_t map) {
    const size_t r = resized_length(m, stored, map);
    return r > 2 * map - 1 ? 2 * map - 1 : r;
}

/* The kernels (C, L) one map size uses, from the stored (C, K) ones, into out (C * L floats). */
static void prepare_kernels(const pcn_model *m, const float *stored, size_t C, size_t K, size_t map, float *out,
                            float *tmp) {
    const size_t R = resized_length(m, K, map), L = used_length(m, K, map), off = (R - L) / 2;
    size_t c;
    for (c = 0; c < C; c++) {
        const float *k = stored + c * K;
        if (m->info.oversized != PCN_OVERSIZED_FIXED) {
            pcn_resize_kernel(k, K, tmp, R);
            k = tmp;
        }
        memcpy(out + c * L, k + off, L * sizeof(float));
    }
}

/* ------------------------------------------------------------------ sizes */

typedef struct layout_t {
    size_t N, H[PCN_MAX_STAGES], W[PCN_MAX_STAGES], P[PCN_MAX_STAGES];
    size_t KV[PCN_MAX_STAGES], KW[PCN_MAX_STAGES];
    pcn_path path[PCN_MAX_STAGES];
} layout_t;

/* Bump allocator over one arena: offsets first (size pass), pointers second. */
typedef struct bump {
    unsigned char *base;
    size_t used;
    int ovf;
} bump;

static void *take(bump *b, size_t count, size_t size) {
    size_t bytes, at = (b->used + ALIGN - 1) / ALIGN * ALIGN;
    if (pcn_mul_ovf(count, size, &bytes) || pcn_add_ovf(at, bytes, &b->used)) {
        b->ovf = 1;
        return NULL;
    }
    return b->base ? b->base + at : NULL;
}

/* ------------------------------------------------------------------ building the steps */

typedef struct bufs {
    float *x, *b, *h, *g, *t, *m, *feat, *zero;
    float *kern; /* prepared kernels */
} bufs;

static step *add(step *steps, size_t *n, int kind) {
    step *s = &steps[(*n)++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

/* A GEMM step (plus a separate row step when its units do not cover whole rows). */
static void add_gemm(step *steps, size_t *n, const pcn_gemm_job *j, int threads) {
    step *s = add(steps, n, STEP_GEMM);
    s->gemm = *j;
    s->units = pcn_gemm_partition(&s->gemm, threads);
    if (pcn_gemm_rowop_separate(&s->gemm)) {
        step *r = add(steps, n, STEP_ROWS);
        r->gemm = s->gemm;
        r->units = (size_t)((j->M + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT);
    }
}

/* The LayerNormGeneral weight of the layer after position (stage i, block j) - the next block's
 * norm1 or the next downsampling's pre_norm - or NULL before the head (clause 15.2, step 10).
 * *to_down is set when that layer is a downsampling: its input then goes to a buffer the next
 * GEMM does not read (t, or after a downsampling the one it did not read), because a GEMM's
 * fused row operation writes while other tiles still read their input. */
static const float *next_norm(const pcn_model *m, size_t i, size_t j, int *to_down) {
    *to_down = 0;
    if (j + 1 < m->info.depths[i]) return m->blocks[i][j + 1].norm1;
    if (i + 1 < m->info.stages) {
        *to_down = 1;
        return m->pre_norm[i + 1];
    }
    return NULL;
}
/* ... and at the start of stage i (after its stem or downsampling): its first block's norm1. */
static const float *stage_input_norm(const pcn_model *m, size_t i, int *to_down) {
    if (m->info.depths[i]) {
        *to_down = 0;
        return m->blocks[i][0].norm1;
    }
    return next_norm(m, i, 0, to_down);
}

static size_t tiles_of(size_t rows, const pcn_model *m) {
    return (rows + (size_t)m->gemm->mr - 1) / (size_t)m->gemm->mr;
}

static void set_rowop(pcn_gemm_job *j, float *n1, float *n2, const float *w1, const float *w2, ptrdiff_t ld) {
    j->n1 = n1;
    j->n2 = n2;
    j->w1 = w1;
    j->w2 = w2;
    j->ldn = ld;
    j->eps = PCN_ARCH_NORM_EPS;
    j->rowop = !w1 ? PCN_ROW_NONE : w2 ? PCN_ROW_NORM2 : PCN_ROW_NORM;
}

/* Fill the steps and indirection tables (pointer pass; bf holds the arena's buffers). */
static pcn_status build_steps(pcn_plan *p, const layout_t *L, const bufs *bf, int threads, pcn_error *err) {
    const pcn_model *m = p->model;
    const size_t N = L->N, S = m->info.stages;
    size_t i, j, n, oy, ox, t, steps = 0, kern_used = 0;
    int to_down, chain;
    const float *w;
    pcn_gemm_job g3[3], *jobs;
    float *down_in = NULL; /* the input buffer of the next downsampling: t, or b after a downsampling */
    const float **ind = p->ind;
    pcn_gemm_job g;
    step *s;
    /* image */
    s = add(p->steps, &steps, STEP_IMAGE);
    s->units = N * p->info.input.h;
    /* stem: rows (n, oy, ox), segments ky of 7 pixels x 3 channels of the padded image */
    memset(&g, 0, sizeof g);
    g.b = &m->stem;
    g.M = (ptrdiff_t)L->P[0];
    g.ind = ind;
    g.ks = PCN_ARCH_STEM_KERNEL;
    g.kc = PCN_ARCH_STEM_KERNEL * PCN_ARCH_IN_CHANS;
    for (n = 0; n < N; n++)
        for (oy = 0; oy < L->H[0]; oy++)
            for (ox = 0; ox < L->W[0]; ox++)
                for (t = 0; t < PCN_ARCH_STEM_KERNEL; t++)
                    *ind++ =
                        p->img + ((n * p->hp + oy * PCN_ARCH_STEM_STRIDE + t) * p->wp + ox * PCN_ARCH_STEM_STRIDE) *
                                     PCN_ARCH_IN_CHANS;
    g.epi = PCN_EPI_STORE;
    g.y = bf->t;
    g.ldy = (ptrdiff_t)m->info.dims[0];
    w = stage_input_norm(m, 0, &to_down);
    set_rowop(&g, bf->x, to_down ? bf->t : bf->b, m->post_norm, w, g.ldy); /* row-local: t may be reused */
    down_in = bf->t;
    add_gemm(p->steps, &steps, &g, threads);
    for (i = 0; i < S; i++) {
        const size_t C = m->info.dims[i], H = L->H[i], W = L->W[i], P = L->P[i];
        float *kh = NULL, *kw = NULL;
        if (i > 0) { /* downsampling: 3x3 stride 2 padding 1 over b (N, H', W', C') */
            const size_t Ci = m->info.dims[i - 1], Hi = L->H[i - 1], Wi = L->W[i - 1];
            size_t ky, kx;
            memset(&g, 0, sizeof g);
            g.b = &m->down[i];
            g.M = (ptrdiff_t)P;
            g.ind = ind;
            g.ks = PCN_ARCH_DOWN_KERNEL * PCN_ARCH_DOWN_KERNEL;
            g.kc = (ptrdiff_t)Ci;
            for (n = 0; n < N; n++)
                for (oy = 0; oy < H; oy++)
                    for (ox = 0; ox < W; ox++)
                        for (ky = 0; ky < PCN_ARCH_DOWN_KERNEL; ky++)
                            for (kx = 0; kx < PCN_ARCH_DOWN_KERNEL; kx++) {
                                const ptrdiff_t iy =
                                    (ptrdiff_t)(oy * PCN_ARCH_DOWN_STRIDE + ky) - PCN_ARCH_DOWN_PADDING;
                                const ptrdiff_t ix =
                                    (ptrdiff_t)(ox * PCN_ARCH_DOWN_STRIDE + kx) - PCN_ARCH_DOWN_PADDING;
                                const int inside = iy >= 0 && iy < (ptrdiff_t)Hi && ix >= 0 && ix < (ptrdiff_t)Wi;
                                *ind++ = inside ? down_in + ((n * Hi + (size_t)iy) * Wi + (size_t)ix) * Ci : bf->zero;
                            }
            g.epi = PCN_EPI_STORE;
            g.y = bf->x;
            g.ldy = (ptrdiff_t)C;
            w = stage_input_norm(m, i, &to_down);
            /* the norm goes to b for a block, else to the buffer this GEMM does not read; a block
             * after a downsampling that read b gets its norm after all of this GEMM's tiles */
            g.rows_apart = !to_down && down_in == bf->b;
            if (to_down) down_in = down_in == bf->t ? bf->b : bf->t;
            set_rowop(&g, to_down ? down_in : bf->b, NULL, w, NULL, g.ldy);
            add_gemm(p->steps, &steps, &g, threads);
        }
        if (!m->info.depths[i]) continue;
        for (j = 0; j < m->info.depths[i]; j++) {
            const pcn_block_w *bw = &m->blocks[i][j];
            const size_t K = m->info.kernel_sizes[i];
            pcn_status st;
            /* the kernels of this input size (clause 5), or the stored ones as they are */
            if (m->info.oversized == PCN_OVERSIZED_FIXED && L->KV[i] == K && L->KW[i] == K) {
                kh = (float *)(uintptr_t)bw->kh;
                kw = (float *)(uintptr_t)bw->kw;
            } else {
                kh = bf->kern + kern_used;
                kw = kh + C * L->KV[i];
                kern_used += C * (L->KV[i] + L->KW[i]);
                prepare_kernels(m, bw->kh, C, K, H, kh, p->scratch);
                prepare_kernels(m, bw->kw, C, K, W, kw, p->scratch);
            }
            /* pwconv1 */
            memset(&g, 0, sizeof g);
            g.b = &bw->pw1;
            g.M = (ptrdiff_t)P;
            g.a = bf->b;
            g.lda = (ptrdiff_t)C;
            g.epi = PCN_EPI_PAIR_SPLIT;
            g.y = bf->h;
            g.ldy = (ptrdiff_t)C;
            g.y2 = bf->g;
            g.ldy2 = (ptrdiff_t)C;
            add_gemm(p->steps, &steps, &g, threads);
            /* spatial, gated */
            s = add(p->steps, &steps, STEP_SPATIAL);
            st = pcn_parc_job_nhwc(&s->conv, N, C, H, W, L->KV[i], L->KW[i], L->path[i], err);
            if (st != PCN_OK) return st;
            s->conv.x = bf->g;
            s->conv.y = bf->t;
            s->conv.gate = bf->h;
            s->conv.kh_raw = kh;
            s->conv.kw_raw = kw;
            s->conv.k7_raw = bw->k7;
            s->units = m->conv->units(&s->conv);
            /* pwconv2 + residual + norm2, fc1 + gate, fc2 + residual + the next norm: one chained
             * step (rows in cache, no barrier between them) or three */
            {
                const size_t tiles = tiles_of(P, m);
                const size_t wbytes =
                    (bw->pw2.Kp * bw->pw2.N + bw->fc1.Kp * bw->fc1.N + bw->fc2.Kp * bw->fc2.N) * sizeof(float);
                chain = wbytes <= CHAIN_MAX_WEIGHT_BYTES && tiles >= 4 * (size_t)threads;
            }
            if (chain) {
                s = add(p->steps, &steps, STEP_CHAIN);
                jobs = s->chain;
            } else {
                jobs = g3;
            }
            memset(jobs, 0, 3 * sizeof *jobs);
            jobs[0].b = &bw->pw2;
            jobs[0].M = (ptrdiff_t)P;
            jobs[0].a = bf->t;
            jobs[0].lda = (ptrdiff_t)C;
            jobs[0].epi = PCN_EPI_RESIDUAL;
            jobs[0].y = bf->x;
            jobs[0].ldy = (ptrdiff_t)C;
            jobs[0].scale = bw->scale1;
            set_rowop(&jobs[0], bf->b, NULL, bw->norm2, NULL, (ptrdiff_t)C);
            jobs[1].b = &bw->fc1;
            jobs[1].M = (ptrdiff_t)P;
            jobs[1].a = bf->b;
            jobs[1].lda = (ptrdiff_t)C;
            jobs[1].epi = PCN_EPI_PAIR_GATE;
            jobs[1].y = bf->m;
            jobs[1].ldy = (ptrdiff_t)(PCN_ARCH_MLP_RATIO * C / 2);
            jobs[2].b = &bw->fc2;
            jobs[2].M = (ptrdiff_t)P;
            jobs[2].a = bf->m;
            jobs[2].lda = (ptrdiff_t)(PCN_ARCH_MLP_RATIO * C / 2);
            jobs[2].epi = PCN_EPI_RESIDUAL;
            jobs[2].y = bf->x;
            jobs[2].ldy = (ptrdiff_t)C;
            jobs[2].scale = bw->scale2;
            w = next_norm(m, i, j, &to_down);
            /* chained, other row blocks still read t: a downsampling's input goes to g */
            down_in = chain ? bf->g : bf->t;
            set_rowop(&jobs[2], to_down ? down_in : bf->b, NULL, w, NULL, (ptrdiff_t)C);
            if (chain) {
                /* one row partition for the three GEMMs */
                const ptrdiff_t tb = (ptrdiff_t)(tiles_of(P, m) / ((size_t)threads * CHAIN_UNITS_PER_THREAD));
                size_t q;
                for (q = 0; q < 3; q++) s->units = pcn_gemm_row_blocks(&jobs[q], tb);
            } else {
                add_gemm(p->steps, &steps, &jobs[0], threads);
                add_gemm(p->steps, &steps, &jobs[1], threads);
                add_gemm(p->steps, &steps, &jobs[2], threads);
            }
        }
    }
    /* head */
    {
        const size_t C = m->info.dims[S - 1];
        s = add(p->steps, &steps, STEP_POOL);
        s->fjob.op = PCN_F_POOL_NORM;
        s->fjob.rows = (ptrdiff_t)N;
        s->fjob.C = (ptrdiff_t)C;
        s->fjob.HW = (ptrdiff_t)(L->H[S - 1] * L->W[S - 1]);
        s->fjob.x = bf->x;
        s->fjob.y = bf->feat;
        s->fjob.w = m->norm_w;
        s->fjob.bias = m->norm_b;
        s->fjob.eps = PCN_ARCH_NORM_EPS;
        s->units = N;
        s = add(p->steps, &steps, STEP_CLASSIFY);
        s->fjob.op = PCN_F_CLASSIFY;
        s->fjob.rows = (ptrdiff_t)N;
        s->fjob.C = (ptrdiff_t)C;
        s->fjob.K = (ptrdiff_t)m->info.num_classes;
        s->fjob.y = bf->feat;
        s->fjob.fc_wt = m->head_wt;
        s->fjob.fc_b = m->head_b;
        s->units = m->fused->units(&s->fjob);
    }
    p->nsteps = steps;
    return PCN_OK;
}

/* ------------------------------------------------------------------ create, run, free */

static pcn_status plan_layout(const pcn_model *m, pcn_shape4 in, const pcn_plan_options *o, layout_t *L,
                              pcn_error *err) {
    const char *op = "pcn_plan_create";
    size_t i, h = in.h, w = in.w, n;
    memset(L, 0, sizeof *L);
    if (in.c != PCN_ARCH_IN_CHANS)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: input must be NCHW (N, %d, H, W), got C = %zu", op, PCN_ARCH_IN_CHANS,
                        in.c);
    if (in.n < 1) return pcn_fail(err, PCN_ERR_SHAPE, "%s: input batch N must be >= 1, got %zu", op, in.n);
    if (in.h < 3 || in.w < 3)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: input must be at least 3x3 for the 7x7/4 stem, got %zux%zu", op, in.h,
                        in.w);
    if (in.h > IMAGE_MAX_SIDE || in.w > IMAGE_MAX_SIDE || pcn_mul4_ovf(in.n, in.c, in.h + 8, in.w + 8, &n) ||
        n > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: input (%zu, %zu, %zu, %zu) is too large", op, in.n, in.c, in.h,
                        in.w);
    L->N = in.n;
    h = (h + 2 * PCN_ARCH_STEM_PADDING - PCN_ARCH_STEM_KERNEL) / PCN_ARCH_STEM_STRIDE + 1;
    w = (w + 2 * PCN_ARCH_STEM_PADDING - PCN_ARCH_STEM_KERNEL) / PCN_ARCH_STEM_STRIDE + 1;
    for (i = 0; i < m->info.stages; i++) {
        if (i > 0) {
            h = (h + 2 * PCN_ARCH_DOWN_PADDING - PCN_ARCH_DOWN_KERNEL) / PCN_ARCH_DOWN_STRIDE + 1;
            w = (w + 2 * PCN_ARCH_DOWN_PADDING - PCN_ARCH_DOWN_KERNEL) / PCN_ARCH_DOWN_STRIDE + 1;
        }
        L->H[i] = h;
        L->W[i] = w;
        L->P[i] = in.n * h * w;
        if (m->info.depths[i]) {
            const size_t K = m->info.kernel_sizes[i];
            L->KV[i] = used_length(m, K, h);
            L->KW[i] = used_length(m, K, w);
            if (L->KV[i] > PCN_MAX_KERNEL || L->KW[i] > PCN_MAX_KERNEL)
                return pcn_fail(err, PCN_ERR_SHAPE,
                                "%s: stage %zu needs oversized kernels of %zux%zu taps on its %zux%zu map; the C "
                                "library takes at most %d (the oversized mode needs a smaller input)",
                                op, i, L->KV[i], L->KW[i], h, w, PCN_MAX_KERNEL);
            if (o->path != PCN_PATH_AUTO) {
                L->path[i] = o->path;
            } else {
                pcn_shape4 sh;
                sh.n = in.n, sh.c = m->info.dims[i], sh.h = h, sh.w = w;
                L->path[i] = pcn_parc_path(sh, L->KV[i], L->KW[i], NULL, NULL);
            }
        }
    }
    return PCN_OK;
}

void pcn_plan_free(pcn_plan *p) {
    if (!p) return;
    free(p->steps);
    free(p->arena);
    free(p);
}

pcn_status pcn_plan_create(pcn_plan **PCN_RESTRICT out, const pcn_model *PCN_RESTRICT model, pcn_shape4 input,
                           const pcn_plan_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_plan_create";
    const pcn_plan_options o = opt ? *opt : pcn_plan_options_default();
    layout_t L;
    pcn_plan *p;
    bump bb;
    bufs bf;
    size_t i, j, maxPC = 0, maxBlockPC = 0, maxM = 0, maxCin = 1, nind, nsteps, kern = 0, scratch = 16, nsplit;
    int threads, pass;
    pcn_status st;
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "%s: out is NULL", op);
    *out = NULL;
    if (!model) return pcn_fail(err, PCN_ERR_NULL, "%s: model is NULL", op);
    if ((int)o.path < PCN_PATH_AUTO || (int)o.path > PCN_PATH_DENSE)
        return pcn_fail(err, PCN_ERR_ARG, "%s: options.path = %d is not a pcn_path value", op, (int)o.path);
    if (o.spin_us > 1000000)
        return pcn_fail(err, PCN_ERR_ARG, "%s: options.spin_us = %d is more than 1000000 (one second)", op, o.spin_us);
    if (o.max_threads > PCN_MAX_THREADS)
        return pcn_fail(err, PCN_ERR_ARG, "%s: options.max_threads = %d is more than PCN_MAX_THREADS = %d", op,
                        o.max_threads, PCN_MAX_THREADS);
    if ((st = plan_layout(model, input, &o, &L, err)) != PCN_OK) return st;
    {
        pcn_options to = pcn_options_default();
        to.threads = o.max_threads;
        threads = pcn_requested_threads(&to);
    }
    /* sizes, with overflow checks: every product below is bounded by one of these */
    for (i = 0; i < model->info.stages; i++) {
        const size_t C = model->info.dims[i];
        size_t pc, pm;
        if (pcn_mul_ovf(L.P[i], C, &pc) || pcn_mul_ovf(pc, PCN_ARCH_MLP_RATIO, &pm) || pm > PCN_MAX_ELEMS)
            return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: the activations of stage %zu are too large", op, i);
        if (pc > maxPC) maxPC = pc;
        if (model->info.depths[i]) {
            if (pc > maxBlockPC) maxBlockPC = pc;
            if (pm / 2 > maxM) maxM = pm / 2;
            if (!(model->info.oversized == PCN_OVERSIZED_FIXED && L.KV[i] == model->info.kernel_sizes[i] &&
                  L.KW[i] == model->info.kernel_sizes[i]))
                kern += model->info.depths[i] * C * (L.KV[i] + L.KW[i]);
        }
        if (C > maxCin) maxCin = C;
    }
    nind = L.P[0] * PCN_ARCH_STEM_KERNEL;
    nsplit = 0;
    for (i = 1; i < model->info.stages; i++) nind += L.P[i] * PCN_ARCH_DOWN_KERNEL * PCN_ARCH_DOWN_KERNEL;
    for (i = 0; i < model->info.stages; i++) nsplit += 1 + 5 * model->info.depths[i];
    nsteps = 2 * (nsplit + 1) + 3; /* each GEMM may add a row step */
    /* per-thread scratch: the GEMMs' packed A tiles and the spatial kernels' buffers */
    scratch = pcn_gemm_scratch_floats(&model->stem);
    for (i = 0; i < model->info.stages; i++) {
        if (i > 0 && pcn_gemm_scratch_floats(&model->down[i]) > scratch)
            scratch = pcn_gemm_scratch_floats(&model->down[i]);
        for (j = 0; j < model->info.depths[i]; j++) {
            const pcn_block_w *bw = &model->blocks[i][j];
            const pcn_gemm_b *gs[4];
            size_t q;
            gs[0] = &bw->pw1;
            gs[1] = &bw->pw2;
            gs[2] = &bw->fc1;
            gs[3] = &bw->fc2;
            for (q = 0; q < 4; q++)
                if (pcn_gemm_scratch_floats(gs[q]) > scratch) scratch = pcn_gemm_scratch_floats(gs[q]);
        }
        if (model->info.depths[i]) {
            pcn_job job;
            size_t sf;
            if ((st = pcn_parc_job_nhwc(&job, L.N, model->info.dims[i], L.H[i], L.W[i], L.KV[i], L.KW[i], L.path[i],
                                        err)) != PCN_OK)
                return st;
            sf = model->conv->scratch_floats(&job);
            if (sf == PCN_SIZE_BAD) return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: spatial workspace overflows", op);
            if (sf > scratch) scratch = sf;
        }
        /* prepare_kernels borrows the first thread's scratch for one resized kernel */
        if (model->info.depths[i] && model->info.oversized != PCN_OVERSIZED_FIXED) {
            const size_t r = 2 * (L.H[i] > L.W[i] ? L.H[i] : L.W[i]) + model->info.oversized_size;
            if (r > scratch) scratch = r;
        }
    }
    scratch = (scratch + 15) / 16 * 16;
    p = (pcn_plan *)calloc(1, sizeof *p);
    if (!p) return pcn_fail(err, PCN_ERR_NOMEM, "%s: out of memory", op);
    p->model = model;
    p->steps = (step *)calloc(nsteps, sizeof(step));
    if (!p->steps) {
        pcn_plan_free(p);
        return pcn_fail(err, PCN_ERR_NOMEM, "%s: out of memory", op);
    }
    p->hp = input.h + 2 * PCN_ARCH_STEM_PADDING;
    p->wp = input.w + 2 * PCN_ARCH_STEM_PADDING;
    /* two passes over the same layout: sizes, then pointers into one zeroed arena */
    memset(&bf, 0, sizeof bf);
    for (pass = 0; pass < 2; pass++) {
        memset(&bb, 0, sizeof bb);
        bb.base = (unsigned char *)(pass ? p->arena : NULL);
        if (pass) bb.base = (unsigned char *)(((uintptr_t)bb.base + ALIGN - 1) / ALIGN * ALIGN);
        bf.x = (float *)take(&bb, maxPC, sizeof(float));
        bf.b = (float *)take(&bb, maxPC, sizeof(float));
        bf.t = (float *)take(&bb, maxPC, sizeof(float)); /* also the stem's output */
        bf.h = (float *)take(&bb, maxBlockPC, sizeof(float));
        bf.g = (float *)take(&bb, maxBlockPC, sizeof(float));
        bf.m = (float *)take(&bb, maxM, sizeof(float));
        bf.feat = (float *)take(&bb, L.N * model->info.dims[model->info.stages - 1], sizeof(float));
        bf.zero = (float *)take(&bb, maxCin, sizeof(float));
        bf.kern = (float *)take(&bb, kern, sizeof(float));
        p->img = (float *)take(&bb, L.N * p->hp * p->wp, PCN_ARCH_IN_CHANS * sizeof(float));
        p->ind = (const float **)take(&bb, nind, sizeof(float *));
        p->scratch = (float *)take(&bb, (size_t)threads, scratch * sizeof(float));
        if (bb.ovf || bb.used > PCN_MAX_ELEMS) {
            pcn_plan_free(p);
            return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: the plan's buffers are too large", op);
        }
        if (!pass) {
            p->arena = calloc(1, bb.used + ALIGN);
            if (!p->arena) {
                pcn_plan_free(p);
                return pcn_fail(err, PCN_ERR_NOMEM, "%s: cannot allocate %zu bytes of buffers", op, bb.used + ALIGN);
            }
            p->info.buffer_bytes = bb.used + ALIGN;
        }
    }
    p->scratch_floats = scratch;
    p->spin_seconds = 1e-6 * (o.spin_us == 0 ? PCN_PLAN_SPIN_US : o.spin_us < 0 ? 0 : o.spin_us);
    p->info.input = input;
    p->info.num_classes = model->info.num_classes;
    p->info.max_threads = threads;
    for (i = 0; i < model->info.stages; i++) {
        p->info.map_h[i] = L.H[i];
        p->info.map_w[i] = L.W[i];
        p->info.kernel_h[i] = L.KV[i];
        p->info.kernel_w[i] = L.KW[i];
        p->info.path[i] = L.path[i];
    }
    if ((st = build_steps(p, &L, &bf, threads, err)) != PCN_OK) {
        pcn_plan_free(p);
        return st;
    }
    *out = p;
    return pcn_ok(err);
}

pcn_status pcn_plan_get_info(const pcn_plan *PCN_RESTRICT plan, pcn_plan_info *PCN_RESTRICT info,
                             pcn_error *PCN_RESTRICT err) {
    if (!plan || !info) return pcn_fail(err, PCN_ERR_NULL, "pcn_plan_get_info: %s is NULL", !plan ? "plan" : "info");
    *info = plan->info;
    return pcn_ok(err);
}

/* x (N, 3, H, W) into the padded NHWC image, one image row per unit. */
static void image_row(const pcn_plan *p, size_t u) {
    const size_t H = p->info.input.h, W = p->info.input.w, n = u / H, y = u % H, pad = PCN_ARCH_STEM_PADDING;
    float *dst = p->img + ((n * p->hp + y + pad) * p->wp + pad) * PCN_ARCH_IN_CHANS;
    size_t c, x;
    for (c = 0; c < PCN_ARCH_IN_CHANS; c++) {
        const float *src = p->x + ((n * PCN_ARCH_IN_CHANS + c) * H + y) * W;
        for (x = 0; x < W; x++) dst[x * PCN_ARCH_IN_CHANS + c] = src[x];
    }
}

#ifdef PCN_STEP_BARRIER
static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Waits until all nth threads of the run have arrived (spec clause 16.3: a barrier after each
 * step). A waiting thread checks for the last arrival during p->spin_seconds, then sleeps on a
 * futex: threads that spin long against a machine's other processes keep a descheduled team
 * member from running, threads that sleep at once pay a wake-up at every step (README). The
 * generation counter orders everything: the last thread resets the count, then publishes the
 * next generation (sequentially consistent with the sleepers count, so a thread that goes to
 * sleep either sees the new generation or is woken). */
static void step_barrier(pcn_plan *p, int nth) {
    const int gen = __atomic_load_n(&p->bar_gen, __ATOMIC_ACQUIRE);
    double until;
    int i;
    if (__atomic_add_fetch(&p->bar_count, 1, __ATOMIC_ACQ_REL) == nth) {
        __atomic_store_n(&p->bar_count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&p->bar_gen, gen + 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&p->bar_sleepers, __ATOMIC_SEQ_CST))
            syscall(SYS_futex, &p->bar_gen, FUTEX_WAKE_PRIVATE, nth, NULL, NULL, 0);
        return;
    }
    until = p->spin_seconds > 0 ? seconds_now() + p->spin_seconds : 0;
    for (i = 1; p->spin_seconds > 0; i++) {
        if (__atomic_load_n(&p->bar_gen, __ATOMIC_ACQUIRE) != gen) return;
        cpu_relax();
        if ((i & 63) == 0 && seconds_now() > until) break;
    }
    __atomic_add_fetch(&p->bar_sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&p->bar_gen, __ATOMIC_SEQ_CST) == gen)
        syscall(SYS_futex, &p->bar_gen, FUTEX_WAIT_PRIVATE, gen, NULL, NULL, 0);
    __atomic_sub_fetch(&p->bar_sleepers, 1, __ATOMIC_SEQ_CST);
}
#define STEP_NOWAIT nowait
#define STEP_END()  step_barrier(p, nth)
#else
#define STEP_NOWAIT
#define STEP_END() /* the implicit barrier of the omp for */
#endif

/* The steps, run by every thread of the team (tid of nth); a barrier ends each step. */
static void run_steps(pcn_plan *p, int tid, int nth) {
    const pcn_model *m = p->model;
    float *scratch = p->scratch + (size_t)tid * p->scratch_floats;
    size_t s;
    long u;
    for (s = 0; s < p->nsteps; s++) {
        step *st = &p->steps[s];
        const long units = (long)st->units;
        switch (st->kind) {
        case STEP_IMAGE:
#ifdef _OPENMP
#pragma omp for schedule(static) STEP_NOWAIT
#endif
            for (u = 0; u < units; u++) image_row(p, (size_t)u);
            STEP_END();
            break;
        case STEP_GEMM:
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) STEP_NOWAIT
#endif
            for (u = 0; u < units; u++) m->gemm->unit(&st->gemm, (size_t)u, scratch);
            STEP_END();
            break;
        case STEP_ROWS:
#ifdef _OPENMP
#pragma omp for schedule(static) STEP_NOWAIT
#endif
            for (u = 0; u < units; u++) {
                const ptrdiff_t r0 = (ptrdiff_t)u * ROWS_PER_UNIT;
                m->gemm->rows(&st->gemm, r0, r0 + ROWS_PER_UNIT < st->gemm.M ? r0 + ROWS_PER_UNIT : st->gemm.M);
            }
            STEP_END();
            break;
        case STEP_SPATIAL: {
            /* static contiguous shares: the kernels pack each channel slab's weights once per share */
            const size_t chunk = st->units / (size_t)nth, rem = st->units % (size_t)nth, t = (size_t)tid;
            const size_t u0 = t * chunk + (t < rem ? t : rem), u1 = u0 + chunk + (t < rem ? 1 : 0);
            if (u1 > u0) m->conv->run(&st->conv, u0, u1, scratch);
#ifdef PCN_STEP_BARRIER
            step_barrier(p, nth);
#elif defined(_OPENMP)
#pragma omp barrier
#endif
            break;
        }
        case STEP_CHAIN:
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) STEP_NOWAIT
#endif
            for (u = 0; u < units; u++) {
                m->gemm->unit(&st->chain[0], (size_t)u, scratch);
                m->gemm->unit(&st->chain[1], (size_t)u, scratch);
                m->gemm->unit(&st->chain[2], (size_t)u, scratch);
            }
            STEP_END();
            break;
        case STEP_POOL:
        case STEP_CLASSIFY:
#ifdef _OPENMP
#pragma omp for schedule(static) STEP_NOWAIT
#endif
            for (u = 0; u < units; u++) m->fused->run(&st->fjob, (size_t)u, (size_t)u + 1);
            STEP_END();
            break;
        default: break;
        }
    }
}

pcn_status pcn_plan_run(pcn_plan *PCN_RESTRICT plan, const float *PCN_RESTRICT x, size_t x_count,
                        float *PCN_RESTRICT logits, size_t logits_count, int threads, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_plan_run";
    size_t want_x, want_l;
    int nt;
    if (!plan || !x || !logits)
        return pcn_fail(err, PCN_ERR_NULL, "%s: %s is NULL", op, !plan ? "plan" : !x ? "x" : "logits");
    want_x = plan->info.input.n * plan->info.input.c * plan->info.input.h * plan->info.input.w;
    want_l = plan->info.input.n * plan->info.num_classes;
    if (x_count != want_x)
        return pcn_fail(err, PCN_ERR_SHAPE,
                        "%s: x_count = %zu, but the plan's input (%zu, %zu, %zu, %zu) has %zu elements", op, x_count,
                        plan->info.input.n, plan->info.input.c, plan->info.input.h, plan->info.input.w, want_x);
    if (logits_count != want_l)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: logits_count = %zu, but the plan's output (%zu, %zu) has %zu elements",
                        op, logits_count, plan->info.input.n, plan->info.num_classes, want_l);
    if (threads > plan->info.max_threads)
        return pcn_fail(err, PCN_ERR_ARG, "%s: threads = %d is more than the plan's max_threads = %d", op, threads,
                        plan->info.max_threads);
    nt = threads > 0 ? threads : plan->info.max_threads;
#if defined(__GNUC__) || defined(__clang__)
    if (__atomic_exchange_n(&plan->busy, 1, __ATOMIC_ACQUIRE))
        return pcn_fail(err, PCN_ERR_BUSY, "%s: the plan is running in another call; use one plan per thread", op);
#endif
    plan->x = x;
    plan->steps[plan->nsteps - 1].fjob.logits = logits;
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        run_steps(plan, omp_get_thread_num(), omp_get_num_threads());
    } else
#endif
    {
        (void)nt;
        run_steps(plan, 0, 1);
    }
    plan->x = NULL;
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(&plan->busy, 0, __ATOMIC_RELEASE);
#endif
    return pcn_ok(err);
}
