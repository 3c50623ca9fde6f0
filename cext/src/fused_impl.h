/*
 * fused_impl.h - the fused elementwise and row kernels of the inference engine (spec clause 15),
 * written once and compiled once per ISA, like kernels_impl.h.
 *
 * Included by kernels_scalar.c, kernels_avx2.c, kernels_avx512.c and kernels_neon.c after
 * kernels_impl.h, with the vector abstraction of kernels_impl.h plus:
 *   V_ADD, V_SUB, V_MUL, V_MIN(a,b), V_ABS(a), V_COPYSIGN(m,s) = |m| with the sign of s,
 *   V_SELECT_LT(a,b,x,y) = a < b ? x : y, V_SELECT_NAN(a,x,y) = isnan(a) ? x : y,
 *   V_RINT(a) = round to nearest even, V_POW2I(n) = 2^n for integral n in [-126, 127],
 *   V_HSUM(v) = the sum of the lanes (a float).
 *
 * Work units (pcn_fjob.op): a row of a rows x C matrix for the row operations, a chunk of
 * PCN_ERF_CHUNK elements for pcn_erf, an image for the head's pooling and LayerNorm, a block of
 * PCN_CLS_VECTORS vectors of classes for the head's classifier. Each unit is computed by one
 * thread in an order that depends only on the sizes and the ISA: results do not depend on the
 * thread count. Row tails shorter than a vector go through a zero-padded copy (load) and a
 * masked store; reductions multiply the padded lanes by zero. No allocation.
 */
#include <math.h>
#include <string.h>

/* Lane masks: PCN_FN(lane_ones) + 16 - n holds n ones followed by zeros (VL <= 16). */
static const float PCN_FN(lane_ones)[32] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

/* n < VL floats from p, the other lanes zero. */
PCN_INLINE vec PCN_FN(load_part)(const float *p, ptrdiff_t n) {
    float t[VL];
    ptrdiff_t i;
    for (i = 0; i < VL; i++) t[i] = i < n ? p[i] : 0.0f;
    return V_LOAD(t);
}
/* Load n floats (n = VL: a plain load). */
PCN_INLINE vec PCN_FN(load_n)(const float *p, ptrdiff_t n) {
    return n >= VL ? V_LOAD(p) : PCN_FN(load_part)(p, n);
}
PCN_INLINE void PCN_FN(store_n)(float *p, vec v, ptrdiff_t n) {
    if (n >= VL)
        V_STORE(p, v);
    else
        V_STORE_N(p, v, (int)n);
}
/* The optional per-column vector (bias, scale) at column c, or `dflt` without one. */
PCN_INLINE vec PCN_FN(load_opt)(const float *p, ptrdiff_t c, ptrdiff_t n, vec dflt) {
    return p ? PCN_FN(load_n)(p + c, n) : dflt;
}

/* ---------------------------------------------------------------- erf and GELU */

/* erf in float32 (clause 15): |x| < 1: x + x q(x^2); |x| >= 1: sign(x) (1 - exp(p(min(|x|, 4))))
 * with p ~ log(erfc). Coefficients: weighted minimax fits rounded to float32 one at a time
 * (python -m parcnetv2.cext.erf_accuracy fit), highest degree first. */
#define PCN_ERF_A6 7.899002e-05f
#define PCN_ERF_A5 -8.025302e-04f
#define PCN_ERF_A4 5.190254e-03f
#define PCN_ERF_A3 -2.6854964e-02f
#define PCN_ERF_A2 1.1283617e-01f
#define PCN_ERF_A1 -3.761263e-01f
#define PCN_ERF_A0 1.2837917e-01f
#define PCN_ERF_B9 7.8401325e-07f
#define PCN_ERF_B8 -1.24456155e-05f
#define PCN_ERF_B7 6.429803e-05f
#define PCN_ERF_B6 1.0190838e-04f
#define PCN_ERF_B5 -3.3605834e-03f
#define PCN_ERF_B4 2.3836935e-02f
#define PCN_ERF_B3 -1.0696187e-01f
#define PCN_ERF_B2 -6.341959e-01f
#define PCN_ERF_B1 -1.1292039e+00f
#define PCN_ERF_B0 1.253019e-04f
/* exp(r) = 1 + r + r^2 (E4 r^4 + ... + E0) on |r| <= ln2 / 2 */
#define PCN_EXP_E4 1.3821176e-03f
#define PCN_EXP_E3 8.3692465e-03f
#define PCN_EXP_E2 4.1668277e-02f
#define PCN_EXP_E1 1.6666517e-01f
#define PCN_EXP_E0 4.9999994e-01f
#define PCN_LOG2E  1.442695f
#define PCN_LN2_HI 0.69314575f /* 0.693145751953125, exact with few bits: n * PCN_LN2_HI is exact */
#define PCN_LN2_LO 1.4286068e-06f

/* exp(p) for p in [-88, 0] (the erf tail calls it on [-18, -1.8]). */
PCN_INLINE vec PCN_FN(exp_v)(vec p) {
    const vec n = V_RINT(V_MUL(p, V_SET1(PCN_LOG2E)));
    vec r = V_FMA(n, V_SET1(-PCN_LN2_HI), p), e;
    r = V_FMA(n, V_SET1(-PCN_LN2_LO), r);
    e = V_FMA(V_SET1(PCN_EXP_E4), r, V_SET1(PCN_EXP_E3));
    e = V_FMA(e, r, V_SET1(PCN_EXP_E2));
    e = V_FMA(e, r, V_SET1(PCN_EXP_E1));
    e = V_FMA(e, r, V_SET1(PCN_EXP_E0));
    e = V_ADD(V_FMA(V_MUL(r, r), e, r), V_SET1(1.0f));
    return V_MUL(e, V_POW2I(n));
}

PCN_INLINE vec PCN_FN(erf_v)(vec x) {
    const vec t = V_ABS(x), s = V_MUL(x, x), u = V_MIN(t, V_SET1(4.0f));
    vec q, p, ra, rb;
    q = V_FMA(V_SET1(PCN_ERF_A6), s, V_SET1(PCN_ERF_A5));
    q = V_FMA(q, s, V_SET1(PCN_ERF_A4));
    q = V_FMA(q, s, V_SET1(PCN_ERF_A3));
    q = V_FMA(q, s, V_SET1(PCN_ERF_A2));
    q = V_FMA(q, s, V_SET1(PCN_ERF_A1));
    q = V_FMA(q, s, V_SET1(PCN_ERF_A0));
    ra = V_FMA(x, q, x);
    p = V_FMA(V_SET1(PCN_ERF_B9), u, V_SET1(PCN_ERF_B8));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B7));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B6));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B5));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B4));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B3));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B2));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B1));
    p = V_FMA(p, u, V_SET1(PCN_ERF_B0));
    rb = V_COPYSIGN(V_SUB(V_SET1(1.0f), PCN_FN(exp_v)(p)), x);
    return V_SELECT_NAN(x, x, V_SELECT_LT(t, V_SET1(1.0f), ra, rb));
}

/* GELU(v) = h + h erf(v / sqrt 2), h = v / 2 (clause 8.1). */
PCN_INLINE vec PCN_FN(gelu_v)(vec v) {
    const vec h = V_MUL(v, V_SET1(0.5f));
    return V_FMA(h, PCN_FN(erf_v)(V_MUL(v, V_SET1(0.70710678f))), h);
}

/* ---------------------------------------------------------------- rows */

static void PCN_FN(erf_chunk)(const pcn_fjob *j, ptrdiff_t u) {
    const ptrdiff_t i0 = u * PCN_ERF_CHUNK, i1 = pmin(i0 + PCN_ERF_CHUNK, j->C);
    ptrdiff_t i;
    for (i = i0; i < i1; i += VL) {
        const ptrdiff_t n = pmin(VL, i1 - i);
        PCN_FN(store_n)(j->y + i, PCN_FN(erf_v)(PCN_FN(load_n)(j->x + i, n)), n);
    }
}

/* The GELU rows handle two vectors per iteration where they can: the two independent erf
 * evaluations overlap in the pipeline (the polynomials are chains of dependent FMAs). */
static void PCN_FN(bias_gelu_row)(const pcn_fjob *j, ptrdiff_t r) {
    const float *x = j->x + r * j->ldx, *b = j->bias;
    float *y = j->y + r * j->ldy;
    ptrdiff_t c = 0;
    for (; c + 2 * VL <= j->C; c += 2 * VL) {
        const vec v0 = V_ADD(V_LOAD(x + c), b ? V_LOAD(b + c) : V_ZERO());
        const vec v1 = V_ADD(V_LOAD(x + c + VL), b ? V_LOAD(b + c + VL) : V_ZERO());
        V_STORE(y + c, PCN_FN(gelu_v)(v0));
        V_STORE(y + c + VL, PCN_FN(gelu_v)(v1));
    }
    for (; c < j->C; c += VL) {
        const ptrdiff_t n = pmin(VL, j->C - c);
        const vec v = V_ADD(PCN_FN(load_n)(x + c, n), PCN_FN(load_opt)(j->bias, c, n, V_ZERO()));
        PCN_FN(store_n)(y + c, PCN_FN(gelu_v)(v), n);
    }
}

static void PCN_FN(gate_row)(const pcn_fjob *j, ptrdiff_t r) {
    const float *a = j->x + r * j->ldx, *s = j->s + r * j->lds;
    float *y = j->y + r * j->ldy;
    ptrdiff_t c;
    for (c = 0; c < j->C; c += VL) {
        const ptrdiff_t n = pmin(VL, j->C - c);
        const vec v = V_ADD(PCN_FN(load_n)(a + c, n), PCN_FN(load_opt)(j->bias, c, n, V_ZERO()));
        PCN_FN(store_n)(y + c, V_MUL(v, PCN_FN(load_n)(s + c, n)), n);
    }
}

static void PCN_FN(gelu_gate_row)(const pcn_fjob *j, ptrdiff_t r) {
    const float *h = j->x + r * j->ldx;
    const float *b = j->bias;
    const ptrdiff_t C = j->C;
    float *y = j->y + r * j->ldy;
    ptrdiff_t c = 0;
    for (; c + 2 * VL <= C; c += 2 * VL) {
        const vec a0 = V_ADD(V_LOAD(h + c), b ? V_LOAD(b + c) : V_ZERO());
        const vec a1 = V_ADD(V_LOAD(h + c + VL), b ? V_LOAD(b + c + VL) : V_ZERO());
        const vec g0 = V_ADD(V_LOAD(h + C + c), b ? V_LOAD(b + C + c) : V_ZERO());
        const vec g1 = V_ADD(V_LOAD(h + C + c + VL), b ? V_LOAD(b + C + c + VL) : V_ZERO());
        V_STORE(y + c, V_MUL(a0, PCN_FN(gelu_v)(g0)));
        V_STORE(y + c + VL, V_MUL(a1, PCN_FN(gelu_v)(g1)));
    }
    for (; c < C; c += VL) {
        const ptrdiff_t n = pmin(VL, C - c);
        const vec a = V_ADD(PCN_FN(load_n)(h + c, n), PCN_FN(load_opt)(j->bias, c, n, V_ZERO()));
        const vec g = V_ADD(PCN_FN(load_n)(h + C + c, n), PCN_FN(load_opt)(j->bias, C + c, n, V_ZERO()));
        PCN_FN(store_n)(y + c, V_MUL(a, PCN_FN(gelu_v)(g)), n);
    }
}

/* Mean and sum of squared deviations of one row of C floats (x is read twice). */
PCN_INLINE void PCN_FN(row_moments)(const float *x, ptrdiff_t C, float *mean, float *ss) {
    vec acc = V_ZERO();
    float m;
    ptrdiff_t c;
    for (c = 0; c < C; c += VL) acc = V_ADD(acc, PCN_FN(load_n)(x + c, pmin(VL, C - c)));
    m = V_HSUM(acc) / (float)C;
    acc = V_ZERO();
    for (c = 0; c < C; c += VL) {
        const ptrdiff_t n = pmin(VL, C - c);
        vec d = V_SUB(PCN_FN(load_n)(x + c, n), V_SET1(m));
        if (n < VL) d = V_MUL(d, V_LOAD(PCN_FN(lane_ones) + 16 - n));
        acc = V_FMA(d, d, acc);
    }
    *mean = m;
    *ss = V_HSUM(acc);
}

/* y = (x - mean) * inv * w (+ b): the last pass of both norms; x and y may be the same row. */
PCN_INLINE void PCN_FN(row_normalize)(const float *x, float *y, ptrdiff_t C, float mean, float inv, const float *w,
                                      const float *b) {
    ptrdiff_t c;
    for (c = 0; c < C; c += VL) {
        const ptrdiff_t n = pmin(VL, C - c);
        const vec d = V_MUL(V_SUB(PCN_FN(load_n)(x + c, n), V_SET1(mean)), V_SET1(inv));
        const vec wv = PCN_FN(load_n)(w + c, n);
        PCN_FN(store_n)(y + c, b ? V_FMA(d, wv, PCN_FN(load_n)(b + c, n)) : V_MUL(d, wv), n);
    }
}

/* LayerNormGeneral of one row (clause 4.1). */
PCN_INLINE void PCN_FN(lng)(const float *x, float *y, ptrdiff_t C, const float *w, float eps) {
    float mean, ss, norm;
    PCN_FN(row_moments)(x, C, &mean, &ss);
    norm = sqrtf(ss);
    PCN_FN(row_normalize)(x, y, C, mean, 1.0f / (norm > eps ? norm : eps), w, NULL);
}

/* Standard LayerNorm of one row (clause 4.2). */
PCN_INLINE void PCN_FN(ln)(const float *x, float *y, ptrdiff_t C, const float *w, const float *b, float eps) {
    float mean, ss;
    PCN_FN(row_moments)(x, C, &mean, &ss);
    PCN_FN(row_normalize)(x, y, C, mean, 1.0f / sqrtf(ss / (float)C + eps), w, b);
}

static void PCN_FN(residual_row)(const pcn_fjob *j, ptrdiff_t r) {
    float *x = j->xio + r * j->ldx;
    const float *br = j->s + r * j->lds;
    ptrdiff_t c;
    for (c = 0; c < j->C; c += VL) {
        const ptrdiff_t n = pmin(VL, j->C - c);
        const vec xv = PCN_FN(load_n)(x + c, n), bv = PCN_FN(load_n)(br + c, n);
        PCN_FN(store_n)(x + c, j->scale ? V_FMA(xv, PCN_FN(load_n)(j->scale + c, n), bv) : V_ADD(xv, bv), n);
    }
    if (j->w) PCN_FN(lng)(x, j->y + r * j->ldy, j->C, j->w, j->eps);
}

/* Head, phase 1: features[n] = LayerNorm(mean over the HW rows of image n). */
static void PCN_FN(pool_norm_image)(const pcn_fjob *j, ptrdiff_t img) {
    const ptrdiff_t C = j->C, HW = j->HW;
    const float *x = j->x + img * HW * C;
    float *f = j->y + img * C;
    const vec scale = V_SET1(1.0f / (float)HW);
    ptrdiff_t c, p;
    for (c = 0; c < C; c += VL) {
        const ptrdiff_t n = pmin(VL, C - c);
        vec acc = V_ZERO();
        for (p = 0; p < HW; p++) acc = V_ADD(acc, PCN_FN(load_n)(x + p * C + c, n));
        PCN_FN(store_n)(f + c, V_MUL(acc, scale), n);
    }
    PCN_FN(ln)(f, f, C, j->w, j->bias, j->eps);
}

/* Head, phase 2: logits[:, block] = features @ fc_wt[:, block] + fc_b[block] for one block of
 * PCN_CLS_VECTORS vectors of classes, every image (the block of fc_wt stays in cache). */
static void PCN_FN(classify_block)(const pcn_fjob *j, ptrdiff_t blk) {
    const ptrdiff_t K = j->K, C = j->C, k0 = blk * PCN_CLS_VECTORS * VL;
    ptrdiff_t img, c, v;
    for (img = 0; img < j->rows; img++) {
        const float *f = j->y + img * C;
        vec acc[PCN_CLS_VECTORS];
        for (v = 0; v < PCN_CLS_VECTORS; v++) {
            const ptrdiff_t k = k0 + v * VL;
            acc[v] = k < K ? PCN_FN(load_opt)(j->fc_b, k, pmin(VL, K - k), V_ZERO()) : V_ZERO();
        }
        for (c = 0; c < C; c++) {
            const vec fc = V_SET1(f[c]);
            const float *wrow = j->fc_wt + c * K;
            for (v = 0; v < PCN_CLS_VECTORS; v++) {
                const ptrdiff_t k = k0 + v * VL;
                if (k < K) acc[v] = V_FMA(fc, PCN_FN(load_n)(wrow + k, pmin(VL, K - k)), acc[v]);
            }
        }
        for (v = 0; v < PCN_CLS_VECTORS; v++) {
            const ptrdiff_t k = k0 + v * VL;
            if (k < K) PCN_FN(store_n)(j->logits + img * K + k, acc[v], pmin(VL, K - k));
        }
    }
}

static size_t PCN_FN(fused_units)(const pcn_fjob *j) {
    switch (j->op) {
    case PCN_F_ERF: return (size_t)ceil_div(j->C, PCN_ERF_CHUNK);
    case PCN_F_CLASSIFY: return (size_t)ceil_div(j->K, PCN_CLS_VECTORS * VL);
    default: return (size_t)j->rows;
    }
}

static void PCN_FN(fused_run)(const pcn_fjob *j, size_t u0, size_t u1) {
    ptrdiff_t u;
    for (u = (ptrdiff_t)u0; u < (ptrdiff_t)u1; u++) {
        switch (j->op) {
        case PCN_F_ERF: PCN_FN(erf_chunk)(j, u); break;
        case PCN_F_BIAS_GELU: PCN_FN(bias_gelu_row)(j, u); break;
        case PCN_F_GATE: PCN_FN(gate_row)(j, u); break;
        case PCN_F_GELU_GATE: PCN_FN(gelu_gate_row)(j, u); break;
        case PCN_F_LNG: PCN_FN(lng)(j->x + u * j->ldx, j->y + u * j->ldy, j->C, j->w, j->eps); break;
        case PCN_F_LN: PCN_FN(ln)(j->x + u * j->ldx, j->y + u * j->ldy, j->C, j->w, j->bias, j->eps); break;
        case PCN_F_RESIDUAL_NORM: PCN_FN(residual_row)(j, u); break;
        case PCN_F_POOL_NORM: PCN_FN(pool_norm_image)(j, u); break;
        case PCN_F_CLASSIFY: PCN_FN(classify_block)(j, u); break;
        default: break;
        }
    }
}

const pcn_fused_kernels PCN_CAT(pcn_fused_kernels, PCN_SUFFIX) = {
    PCN_ISA_ID,
    VL,
    PCN_FN(fused_units),
    PCN_FN(fused_run),
};
