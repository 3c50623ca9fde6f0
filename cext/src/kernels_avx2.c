/* kernels_avx2.c - x86-64 AVX2+FMA instantiation of kernels_impl.h and fused_impl.h (clauses 12, 15).
 * Compiled with a target pragma instead of global flags, so one build runs on any x86-64; the
 * dispatcher calls these only when __builtin_cpu_supports reports avx2 and fma. */
#include "pcn_internal.h"
#ifdef PCN_HAVE_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>

#define PCN_SUFFIX  avx2
#define PCN_ISA_ID  PCN_ISA_AVX2
#define PCN_ISA_STR "avx2"
#define VL          8
typedef __m256 vec;
#define V_ZERO()         _mm256_setzero_ps()
#define V_SET1(f)        _mm256_set1_ps(f)
#define V_LOAD(p)        _mm256_loadu_ps(p)
#define V_STORE(p, v)    _mm256_storeu_ps((p), (v))
#define V_FMA(a, b, acc) _mm256_fmadd_ps((a), (b), (acc))
static const int pcn_avx2_masks[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
#define V_STORE_N(p, v, n)                                                                                             \
    _mm256_maskstore_ps((p), _mm256_loadu_si256((const __m256i *)(pcn_avx2_masks + 8 - (n))), (v))
#define NCHW_R      4
#define NCHW_V      3
#define NHWC_R      3
#define NHWC_J      4
#define V_MUL(a, b) _mm256_mul_ps((a), (b))
#include "kernels_impl.h"

/* arithmetic of the fused kernels (fused_impl.h) */
#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_SUB(a, b) _mm256_sub_ps((a), (b))
#define V_MIN(a, b) _mm256_min_ps((a), (b))
#define V_ABS(a)    _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (a))
#define V_COPYSIGN(m, s)                                                                                               \
    _mm256_or_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), (m)), _mm256_and_ps(_mm256_set1_ps(-0.0f), (s)))
#define V_SELECT_LT(a, b, x, y) _mm256_blendv_ps((y), (x), _mm256_cmp_ps((a), (b), _CMP_LT_OQ))
#define V_SELECT_NAN(a, x, y)   _mm256_blendv_ps((y), (x), _mm256_cmp_ps((a), (a), _CMP_UNORD_Q))
#define V_RINT(a)               _mm256_round_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_POW2I(n)                                                                                                     \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
static inline float pcn_avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
#define V_HSUM(v) pcn_avx2_hsum(v)
#include "fused_impl.h"

/* GEMM register tile (gemm_impl.h): GEMM_MR rows x GEMM_NV vectors */
#define GEMM_MR 6
#define GEMM_NV 2
#include "gemm_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
typedef int pcn_empty_translation_unit;
#endif
