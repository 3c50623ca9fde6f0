/* dispatch.c - run-time ISA selection from the CPU's features (spec clause 12).
 * Reads CPU feature bits only; keeps no state (the compiler's cpu-model data is initialised by
 * its own constructor). */
#include "pcn_internal.h"

static int cpu_has(pcn_isa isa) {
    switch (isa) {
    case PCN_ISA_SCALAR: return 1;
#ifdef PCN_HAVE_X86
    case PCN_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case PCN_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#ifdef PCN_HAVE_NEON
    case PCN_ISA_NEON: return 1; /* Advanced SIMD is mandatory on AArch64 */
#endif
    default: return 0;
    }
}

static const pcn_kernels *table(pcn_isa isa) {
    switch (isa) {
    case PCN_ISA_SCALAR: return &pcn_kernels_scalar;
#ifdef PCN_HAVE_X86
    case PCN_ISA_AVX2: return &pcn_kernels_avx2;
    case PCN_ISA_AVX512: return &pcn_kernels_avx512;
#endif
#ifdef PCN_HAVE_NEON
    case PCN_ISA_NEON: return &pcn_kernels_neon;
#endif
    default: return NULL;
    }
}

int pcn_isa_available(pcn_isa isa) {
    return table(isa) != NULL && cpu_has(isa);
}

pcn_isa pcn_isa_best(void) {
    if (pcn_isa_available(PCN_ISA_AVX512)) return PCN_ISA_AVX512;
    if (pcn_isa_available(PCN_ISA_AVX2)) return PCN_ISA_AVX2;
    if (pcn_isa_available(PCN_ISA_NEON)) return PCN_ISA_NEON;
    return PCN_ISA_SCALAR;
}

const pcn_kernels *pcn_select_kernels(pcn_isa isa) {
    if (isa == PCN_ISA_AUTO) isa = pcn_isa_best();
    return pcn_isa_available(isa) ? table(isa) : NULL;
}

static const pcn_fused_kernels *fused_table(pcn_isa isa) {
    switch (isa) {
    case PCN_ISA_SCALAR: return &pcn_fused_kernels_scalar;
#ifdef PCN_HAVE_X86
    case PCN_ISA_AVX2: return &pcn_fused_kernels_avx2;
    case PCN_ISA_AVX512: return &pcn_fused_kernels_avx512;
#endif
#ifdef PCN_HAVE_NEON
    case PCN_ISA_NEON: return &pcn_fused_kernels_neon;
#endif
    default: return NULL;
    }
}

const pcn_fused_kernels *pcn_select_fused(pcn_isa isa) {
    if (isa == PCN_ISA_AUTO) isa = pcn_isa_best();
    return pcn_isa_available(isa) ? fused_table(isa) : NULL;
}

static const pcn_gemm_kernels *gemm_table(pcn_isa isa) {
    switch (isa) {
    case PCN_ISA_SCALAR: return &pcn_gemm_kernels_scalar;
#ifdef PCN_HAVE_X86
    case PCN_ISA_AVX2: return &pcn_gemm_kernels_avx2;
    case PCN_ISA_AVX512: return &pcn_gemm_kernels_avx512;
#endif
#ifdef PCN_HAVE_NEON
    case PCN_ISA_NEON: return &pcn_gemm_kernels_neon;
#endif
    default: return NULL;
    }
}

const pcn_gemm_kernels *pcn_select_gemm(pcn_isa isa) {
    if (isa == PCN_ISA_AUTO) isa = pcn_isa_best();
    return pcn_isa_available(isa) ? gemm_table(isa) : NULL;
}
