/*
 * gemm_impl.h - the GEMM kernels of the model (spec clause 16.2), written once and compiled once
 * per ISA like kernels_impl.h and fused_impl.h (included after both by kernels_<isa>.c, which
 * also define GEMM_MR, the rows of a register tile, and GEMM_NV, its vectors of columns; GEMM_NV
 * is even so that a paired panel splits into two halves).
 *
 * A register tile acc[r][i] (R <= GEMM_MR rows, NVT <= GEMM_NV vectors of VL columns) is one
 * chain of fused multiply-adds per element over k = 0 .. Kp-1 in ascending order, starting from
 * zero. The padding k >= K multiplies zeros (packed A and B are both zero there), which leaves
 * every accumulator unchanged. Nothing depends on which thread runs a tile or where its rows lie:
 * results are bit-identical for any thread count and batch position.
 *
 * Operands: B packed once (gemm.c: panels of Kp rows x NVT*VL floats); A packed per row tile into
 * the thread's scratch in groups of VL values of k: ap[(g*GEMM_MR + r)*VL + l] = A[m0 + r][g*VL + l],
 * so a tile reads one pointer with constant offsets, and packing is a vector copy per row.
 * Epilogues (bias, GELU, the gates, the residual with res_scale) and the next LayerNormGeneral
 * act on the accumulators / rows while they are in registers / cache.
 */

#define GEMM_NR (GEMM_NV * VL)
#if defined(__GNUC__) || defined(__clang__)
#define GEMM_UNROLL16 PCN_PRAGMA(GCC unroll 16)
#else
#define GEMM_UNROLL16
#endif
#if GEMM_MR != 4 && GEMM_MR != 6 && GEMM_MR != 8 && GEMM_MR != 12
#error "GEMM_MR must be 4, 6, 8 or 12"
#endif

/* Rows [m0, m0 + mr) of the job's A into ap (layout above), zero beyond K. */
static void PCN_FN(gemm_pack_a)(const pcn_gemm_job *j, ptrdiff_t m0, ptrdiff_t mr, float *PCN_RESTRICT ap) {
    const ptrdiff_t K = j->b->K, Kp = j->b->Kp, G = Kp / VL;
    ptrdiff_t r, g, t, k;
    for (r = 0; r < mr; r++) {
        float *dst = ap + r * VL;
        if (!j->ind) {
            const float *src = j->a + (m0 + r) * j->lda;
            for (g = 0; g * VL + VL <= K; g++) V_STORE(dst + g * GEMM_MR * VL, V_LOAD(src + g * VL));
            if (g < G) {
                ptrdiff_t l;
                for (l = 0; l < VL; l++) dst[g * GEMM_MR * VL + l] = g * VL + l < K ? src[g * VL + l] : 0.0f;
            }
        } else {
            const float *const *seg = j->ind + (m0 + r) * j->ks;
            k = 0;
            for (t = 0; t < j->ks; t++) { /* each segment in runs that stay inside one group of VL */
                const float *src = seg[t];
                ptrdiff_t q = 0;
                while (q < j->kc) {
                    const ptrdiff_t l = k % VL, n = pmin(VL - l, j->kc - q);
                    if (n == VL)
                        V_STORE(dst + (k / VL) * GEMM_MR * VL, V_LOAD(src + q));
                    else
                        memcpy(dst + (k / VL) * GEMM_MR * VL + l, src + q, sizeof(float) * (size_t)n);
                    q += n;
                    k += n;
                }
            }
            for (; k < Kp; k++) dst[(k / VL) * GEMM_MR * VL + k % VL] = 0.0f;
        }
    }
}

/* The epilogue of a tile whose accumulators are in out[r][i] (R rows, NVT vectors; paired: vector
 * i < NVT/2 pairs with i + NVT/2), for rows m0.. and output columns n0.. of vector 0; `nlast`
 * lanes of the last output vector are real. Bias sums are separate roundings (as in the reference),
 * the residual is one fused multiply-add x * scale + acc, GELU is fused_impl.h's. */
static void PCN_FN(gemm_epilogue)(const pcn_gemm_job *j, vec out[GEMM_MR][GEMM_NV], int R, int NVT, ptrdiff_t m0,
                                  ptrdiff_t n0, int nlast) {
    const float *bias = j->b->bias;
    int r, i;
    if (j->epi == PCN_EPI_STORE || j->epi == PCN_EPI_RESIDUAL) {
        for (r = 0; r < R; r++) {
            float *y = j->y + (m0 + r) * j->ldy + n0;
            for (i = 0; i < NVT; i++) {
                const ptrdiff_t n = i == NVT - 1 ? nlast : VL;
                vec v = out[r][i];
                if (j->epi == PCN_EPI_RESIDUAL) {
                    const vec xv = PCN_FN(load_n)(y + i * VL, n);
                    v = j->scale ? V_FMA(xv, PCN_FN(load_n)(j->scale + n0 + i * VL, n), v) : V_ADD(xv, v);
                } else if (bias) {
                    v = V_ADD(v, PCN_FN(load_n)(bias + n0 + i * VL, n));
                }
                PCN_FN(store_n)(y + i * VL, v, n);
            }
        }
    } else {
        const int H = NVT / 2;
        const ptrdiff_t Nh = j->b->out_cols;
        for (r = 0; r < R; r++) {
            float *y = j->y + (m0 + r) * j->ldy + n0;
            for (i = 0; i < H; i++) {
                const ptrdiff_t n = i == H - 1 ? nlast : VL, c = n0 + i * VL;
                vec a = out[r][i], h = out[r][i + H];
                if (bias) {
                    a = V_ADD(a, PCN_FN(load_n)(bias + c, n));
                    h = V_ADD(h, PCN_FN(load_n)(bias + Nh + c, n));
                }
                if (j->epi == PCN_EPI_PAIR_SPLIT) {
                    PCN_FN(store_n)(y + i * VL, a, n);
                    PCN_FN(store_n)(j->y2 + (m0 + r) * j->ldy2 + c, PCN_FN(gelu_v)(h), n);
                } else {
                    PCN_FN(store_n)(y + i * VL, V_MUL(a, PCN_FN(gelu_v)(h)), n);
                }
            }
        }
    }
}

/* The tile: R rows x NVT vectors, then the epilogue for rows m0.. and output columns n0.. of
 * vector 0 (paired: NVT = 2h vectors, vector i < h pairs with i + h); `nlast` lanes of the last
 * (output) vector are real. R and NVT are compile-time constants at every call site. */
PCN_INLINE void PCN_FN(gemm_tile_generic)(const int R, const int NVT, const pcn_gemm_job *j, const float *ap,
                                          const float *bp, ptrdiff_t m0, ptrdiff_t n0, int nlast) {
    vec acc[GEMM_MR][GEMM_NV];
    const ptrdiff_t G = j->b->Kp / VL;
    ptrdiff_t g;
    int r, i, kk;
    GEMM_UNROLL16
    for (r = 0; r < R; r++) {
        GEMM_UNROLL16
        for (i = 0; i < NVT; i++) acc[r][i] = V_ZERO();
    }
    for (g = 0; g < G; g++, ap += GEMM_MR * VL, bp += VL * NVT * VL) {
        GEMM_UNROLL16
        for (kk = 0; kk < VL; kk++) {
            vec bv[GEMM_NV];
            GEMM_UNROLL16
            for (i = 0; i < NVT; i++) bv[i] = V_LOAD(bp + kk * NVT * VL + i * VL);
            GEMM_UNROLL16
            for (r = 0; r < R; r++) {
                const vec av = V_SET1(ap[r * VL + kk]);
                GEMM_UNROLL16
                for (i = 0; i < NVT; i++) acc[r][i] = V_FMA(av, bv[i], acc[r][i]);
            }
        }
    }
    if (nlast == VL && (j->epi == PCN_EPI_STORE || j->epi == PCN_EPI_RESIDUAL)) {
        /* full vectors, no GELU: the same arithmetic as gemm_epilogue, from the registers */
        const float *bias = j->b->bias, *scale = j->scale;
        GEMM_UNROLL16
        for (r = 0; r < R; r++) {
            float *y = j->y + (m0 + r) * j->ldy + n0;
            GEMM_UNROLL16
            for (i = 0; i < NVT; i++) {
                vec v = acc[r][i];
                if (j->epi == PCN_EPI_RESIDUAL)
                    v = scale ? V_FMA(V_LOAD(y + i * VL), V_LOAD(scale + n0 + i * VL), v)
                              : V_ADD(V_LOAD(y + i * VL), v);
                else if (bias)
                    v = V_ADD(v, V_LOAD(bias + n0 + i * VL));
                V_STORE(y + i * VL, v);
            }
        }
        return;
    }
    {
        vec out[GEMM_MR][GEMM_NV]; /* the epilogue runs once per tile: one copy of its code per ISA */
        GEMM_UNROLL16
        for (r = 0; r < R; r++) {
            GEMM_UNROLL16
            for (i = 0; i < NVT; i++) out[r][i] = acc[r][i];
        }
        PCN_FN(gemm_epilogue)(j, out, R, NVT, m0, n0, nlast);
    }
}

typedef void (*PCN_FN(gemm_tile_fn))(const pcn_gemm_job *j, const float *ap, const float *bp, ptrdiff_t m0,
                                     ptrdiff_t n0, int nlast);

#define GEMM_DEF_TILE(R, V)                                                                                            \
    static void PCN_FN(gemm_tile_r##R##x##V)(const pcn_gemm_job *j, const float *ap, const float *bp, ptrdiff_t m0,    \
                                             ptrdiff_t n0, int nlast) {                                                \
        PCN_FN(gemm_tile_generic)(R, V, j, ap, bp, m0, n0, nlast);                                                     \
    }

/* Instantiate R = 1..GEMM_MR (<= 12) x V = 1..GEMM_NV (2 or 4). */
#if GEMM_NV == 2
#define GEMM_DEF_ROW(R) GEMM_DEF_TILE(R, 1) GEMM_DEF_TILE(R, 2)
#define GEMM_TROW(R)                                                                                                   \
    { PCN_FN(gemm_tile_r##R##x1), PCN_FN(gemm_tile_r##R##x2) }
#elif GEMM_NV == 4
#define GEMM_DEF_ROW(R) GEMM_DEF_TILE(R, 1) GEMM_DEF_TILE(R, 2) GEMM_DEF_TILE(R, 3) GEMM_DEF_TILE(R, 4)
#define GEMM_TROW(R)                                                                                                   \
    { PCN_FN(gemm_tile_r##R##x1), PCN_FN(gemm_tile_r##R##x2), PCN_FN(gemm_tile_r##R##x3), PCN_FN(gemm_tile_r##R##x4) }
#else
#error "GEMM_NV must be 2 or 4"
#endif
GEMM_DEF_ROW(1)
GEMM_DEF_ROW(2)
GEMM_DEF_ROW(3)
GEMM_DEF_ROW(4)
#if GEMM_MR > 4
GEMM_DEF_ROW(5)
GEMM_DEF_ROW(6)
#endif
#if GEMM_MR > 6
GEMM_DEF_ROW(7)
GEMM_DEF_ROW(8)
#endif
#if GEMM_MR > 8
GEMM_DEF_ROW(9)
GEMM_DEF_ROW(10)
GEMM_DEF_ROW(11)
GEMM_DEF_ROW(12)
#endif

static const PCN_FN(gemm_tile_fn) PCN_FN(gemm_tiles)[GEMM_MR][GEMM_NV] = {
    GEMM_TROW(1), GEMM_TROW(2),  GEMM_TROW(3),  GEMM_TROW(4),
#if GEMM_MR > 4
    GEMM_TROW(5), GEMM_TROW(6),
#endif
#if GEMM_MR > 6
    GEMM_TROW(7), GEMM_TROW(8),
#endif
#if GEMM_MR > 8
    GEMM_TROW(9), GEMM_TROW(10), GEMM_TROW(11), GEMM_TROW(12),
#endif
};

/* The row operation (clause 4.1) on rows [r0, r1): the next LayerNormGeneral, or two (stem). */
static void PCN_FN(gemm_rows)(const pcn_gemm_job *j, ptrdiff_t r0, ptrdiff_t r1) {
    const ptrdiff_t C = j->b->out_cols;
    ptrdiff_t r;
    if (j->rowop == PCN_ROW_NONE) return;
    for (r = r0; r < r1; r++) {
        float *n1 = j->n1 + r * j->ldn;
        PCN_FN(lng)(j->y + r * j->ldy, n1, C, j->w1, j->eps);
        if (j->rowop == PCN_ROW_NORM2) PCN_FN(lng)(n1, j->n2 + r * j->ldn, C, j->w2, j->eps);
    }
}

/* One tile of the unit against panels [p0, p1). */
PCN_INLINE void PCN_FN(gemm_tile_panels)(const pcn_gemm_job *j, ptrdiff_t t, const float *ap, ptrdiff_t p0,
                                         ptrdiff_t p1) {
    const pcn_gemm_b *b = j->b;
    const ptrdiff_t m0 = t * j->tile_base + pmin(t, j->tile_rem), mr = j->tile_base + (t < j->tile_rem);
    ptrdiff_t p;
    for (p = p0; p < p1; p++) {
        const ptrdiff_t n0 = p * b->panel_cols, w = pmin(b->panel_cols, b->out_cols - n0);
        const ptrdiff_t nv = ceil_div(w, VL);
        const int nlast = (int)(w - (nv - 1) * VL);
        PCN_FN(gemm_tiles)[mr - 1][(b->pair ? 2 * nv : nv) - 1](j, ap, b->data + p * b->Kp * GEMM_NR, m0, n0, nlast);
    }
}

/* One work unit: row tiles [um*tb, ..) x panels [un*pb, ..). Weights that stay in L2 (B of
 * pcn_gemm_panel_outer bytes at most): each row tile is packed, then multiplied by every panel.
 * Larger weights, which a run reads from memory once: the unit's tiles are packed first and each
 * panel then serves all of them while it is in cache. With all panels in one unit the row
 * operation follows. */
static void PCN_FN(gemm_unit)(const pcn_gemm_job *j, size_t unit, float *scratch) {
    const ptrdiff_t um = (ptrdiff_t)unit / j->units_n, un = (ptrdiff_t)unit % j->units_n;
    const ptrdiff_t t0 = um * j->tb, t1 = pmin(t0 + j->tb, j->tiles);
    const ptrdiff_t p0 = un * j->pb, p1 = pmin(p0 + j->pb, j->b->panels);
    const ptrdiff_t astride = GEMM_MR * j->b->Kp;
    ptrdiff_t t, p;
    if (!j->panel_outer) {
        for (t = t0; t < t1; t++) {
            PCN_FN(gemm_pack_a)(j, t * j->tile_base + pmin(t, j->tile_rem), j->tile_base + (t < j->tile_rem), scratch);
            PCN_FN(gemm_tile_panels)(j, t, scratch, p0, p1);
        }
    } else {
        for (t = t0; t < t1; t++) {
            const ptrdiff_t first = t * j->tile_base + pmin(t, j->tile_rem);
            PCN_FN(gemm_pack_a)(j, first, j->tile_base + (t < j->tile_rem), scratch + (t - t0) * astride);
        }
        for (p = p0; p < p1; p++)
            for (t = t0; t < t1; t++) PCN_FN(gemm_tile_panels)(j, t, scratch + (t - t0) * astride, p, p + 1);
    }
    if (j->units_n == 1 && j->rowop != PCN_ROW_NONE && !j->rows_apart)
        PCN_FN(gemm_rows)(j, t0 * j->tile_base + pmin(t0, j->tile_rem), t1 * j->tile_base + pmin(t1, j->tile_rem));
}

const pcn_gemm_kernels PCN_CAT(pcn_gemm_kernels, PCN_SUFFIX) = {
    PCN_ISA_ID, VL, GEMM_MR, GEMM_NV, PCN_FN(gemm_unit), PCN_FN(gemm_rows),
};
