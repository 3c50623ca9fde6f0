/* kernels_avx512.c - x86-64 AVX-512F instantiation of kernels_impl.h (clause 12).
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

#define PCN_SUFFIX avx512
#define PCN_ISA_ID PCN_ISA_AVX512
#define PCN_ISA_STR "avx512"
#define VL 16
typedef __m512 vec;
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(f) _mm512_set1_ps(f)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_FMA(a, b, acc) _mm512_fmadd_ps((a), (b), (acc))
#define V_STORE_N(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define NCHW_R 4
#define NCHW_V 3
#define NHWC_R 4
#define NHWC_J 4
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
typedef int pcn_empty_translation_unit;
#endif
