/*
 * pcn_fused.h - fused elementwise and row kernels of the ParCNetV2 inference engine
 * (spec clause 15; the operations are those of clauses 3, 4, 8). Part of the C kernel library:
 * same conventions as parcnetv2.h (float32, pcn_options per call, pcn_error, never aborts).
 *
 * Data are row-major matrices of `rows` rows and `C` columns. An NHWC feature map (N,H,W,C) is
 * the matrix of N*H*W rows (pixels) and C columns (channels). Every matrix argument has a leading
 * dimension ld (elements between the starts of two rows, ld >= the row length), so a column
 * slice of a wider matrix (one half of a 1x1 conv's output) is passed without a copy.
 *
 * Determinism: each row is computed by one thread in a fixed order of operations that depends
 * only on C and the ISA, so results are bit-identical for any thread count. The thread count is
 * capped so that each thread gets at least PCN_FUSED_MIN_WORK elements.
 *
 * GELU is the exact erf form GELU(v) = v/2 * (1 + erf(v / sqrt 2)) (clause 8.1), through the
 * library's vectorized erf (pcn_erf; accuracy in spec clause 15.3).
 * Pointer arguments are restrict: the arrays of one call must not overlap, except where a
 * parameter is documented as in/out.
 */
#ifndef PCN_FUSED_H
#define PCN_FUSED_H

#include "parcnetv2.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fewest elements (rows x C) a thread is given; fewer threads run below that. */
#define PCN_FUSED_MIN_WORK 16384

/* y[i] = erf(x[i]), i < n. NaN gives NaN, +-inf gives +-1. */
pcn_status pcn_erf(const float *PCN_RESTRICT x, float *PCN_RESTRICT y, size_t n, const pcn_options *PCN_RESTRICT opt,
                   pcn_error *PCN_RESTRICT err);

/* y[r][c] = GELU(x[r][c] + bias[c]); bias (C) or NULL. x ld ldx, y ld ldy. Clause 8.1. */
pcn_status pcn_bias_gelu(const float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT bias, float *PCN_RESTRICT y,
                         size_t ldy, size_t rows, size_t C, const pcn_options *PCN_RESTRICT opt,
                         pcn_error *PCN_RESTRICT err);

/* Token-mixer gate (clause 8.1): y[r][c] = (a[r][c] + bias[c]) * s[r][c]; bias (C) or NULL. */
pcn_status pcn_gate(const float *PCN_RESTRICT a, size_t lda, const float *PCN_RESTRICT bias,
                    const float *PCN_RESTRICT s, size_t lds, float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C,
                    const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* Channel BGU gate (clause 8.2): y[r][c] = (h[r][c] + bias[c]) * GELU(h[r][C+c] + bias[C+c]),
 * h (rows, 2C) with ld ldh >= 2C; bias (2C) or NULL; y (rows, C). */
pcn_status pcn_gelu_gate(const float *PCN_RESTRICT h, size_t ldh, const float *PCN_RESTRICT bias, float *PCN_RESTRICT y,
                         size_t ldy, size_t rows, size_t C, const pcn_options *PCN_RESTRICT opt,
                         pcn_error *PCN_RESTRICT err);

/* LayerNormGeneral over each row (clause 4.1): c = x - mean(x), y = c / max(||c||_2, eps) * w. */
pcn_status pcn_layer_norm_general(const float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT w,
                                  float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C, float eps,
                                  const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* Residual step of a block followed by the next LayerNormGeneral (clauses 8.3, 8.4, 4.1):
 *   x[r] = x[r] * scale + branch[r]      (x in/out; scale (C) or NULL for the identity)
 *   y[r] = LNG(x[r]) * w                 (only when w is not NULL; y may then not be NULL)
 * x, branch and y must not overlap. */
pcn_status pcn_residual_norm(float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT scale,
                             const float *PCN_RESTRICT branch, size_t ldb, const float *PCN_RESTRICT w,
                             float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C, float eps,
                             const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* Standard LayerNorm over each row (clause 4.2): (x - mean) / sqrt(var + eps) * w + b, biased
 * variance; w and b (C). */
pcn_status pcn_layer_norm(const float *PCN_RESTRICT x, size_t ldx, const float *PCN_RESTRICT w,
                          const float *PCN_RESTRICT b, float *PCN_RESTRICT y, size_t ldy, size_t rows, size_t C,
                          float eps, const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* The head (clause 8.5): x NHWC (N, HW, C) -> features (N, C) = LayerNorm(mean over HW)
 * (norm_w, norm_b, eps), then logits (N, K) = features @ fc_wt + fc_b with the classifier packed
 * as fc_wt (C, K) (the transpose of the Linear weight) and fc_b (K) or NULL. */
pcn_status pcn_head(const float *PCN_RESTRICT x, size_t N, size_t HW, size_t C, const float *PCN_RESTRICT norm_w,
                    const float *PCN_RESTRICT norm_b, float eps, const float *PCN_RESTRICT fc_wt,
                    const float *PCN_RESTRICT fc_b, size_t K, float *PCN_RESTRICT features, float *PCN_RESTRICT logits,
                    const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* Patches of a strided, zero-padded 2-D convolution (clause 3), for a GEMM with the packed
 * weight: x `shape` (N,C,H,W) stored in `layout`; cols has N*OH*OW rows,
 * OH = (H + 2*PH - KH) / SH + 1 (likewise OW), and KH*KW*C (+1) columns, ld = KH*KW*C + bias_column.
 * Column order: (ky, kx, c) for NHWC input, (c, ky, kx) for NCHW input (PyTorch's weight order).
 * With bias_column = 1 the last column is 1.0, so a bias row appended to the packed weight adds
 * the bias inside the GEMM. Kernel and padding lengths 1..255 (padding 0..255), strides >= 1.
 * pcn_patches_shape gives the rows and columns of cols after the same checks, so a caller can
 * size it before allocating anything. */
pcn_status pcn_patches(const float *PCN_RESTRICT x, float *PCN_RESTRICT cols, pcn_shape4 shape, pcn_window window,
                       pcn_layout layout, int bias_column, const pcn_options *PCN_RESTRICT opt,
                       pcn_error *PCN_RESTRICT err);
pcn_status pcn_patches_shape(pcn_shape4 shape, pcn_window window, int bias_column, size_t *PCN_RESTRICT rows,
                             size_t *PCN_RESTRICT cols, pcn_error *PCN_RESTRICT err);

#ifdef __cplusplus
}
#endif
#endif /* PCN_FUSED_H */
