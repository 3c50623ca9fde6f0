/* kernels_scalar.c - portable scalar instantiation of kernels_impl.h (always compiled; clause 12). */
#include "pcn_internal.h"

#define PCN_SUFFIX scalar
#define PCN_ISA_ID PCN_ISA_SCALAR
#define PCN_ISA_STR "scalar"
#define VL 1
typedef float vec;
#define V_ZERO() 0.0f
#define V_SET1(f) (f)
#define V_LOAD(p) (*(p))
#define V_STORE(p, v) (*(p) = (v))
#define V_FMA(a, b, acc) ((a) * (b) + (acc))
#define V_STORE_N(p, v, n) ((void)(p), (void)(v), (void)(n)) /* never called: n < VL impossible */
#define NCHW_R 4
#define NCHW_V 4
#define NHWC_R 3
#define NHWC_J 4
#include "kernels_impl.h"
