/*
 * kernels_impl.h - the convolution kernels, written once and compiled once per ISA (spec clause 12).
 *
 * Included by kernels_scalar.c, kernels_avx2.c, kernels_avx512.c and kernels_neon.c after they
 * define the vector abstraction:
 *   PCN_SUFFIX           token appended to function names (scalar, avx2, avx512, neon)
 *   PCN_ISA_ID, PCN_ISA_STR, VL (lanes), vec (type)
 *   V_ZERO(), V_SET1(f), V_LOAD(p), V_STORE(p,v), V_FMA(a,b,acc) = a*b+acc, V_STORE_N(p,v,n), V_MUL(a,b)
 *   NCHW_R, NCHW_V       NCHW register tile: R output rows x V vectors along W (each <= 4)
 *   NHWC_R, NHWC_J       NHWC register tile: R output rows x J output pixels, one vector of VL
 *                        channels per pixel (each <= 4)
 *
 * Everything is an "implicit GEMM band": an output tile acc[r][i] (r = output row of the tile,
 * i = vector item: a W-vector in NCHW, a pixel in NHWC) accumulates
 *     sum over repetitions m, then over s:  A(s, r) * B(s, i)
 * where A is broadcast (NCHW) or loaded per lane (NHWC) and B is loaded. Only s (input rows or
 * columns) that hold real input for at least one output of the tile are visited: taps that land
 * entirely in the zero padding are skipped. Kernels are zero-extended by the tile size, so a
 * row of a tile whose window does not reach a visited input row multiplies a zero weight instead
 * of branching.
 *
 * Work units: an NCHW plane (plane kernels, vectors along W) or a slab of VL channels of one
 * image (vectors along C; NHWC data, or NCHW data gathered from VL planes and scattered back).
 *
 * Per output element the order of operations depends only on the shapes and the ISA, never on
 * which thread computes it: results are bit-identical for any thread count.
 * No allocation: ops.c passes a per-thread scratch buffer that holds the padded input copy, the
 * intermediate of the separable pass and the unit's zero-extended weights.
 */
#include <string.h>

#define PCN_CAT2(a, b) a##_##b
#define PCN_CAT(a, b)  PCN_CAT2(a, b)
#define PCN_FN(name)   PCN_CAT(name, PCN_SUFFIX)

#define TMAX 4 /* largest tile dimension instantiated */
#if defined(__GNUC__) || defined(__clang__)
#define PCN_PRAGMA(x) _Pragma(#x)
#define PCN_UNROLL    PCN_PRAGMA(GCC unroll 4)
#else
#define PCN_UNROLL
#endif

typedef struct band_t {
    const float *a; /* A(s, r) at a + r*ar + s*as */
    ptrdiff_t ar, as;
    const float *b; /* B(s, i) at b + s*bs + i*bi */
    ptrdiff_t bs, bi;
    ptrdiff_t ns; /* number of s */
    ptrdiff_t m;  /* repetitions (kernel columns); a += astep, b += bstep after each */
    ptrdiff_t astep, bstep;
} band_t;

/* n <= VL floats from p (the other lanes zero): the gate of a tile's partial last vector. */
PCN_INLINE vec PCN_FN(tile_load_n)(const float *p, int n) {
    float t[VL];
    int l;
    if (n >= VL) return V_LOAD(p);
    for (l = 0; l < VL; l++) t[l] = l < n ? p[l] : 0.0f;
    return V_LOAD(t);
}

/* The register tile. R, NI, BCAST are compile-time constants at every call site; `gate` (or
 * NULL) is multiplied into the output, with the output's strides (the model's token-mixer gate,
 * clause 16.3). */
PCN_INLINE void PCN_FN(tile_generic)(const int R, const int NI, const int BCAST, vec init, const band_t *bands, int nb,
                                     float *PCN_RESTRICT out, ptrdiff_t ldo, ptrdiff_t ldi, int lastn, int alln,
                                     const float *PCN_RESTRICT gate) {
    vec acc[TMAX][TMAX];
    int r, i, g;
    /* The unroll pragmas make the accumulators registers at any optimisation level. */
    PCN_UNROLL
    for (r = 0; r < R; r++) {
        PCN_UNROLL
        for (i = 0; i < NI; i++) acc[r][i] = init;
    }
    for (g = 0; g < nb; g++) {
        const band_t *bd = &bands[g];
        const float *a = bd->a, *b = bd->b;
        const ptrdiff_t ar = bd->ar, as = bd->as, bs = bd->bs, bi = bd->bi, ns = bd->ns;
        ptrdiff_t m;
        for (m = 0; m < bd->m; m++, a += bd->astep, b += bd->bstep) {
            const float *ap = a, *bp = b;
            ptrdiff_t s;
            for (s = 0; s < ns; s++, ap += as, bp += bs) {
                vec bv[TMAX];
                PCN_UNROLL
                for (i = 0; i < NI; i++) bv[i] = V_LOAD(bp + i * bi);
                PCN_UNROLL
                for (r = 0; r < R; r++) {
                    vec av = BCAST ? V_SET1(ap[r * ar]) : V_LOAD(ap + r * ar);
                    PCN_UNROLL
                    for (i = 0; i < NI; i++) acc[r][i] = V_FMA(av, bv[i], acc[r][i]);
                }
            }
        }
    }
    PCN_UNROLL
    for (r = 0; r < R; r++) {
        PCN_UNROLL
        for (i = 0; i < NI; i++) {
            float *p = out + r * ldo + i * ldi;
            int n = (i == NI - 1) ? lastn : alln;
            if (gate) acc[r][i] = V_MUL(acc[r][i], PCN_FN(tile_load_n)(gate + r * ldo + i * ldi, n));
            if (n >= VL)
                V_STORE(p, acc[r][i]);
            else
                V_STORE_N(p, acc[r][i], n);
        }
    }
}

typedef void (*tile_fn)(vec init, const band_t *bands, int nb, float *PCN_RESTRICT out, ptrdiff_t ldo, ptrdiff_t ldi,
                        int lastn, int alln, const float *PCN_RESTRICT gate);

#define DEF_TILE(KIND, BC, R, I)                                                                                       \
    static void PCN_FN(tile_##KIND##_r##R##x##I)(vec init, const band_t *bands, int nb, float *PCN_RESTRICT out,       \
                                                 ptrdiff_t ldo, ptrdiff_t ldi, int lastn, int alln,                    \
                                                 const float *PCN_RESTRICT gate) {                                     \
        PCN_FN(tile_generic)(R, I, BC, init, bands, nb, out, ldo, ldi, lastn, alln, gate);                             \
    }
#define DEF_TILES_R(KIND, BC, R)                                                                                       \
    DEF_TILE(KIND, BC, R, 1) DEF_TILE(KIND, BC, R, 2) DEF_TILE(KIND, BC, R, 3) DEF_TILE(KIND, BC, R, 4)
#define DEF_TILES(KIND, BC)                                                                                            \
    DEF_TILES_R(KIND, BC, 1) DEF_TILES_R(KIND, BC, 2) DEF_TILES_R(KIND, BC, 3) DEF_TILES_R(KIND, BC, 4)

DEF_TILES(nchw, 1)
DEF_TILES(nhwc, 0)

#define TILE_ROW(KIND, R)                                                                                              \
    {                                                                                                                  \
        PCN_FN(tile_##KIND##_r##R##x1), PCN_FN(tile_##KIND##_r##R##x2), PCN_FN(tile_##KIND##_r##R##x3),                \
            PCN_FN(tile_##KIND##_r##R##x4)                                                                             \
    }
static const tile_fn PCN_FN(tiles_nchw)[TMAX][TMAX] = {TILE_ROW(nchw, 1), TILE_ROW(nchw, 2), TILE_ROW(nchw, 3),
                                                       TILE_ROW(nchw, 4)};
static const tile_fn PCN_FN(tiles_nhwc)[TMAX][TMAX] = {TILE_ROW(nhwc, 1), TILE_ROW(nhwc, 2), TILE_ROW(nhwc, 3),
                                                       TILE_ROW(nhwc, 4)};

#define NCHW_VW (NCHW_V * VL) /* output columns per NCHW tile */
#define NCHW_E  (NCHW_R - 1)  /* zero extension of vertically applied kernels, NCHW */
#define NHWC_E  (NHWC_R - 1)
#define NHWC_JP (NHWC_J - 1) /* column padding of the NHWC input slab (pixels) */

static inline ptrdiff_t pmax(ptrdiff_t a, ptrdiff_t b) {
    return a > b ? a : b;
}
static inline ptrdiff_t pmin(ptrdiff_t a, ptrdiff_t b) {
    return a < b ? a : b;
}
static inline ptrdiff_t ceil_div(ptrdiff_t a, ptrdiff_t b) {
    return (a + b - 1) / b;
}

/* ---------------------------------------------------------------- sizes */

static ptrdiff_t PCN_FN(nchw_ldx)(const pcn_job *j) {
    return NCHW_VW + j->W + NCHW_VW;
}
static ptrdiff_t PCN_FN(nchw_ldt)(const pcn_job *j) {
    return ceil_div(j->W, VL) * VL;
}
static ptrdiff_t PCN_FN(nhwc_ldx)(const pcn_job *j) {
    return (j->W + 2 * NHWC_JP) * VL;
}

/* Weight block of one unit, in floats.
 * NCHW dense:     (KH + 2E) x KW, rows E..E+KH-1 = w[c]
 * NCHW separable: k_h zero-extended by E | k_w reversed, extended by VW | k7 (7 + 2E) x 7
 * NHWC dense:     ((KH + 2E) x KW rows) x VL lanes, then a bias row of VL lanes
 * NHWC separable: rows k_h (KV + 2E) | k_w (KW + 2 JP) | k7 ((7 + 2E) x 7), each VL lanes */
static ptrdiff_t PCN_FN(wblock)(const pcn_job *j) {
    if (!j->slab) {
        if (j->kind == PCN_JOB_DENSE) return (j->KH + 2 * NCHW_E) * j->KW;
        return (j->KH + 2 * NCHW_E) + (j->KW + 2 * NCHW_VW) + (j->with_dw7 ? (7 + 2 * NCHW_E) * 7 : 0);
    }
    if (j->kind == PCN_JOB_DENSE) return ((j->KH + 2 * NHWC_E) * j->KW + 1) * VL;
    return ((j->KH + 2 * NHWC_E) + (j->KW + 2 * NHWC_JP) + (j->with_dw7 ? (7 + 2 * NHWC_E) * 7 : 0)) * VL;
}

/* Per-thread scratch: [weights | padded input | intermediate], each rounded to 16 floats. */
static ptrdiff_t round16(ptrdiff_t v) {
    return (v + 15) / 16 * 16;
}

static size_t PCN_FN(scratch_floats)(const pcn_job *j) {
    size_t a, b = 0, o = 0, r;
    if (!j->slab) {
        if (pcn_mul_ovf((size_t)j->H, (size_t)PCN_FN(nchw_ldx)(j), &a)) return PCN_SIZE_BAD;
        if (j->kind == PCN_JOB_SEPARABLE && pcn_mul_ovf((size_t)j->OH, (size_t)PCN_FN(nchw_ldt)(j), &b))
            return PCN_SIZE_BAD;
    } else {
        if (pcn_mul_ovf((size_t)j->H, (size_t)PCN_FN(nhwc_ldx)(j), &a)) return PCN_SIZE_BAD;
        if (j->kind == PCN_JOB_SEPARABLE && pcn_mul3_ovf((size_t)j->OH, (size_t)j->W, VL, &b)) return PCN_SIZE_BAD;
        /* NCHW through slabs: the output slab, scattered to the planes at the end */
        if (j->layout == PCN_NCHW && pcn_mul3_ovf((size_t)j->OH, (size_t)j->OW, VL, &o)) return PCN_SIZE_BAD;
    }
    if (pcn_add_ovf(a, 16, &a) || pcn_add_ovf(b, 16, &b) || pcn_add_ovf(b, o, &b) || pcn_add_ovf(a, b, &r) ||
        pcn_add_ovf(r, (size_t)round16(PCN_FN(wblock)(j)), &r) || r > (size_t)PTRDIFF_MAX / 8)
        return PCN_SIZE_BAD;
    return r;
}
static float *PCN_FN(scratch_input)(const pcn_job *j, float *scratch) {
    return scratch + round16(PCN_FN(wblock)(j));
}
static float *PCN_FN(scratch_inter)(const pcn_job *j, float *scratch) {
    ptrdiff_t ld = !j->slab ? PCN_FN(nchw_ldx)(j) : PCN_FN(nhwc_ldx)(j);
    return PCN_FN(scratch_input)(j, scratch) + round16(j->H * ld);
}
/* output slab of the NCHW slab route (after the separable intermediate, if any) */
static float *PCN_FN(scratch_oslab)(const pcn_job *j, float *scratch) {
    return PCN_FN(scratch_inter)(j, scratch) + (j->kind == PCN_JOB_SEPARABLE ? round16(j->OH * j->W * VL) : 0);
}

static size_t PCN_FN(units)(const pcn_job *j) {
    if (!j->slab) return (size_t)j->N * (size_t)j->C;
    return (size_t)j->N * (size_t)ceil_div(j->C, VL);
}

/* ---------------------------------------------------------------- weights of one unit */

/* Fill the non-zero part of the unit's weight block (the zero extensions were cleared once per
 * run and are never written). */
static void PCN_FN(load_weights)(const pcn_job *j, ptrdiff_t c0, float *PCN_RESTRICT wb) {
    const ptrdiff_t KH = j->KH, KW = j->KW;
    ptrdiff_t k, l;
    if (!j->slab) {
        const ptrdiff_t c = c0;
        if (j->kind == PCN_JOB_DENSE) {
            float *d = wb + NCHW_E * KW;
            if (j->reparam) {
                pcn_reparam_channel(j->kh_raw + c * j->RKV, j->kw_raw + c * j->RKW, j->k7_raw + c * 49, j->RKV, j->RKW,
                                    d, KW, 1);
            } else {
                memcpy(d, j->w_raw + c * KH * KW, sizeof(float) * (size_t)(KH * KW));
            }
        } else {
            float *kh = wb, *kr = kh + KH + 2 * NCHW_E, *k7 = kr + KW + 2 * NCHW_VW;
            memcpy(kh + NCHW_E, j->kh_raw + c * KH, sizeof(float) * (size_t)KH);
            for (k = 0; k < KW; k++) kr[NCHW_VW + k] = j->kw_raw[c * KW + (KW - 1 - k)];
            if (j->with_dw7) memcpy(k7 + NCHW_E * 7, j->k7_raw + c * 49, sizeof(float) * 49);
        }
    } else {
        const ptrdiff_t cv = pmin(VL, j->C - c0);
        if (j->kind == PCN_JOB_DENSE) {
            float *d = wb + NHWC_E * KW * VL, *bias = wb + (KH + 2 * NHWC_E) * KW * VL;
            for (l = 0; l < VL; l++) {
                const ptrdiff_t c = c0 + l;
                if (l >= cv) {
                    for (k = 0; k < KH * KW; k++) d[k * VL + l] = 0.0f;
                } else if (j->reparam) {
                    pcn_reparam_channel(j->kh_raw + c * j->RKV, j->kw_raw + c * j->RKW, j->k7_raw + c * 49, j->RKV,
                                        j->RKW, d + l, KW * VL, VL);
                } else {
                    for (k = 0; k < KH * KW; k++) d[k * VL + l] = j->w_raw[c * KH * KW + k];
                }
            }
            for (l = 0; l < VL; l++) bias[l] = (l < cv && j->bias_raw) ? j->bias_raw[c0 + l] : 0.0f;
        } else {
            float *kh = wb, *kw = kh + (KH + 2 * NHWC_E) * VL, *k7 = kw + (KW + 2 * NHWC_JP) * VL;
            for (k = 0; k < KH; k++)
                for (l = 0; l < VL; l++) kh[(k + NHWC_E) * VL + l] = l < cv ? j->kh_raw[(c0 + l) * KH + k] : 0.0f;
            for (k = 0; k < KW; k++)
                for (l = 0; l < VL; l++) kw[(k + NHWC_JP) * VL + l] = l < cv ? j->kw_raw[(c0 + l) * KW + k] : 0.0f;
            if (j->with_dw7)
                for (k = 0; k < 49; k++)
                    for (l = 0; l < VL; l++)
                        k7[(k + NHWC_E * 7) * VL + l] = l < cv ? j->k7_raw[(c0 + l) * 49 + k] : 0.0f;
        }
    }
}

/* ---------------------------------------------------------------- NCHW */

/* Band of a dense kernel (KH x KW, padding PH, PW) over the padded plane xp for the tile at
 * output (i0, j0) with R rows and nvalid real output columns. Returns 0 when no tap reaches. */
static int PCN_FN(nchw_dense_band)(band_t *bd, const float *wext, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t PH,
                                   ptrdiff_t PW, const float *xp, ptrdiff_t ldx, ptrdiff_t H, ptrdiff_t W, ptrdiff_t i0,
                                   ptrdiff_t R, ptrdiff_t j0, ptrdiff_t nvalid) {
    const ptrdiff_t s0 = pmax(0, i0 - PH), s1 = pmin(H - 1, i0 + R - 1 - PH + KH - 1);
    const ptrdiff_t kx0 = pmax(0, PW - (j0 + nvalid - 1)), kx1 = pmin(KW - 1, W - 1 + PW - j0);
    if (s0 > s1 || kx0 > kx1) return 0;
    bd->a = wext + (s0 - i0 + PH + NCHW_E) * KW + kx0;
    bd->ar = -KW;
    bd->as = KW;
    bd->b = xp + s0 * ldx + NCHW_VW + j0 + kx0 - PW;
    bd->bs = ldx;
    bd->bi = VL;
    bd->ns = s1 - s0 + 1;
    bd->m = kx1 - kx0 + 1;
    bd->astep = 1;
    bd->bstep = 1;
    return 1;
}

static void PCN_FN(nchw_copy_plane)(float *PCN_RESTRICT xp, ptrdiff_t ldx, const float *PCN_RESTRICT x, ptrdiff_t H,
                                    ptrdiff_t W) {
    ptrdiff_t s;
    for (s = 0; s < H; s++) memcpy(xp + s * ldx + NCHW_VW, x + s * W, sizeof(float) * (size_t)W);
}

/* Dense depthwise conv of one NCHW plane: tiles of NCHW_R rows x NCHW_VW columns. */
static void PCN_FN(dwconv_nchw_plane)(const pcn_job *j, ptrdiff_t n, ptrdiff_t c, float *scratch) {
    const ptrdiff_t H = j->H, W = j->W, OH = j->OH, OW = j->OW, ldx = PCN_FN(nchw_ldx)(j);
    const float *wext = scratch;
    float *xp = PCN_FN(scratch_input)(j, scratch);
    float *y = j->y + (n * j->C + c) * OH * OW;
    const vec init = j->bias_raw ? V_SET1(j->bias_raw[c]) : V_ZERO();
    ptrdiff_t i0, j0;
    PCN_FN(nchw_copy_plane)(xp, ldx, j->x + (n * j->C + c) * H * W, H, W);
    for (i0 = 0; i0 < OH; i0 += NCHW_R) {
        const ptrdiff_t R = pmin(NCHW_R, OH - i0);
        for (j0 = 0; j0 < OW; j0 += NCHW_VW) {
            const ptrdiff_t nv = pmin(NCHW_VW, OW - j0), V = ceil_div(nv, VL);
            band_t bd;
            int nb = PCN_FN(nchw_dense_band)(&bd, wext, j->KH, j->KW, j->PH, j->PW, xp, ldx, H, W, i0, R, j0, nv);
            PCN_FN(tiles_nchw)
            [R - 1][V - 1](init, &bd, nb, y + i0 * OW + j0, OW, VL, (int)(nv - (V - 1) * VL), VL, NULL);
        }
    }
}

/* OC (+ DW7) of one NCHW plane: vertical band pass into T, then horizontal band pass with the
 * DW7 taps accumulated into the same registers. */
static void PCN_FN(parc_nchw_plane)(const pcn_job *j, ptrdiff_t n, ptrdiff_t c, float *scratch) {
    const ptrdiff_t H = j->H, W = j->W, OH = j->OH, OW = j->OW, KV = j->KH, PV = j->PH;
    const ptrdiff_t KW = j->KW, PW = j->PW, ldx = PCN_FN(nchw_ldx)(j), ldt = PCN_FN(nchw_ldt)(j);
    const float *kh = scratch, *kr = kh + KV + 2 * NCHW_E, *k7 = kr + KW + 2 * NCHW_VW;
    float *xp = PCN_FN(scratch_input)(j, scratch), *t = PCN_FN(scratch_inter)(j, scratch);
    float *y = j->y + (n * j->C + c) * OH * OW;
    const vec zero = V_ZERO();
    ptrdiff_t i0, j0;
    PCN_FN(nchw_copy_plane)(xp, ldx, j->x + (n * j->C + c) * H * W, H, W);
    /* vertical: T[i][j] = sum_s k_h[s - i + PV] x[s][j], output rows of T: OH, columns W */
    for (i0 = 0; i0 < OH; i0 += NCHW_R) {
        const ptrdiff_t R = pmin(NCHW_R, OH - i0);
        const ptrdiff_t s0 = pmax(0, i0 - PV), s1 = pmin(H - 1, i0 + R - 1 - PV + KV - 1);
        for (j0 = 0; j0 < W; j0 += NCHW_VW) {
            const ptrdiff_t V = ceil_div(pmin(NCHW_VW, W - j0), VL);
            band_t bd;
            int nb = 0;
            if (s0 <= s1) {
                bd.a = kh + (s0 - i0 + PV + NCHW_E);
                bd.ar = -1;
                bd.as = 1;
                bd.b = xp + s0 * ldx + NCHW_VW + j0;
                bd.bs = ldx;
                bd.bi = VL;
                bd.ns = s1 - s0 + 1;
                bd.m = 1;
                bd.astep = bd.bstep = 0;
                nb = 1;
            }
            PCN_FN(tiles_nchw)[R - 1][V - 1](zero, &bd, nb, t + i0 * ldt + j0, ldt, VL, VL, VL, NULL);
        }
    }
    /* horizontal: y[i][j] = sum_s T[i][s] k_w[s - j + PW]  (+ DW7 taps) */
    for (i0 = 0; i0 < OH; i0 += NCHW_R) {
        const ptrdiff_t R = pmin(NCHW_R, OH - i0);
        for (j0 = 0; j0 < OW; j0 += NCHW_VW) {
            const ptrdiff_t nv = pmin(NCHW_VW, OW - j0), V = ceil_div(nv, VL);
            const ptrdiff_t s0 = pmax(0, j0 - PW), s1 = pmin(W - 1, j0 + nv - 1 - PW + KW - 1);
            band_t bd[2];
            int nb = 0;
            if (s0 <= s1) {
                bd[0].a = t + i0 * ldt + s0;
                bd[0].ar = ldt;
                bd[0].as = 1;
                bd[0].b = kr + NCHW_VW + j0 - s0 + KW - 1 - PW;
                bd[0].bs = -1;
                bd[0].bi = VL;
                bd[0].ns = s1 - s0 + 1;
                bd[0].m = 1;
                bd[0].astep = bd[0].bstep = 0;
                nb = 1;
            }
            if (j->with_dw7) nb += PCN_FN(nchw_dense_band)(&bd[nb], k7, 7, 7, 3, 3, xp, ldx, H, W, i0, R, j0, nv);
            PCN_FN(tiles_nchw)
            [R - 1][V - 1](zero, bd, nb, y + i0 * OW + j0, OW, VL, (int)(nv - (V - 1) * VL), VL, NULL);
        }
    }
}

/* ---------------------------------------------------------------- NHWC */

/* Copy channels [c0, c0 + VL) of image n into the slab xs (H rows x (W + 2 JP) pixels x VL),
 * lanes past C set to zero. NCHW input is gathered from VL planes. */
static void PCN_FN(nhwc_copy_slab)(const pcn_job *j, ptrdiff_t n, ptrdiff_t c0, float *PCN_RESTRICT xs) {
    const ptrdiff_t H = j->H, W = j->W, C = j->C, ldx = PCN_FN(nhwc_ldx)(j);
    const ptrdiff_t cv = pmin(VL, C - c0);
    const float *x = j->x + n * H * W * C + c0;
    ptrdiff_t s, q, l;
    if (j->layout == PCN_NCHW) {
        const float *planes = j->x + (n * C + c0) * H * W;
        for (s = 0; s < H; s++) {
            float *d = xs + s * ldx + NHWC_JP * VL;
            for (l = 0; l < VL; l++) {
                const float *src = planes + l * H * W + s * W;
                if (l < cv)
                    for (q = 0; q < W; q++) d[q * VL + l] = src[q];
                else
                    for (q = 0; q < W; q++) d[q * VL + l] = 0.0f;
            }
        }
        return;
    }
    for (s = 0; s < H; s++) {
        float *d = xs + s * ldx + NHWC_JP * VL;
        const float *src = x + s * W * C;
        if (cv == VL) {
            for (q = 0; q < W; q++) V_STORE(d + q * VL, V_LOAD(src + q * C));
        } else {
            for (q = 0; q < W; q++)
                for (l = 0; l < VL; l++) d[q * VL + l] = l < cv ? src[q * C + l] : 0.0f;
        }
    }
}

static int PCN_FN(nhwc_dense_band)(band_t *bd, const float *wp, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t PH, ptrdiff_t PW,
                                   const float *xs, ptrdiff_t ldx, ptrdiff_t H, ptrdiff_t W, ptrdiff_t i0, ptrdiff_t R,
                                   ptrdiff_t j0, ptrdiff_t J) {
    const ptrdiff_t s0 = pmax(0, i0 - PH), s1 = pmin(H - 1, i0 + R - 1 - PH + KH - 1);
    const ptrdiff_t kx0 = pmax(0, PW - (j0 + J - 1)), kx1 = pmin(KW - 1, W - 1 + PW - j0);
    if (s0 > s1 || kx0 > kx1) return 0;
    bd->a = wp + ((s0 - i0 + PH + NHWC_E) * KW + kx0) * VL;
    bd->ar = -KW * VL;
    bd->as = KW * VL;
    bd->b = xs + s0 * ldx + (NHWC_JP + j0 + kx0 - PW) * VL;
    bd->bs = ldx;
    bd->bi = VL;
    bd->ns = s1 - s0 + 1;
    bd->m = kx1 - kx0 + 1;
    bd->astep = VL;
    bd->bstep = VL;
    return 1;
}

/* Where a slab unit writes: straight into the NHWC output, or (NCHW) into the output slab. */
typedef struct slab_out {
    float *y;
    const float *gate; /* the job's gate at the slab's origin (NHWC only), or NULL */
    ptrdiff_t ldo, ldi;
    int n;
} slab_out;

static slab_out PCN_FN(slab_target)(const pcn_job *j, ptrdiff_t n, ptrdiff_t c0, float *scratch) {
    slab_out o;
    if (j->layout == PCN_NCHW) {
        o.y = PCN_FN(scratch_oslab)(j, scratch);
        o.gate = NULL;
        o.ldo = j->OW * VL;
        o.ldi = VL;
        o.n = VL;
    } else {
        o.y = j->y + n * j->OH * j->OW * j->C + c0;
        o.gate = j->gate ? j->gate + n * j->OH * j->OW * j->C + c0 : NULL;
        o.ldo = j->OW * j->C;
        o.ldi = j->C;
        o.n = (int)pmin(VL, j->C - c0);
    }
    return o;
}

/* NCHW slab route: scatter the output slab to the planes of channels [c0, c0 + VL). */
static void PCN_FN(slab_scatter)(const pcn_job *j, ptrdiff_t n, ptrdiff_t c0, const float *PCN_RESTRICT oslab) {
    const ptrdiff_t OH = j->OH, OW = j->OW, cv = pmin(VL, j->C - c0);
    ptrdiff_t l, e;
    if (j->layout != PCN_NCHW) return;
    for (l = 0; l < cv; l++) {
        float *d = j->y + (n * j->C + c0 + l) * OH * OW;
        for (e = 0; e < OH * OW; e++) d[e] = oslab[e * VL + l];
    }
}

static void PCN_FN(dwconv_nhwc_slab)(const pcn_job *j, ptrdiff_t n, ptrdiff_t c0, float *scratch) {
    const ptrdiff_t H = j->H, W = j->W, OH = j->OH, OW = j->OW;
    const ptrdiff_t ldx = PCN_FN(nhwc_ldx)(j);
    const float *wp = scratch;
    float *xs = PCN_FN(scratch_input)(j, scratch);
    const slab_out o = PCN_FN(slab_target)(j, n, c0, scratch);
    vec init;
    ptrdiff_t i0, j0;
    init = V_LOAD(wp + (j->KH + 2 * NHWC_E) * j->KW * VL);
    PCN_FN(nhwc_copy_slab)(j, n, c0, xs);
    for (i0 = 0; i0 < OH; i0 += NHWC_R) {
        const ptrdiff_t R = pmin(NHWC_R, OH - i0);
        for (j0 = 0; j0 < OW; j0 += NHWC_J) {
            const ptrdiff_t J = pmin(NHWC_J, OW - j0);
            band_t bd;
            int nb = PCN_FN(nhwc_dense_band)(&bd, wp, j->KH, j->KW, j->PH, j->PW, xs, ldx, H, W, i0, R, j0, J);
            PCN_FN(tiles_nhwc)
            [R - 1][J - 1](init, &bd, nb, o.y + i0 * o.ldo + j0 * o.ldi, o.ldo, o.ldi, o.n, o.n,
                           o.gate ? o.gate + i0 * o.ldo + j0 * o.ldi : NULL);
        }
    }
    PCN_FN(slab_scatter)(j, n, c0, o.y);
}

static void PCN_FN(parc_nhwc_slab)(const pcn_job *j, ptrdiff_t n, ptrdiff_t c0, float *scratch) {
    const ptrdiff_t H = j->H, W = j->W, OH = j->OH, OW = j->OW;
    const ptrdiff_t KV = j->KH, PV = j->PH, KW = j->KW, PW = j->PW;
    const ptrdiff_t ldx = PCN_FN(nhwc_ldx)(j);
    const float *kh = scratch, *kw = kh + (KV + 2 * NHWC_E) * VL;
    const float *k7 = kw + (KW + 2 * NHWC_JP) * VL;
    float *xs = PCN_FN(scratch_input)(j, scratch), *t = PCN_FN(scratch_inter)(j, scratch);
    const slab_out o = PCN_FN(slab_target)(j, n, c0, scratch);
    const vec zero = V_ZERO();
    ptrdiff_t i0, j0;
    PCN_FN(nhwc_copy_slab)(j, n, c0, xs);
    /* vertical: T[i][j] = sum_s k_h[s - i + PV] x[s][j]  (T: OH x W pixels x VL) */
    for (i0 = 0; i0 < OH; i0 += NHWC_R) {
        const ptrdiff_t R = pmin(NHWC_R, OH - i0);
        const ptrdiff_t s0 = pmax(0, i0 - PV), s1 = pmin(H - 1, i0 + R - 1 - PV + KV - 1);
        for (j0 = 0; j0 < W; j0 += NHWC_J) {
            const ptrdiff_t J = pmin(NHWC_J, W - j0);
            band_t bd;
            int nb = 0;
            if (s0 <= s1) {
                bd.a = kh + (s0 - i0 + PV + NHWC_E) * VL;
                bd.ar = -VL;
                bd.as = VL;
                bd.b = xs + s0 * ldx + (NHWC_JP + j0) * VL;
                bd.bs = ldx;
                bd.bi = VL;
                bd.ns = s1 - s0 + 1;
                bd.m = 1;
                bd.astep = bd.bstep = 0;
                nb = 1;
            }
            PCN_FN(tiles_nhwc)[R - 1][J - 1](zero, &bd, nb, t + (i0 * W + j0) * VL, W * VL, VL, VL, VL, NULL);
        }
    }
    /* horizontal: y[i][j] = sum_s T[i][s] k_w[s - j + PW]  (+ DW7 taps) */
    for (i0 = 0; i0 < OH; i0 += NHWC_R) {
        const ptrdiff_t R = pmin(NHWC_R, OH - i0);
        for (j0 = 0; j0 < OW; j0 += NHWC_J) {
            const ptrdiff_t J = pmin(NHWC_J, OW - j0);
            const ptrdiff_t s0 = pmax(0, j0 - PW), s1 = pmin(W - 1, j0 + J - 1 - PW + KW - 1);
            band_t bd[2];
            int nb = 0;
            if (s0 <= s1) {
                bd[0].a = t + (i0 * W + s0) * VL;
                bd[0].ar = W * VL;
                bd[0].as = VL;
                bd[0].b = kw + (s0 - j0 + PW + NHWC_JP) * VL;
                bd[0].bs = VL;
                bd[0].bi = -VL;
                bd[0].ns = s1 - s0 + 1;
                bd[0].m = 1;
                bd[0].astep = bd[0].bstep = 0;
                nb = 1;
            }
            if (j->with_dw7) nb += PCN_FN(nhwc_dense_band)(&bd[nb], k7, 7, 7, 3, 3, xs, ldx, H, W, i0, R, j0, J);
            PCN_FN(tiles_nhwc)
            [R - 1][J - 1](zero, bd, nb, o.y + i0 * o.ldo + j0 * o.ldi, o.ldo, o.ldi, o.n, o.n,
                           o.gate ? o.gate + i0 * o.ldo + j0 * o.ldi : NULL);
        }
    }
    PCN_FN(slab_scatter)(j, n, c0, o.y);
}

/* ---------------------------------------------------------------- driver */

/* Units are channel-major (u = channel or slab index * N + n), so a thread packs the weights
 * of a channel (slab) once and reuses them for every image of the batch. */
static void PCN_FN(run)(const pcn_job *j, size_t u0, size_t u1, float *scratch) {
    size_t u;
    ptrdiff_t loaded = -1;
    memset(scratch, 0, sizeof(float) * PCN_FN(scratch_floats)(j));
    for (u = u0; u < u1; u++) {
        const ptrdiff_t n = (ptrdiff_t)u % j->N, g = (ptrdiff_t)u / j->N;
        if (!j->slab) {
            if (g != loaded) PCN_FN(load_weights)(j, g, scratch);
            if (j->kind == PCN_JOB_DENSE)
                PCN_FN(dwconv_nchw_plane)(j, n, g, scratch);
            else
                PCN_FN(parc_nchw_plane)(j, n, g, scratch);
        } else {
            if (g != loaded) PCN_FN(load_weights)(j, g * VL, scratch);
            if (j->kind == PCN_JOB_DENSE)
                PCN_FN(dwconv_nhwc_slab)(j, n, g * VL, scratch);
            else
                PCN_FN(parc_nhwc_slab)(j, n, g * VL, scratch);
        }
        loaded = g;
    }
}

const pcn_kernels PCN_CAT(pcn_kernels, PCN_SUFFIX) = {
    PCN_ISA_ID, PCN_ISA_STR, VL, PCN_FN(scratch_floats), PCN_FN(units), PCN_FN(run),
};
