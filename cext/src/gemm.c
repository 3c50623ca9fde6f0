/*
 * gemm.c - the packed-weight GEMM (spec clause 16.2): packing B into the panel layout of one
 * ISA's kernels (gemm_impl.h), the partition of a GEMM into work units, and the public entry
 * points of pcn_gemm.h. The model (plan.c) runs the same jobs inside its own parallel region.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "pcn_gemm.h"
#include "pcn_internal.h"

#define ALIGN 64
/* Bytes of packed B a work unit streams (kept in L2 and reused by the unit's row tiles). */
#define PCN_GEMM_B_BLOCK ((size_t)256 << 10)
/* A row operation is fused into the units when whole rows of B fit this many bytes. */
#define PCN_GEMM_FUSED_ROW_B ((size_t)512 << 10)
/* Work units per thread the partition aims at (dynamic scheduling balances them). */
#define PCN_GEMM_UNITS_PER_THREAD 8
/* Bytes of packed A a unit holds when its tiles are all packed before the panels pass over them
 * (weights of more than PCN_GEMM_PANEL_OUTER bytes: they come from memory once per run). */
#define PCN_GEMM_A_BLOCK     ((size_t)512 << 10)
#define PCN_GEMM_PANEL_OUTER ((size_t)512 << 10)

struct pcn_packed_matrix {
    pcn_gemm_b b;
};

static ptrdiff_t cdiv(ptrdiff_t a, ptrdiff_t b) {
    return (a + b - 1) / b;
}

/* B[k][n] of the caller's matrix. */
static float b_at(const float *b, ptrdiff_t ldb, int transposed, ptrdiff_t k, ptrdiff_t n) {
    return transposed ? b[n * ldb + k] : b[k * ldb + n];
}

pcn_status pcn_gemm_b_pack(pcn_gemm_b *out, const pcn_gemm_kernels *k, const float *b, ptrdiff_t ldb, int transposed,
                           const float *bias, ptrdiff_t K, ptrdiff_t N, int pair, pcn_error *err) {
    const ptrdiff_t VL = k->vl, NR = (ptrdiff_t)k->nv * VL;
    const ptrdiff_t Kp = cdiv(K, VL) * VL, out_cols = pair ? N / 2 : N, pcols = pair ? NR / 2 : NR;
    const ptrdiff_t panels = cdiv(out_cols, pcols);
    size_t floats, bytes;
    ptrdiff_t p, kk, v;
    memset(out, 0, sizeof *out);
    if (pcn_mul3_ovf((size_t)panels, (size_t)Kp, (size_t)NR, &floats) || floats > PCN_MAX_ELEMS ||
        pcn_add_ovf(floats * sizeof(float), ALIGN, &bytes))
        return pcn_fail(err, PCN_ERR_OVERFLOW, "pcn_gemm_pack: packed B of K=%td N=%td is too large", K, N);
    out->base = malloc(bytes);
    out->bias = bias ? (float *)malloc(sizeof(float) * (size_t)N) : NULL;
    if (!out->base || (bias && !out->bias)) {
        free(out->base);
        free(out->bias);
        memset(out, 0, sizeof *out);
        return pcn_fail(err, PCN_ERR_NOMEM, "pcn_gemm_pack: cannot allocate %zu bytes for packed B", bytes);
    }
    out->data = (float *)(void *)(((uintptr_t)out->base + ALIGN - 1) / ALIGN * ALIGN);
    out->isa = k->isa;
    out->vl = k->vl;
    out->mr = k->mr;
    out->nv = k->nv;
    out->K = K;
    out->Kp = Kp;
    out->N = N;
    out->out_cols = out_cols;
    out->panel_cols = pcols;
    out->panels = panels;
    out->pair = pair;
    if (bias) memcpy(out->bias, bias, sizeof(float) * (size_t)N);
    for (p = 0; p < panels; p++) {
        const ptrdiff_t n0 = p * pcols, w = out_cols - n0 < pcols ? out_cols - n0 : pcols;
        const ptrdiff_t nvh = cdiv(w, VL), nvt = pair ? 2 * nvh : nvh; /* vectors stored per k */
        float *dst = out->data + p * Kp * NR;
        for (kk = 0; kk < Kp; kk++)
            for (v = 0; v < nvt * VL; v++) {
                /* vector v / VL of the panel: in a pair, the first nvh come from the first half */
                const ptrdiff_t half = pair ? v / (nvh * VL) : 0, col = n0 + v % (nvh * VL);
                const int real = kk < K && col < out_cols;
                dst[kk * nvt * VL + v] = real ? b_at(b, ldb, transposed, kk, half * out_cols + col) : 0.0f;
            }
    }
    return PCN_OK;
}

void pcn_gemm_b_free(pcn_gemm_b *b) {
    if (!b) return;
    free(b->base);
    free(b->bias);
    memset(b, 0, sizeof *b);
}

/* Row tiles a unit may hold packed: PCN_GEMM_A_BLOCK bytes of them, at least one. */
ptrdiff_t pcn_gemm_tile_block(const pcn_gemm_b *b) {
    const size_t tile = (size_t)b->mr * (size_t)b->Kp * sizeof(float);
    return tile >= PCN_GEMM_A_BLOCK ? 1 : (ptrdiff_t)(PCN_GEMM_A_BLOCK / tile);
}

/* Whether units pass each panel over all their packed tiles: B larger than what stays in L2. */
static int panel_outer(const pcn_gemm_b *b) {
    return (size_t)b->panels * (size_t)b->Kp * (size_t)b->nv * (size_t)b->vl * sizeof(float) > PCN_GEMM_PANEL_OUTER;
}

size_t pcn_gemm_scratch_floats(const pcn_gemm_b *b) {
    return (size_t)(panel_outer(b) ? pcn_gemm_tile_block(b) : 1) * (size_t)b->mr * (size_t)b->Kp;
}

/* Units of row tiles x panels. Row tiles are balanced (M split into ceil(M / MR) tiles whose sizes
 * differ by at most one), so short M (49 rows at stage 3) wastes no lanes on a ragged last tile.
 * Panels are grouped so a unit's B block stays in L2; row tiles are grouped so that there are
 * about PCN_GEMM_UNITS_PER_THREAD units per thread. Results never depend on this partition. */
size_t pcn_gemm_partition(pcn_gemm_job *j, int threads) {
    const pcn_gemm_b *b = j->b;
    const size_t panel_bytes = (size_t)b->Kp * (size_t)b->nv * (size_t)b->vl * sizeof(float);
    const ptrdiff_t want = (ptrdiff_t)(threads < 1 ? 1 : threads) * PCN_GEMM_UNITS_PER_THREAD;
    ptrdiff_t pb;
    j->tiles = cdiv(j->M, b->mr);
    j->tile_base = j->M / j->tiles;
    j->tile_rem = j->M % j->tiles;
    if (j->rowop != PCN_ROW_NONE && !j->rows_apart && panel_bytes * (size_t)b->panels <= PCN_GEMM_FUSED_ROW_B &&
        j->tiles >= 2 * (threads < 1 ? 1 : threads)) {
        pb = b->panels; /* whole rows per unit: the row operation follows in the unit */
    } else {
        pb = (ptrdiff_t)(PCN_GEMM_B_BLOCK / panel_bytes);
        if (pb < 1) pb = 1;
        if (pb > b->panels) pb = b->panels;
        /* few row tiles: split the panels further so every thread has work */
        while (pb > 1 && j->tiles * cdiv(b->panels, pb) < want) pb = cdiv(pb, 2);
    }
    j->pb = pb;
    j->units_n = cdiv(b->panels, pb);
    j->tb = j->tiles * j->units_n / want;
    if (j->tb < 1) j->tb = 1;
    if (j->tb > j->tiles) j->tb = j->tiles;
    j->panel_outer = panel_outer(b);
    if (j->panel_outer && j->tb > pcn_gemm_tile_block(b)) j->tb = pcn_gemm_tile_block(b);
    j->units_m = cdiv(j->tiles, j->tb);
    return (size_t)(j->units_m * j->units_n);
}

size_t pcn_gemm_row_blocks(pcn_gemm_job *j, ptrdiff_t tb) {
    const pcn_gemm_b *b = j->b;
    j->tiles = cdiv(j->M, b->mr);
    j->tile_base = j->M / j->tiles;
    j->tile_rem = j->M % j->tiles;
    j->pb = b->panels;
    j->units_n = 1;
    j->tb = tb < 1 ? 1 : tb;
    j->panel_outer = 0; /* weights that stay in L2 (the caller checks) */
    return (size_t)(j->units_m = cdiv(j->tiles, j->tb));
}

int pcn_gemm_rowop_separate(const pcn_gemm_job *j) {
    return j->rowop != PCN_ROW_NONE && (j->units_n > 1 || j->rows_apart);
}

/* ------------------------------------------------------------------ public entry points */

pcn_status pcn_gemm_pack(pcn_packed_matrix **PCN_RESTRICT out, const float *PCN_RESTRICT b, size_t ldb,
                         int b_transposed, const float *PCN_RESTRICT bias, size_t K, size_t N, pcn_isa isa,
                         pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_gemm_pack";
    const pcn_gemm_kernels *k;
    pcn_packed_matrix *m;
    size_t last;
    pcn_status st;
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "%s: out is NULL", op);
    *out = NULL;
    if (!b) return pcn_fail(err, PCN_ERR_NULL, "%s: b is NULL", op);
    if (b_transposed != 0 && b_transposed != 1)
        return pcn_fail(err, PCN_ERR_ARG, "%s: b_transposed = %d is neither 0 nor 1", op, b_transposed);
    if ((int)isa < 0 || (int)isa >= PCN_ISA_COUNT)
        return pcn_fail(err, PCN_ERR_ARG, "%s: isa = %d is not a pcn_isa value", op, (int)isa);
    if (K == 0 || N == 0) return pcn_fail(err, PCN_ERR_SHAPE, "%s: K and N must be >= 1, got K=%zu N=%zu", op, K, N);
    if (K > PCN_MAX_ELEMS || N > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: K=%zu N=%zu is too large", op, K, N);
    if (ldb < (b_transposed ? K : N))
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: ldb = %zu is less than the %zu columns of b", op, ldb,
                        b_transposed ? K : N);
    if (pcn_mul_ovf((b_transposed ? N : K) - 1, ldb, &last) || pcn_add_ovf(last, b_transposed ? K : N, &last) ||
        last > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: b (ld %zu) is too large", op, ldb);
    k = pcn_select_gemm(isa);
    if (!k)
        return pcn_fail(err, PCN_ERR_ISA, "%s: ISA %s is not available in this build or on this CPU", op,
                        pcn_isa_name(isa));
    m = (pcn_packed_matrix *)calloc(1, sizeof *m);
    if (!m) return pcn_fail(err, PCN_ERR_NOMEM, "%s: out of memory", op);
    st = pcn_gemm_b_pack(&m->b, k, b, (ptrdiff_t)ldb, b_transposed, bias, (ptrdiff_t)K, (ptrdiff_t)N, 0, err);
    if (st != PCN_OK) {
        free(m);
        return st;
    }
    *out = m;
    return pcn_ok(err);
}

size_t pcn_gemm_packed_k(const pcn_packed_matrix *b) {
    return b ? (size_t)b->b.K : 0;
}
size_t pcn_gemm_packed_n(const pcn_packed_matrix *b) {
    return b ? (size_t)b->b.N : 0;
}

void pcn_gemm_free(pcn_packed_matrix *b) {
    if (!b) return;
    pcn_gemm_b_free(&b->b);
    free(b);
}

/* Validation shared by pcn_gemm_packed and its workspace query; fills the job and thread count. */
static pcn_status gemm_setup(const pcn_packed_matrix *pm, const float *a, size_t lda, float *c, size_t ldc, size_t M,
                             const pcn_options *opt, int check_ptrs, pcn_gemm_job *j, const pcn_gemm_kernels **k,
                             int *threads, size_t *units, size_t *scratch_bytes, pcn_error *err) {
    const char *op = "pcn_gemm_packed";
    size_t last, sb;
    pcn_status st;
    int nt;
    if (!pm) return pcn_fail(err, PCN_ERR_NULL, "%s: b is NULL", op);
    if (check_ptrs && (!a || !c)) return pcn_fail(err, PCN_ERR_NULL, "%s: %s is NULL", op, !a ? "a" : "c");
    if ((st = pcn_check_option_values(opt, err)) != PCN_OK) return st;
    if (opt && opt->isa != PCN_ISA_AUTO && opt->isa != pm->b.isa)
        return pcn_fail(err, PCN_ERR_ARG, "%s: b was packed for %s, options.isa asks for %s", op,
                        pcn_isa_name(pm->b.isa), pcn_isa_name(opt->isa));
    *k = pcn_select_gemm(pm->b.isa);
    if (!*k) return pcn_fail(err, PCN_ERR_ISA, "%s: ISA %s is not available", op, pcn_isa_name(pm->b.isa));
    if (M == 0) return pcn_fail(err, PCN_ERR_SHAPE, "%s: M must be >= 1", op);
    if (M > PCN_MAX_ELEMS) return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: M=%zu is too large", op, M);
    if (lda < (size_t)pm->b.K)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: lda = %zu is less than K = %td", op, lda, pm->b.K);
    if (ldc < (size_t)pm->b.N)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: ldc = %zu is less than N = %td", op, ldc, pm->b.N);
    if (pcn_mul_ovf(M - 1, lda, &last) || pcn_add_ovf(last, (size_t)pm->b.K, &last) || last > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: a (M=%zu, ld %zu) is too large", op, M, lda);
    if (pcn_mul_ovf(M - 1, ldc, &last) || pcn_add_ovf(last, (size_t)pm->b.N, &last) || last > PCN_MAX_ELEMS)
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: c (M=%zu, ld %zu) is too large", op, M, ldc);
    memset(j, 0, sizeof *j);
    j->b = &pm->b;
    j->M = (ptrdiff_t)M;
    j->a = a;
    j->lda = (ptrdiff_t)lda;
    j->epi = PCN_EPI_STORE;
    j->y = c;
    j->ldy = (ptrdiff_t)ldc;
    nt = pcn_requested_threads(opt);
    *units = pcn_gemm_partition(j, nt);
    if ((size_t)nt > *units) nt = (int)*units;
    sb = (pcn_gemm_scratch_floats(&pm->b) * sizeof(float) + ALIGN - 1) / ALIGN * ALIGN;
    if (opt && opt->workspace) {
        size_t fit = opt->workspace_bytes > ALIGN ? (opt->workspace_bytes - ALIGN) / sb : 0;
        if (fit < 1)
            return pcn_fail(err, PCN_ERR_NOMEM, "%s: workspace of %zu bytes is too small (need >= %zu)", op,
                            opt->workspace_bytes, sb + ALIGN);
        if ((size_t)nt > fit) nt = (int)fit;
    }
    *threads = nt < 1 ? 1 : nt;
    *scratch_bytes = sb;
    return PCN_OK;
}

size_t pcn_gemm_workspace_size(const pcn_packed_matrix *PCN_RESTRICT b, size_t M, const pcn_options *PCN_RESTRICT opt,
                               pcn_error *PCN_RESTRICT err) {
    pcn_gemm_job j;
    const pcn_gemm_kernels *k;
    int nt = 1;
    size_t units = 0, sb = 0;
    pcn_options o = opt ? *opt : pcn_options_default();
    o.workspace = NULL;
    o.workspace_bytes = 0;
    if (gemm_setup(b, NULL, b ? (size_t)b->b.K : 0, NULL, b ? (size_t)b->b.N : 0, M, &o, 0, &j, &k, &nt, &units, &sb,
                   err))
        return 0;
    pcn_ok(err);
    return sb * (size_t)nt + ALIGN;
}

pcn_status pcn_gemm_packed(const pcn_packed_matrix *PCN_RESTRICT b, const float *PCN_RESTRICT a, size_t lda,
                           float *PCN_RESTRICT c, size_t ldc, size_t M, const pcn_options *PCN_RESTRICT opt,
                           pcn_error *PCN_RESTRICT err) {
    pcn_gemm_job j;
    const pcn_gemm_kernels *k;
    int nt = 1;
    size_t units = 0, sb = 0, total;
    void *owned = NULL;
    unsigned char *base;
    pcn_status st = gemm_setup(b, a, lda, c, ldc, M, opt, 1, &j, &k, &nt, &units, &sb, err);
    if (st != PCN_OK) return st;
    total = sb * (size_t)nt + ALIGN;
    if (opt && opt->workspace) {
        base = (unsigned char *)opt->workspace;
    } else {
        owned = malloc(total);
        if (!owned) return pcn_fail(err, PCN_ERR_NOMEM, "pcn_gemm_packed: cannot allocate %zu bytes", total);
        base = (unsigned char *)owned;
    }
    base = (unsigned char *)(((uintptr_t)base + ALIGN - 1) / ALIGN * ALIGN);
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            float *scratch = (float *)(void *)(base + (size_t)omp_get_thread_num() * sb);
            long u;
#pragma omp for schedule(dynamic, 1)
            for (u = 0; u < (long)units; u++) k->unit(&j, (size_t)u, scratch);
        }
    } else
#endif
    {
        size_t u;
        for (u = 0; u < units; u++) k->unit(&j, u, (float *)(void *)base);
    }
    free(owned);
    return pcn_ok(err);
}
