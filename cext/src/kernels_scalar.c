/* kernels_scalar.c - portable scalar instantiation of kernels_impl.h and fused_impl.h (always
 * compiled; clauses 12 and 15). */
#include <math.h>
#include "pcn_internal.h"

#define PCN_SUFFIX  scalar
#define PCN_ISA_ID  PCN_ISA_SCALAR
#define PCN_ISA_STR "scalar"
#define VL          1
typedef float vec;
#define V_ZERO()           0.0f
#define V_SET1(f)          (f)
#define V_LOAD(p)          (*(p))
#define V_STORE(p, v)      (*(p) = (v))
#define V_FMA(a, b, acc)   ((a) * (b) + (acc))
#define V_STORE_N(p, v, n) ((void)(p), (void)(v), (void)(n)) /* never called: n < VL impossible */
#define NCHW_R             4
#define NCHW_V             4
#define NHWC_R             3
#define NHWC_J             4
#define V_MUL(a, b)        ((a) * (b))
#include "kernels_impl.h"

/* arithmetic of the fused kernels (fused_impl.h) */
#define V_ADD(a, b)             ((a) + (b))
#define V_SUB(a, b)             ((a) - (b))
#define V_MIN(a, b)             ((a) < (b) ? (a) : (b))
#define V_ABS(a)                fabsf(a)
#define V_COPYSIGN(m, s)        copysignf((m), (s))
#define V_SELECT_LT(a, b, x, y) ((a) < (b) ? (x) : (y))
#define V_SELECT_NAN(a, x, y)   ((a) != (a) ? (x) : (y))
#define V_RINT(a)               rintf(a)
#define V_POW2I(n)              ldexpf(1.0f, (int)(n))
#define V_HSUM(v)               (v)
#include "fused_impl.h"

/* GEMM register tile (gemm_impl.h): GEMM_MR rows x GEMM_NV vectors */
#define GEMM_MR 4
#define GEMM_NV 4
#include "gemm_impl.h"
