/*
 * parcnetv2.h - public API of the ParCNetV2 depthwise-convolution kernel library (spec clause 12).
 *
 * Plain C99, float32, batch N, stride 1, zero padding, cross-correlation (PyTorch convention).
 * Shape legend: N batch, C channels, H height, W width, K kernel length.
 *
 * Layouts of activations (x, y): PCN_NCHW means x[n][c][h][w], PCN_NHWC means x[n][h][w][c],
 * both dense and contiguous. Weights are always in PyTorch's order, independent of the layout:
 *   dense depthwise weight  (C,1,KH,KW) -> w[c][ky][kx]
 *   oversized k_h           (C,1,KV,1)  -> k_h[c][ky]      (vertical, applied first)
 *   oversized k_w           (C,1,1,KW)  -> k_w[c][kx]      (horizontal, applied second)
 *   7x7 kernel of DW7       (C,1,7,7)   -> k7[c][ky][kx]
 *
 * Every entry point returns PCN_OK (0) or an error code and never aborts. When `err` is not NULL
 * it receives the code and a NUL-terminated message naming the offending argument. There is no
 * global mutable state: the library is safe to call concurrently from several threads.
 *
 * Results are bit-identical for any thread count: each output element is computed by exactly one
 * thread, in a fixed order of operations that depends only on the shapes and the ISA.
 *
 * Every pointer parameter of an entry point is PCN_RESTRICT (C99 restrict): the arrays and
 * structs passed to one call must not overlap (read-only inputs may share memory with each other).
 * The fused kernels of the inference engine are declared in pcn_fused.h.
 */
#ifndef PARCNETV2_H
#define PARCNETV2_H

#include <stddef.h>

/* C99 `restrict` on the pointer parameters of the entry points; `__restrict` in C++ (GCC, Clang,
 * MSVC), nothing for a pre-C99 compiler. */
#if defined(__cplusplus)
#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define PCN_RESTRICT __restrict
#else
#define PCN_RESTRICT
#endif
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L
#define PCN_RESTRICT restrict
#elif defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define PCN_RESTRICT __restrict
#else
#define PCN_RESTRICT
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PCN_VERSION_MAJOR 1
#define PCN_VERSION_MINOR 0
#define PCN_VERSION_PATCH 0

/* Largest supported kernel length along one axis (dense KH, KW and oversized K). */
#define PCN_MAX_KERNEL 255
/* Most OpenMP threads a call or a plan may ask for (pcn_options.threads, pcn_plan_options.max_threads):
 * far above any real machine, low enough that per-thread scratch sizes stay bounded. The one home
 * of this number: the Python binding and the command line read it from here (spec clause 12.3). */
#define PCN_MAX_THREADS 1024

typedef enum pcn_status {
    PCN_OK = 0,
    PCN_ERR_NULL = 1,     /* a required pointer is NULL */
    PCN_ERR_SHAPE = 2,    /* a size is zero, a kernel too large/even, or the output would be empty */
    PCN_ERR_OVERFLOW = 3, /* a size product overflows size_t (or the tensor is too large) */
    PCN_ERR_NOMEM = 4,    /* scratch allocation failed or a caller workspace is too small */
    PCN_ERR_ISA = 5,      /* a forced ISA is not compiled in or not supported by this CPU */
    PCN_ERR_ARG = 6,      /* an enum or option argument has an invalid value */
    PCN_ERR_FILE = 7,     /* a file cannot be opened or read, or is not a regular file (pcn_model.h) */
    PCN_ERR_FORMAT = 8,   /* a weights file is not a valid .safetensors file (pcn_model.h) */
    PCN_ERR_WEIGHTS = 9,  /* weights do not form a ParCNetV2: names, shapes, dtypes (pcn_model.h) */
    PCN_ERR_BUSY = 10     /* a plan is already running in another call (pcn_model.h) */
} pcn_status;

typedef enum pcn_layout { PCN_NCHW = 0, PCN_NHWC = 1 } pcn_layout;

typedef enum pcn_isa {
    PCN_ISA_AUTO = 0,   /* the best ISA this CPU supports */
    PCN_ISA_SCALAR = 1, /* portable C, always present */
    PCN_ISA_AVX2 = 2,   /* x86-64 AVX2 + FMA */
    PCN_ISA_AVX512 = 3, /* x86-64 AVX-512F */
    PCN_ISA_NEON = 4,   /* AArch64 Advanced SIMD */
    PCN_ISA_COUNT = 5   /* number of values above: the one list of ISAs (bindings iterate 0..COUNT-1) */
} pcn_isa;

typedef enum pcn_path {
    PCN_PATH_AUTO = 0,      /* cost model decides (see pcn_parc_path) */
    PCN_PATH_SEPARABLE = 1, /* vertical pass, then horizontal pass fused with DW7 */
    PCN_PATH_DENSE = 2      /* reparameterize (clause 7), then one dense implicit-GEMM conv */
} pcn_path;

/* Per-call options. Zero-initialise (or use pcn_options_default) and set what you need. */
typedef struct pcn_options {
    int threads;            /* OpenMP threads for this call; <= 0 means the OpenMP default; 1 = serial;
                               at most PCN_MAX_THREADS (PCN_ERR_ARG) */
    pcn_isa isa;            /* PCN_ISA_AUTO, or force one ISA (PCN_ERR_ISA if unavailable) */
    pcn_path path;          /* parc_spatial only */
    int nchw_kernel;        /* NCHW only: 0 auto, 1 plane kernels (vectors along W), 2 channel-slab
                               kernels (vectors along C, planes gathered/scattered); same results
                               up to rounding, different speed */
    void *workspace;        /* optional caller scratch; NULL = the call allocates its own */
    size_t workspace_bytes; /* size of `workspace`; must be >= the *_workspace_size query */
} pcn_options;

/* A 4-D shape (n, c, h, w): batch, channels, height, width, whatever the data's layout (the
 * layout argument of a call says in which order the data are stored). */
typedef struct pcn_shape4 {
    size_t n, c, h, w;
} pcn_shape4;

/* The window of a 2-D convolution: kernel kh x kw, stride sh x sw (>= 1), zero padding ph x pw. */
typedef struct pcn_window {
    size_t kh, kw, sh, sw, ph, pw;
} pcn_window;

/* Error report filled by every entry point when non-NULL. */
#define PCN_ERRMSG_LEN 256
typedef struct pcn_error {
    pcn_status code;
    char message[PCN_ERRMSG_LEN];
} pcn_error;

/* Library version string "major.minor.patch" and build description (ISAs compiled, OpenMP). */
const char *pcn_version(void);
const char *pcn_build_info(void);
/* Human-readable name of a status code ("ok", "null pointer", ...). */
const char *pcn_status_name(pcn_status code);
/* Name of an ISA ("scalar", "avx2", "avx512", "neon", "auto"). */
const char *pcn_isa_name(pcn_isa isa);
/* 1 when `isa` is compiled into this build and supported by the running CPU, else 0. */
int pcn_isa_available(pcn_isa isa);
/* The ISA PCN_ISA_AUTO resolves to on this CPU. */
pcn_isa pcn_isa_best(void);
/* 1 when built with OpenMP (threads > 1 effective), else 0. */
int pcn_has_openmp(void);
/* Default options: threads 0, isa AUTO, path AUTO, no workspace. */
pcn_options pcn_options_default(void);

/*
 * Dense depthwise convolution (clause 6 for KH = KW = 7; any KH x KW in 1..255, any padding; used by
 * clause 7 for the reparameterized kernel). Implicit GEMM: no im2col buffer; for every output tile
 * only the kernel rows and columns that reach at least one real input pixel are visited, so taps
 * that land entirely in the zero padding are skipped.
 *   x      `shape` (N,C,H,W) stored (N,C,H,W) or (N,H,W,C) per `layout`
 *   w      (C,1,KH,KW);  bias (C) or NULL;  window: kh, kw, stride 1 x 1, padding ph, pw
 *   y      (N,C,OH,OW) or (N,OH,OW,C), OH = H + 2*PH - KH + 1 >= 1, OW = W + 2*PW - KW + 1 >= 1
 * pcn_depthwise_shape gives (N, C, OH, OW) after the same checks, without touching any data.
 */
pcn_status pcn_depthwise(const float *PCN_RESTRICT x, const float *PCN_RESTRICT w, const float *PCN_RESTRICT bias,
                         float *PCN_RESTRICT y, pcn_shape4 shape, pcn_window window, pcn_layout layout,
                         const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);
pcn_status pcn_depthwise_shape(pcn_shape4 shape, pcn_window window, pcn_shape4 *PCN_RESTRICT out,
                               pcn_error *PCN_RESTRICT err);

/*
 * Oversized separable depthwise convolution OC (clause 5): vertical KV x 1 with padding KV/2,
 * then horizontal 1 x KW with padding KW/2, both bias-free.
 *   x   `shape` in `layout`;  k_h (C,1,KV,1);  k_w (C,1,1,KW)
 *   y   (N,C,OH,OW) in `layout` with OH = H + 2*(KV/2) - KV + 1 (= H for odd KV), same for OW.
 */
pcn_status pcn_oversized(const float *PCN_RESTRICT x, const float *PCN_RESTRICT k_h, const float *PCN_RESTRICT k_w,
                         float *PCN_RESTRICT y, pcn_shape4 shape, size_t KV, size_t KW, pcn_layout layout,
                         const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* Output shape of pcn_oversized for these sizes, after the same checks (nothing is touched). */
pcn_status pcn_oversized_shape(pcn_shape4 shape, size_t KV, size_t KW, pcn_shape4 *PCN_RESTRICT out,
                               pcn_error *PCN_RESTRICT err);

/*
 * Fused ParC spatial op OC(x) + DW7(x) (clauses 5, 6 and 7) in one call. KV and KW must be odd.
 *   x `shape` in `layout`; k_h (C,1,KV,1); k_w (C,1,1,KW); k7 (C,1,7,7); y has x's shape.
 * opt->path selects the separable path, the reparameterized dense path, or AUTO (cost model).
 */
pcn_status pcn_parc(const float *PCN_RESTRICT x, const float *PCN_RESTRICT k_h, const float *PCN_RESTRICT k_w,
                    const float *PCN_RESTRICT k7, float *PCN_RESTRICT y, pcn_shape4 shape, size_t KV, size_t KW,
                    pcn_layout layout, const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/*
 * Reparameterization (clause 7): dense (C,1,RH,RW) kernel with RH = max(KV,7), RW = max(KW,7):
 * outer(k_h[c], k_w[c]) centred, plus k7[c] centred. KV and KW must be odd. `out` must hold
 * C*RH*RW floats. Each element is computed as float32 k_h*k_w, then + k7 where the 7x7 overlaps.
 */
pcn_status pcn_reparameterize(const float *PCN_RESTRICT k_h, const float *PCN_RESTRICT k_w,
                              const float *PCN_RESTRICT k7, float *PCN_RESTRICT out, size_t C, size_t KV, size_t KW,
                              pcn_error *PCN_RESTRICT err);

/* Shape of pcn_reparameterize's output, (C, 1, RH, RW), after the same checks. */
pcn_status pcn_reparameterize_shape(size_t C, size_t KV, size_t KW, pcn_shape4 *PCN_RESTRICT out,
                                    pcn_error *PCN_RESTRICT err);

/*
 * Cost model of pcn_parc (spec clause 12.5): returns PCN_PATH_SEPARABLE or PCN_PATH_DENSE for
 * these sizes, or PCN_PATH_AUTO (0) when the sizes are invalid. The two cost estimates (in
 * multiply-add equivalents) are stored through the pointers when non-NULL.
 */
pcn_path pcn_parc_path(pcn_shape4 shape, size_t KV, size_t KW, double *PCN_RESTRICT cost_separable,
                       double *PCN_RESTRICT cost_dense);

/*
 * Workspace queries: bytes of scratch the matching call needs with these sizes and options
 * (threads and isa matter). 0 is returned (and err filled) when the arguments are invalid.
 */
size_t pcn_depthwise_workspace(pcn_shape4 shape, pcn_window window, pcn_layout layout,
                               const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);
size_t pcn_oversized_workspace(pcn_shape4 shape, size_t KV, size_t KW, pcn_layout layout,
                               const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);
size_t pcn_parc_workspace(pcn_shape4 shape, size_t KV, size_t KW, pcn_layout layout,
                          const pcn_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

#ifdef __cplusplus
}
#endif
#endif /* PARCNETV2_H */
