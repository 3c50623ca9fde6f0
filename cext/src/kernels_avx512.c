/* kernels_avx512.c - x86-64 AVX-512F instantiation of kernels_impl.h and fused_impl.h (clauses 12, 15).
 * Target pragma per file; called only when __builtin_cpu_supports("avx512f"). */
#include "pcn_internal.h"
#ifdef PCN_HAVE_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
#include <immintrin.h>

#define PCN_SUFFIX  avx512
#define PCN_ISA_ID  PCN_ISA_AVX512
#define PCN_ISA_STR "avx512"
#define VL          16
typedef __m512 vec;
#define V_ZERO()           _mm512_setzero_ps()
#define V_SET1(f)          _mm512_set1_ps(f)
#define V_LOAD(p)          _mm512_loadu_ps(p)
#define V_STORE(p, v)      _mm512_storeu_ps((p), (v))
#define V_FMA(a, b, acc)   _mm512_fmadd_ps((a), (b), (acc))
#define V_STORE_N(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define NCHW_R             4
#define NCHW_V             3
#define NHWC_R             4
#define NHWC_J             4
#define V_MUL(a, b)        _mm512_mul_ps((a), (b))
#include "kernels_impl.h"

/* arithmetic of the fused kernels (fused_impl.h); AVX-512F only (no DQ: sign bits via integers) */
#define V_ADD(a, b) _mm512_add_ps((a), (b))
#define V_SUB(a, b) _mm512_sub_ps((a), (b))
#define V_MIN(a, b) _mm512_min_ps((a), (b))
#define V_ABS(a)    _mm512_abs_ps(a)
#define V_COPYSIGN(m, s)                                                                                               \
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_abs_ps(m)),                                         \
                                        _mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(INT32_MIN))))
#define V_SELECT_LT(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ), (y), (x))
#define V_SELECT_NAN(a, x, y)   _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (a), _CMP_UNORD_Q), (y), (x))
#define V_RINT(a)               _mm512_roundscale_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_POW2I(n)                                                                                                     \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#define V_HSUM(v) _mm512_reduce_add_ps(v)
#include "fused_impl.h"

/* GEMM register tile (gemm_impl.h): GEMM_MR rows x GEMM_NV vectors */
#define GEMM_MR 12
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
