/*
 * pcn_model_internal.h - private declarations of the C model (spec clause 16): the safetensors
 * header parser (safetensors.c), the weights and architecture (model.c) and the plans (plan.c).
 */
#ifndef PCN_MODEL_INTERNAL_H
#define PCN_MODEL_INTERNAL_H

#include "pcn_internal.h"
#include "pcn_model.h"

/* Constants of the architecture that weights files do not record (spec/variants.toml [defaults];
 * tests/test_cext_model.py checks these against the TOML file). */
#define PCN_ARCH_IN_CHANS        3
#define PCN_ARCH_STEM_KERNEL     7
#define PCN_ARCH_STEM_STRIDE     4
#define PCN_ARCH_STEM_PADDING    2
#define PCN_ARCH_DOWN_KERNEL     3
#define PCN_ARCH_DOWN_STRIDE     2
#define PCN_ARCH_DOWN_PADDING    1
#define PCN_ARCH_EXPANSION       2
#define PCN_ARCH_MLP_RATIO       5
#define PCN_ARCH_LOCAL_KERNEL    7
#define PCN_ARCH_NORM_EPS        1e-6f
#define PCN_ARCH_RES_SCALE_FIRST 2 /* res_scale_stages = [false, false, true, true] */

/* ------------------------------------------------------------------ tensors of a weights source */

/* Element types of safetensors (spec clause 13.1): the public pcn_dtype values for the float
 * types, the others only to check a file's layout and name them in errors. */
enum {
    PCN_ST_I64 = 16,
    PCN_ST_I32,
    PCN_ST_I16,
    PCN_ST_I8,
    PCN_ST_U8,
    PCN_ST_U16,
    PCN_ST_U32,
    PCN_ST_U64,
    PCN_ST_BOOL,
    PCN_ST_C64
};

/* One tensor of a weights source: a name (not NUL-terminated inside the source; `name` points to
 * a NUL-terminated copy), its element type and shape, and where its bytes are: `offset` into a
 * file's data section, or `data` in memory (`little`: stored little-endian, else native order). */
typedef struct pcn_tensor_ref {
    const char *name;
    size_t name_len;
    int dtype;
    size_t itemsize;
    size_t ndim;
    size_t shape[PCN_TENSOR_MAX_DIMS];
    size_t count; /* prod(shape) */
    size_t begin, end;
    const void *data;
    int little;
    int used;     /* matched by the architecture check */
    size_t index; /* position in the caller's array (pcn_model_from_reader) */
} pcn_tensor_ref;

typedef struct pcn_tensor_set {
    pcn_tensor_ref *t;
    size_t count;
    char *names;    /* storage of the NUL-terminated names */
    size_t *sorted; /* indices of t sorted by name (binary search) */
} pcn_tensor_set;

/* safetensors.c: parse the header of a file of `file_size` bytes whose first bytes (the 8-byte
 * length and the JSON header) are `head` (`head_len` >= 8 bytes available). On success `*hlen`
 * is the JSON length and `set` lists the tensors with offsets into the data section. */
pcn_status pcn_st_header_length(const unsigned char *head8, size_t file_size, size_t *hlen, pcn_error *err);
pcn_status pcn_st_parse(const unsigned char *json, size_t hlen, size_t data_len, pcn_tensor_set *set, pcn_error *err);
/* Sort names, refuse duplicates, strip a leading "module." (shared by every source). */
pcn_status pcn_tensor_set_index(pcn_tensor_set *set, pcn_error *err);
const pcn_tensor_ref *pcn_tensor_set_find(const pcn_tensor_set *set, const char *name);
void pcn_tensor_set_free(pcn_tensor_set *set);
size_t pcn_dtype_size(int dtype);
const char *pcn_dtype_label(int dtype);

/* ------------------------------------------------------------------ the model */

typedef struct pcn_block_w {
    const float *norm1, *norm2;   /* C */
    pcn_gemm_b pw1;               /* paired, bias: C -> 2C (clause 8.1) */
    pcn_gemm_b pw2;               /* C -> C */
    pcn_gemm_b fc1;               /* paired, bias: C -> 5C (clause 8.2) */
    pcn_gemm_b fc2;               /* 5C/2 -> C */
    const float *kh, *kw;         /* (C, K) oversized kernels as stored */
    const float *k7;              /* (C, 49) */
    const float *scale1, *scale2; /* C, or NULL (stages 0, 1) */
} pcn_block_w;

struct pcn_model {
    pcn_model_info info;
    const pcn_kernels *conv;
    const pcn_fused_kernels *fused;
    const pcn_gemm_kernels *gemm;
    pcn_gemm_b stem;                       /* (7*7*3 in (ky, kx, c) order) -> d0, bias */
    const float *post_norm;                /* d0 */
    pcn_gemm_b down[PCN_MAX_STAGES];       /* [i >= 1]: (3*3*d_{i-1} in (ky, kx, c) order) -> d_i, bias */
    const float *pre_norm[PCN_MAX_STAGES]; /* [i >= 1] */
    pcn_block_w *blocks[PCN_MAX_STAGES];
    const float *norm_w, *norm_b; /* head LayerNorm (d_last) */
    const float *head_wt;         /* (d_last, K): the classifier transposed */
    const float *head_b;          /* K */
    float *vectors;               /* storage of every float vector above */
    size_t vectors_len;
};

/* ------------------------------------------------------------------ helpers shared by the files */

/* The kernels of one channel resized to `size` taps by linear interpolation, align_corners=True
 * (clause 5.2), in float32 exactly as the reference computes it. */
void pcn_resize_kernel(const float *k, size_t K, float *out, size_t size);

/* ops.c: a validated NHWC parc_spatial job (clauses 5-7) for the model, path SEPARABLE or DENSE. */
pcn_status pcn_parc_job_nhwc(pcn_job *job, size_t N, size_t C, size_t H, size_t W, size_t KV, size_t KW, pcn_path path,
                             pcn_error *err);

#endif
