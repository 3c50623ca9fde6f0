/*
 * pcn_gemm.h - single-precision GEMM with a right-hand operand packed once (spec clause 16.2):
 * the 1x1 convolutions and Linear layers of the model, usable on their own. Same conventions as
 * parcnetv2.h (pcn_options per call, pcn_error, never aborts, no global state).
 *
 * C (M, N) = A (M, K) B (K, N) (+ bias), row-major with leading dimensions. B is packed once by
 * pcn_gemm_pack into the panel layout of one ISA's kernels (panels of NR columns, K rows each,
 * zero-padded); each call then multiplies any number of rows M.
 *
 * Determinism: every element of C is one chain of fused multiply-adds (separate multiply and add
 * on the scalar ISA) over k = 0 .. K-1 in ascending order, starting from zero, then + bias[n] as a
 * separate rounding. Threads split the output into tiles of rows and panels of columns, never K,
 * so the result does not depend on the thread count, on M or on a row's position.
 */
#ifndef PCN_GEMM_H
#define PCN_GEMM_H

#include "parcnetv2.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pcn_packed_matrix pcn_packed_matrix;

/*
 * Pack B (K, N) for the GEMM kernels of `isa` (AUTO = the best this CPU has):
 *   b_transposed = 0: b is (K, N) row-major with ld ldb >= N;
 *   b_transposed = 1: b is B's transpose (N, K) with ld ldb >= K: a PyTorch Linear weight
 *                     (Cout, Cin) or 1x1-conv weight (Cout, Cin, 1, 1) as it is.
 * bias (N) or NULL is copied. K, N >= 1. *out is NULL on error.
 */
pcn_status pcn_gemm_pack(pcn_packed_matrix **PCN_RESTRICT out, const float *PCN_RESTRICT b, size_t ldb,
                         int b_transposed, const float *PCN_RESTRICT bias, size_t K, size_t N, pcn_isa isa,
                         pcn_error *PCN_RESTRICT err);

/* K and N of a packed matrix (0 for NULL). */
size_t pcn_gemm_packed_k(const pcn_packed_matrix *b);
size_t pcn_gemm_packed_n(const pcn_packed_matrix *b);

/*
 * C = A B (+ bias): a (M, K) with ld lda >= K, c (M, N) with ld ldc >= N, M >= 1. opt->isa must
 * be AUTO or the ISA b was packed for; opt->threads as everywhere. The call allocates a small
 * per-thread scratch (MR x K floats) unless opt->workspace holds pcn_gemm_workspace_size bytes.
 */
pcn_status pcn_gemm_packed(const pcn_packed_matrix *PCN_RESTRICT b, const float *PCN_RESTRICT a, size_t lda,
                           float *PCN_RESTRICT c, size_t ldc, size_t M, const pcn_options *PCN_RESTRICT opt,
                           pcn_error *PCN_RESTRICT err);

size_t pcn_gemm_workspace_size(const pcn_packed_matrix *PCN_RESTRICT b, size_t M, const pcn_options *PCN_RESTRICT opt,
                               pcn_error *PCN_RESTRICT err);

/* Free a packed matrix (NULL is accepted). */
void pcn_gemm_free(pcn_packed_matrix *b);

#ifdef __cplusplus
}
#endif
#endif /* PCN_GEMM_H */
