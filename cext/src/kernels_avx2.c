/* kernels_avx2.c - x86-64 AVX2+FMA instantiation of kernels_impl.h (clause 12).
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

#define PCN_SUFFIX avx2
#define PCN_ISA_ID PCN_ISA_AVX2
#define PCN_ISA_STR "avx2"
#define VL 8
typedef __m256 vec;
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(f) _mm256_set1_ps(f)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_FMA(a, b, acc) _mm256_fmadd_ps((a), (b), (acc))
static const int pcn_avx2_masks[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
#define V_STORE_N(p, v, n) \
    _mm256_maskstore_ps((p), _mm256_loadu_si256((const __m256i *)(pcn_avx2_masks + 8 - (n))), (v))
#define NCHW_R 4
#define NCHW_V 3
#define NHWC_R 3
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
