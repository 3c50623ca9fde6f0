"""cffi builder of ``parcnetv2.cext._kernels`` (spec clause 12), used by the root setup.py.

Out-of-line API mode: the package build compiles the library's C sources (every ``cext/src/*.c``,
the same list the Makefile uses) together with the cffi wrapper into one extension module.
Nothing is compiled at import time. OpenMP flags are added only when a probe compile and link
with them succeeds.
"""

from __future__ import annotations

import glob
import os
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

# Mirrors include/parcnetv2.h (the numbers must match the C enums). `restrict` (PCN_RESTRICT) is
# left out of the declarations: it does not change how a function is called.
CDEF = """
#define PCN_MAX_KERNEL 255
#define PCN_ERRMSG_LEN 256
typedef enum pcn_status { PCN_OK = 0, PCN_ERR_NULL = 1, PCN_ERR_SHAPE = 2, PCN_ERR_OVERFLOW = 3,
                          PCN_ERR_NOMEM = 4, PCN_ERR_ISA = 5, PCN_ERR_ARG = 6 } pcn_status;
typedef enum pcn_layout { PCN_NCHW = 0, PCN_NHWC = 1 } pcn_layout;
typedef enum pcn_isa { PCN_ISA_AUTO = 0, PCN_ISA_SCALAR = 1, PCN_ISA_AVX2 = 2, PCN_ISA_AVX512 = 3,
                       PCN_ISA_NEON = 4 } pcn_isa;
typedef enum pcn_path { PCN_PATH_AUTO = 0, PCN_PATH_SEPARABLE = 1, PCN_PATH_DENSE = 2 } pcn_path;
typedef struct pcn_options { int threads; pcn_isa isa; pcn_path path; int nchw_kernel; void *workspace;
                             size_t workspace_bytes; } pcn_options;
typedef struct pcn_error { pcn_status code; char message[256]; } pcn_error;
const char *pcn_version(void);
const char *pcn_build_info(void);
const char *pcn_status_name(pcn_status code);
const char *pcn_isa_name(pcn_isa isa);
int pcn_isa_available(pcn_isa isa);
pcn_isa pcn_isa_best(void);
int pcn_has_openmp(void);
pcn_options pcn_options_default(void);
pcn_status pcn_dwconv2d(const float *x, const float *w, const float *bias, float *y,
                        size_t N, size_t C, size_t H, size_t W, size_t KH, size_t KW,
                        size_t PH, size_t PW, pcn_layout layout,
                        const pcn_options *opt, pcn_error *err);
pcn_status pcn_oversized_conv(const float *x, const float *k_h, const float *k_w, float *y,
                              size_t N, size_t C, size_t H, size_t W, size_t KV, size_t KW,
                              pcn_layout layout, const pcn_options *opt, pcn_error *err);
pcn_status pcn_parc_spatial(const float *x, const float *k_h, const float *k_w, const float *k7,
                            float *y, size_t N, size_t C, size_t H, size_t W, size_t KV, size_t KW,
                            pcn_layout layout, const pcn_options *opt, pcn_error *err);
pcn_status pcn_reparameterize(const float *k_h, const float *k_w, const float *k7, float *out,
                              size_t C, size_t KV, size_t KW, pcn_error *err);
pcn_path pcn_parc_choose_path(size_t N, size_t C, size_t H, size_t W, size_t KV, size_t KW,
                              pcn_layout layout, double *cost_separable, double *cost_dense);
size_t pcn_parc_spatial_workspace_size(size_t N, size_t C, size_t H, size_t W, size_t KV,
                                       size_t KW, pcn_layout layout, const pcn_options *opt,
                                       pcn_error *err);
size_t pcn_dwconv2d_workspace_size(size_t N, size_t C, size_t H, size_t W, size_t KH, size_t KW,
                                   size_t PH, size_t PW, pcn_layout layout,
                                   const pcn_options *opt, pcn_error *err);
"""

# Mirrors include/pcn_fused.h (clause 15). `restrict` is left out: it does not change a call.
CDEF_FUSED = """
#define PCN_FUSED_MIN_WORK 16384
typedef void (*pcn_sgemm_fn)(const char *transa, const char *transb, const int *m, const int *n,
                             const int *k, const float *alpha, const float *a, const int *lda,
                             const float *b, const int *ldb, const float *beta, float *c,
                             const int *ldc);
pcn_status pcn_gemm(pcn_sgemm_fn sgemm, const float *a, size_t lda, const float *b, size_t ldb,
                    int b_transposed, float *c, size_t ldc, size_t M, size_t N, size_t K,
                    const pcn_options *opt, pcn_error *err);
pcn_status pcn_erf(const float *x, float *y, size_t n, const pcn_options *opt, pcn_error *err);
pcn_status pcn_bias_gelu(const float *x, size_t ldx, const float *bias, float *y, size_t ldy,
                         size_t rows, size_t C, const pcn_options *opt, pcn_error *err);
pcn_status pcn_gate(const float *a, size_t lda, const float *bias, const float *s, size_t lds,
                    float *y, size_t ldy, size_t rows, size_t C, const pcn_options *opt,
                    pcn_error *err);
pcn_status pcn_gelu_gate(const float *h, size_t ldh, const float *bias, float *y, size_t ldy,
                         size_t rows, size_t C, const pcn_options *opt, pcn_error *err);
pcn_status pcn_layer_norm_general(const float *x, size_t ldx, const float *w, float *y,
                                  size_t ldy, size_t rows, size_t C, float eps,
                                  const pcn_options *opt, pcn_error *err);
pcn_status pcn_residual_norm(float *x, size_t ldx, const float *scale, const float *branch,
                             size_t ldb, const float *w, float *y, size_t ldy, size_t rows,
                             size_t C, float eps, const pcn_options *opt, pcn_error *err);
pcn_status pcn_layer_norm(const float *x, size_t ldx, const float *w, const float *b, float *y,
                          size_t ldy, size_t rows, size_t C, float eps, const pcn_options *opt,
                          pcn_error *err);
pcn_status pcn_head(const float *x, size_t N, size_t HW, size_t C, const float *norm_w,
                    const float *norm_b, float eps, const float *fc_wt, const float *fc_b,
                    size_t K, float *features, float *logits, const pcn_options *opt,
                    pcn_error *err);
pcn_status pcn_im2col(const float *x, float *cols, size_t N, size_t C, size_t H, size_t W,
                      size_t KH, size_t KW, size_t SH, size_t SW, size_t PH, size_t PW,
                      pcn_layout layout, int bias_column, const pcn_options *opt, pcn_error *err);
"""


def _rel(path: str) -> str:
    """setuptools wants source paths relative to the project root (the current directory)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path


def sources() -> list[str]:
    return sorted(_rel(p) for p in glob.glob(os.path.join(HERE, "src", "*.c")))


def _probe_openmp() -> tuple[list[str], list[str]]:
    """(compile args, link args) for OpenMP when the build compiler accepts them, else ([], [])."""
    try:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler
    except ImportError:  # pragma: no cover - very old setuptools
        return [], []
    candidates = [(["-fopenmp"], ["-fopenmp"]), (["/openmp"], [])]
    code = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel\n{n=omp_get_num_threads();}\nreturn n<1;}\n"
    for cflags, lflags in candidates:
        try:
            cc = new_compiler()
            customize_compiler(cc)
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "omp_probe.c")
                with open(src, "w") as fh:
                    fh.write(code)
                objs = cc.compile([src], output_dir=tmp, extra_postargs=cflags)
                cc.link_executable(objs, os.path.join(tmp, "omp_probe"), extra_postargs=lflags)
            return cflags, lflags
        except Exception:
            continue
    return [], []


def _compile_args() -> list[str]:
    if os.name == "nt":
        return []
    return ["-std=c99", "-O3", "-ffp-contract=off"]


omp_cflags, omp_lflags = _probe_openmp()

ffibuilder = FFI()
ffibuilder.cdef(CDEF + CDEF_FUSED)
ffibuilder.set_source(
    "parcnetv2.cext._kernels",
    '#include "parcnetv2.h"\n#include "pcn_fused.h"\n',
    sources=sources(),
    include_dirs=[_rel(os.path.join(HERE, "include"))],
    extra_compile_args=_compile_args() + omp_cflags,
    extra_link_args=omp_lflags,
)

if __name__ == "__main__":  # manual build for development: python cext/build_cffi.py
    ffibuilder.compile(verbose=True)
