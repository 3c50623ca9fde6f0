/* kernels_neon.c - AArch64 Advanced SIMD instantiation of kernels_impl.h and fused_impl.h (12, 15). */
#include "pcn_internal.h"
#ifdef PCN_HAVE_NEON
#include <arm_neon.h>
#include <string.h>

#define PCN_SUFFIX  neon
#define PCN_ISA_ID  PCN_ISA_NEON
#define PCN_ISA_STR "neon"
#define VL          4
typedef float32x4_t vec;
#define V_ZERO()         vdupq_n_f32(0.0f)
#define V_SET1(f)        vdupq_n_f32(f)
#define V_LOAD(p)        vld1q_f32(p)
#define V_STORE(p, v)    vst1q_f32((p), (v))
#define V_FMA(a, b, acc) vfmaq_f32((acc), (a), (b))
static inline void pcn_neon_store_n(float *p, float32x4_t v, int n) {
    float tmp[4];
    vst1q_f32(tmp, v);
    memcpy(p, tmp, sizeof(float) * (size_t)n);
}
#define V_STORE_N(p, v, n) pcn_neon_store_n((p), (v), (n))
#define NCHW_R             4
#define NCHW_V             4
#define NHWC_R             4
#define NHWC_J             4
#define V_MUL(a, b)        vmulq_f32((a), (b))
#include "kernels_impl.h"

/* arithmetic of the fused kernels (fused_impl.h) */
#define V_ADD(a, b)             vaddq_f32((a), (b))
#define V_SUB(a, b)             vsubq_f32((a), (b))
#define V_MIN(a, b)             vminq_f32((a), (b))
#define V_ABS(a)                vabsq_f32(a)
#define V_COPYSIGN(m, s)        vbslq_f32(vdupq_n_u32(0x80000000u), (s), (m))
#define V_SELECT_LT(a, b, x, y) vbslq_f32(vcltq_f32((a), (b)), (x), (y))
#define V_SELECT_NAN(a, x, y)   vbslq_f32(vceqq_f32((a), (a)), (y), (x))
#define V_RINT(a)               vrndnq_f32(a)
#define V_POW2I(n)              vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23))
#define V_HSUM(v)               vaddvq_f32(v)
#include "fused_impl.h"

/* GEMM register tile (gemm_impl.h): GEMM_MR rows x GEMM_NV vectors */
#define GEMM_MR 8
#define GEMM_NV 2
#include "gemm_impl.h"
#else
typedef int pcn_empty_translation_unit;
#endif
