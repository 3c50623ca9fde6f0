/*
 * pcn_model.h - the whole ParCNetV2 model in C (spec clause 16): weights, plans, inference.
 *
 * Same conventions as parcnetv2.h: float32, pcn_status results with a pcn_error message naming
 * the bad argument, never an abort, no global mutable state. Shape legend: N batch, C channels,
 * H height, W width, K kernel length or classes.
 *
 *   pcn_model *m;  pcn_plan *p;  pcn_error e;
 *   pcn_model_options mo = pcn_model_options_default();
 *   if (pcn_model_load_file(&m, "parcnetv2_tiny.safetensors", &mo, &e)) fail(e.message);
 *   pcn_shape4 in = {1, 3, 224, 224};
 *   pcn_plan_options po = pcn_plan_options_default();
 *   if (pcn_plan_create(&p, m, in, &po, &e)) fail(e.message);
 *   if (pcn_plan_run(p, image, 1 * 3 * 224 * 224, logits, 1000, 2, &e)) fail(e.message);
 *   pcn_plan_free(p);  pcn_model_free(m);
 *
 * A model holds the weights, packed once for the kernels of one ISA; it is read-only after
 * creation and may be shared by any number of plans and threads. A plan belongs to one input
 * shape (N, 3, H, W): it holds every buffer a forward pass needs, allocated when it is created,
 * so pcn_plan_run allocates nothing. One plan runs one call at a time (a concurrent second call
 * on the same plan gets PCN_ERR_BUSY); make one plan per calling thread.
 *
 * Results (clause 16.4) are bit-identical for any thread count, any number of concurrent
 * callers and any batch position of an image: every output element is computed by one thread
 * in an order of operations fixed by the shapes and the ISA.
 */
#ifndef PCN_MODEL_H
#define PCN_MODEL_H

#include "parcnetv2.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most dimensions a pcn_tensor may have (the model's tensors have 1, 2 or 4). */
#define PCN_TENSOR_MAX_DIMS 8
/* Most stages a model may have (the official variants have 4; spec clause 2.4). */
#define PCN_MAX_STAGES 4

/* Element types of weights (safetensors codes F32, F16, BF16, F64). Weights of the other types
 * are converted to float32 when the model is created, rounding to nearest. */
typedef enum pcn_dtype { PCN_DTYPE_F32 = 1, PCN_DTYPE_F16 = 2, PCN_DTYPE_BF16 = 3, PCN_DTYPE_F64 = 4 } pcn_dtype;

/* One named tensor of pcn_model_from_tensors: the official state_dict name (spec clause 2.2, a
 * leading "module." is stripped), its element type, shape and data (prod(shape) elements, C
 * order, the machine's byte order). The data are read during the call only. */
typedef struct pcn_tensor {
    const char *name;
    pcn_dtype dtype;
    size_t ndim;
    size_t shape[PCN_TENSOR_MAX_DIMS];
    const void *data;
} pcn_tensor;

/* Kernel mode of the oversized convolutions (spec clause 5); not stored in weights files. */
typedef enum pcn_oversized_mode {
    PCN_OVERSIZED_FIXED = 0,       /* 5.1: the stored kernels, padding K/2 (the official default) */
    PCN_OVERSIZED_INTERPOLATE = 1, /* 5.2: interpolate=True, kernels resized to 2H-1 and 2W-1 */
    PCN_OVERSIZED_SIZE = 2         /* 5.3: interpolate=S, kernels resized to oversized_size */
} pcn_oversized_mode;

/* Options of a model (zero-initialise or use pcn_model_options_default). */
typedef struct pcn_model_options {
    pcn_isa isa;                  /* kernels and packed weight layout; AUTO = best for this CPU */
    pcn_oversized_mode oversized; /* kernel mode of every block (clause 5) */
    size_t oversized_size;        /* S for PCN_OVERSIZED_SIZE: odd, 1..PCN_MAX_KERNEL */
} pcn_model_options;

/* Default of pcn_plan_options.spin_us: microseconds a thread of a run waits actively at a step
 * barrier before it sleeps (README: measured on a shared 2-vCPU machine). */
#define PCN_PLAN_SPIN_US 50

/* Options of a plan (zero-initialise or use pcn_plan_options_default). */
typedef struct pcn_plan_options {
    int max_threads; /* most threads a run may use (sizes the per-thread scratch); <= 0 = OpenMP default;
                        at most PCN_MAX_THREADS */
    pcn_path path;   /* spatial path of every block: AUTO = the cost model per stage (clause 12.5) */
    int spin_us;     /* a run's threads wait at each step barrier actively for spin_us microseconds, then
                        sleep (Linux; elsewhere the OpenMP barrier): 0 = PCN_PLAN_SPIN_US, < 0 = sleep at
                        once; at most 1000000. Per plan: no process-wide setting (OMP_WAIT_POLICY) needed */
} pcn_plan_options;

/* The architecture of a model (clause 13.4: inferred from names and shapes). */
typedef struct pcn_model_info {
    size_t stages;                       /* 1..PCN_MAX_STAGES */
    size_t depths[PCN_MAX_STAGES];       /* blocks per stage */
    size_t dims[PCN_MAX_STAGES];         /* channels per stage */
    size_t kernel_sizes[PCN_MAX_STAGES]; /* stored oversized kernel length per stage (0: no block) */
    size_t num_classes;
    const char *variant; /* "parcnetv2_xt", ... or NULL for a custom configuration */
    size_t parameters;   /* number of weights in the file */
    size_t packed_bytes; /* memory the model holds */
    pcn_isa isa;         /* the ISA its kernels use (never AUTO) */
    pcn_oversized_mode oversized;
    size_t oversized_size;
} pcn_model_info;

/* What a plan prepared (informative). */
typedef struct pcn_plan_info {
    pcn_shape4 input; /* (N, 3, H, W) */
    size_t num_classes;
    int max_threads;
    size_t buffer_bytes;                                       /* activations, scratch and prepared kernels */
    size_t map_h[PCN_MAX_STAGES], map_w[PCN_MAX_STAGES];       /* feature map size per stage */
    size_t kernel_h[PCN_MAX_STAGES], kernel_w[PCN_MAX_STAGES]; /* oversized kernel lengths used */
    pcn_path path[PCN_MAX_STAGES];                             /* spatial path per stage (SEPARABLE or DENSE) */
} pcn_plan_info;

typedef struct pcn_model pcn_model;
typedef struct pcn_plan pcn_plan;

pcn_model_options pcn_model_options_default(void); /* isa AUTO, oversized FIXED */
pcn_plan_options pcn_plan_options_default(void);   /* max_threads 0 (OpenMP default), path AUTO, spin_us 0 */
/* Name of an element type ("F32", "F16", "BF16", "F64") or "unknown". */
const char *pcn_dtype_name(pcn_dtype dtype);

/*
 * Create a model from a .safetensors file (spec clause 13.1; `parcnetv2 convert` writes them) or
 * from the same bytes in memory. The header is parsed and bounds-checked before anything sized
 * by it is allocated: memory stays within the file's size plus the packed weights, whatever the
 * header declares. Tensor names are the official ones; the architecture is inferred from names
 * and shapes (clause 13.4); missing, unexpected, misshapen or non-float tensors are errors that
 * name them. Errors: PCN_ERR_FILE (cannot open or read, not a regular file), PCN_ERR_FORMAT (not a
 * valid safetensors file), PCN_ERR_WEIGHTS (the tensors do not form a ParCNetV2), PCN_ERR_ISA,
 * PCN_ERR_ARG (options), PCN_ERR_NOMEM. *out is NULL on error.
 */
pcn_status pcn_model_load_file(pcn_model **PCN_RESTRICT out, const char *PCN_RESTRICT path,
                               const pcn_model_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);
pcn_status pcn_model_load_memory(pcn_model **PCN_RESTRICT out, const void *PCN_RESTRICT data, size_t size,
                                 const pcn_model_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* Create a model from `count` named tensors (e.g. weights another program already validated and
 * holds as float32); same checks and errors as pcn_model_load_file (duplicate names included). */
pcn_status pcn_model_from_tensors(pcn_model **PCN_RESTRICT out, const pcn_tensor *PCN_RESTRICT tensors, size_t count,
                                  const pcn_model_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/* Supplies the data of tensors[index] of pcn_model_from_reader: `bytes` = prod(shape) * the element
 * size of its dtype, written to `data` in the machine's byte order. Returns 0 on success; any
 * other value aborts the model's creation (PCN_ERR_FILE). */
typedef int (*pcn_tensor_reader)(void *context, size_t index, void *data, size_t bytes);

/* Like pcn_model_from_tensors, but the data come from `read`, called once per tensor, one at a
 * time, after every name and shape has been checked (the `data` fields are ignored). A caller
 * that holds the weights in another form can release each tensor once it has been read, so the
 * weights are held about once during the creation instead of twice. */
pcn_status pcn_model_from_reader(pcn_model **PCN_RESTRICT out, const pcn_tensor *PCN_RESTRICT tensors, size_t count,
                                 pcn_tensor_reader read, void *context, const pcn_model_options *PCN_RESTRICT opt,
                                 pcn_error *PCN_RESTRICT err);

/* Free a model (NULL is accepted). Every plan made from it must be freed first. */
void pcn_model_free(pcn_model *model);

pcn_status pcn_model_get_info(const pcn_model *PCN_RESTRICT model, pcn_model_info *PCN_RESTRICT info,
                              pcn_error *PCN_RESTRICT err);

/*
 * A plan for NCHW float32 inputs of shape `input` = (N, 3, H, W), N >= 1, H, W >= 3 (clause 3.1).
 * Prepares the oversized kernels of this input size in the model's mode (clause 5; cropped to the
 * 2H-1 / 2W-1 taps that reach the map, which changes no result), the spatial path per stage and
 * every buffer. Kernel lengths over PCN_MAX_KERNEL after cropping are refused (PCN_ERR_SHAPE).
 */
pcn_status pcn_plan_create(pcn_plan **PCN_RESTRICT out, const pcn_model *PCN_RESTRICT model, pcn_shape4 input,
                           const pcn_plan_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err);

/*
 * One forward pass: x (N, 3, H, W) NCHW float32 with x_count = N*3*H*W elements -> logits
 * (N, num_classes) float32 with logits_count = N*num_classes elements. `threads` <= 0 uses the
 * plan's max_threads; more than max_threads is an error (PCN_ERR_ARG). Allocates nothing.
 * Non-finite inputs give unspecified (non-finite) logits, no error.
 */
pcn_status pcn_plan_run(pcn_plan *PCN_RESTRICT plan, const float *PCN_RESTRICT x, size_t x_count,
                        float *PCN_RESTRICT logits, size_t logits_count, int threads, pcn_error *PCN_RESTRICT err);

pcn_status pcn_plan_get_info(const pcn_plan *PCN_RESTRICT plan, pcn_plan_info *PCN_RESTRICT info,
                             pcn_error *PCN_RESTRICT err);

/* Free a plan (NULL is accepted). */
void pcn_plan_free(pcn_plan *plan);

#ifdef __cplusplus
}
#endif
#endif /* PCN_MODEL_H */
