/*
 * pcn_internal.h - private declarations shared by the dispatcher (ops.c, dispatch.c) and the
 * per-ISA kernel files (kernels_*.c). Not installed. Spec clause 12.
 */
#ifndef PCN_INTERNAL_H
#define PCN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "parcnetv2.h"

/* PCN_RESTRICT comes from parcnetv2.h. */
#if defined(__GNUC__) || defined(__clang__)
#define PCN_INLINE static inline __attribute__((always_inline))
#else
#define PCN_INLINE static inline
#endif

/* Overflow-checked size arithmetic: return 1 on overflow. */
static inline int pcn_mul_ovf(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
}
static inline int pcn_add_ovf(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 1;
    *out = a + b;
    return 0;
}
/* a*b*c..., 0 terminated list would be overkill: helpers for 3 and 4 factors. */
static inline int pcn_mul3_ovf(size_t a, size_t b, size_t c, size_t *out) {
    size_t t;
    return pcn_mul_ovf(a, b, &t) || pcn_mul_ovf(t, c, out);
}
static inline int pcn_mul4_ovf(size_t a, size_t b, size_t c, size_t d, size_t *out) {
    size_t t;
    return pcn_mul3_ovf(a, b, c, &t) || pcn_mul_ovf(t, d, out);
}
#define PCN_SIZE_BAD ((size_t)-1)
/* Largest element count of one tensor: byte offsets of every float fit in ptrdiff_t. */
#define PCN_MAX_ELEMS ((size_t)PTRDIFF_MAX / sizeof(float) / 4)

enum { PCN_JOB_DENSE = 1, PCN_JOB_SEPARABLE = 2 };

/*
 * One convolution job after validation. All sizes fit in ptrdiff_t (checked by ops.c).
 * Dense:     KH x KW kernel, padding PH, PW, weights w_raw (C,KH,KW), bias_raw (C) or NULL.
 * Separable: vertical KH (= KV) with PH = KV/2 from kh_raw (C,KV); horizontal KW with PW = KW/2
 *            from kw_raw (C,KW); with_dw7 adds the 7x7 kernel k7_raw (C,7,7), padding 3.
 * OH, OW are the output sizes.
 */
typedef struct pcn_job {
    int kind;
    int layout;
    int with_dw7;
    int slab;    /* 1: channel-slab kernels (always for NHWC; chosen or forced for NCHW) */
    int reparam; /* dense job whose kernel is built from kh_raw, kw_raw, k7_raw (clause 7) */
    ptrdiff_t N, C, H, W, OH, OW, KH, KW, PH, PW;
    ptrdiff_t RKV, RKW; /* lengths of kh_raw, kw_raw when reparam */
    const float *x;
    float *y;
    const float *w_raw, *bias_raw, *kh_raw, *kw_raw, *k7_raw;
    const float *gate; /* NHWC only (model, clause 16.3): y = gate * conv(x), gate with y's shape; or NULL */
} pcn_job;

/* Reparameterized RH x RW kernel of one channel (clause 7), RH = max(KV,7), RW = max(KW,7):
 * every element is 0, then float32 k_h[a'] * k_w[b'] where the centred outer product covers it,
 * then (that value) + k7 where the centred 7x7 covers it. Written to out[a*rs + b*cs]. Shared by
 * pcn_reparameterize and the dense kernels, so both agree bitwise (compiled with
 * -ffp-contract=off, so the product is rounded before the sum). */
static inline void pcn_reparam_channel(const float *PCN_RESTRICT kh, const float *PCN_RESTRICT kw,
                                       const float *PCN_RESTRICT k7, ptrdiff_t KV, ptrdiff_t KW,
                                       float *PCN_RESTRICT out, ptrdiff_t rs, ptrdiff_t cs) {
    const ptrdiff_t RH = KV > 7 ? KV : 7, RW = KW > 7 ? KW : 7;
    const ptrdiff_t oy = (RH - KV) / 2, ox = (RW - KW) / 2, sy = (RH - 7) / 2, sx = (RW - 7) / 2;
    ptrdiff_t a, b;
    for (a = 0; a < RH; a++)
        for (b = 0; b < RW; b++) out[a * rs + b * cs] = 0.0f;
    for (a = 0; a < KV; a++)
        for (b = 0; b < KW; b++) out[(oy + a) * rs + (ox + b) * cs] = kh[a] * kw[b];
    for (a = 0; a < 7; a++)
        for (b = 0; b < 7; b++) {
            float *d = &out[(sy + a) * rs + (sx + b) * cs];
            *d = *d + k7[a * 7 + b];
        }
}

/* The kernels of one ISA. `units` parallel work items (an NCHW plane or an NHWC slab of VL
 * channels); `run` processes [u0, u1) using `scratch` (scratch_floats(job) floats, 64-byte
 * aligned, private to the calling thread), which also holds the unit's packed weights. */
typedef struct pcn_kernels {
    pcn_isa isa;
    const char *name;
    int vl;
    size_t (*scratch_floats)(const pcn_job *job);
    size_t (*units)(const pcn_job *job);
    void (*run)(const pcn_job *job, size_t u0, size_t u1, float *scratch);
} pcn_kernels;

/* One fused row operation of pcn_fused.h (clause 15) after validation (fused.c). Matrices are
 * rows x C with leading dimensions; unused fields are zero. */
enum {
    PCN_F_ERF = 1,           /* y = erf(x), C elements (rows = 1) */
    PCN_F_BIAS_GELU = 2,     /* y = GELU(x + bias) */
    PCN_F_GATE = 3,          /* y = (x + bias) * s */
    PCN_F_GELU_GATE = 4,     /* y = (x[:, :C] + bias[:C]) * GELU(x[:, C:] + bias[C:]) */
    PCN_F_LNG = 5,           /* y = LayerNormGeneral(x) * w */
    PCN_F_LN = 6,            /* y = LayerNorm(x) * w + bias */
    PCN_F_RESIDUAL_NORM = 7, /* xio = xio * scale + s; y = LNG(xio) * w when w */
    PCN_F_POOL_NORM = 8,     /* y[n] = LayerNorm(mean of the HW rows of image n of x) * w + bias */
    PCN_F_CLASSIFY = 9       /* logits = y @ fc_wt + fc_b, rows images, K classes */
};
#define PCN_ERF_CHUNK   4096 /* elements per work unit of PCN_F_ERF */
#define PCN_CLS_VECTORS 4    /* vectors of classes per work unit of PCN_F_CLASSIFY */

typedef struct pcn_fjob {
    int op;
    ptrdiff_t rows, C, HW, K;
    const float *x, *s, *bias, *scale, *w, *fc_wt, *fc_b;
    ptrdiff_t ldx, lds, ldy;
    float *y, *xio, *logits;
    float eps;
} pcn_fjob;

/* The fused kernels of one ISA: `units` work units of a job, `run` processes [u0, u1). */
typedef struct pcn_fused_kernels {
    pcn_isa isa;
    int vl;
    size_t (*units)(const pcn_fjob *job);
    void (*run)(const pcn_fjob *job, size_t u0, size_t u1);
} pcn_fused_kernels;

extern const pcn_kernels pcn_kernels_scalar;
extern const pcn_fused_kernels pcn_fused_kernels_scalar;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(PCN_NO_SIMD)
#define PCN_HAVE_X86 1
extern const pcn_kernels pcn_kernels_avx2;
extern const pcn_kernels pcn_kernels_avx512;
extern const pcn_fused_kernels pcn_fused_kernels_avx2;
extern const pcn_fused_kernels pcn_fused_kernels_avx512;
#endif
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(PCN_NO_SIMD)
#define PCN_HAVE_NEON 1
extern const pcn_kernels pcn_kernels_neon;
extern const pcn_fused_kernels pcn_fused_kernels_neon;
#endif

/* ------------------------------------------------------------------ GEMM (clause 16.2) */

/* B packed for the GEMM kernels of one ISA (gemm.c). K is padded to Kp (a multiple of the vector
 * length) with zero rows. Plain layout: panel p holds output columns [p*NR, p*NR + NR) as Kp rows
 * of nv*VL floats (nv vectors, the last panel only as many as it needs), at data + p*Kp*NR.
 * Paired layout (the model's pwconv1 and fc1, whose output is split into two halves that meet in
 * one epilogue): N = 2*Nh and panel p holds columns [p*NRh, p*NRh + NRh) of the first half then
 * the same columns of the second half, NRh = NR/2, so that one tile sees both halves of a column. */
typedef struct pcn_gemm_b {
    pcn_isa isa;
    int vl, mr, nv;
    ptrdiff_t K, Kp, N;
    ptrdiff_t out_cols;   /* N, or Nh when paired */
    ptrdiff_t panel_cols; /* output columns of a full panel: NR or NR/2 */
    ptrdiff_t panels;
    int pair;
    float *data; /* 64-byte aligned, owned (freed with base) */
    void *base;
    float *bias; /* N floats (paired: first half then second half) or NULL, owned */
} pcn_gemm_b;

/* Epilogues: what a tile does with its accumulators acc (one per output element). */
enum {
    PCN_EPI_STORE = 1,      /* y = acc (+ bias) */
    PCN_EPI_RESIDUAL = 2,   /* y = y * scale + acc (FMA; scale NULL: y + acc), y in/out */
    PCN_EPI_PAIR_SPLIT = 3, /* y = acc1 + b1, y2 = GELU(acc2 + b2)          (pwconv1, clause 8.1) */
    PCN_EPI_PAIR_GATE = 4   /* y = (acc1 + b1) * GELU(acc2 + b2)             (fc1, clause 8.2) */
};
/* Row operations once whole rows of y are written (the next LayerNormGeneral, clause 4.1). */
enum {
    PCN_ROW_NONE = 0,
    PCN_ROW_NORM = 1, /* n1 = LNG(y) * w1 */
    PCN_ROW_NORM2 = 2 /* n1 = LNG(y) * w1, n2 = LNG(n1) * w2 (the stem's post_norm, then the next norm) */
};

/* One GEMM after validation: C (M, out_cols) from A (M, K) and B. A is rows (a, lda) or, when
 * ind is not NULL, gathered: row m is the concatenation of the ks segments ind[m*ks + t], each kc
 * floats (an implicit im2col, K = ks*kc). Work units: blocks of tb row tiles x pb panels. */
typedef struct pcn_gemm_job {
    const pcn_gemm_b *b;
    ptrdiff_t M;
    const float *a;
    ptrdiff_t lda;
    const float *const *ind;
    ptrdiff_t ks, kc;
    int epi;
    float *y, *y2;
    ptrdiff_t ldy, ldy2;
    const float *scale;
    int rowop;
    float *n1, *n2;
    ptrdiff_t ldn;
    const float *w1, *w2;
    float eps;
    int rows_apart;  /* the row operation writes what the tiles read: run it after every unit */
    int panel_outer; /* units pack their tiles first and pass each panel over all of them */
    /* partition (pcn_gemm_partition) */
    ptrdiff_t tiles, tile_base, tile_rem; /* row tiles: tile t has tile_base + (t < tile_rem) rows */
    ptrdiff_t tb, pb, units_m, units_n;
} pcn_gemm_job;

typedef struct pcn_gemm_kernels {
    pcn_isa isa;
    int vl, mr, nv;
    /* one work unit of a job; scratch holds mr x Kp floats (64-byte aligned) */
    void (*unit)(const pcn_gemm_job *job, size_t unit, float *scratch);
    /* the job's row operation on rows [r0, r1) */
    void (*rows)(const pcn_gemm_job *job, ptrdiff_t r0, ptrdiff_t r1);
} pcn_gemm_kernels;

/* gemm.c: packing and partition, shared by pcn_gemm_packed and the model */
pcn_status pcn_gemm_b_pack(pcn_gemm_b *out, const pcn_gemm_kernels *k, const float *b, ptrdiff_t ldb, int transposed,
                           const float *bias, ptrdiff_t K, ptrdiff_t N, int pair, pcn_error *err);
void pcn_gemm_b_free(pcn_gemm_b *b);
/* Work units for `threads` threads; sets the partition fields. Returns the unit count. */
size_t pcn_gemm_partition(pcn_gemm_job *job, int threads);
/* floats of per-thread scratch a job on b needs */
size_t pcn_gemm_scratch_floats(const pcn_gemm_b *b);
/* Row tiles of A a unit holds packed at most (PCN_GEMM_A_BLOCK bytes in the scratch). */
ptrdiff_t pcn_gemm_tile_block(const pcn_gemm_b *b);
/* A partition into blocks of tb whole row tiles (every panel in each unit, the row operation
 * fused; each tile packed then multiplied by every panel): the same for every job of the same M
 * and tb. Returns the unit count. */
size_t pcn_gemm_row_blocks(pcn_gemm_job *job, ptrdiff_t tb);
/* Whether the job's row operation must run after all its units (units_n > 1 or rows_apart). */
int pcn_gemm_rowop_separate(const pcn_gemm_job *job);

extern const pcn_gemm_kernels pcn_gemm_kernels_scalar;
#ifdef PCN_HAVE_X86
extern const pcn_gemm_kernels pcn_gemm_kernels_avx2;
extern const pcn_gemm_kernels pcn_gemm_kernels_avx512;
#endif
#ifdef PCN_HAVE_NEON
extern const pcn_gemm_kernels pcn_gemm_kernels_neon;
#endif

/* dispatch.c */
const pcn_kernels *pcn_select_kernels(pcn_isa isa);
const pcn_fused_kernels *pcn_select_fused(pcn_isa isa);
const pcn_gemm_kernels *pcn_select_gemm(pcn_isa isa);

/* ops.c: error reports, option checks and the OpenMP thread request, shared with fused.c */
pcn_status pcn_fail(pcn_error *err, pcn_status code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
pcn_status pcn_ok(pcn_error *err);
pcn_status pcn_check_option_values(const pcn_options *opt, pcn_error *err);
int pcn_requested_threads(const pcn_options *opt);

#endif
