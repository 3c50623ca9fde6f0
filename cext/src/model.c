/*
 * model.c - a ParCNetV2 model from named tensors (spec clause 16.1): the architecture inferred
 * from names and shapes (clause 13.4), every name and shape checked against clause 2.2, the
 * weights converted to float32 and packed once for one ISA's GEMM kernels. Sources: a
 * .safetensors file, the same bytes in memory, or an array of pcn_tensor.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fileno, fstat, fseeko */
#endif
#if !defined(_WIN32) && !defined(_FILE_OFFSET_BITS)
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <sys/types.h>
#define PCN_HAVE_POSIX_FILES 1
#endif
#include "pcn_model_internal.h"

#define MAX_LISTED 6 /* names listed in a message about missing or unexpected tensors */

pcn_model_options pcn_model_options_default(void) {
    pcn_model_options o;
    memset(&o, 0, sizeof o);
    o.isa = PCN_ISA_AUTO;
    o.oversized = PCN_OVERSIZED_FIXED;
    return o;
}

/* ------------------------------------------------------------------ reading tensors as float32 */

/* Where the bytes of a set's tensors are: a file's data section, or memory (t->data). */
typedef struct source {
    FILE *f;
    uint64_t data_start;
    const unsigned char *mem; /* memory safetensors: the data section */
    pcn_tensor_reader read;   /* a caller's reader (pcn_model_from_reader) */
    void *context;
} source;

static int host_little(void) {
    const uint32_t probe = 1;
    return *(const unsigned char *)&probe == 1;
}

static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, exp = h >> 10 & 0x1F, man = h & 0x3FF;
    uint32_t bits;
    float f;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | man << 13;
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | man << 13;
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        uint32_t e = 113, m = man;
        while (!(m & 0x400)) {
            m <<= 1;
            e--;
        }
        bits = sign | e << 23 | (m & 0x3FF) << 13;
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* count elements of dtype from raw bytes (little-endian when `little`, else native) to float32 */
static void convert(int dtype, int little, const unsigned char *raw, size_t count, float *out) {
    const int swap = little != host_little();
    const size_t sz = pcn_dtype_size(dtype);
    size_t i;
    for (i = 0; i < count; i++) {
        unsigned char b[8];
        size_t k;
        for (k = 0; k < sz; k++) b[k] = raw[i * sz + (swap ? sz - 1 - k : k)];
        switch (dtype) {
        case PCN_DTYPE_F32: memcpy(&out[i], b, 4); break;
        case PCN_DTYPE_F64: {
            double d;
            memcpy(&d, b, 8);
            out[i] = (float)d; /* round to nearest, as NumPy's astype(float32) */
            break;
        }
        case PCN_DTYPE_F16: {
            uint16_t h;
            memcpy(&h, b, 2);
            out[i] = half_to_float(h);
            break;
        }
        case PCN_DTYPE_BF16: {
            uint16_t h;
            uint32_t bits;
            memcpy(&h, b, 2);
            bits = (uint32_t)h << 16;
            memcpy(&out[i], &bits, 4);
            break;
        }
        default: out[i] = 0.0f; break; /* never: dtypes are checked before reading */
        }
    }
}

/* Tensor t as float32 into out (t->count floats), through the scratch `raw` (t->end - t->begin
 * bytes) when the source is a file. */
static pcn_status read_tensor(const source *src, const pcn_tensor_ref *t, float *out, unsigned char *raw,
                              pcn_error *err) {
    const size_t nbytes = t->count * t->itemsize;
    if (src->f) {
#ifdef PCN_HAVE_POSIX_FILES
        if (fseeko(src->f, (off_t)(src->data_start + t->begin), SEEK_SET) != 0)
#else
        if (src->data_start + t->begin > (uint64_t)LONG_MAX ||
            fseek(src->f, (long)(src->data_start + t->begin), SEEK_SET) != 0)
#endif
            return pcn_fail(err, PCN_ERR_FILE, "cannot seek to tensor '%.80s'", t->name);
        if (fread(raw, 1, nbytes, src->f) != nbytes)
            return pcn_fail(err, PCN_ERR_FILE, "the file ends inside tensor '%.80s'", t->name);
        convert(t->dtype, 1, raw, t->count, out);
    } else if (src->read) {
        if (src->read(src->context, t->index, raw, nbytes) != 0)
            return pcn_fail(err, PCN_ERR_FILE, "the reader failed on tensor '%.80s'", t->name);
        convert(t->dtype, host_little(), raw, t->count, out);
    } else if (src->mem) {
        convert(t->dtype, 1, src->mem + t->begin, t->count, out);
    } else {
        convert(t->dtype, t->little, (const unsigned char *)t->data, t->count, out);
    }
    return PCN_OK;
}

/* ------------------------------------------------------------------ architecture (clause 13.4) */

typedef struct arch {
    size_t stages, depths[PCN_MAX_STAGES], dims[PCN_MAX_STAGES], kernels[PCN_MAX_STAGES], classes;
} arch;

static const pcn_tensor_ref *find(const pcn_tensor_set *set, const char *fmt, size_t a, size_t b) {
    char name[128];
    snprintf(name, sizeof name, fmt, a, b);
    return pcn_tensor_set_find(set, name);
}

/* Decimal digits at *p (no sign, no leading zeros but "0"), advancing p; 0 when none. */
static int parse_index(const char **p, const char *end, size_t *v) {
    const char *q = *p;
    *v = 0;
    if (q >= end || *q < '0' || *q > '9') return 0;
    while (q < end && *q >= '0' && *q <= '9') {
        if (*v > (SIZE_MAX - 9) / 10) return 0;
        *v = *v * 10 + (size_t)(*q - '0');
        q++;
    }
    *p = q;
    return 1;
}

static pcn_status infer_arch(const pcn_tensor_set *set, arch *a, pcn_error *err) {
    const pcn_tensor_ref *t;
    size_t i, j;
    memset(a, 0, sizeof *a);
    while (a->stages <= PCN_MAX_STAGES && find(set, "downsample_layers.%zu.conv.weight", a->stages, 0)) a->stages++;
    if (a->stages == 0)
        return pcn_fail(err, PCN_ERR_WEIGHTS,
                        "cannot infer the architecture: missing key downsample_layers.0.conv.weight");
    if (a->stages > PCN_MAX_STAGES)
        return pcn_fail(err, PCN_ERR_WEIGHTS, "at most %d stages, the weights have more", PCN_MAX_STAGES);
    for (i = 0; i < a->stages; i++) {
        t = find(set, "downsample_layers.%zu.conv.weight", i, 0);
        if (t->ndim < 1)
            return pcn_fail(err, PCN_ERR_WEIGHTS, "downsample_layers.%zu.conv.weight has no dimensions", i);
        a->dims[i] = t->shape[0];
    }
    /* depths: the largest block index under stages.i, as clause 13.4 counts them */
    for (j = 0; j < set->count; j++) {
        const pcn_tensor_ref *r = &set->t[j];
        const char *p = r->name, *end = r->name + r->name_len;
        size_t si, bi;
        if (r->name_len < 7 || memcmp(p, "stages.", 7) != 0) continue;
        p += 7;
        if (!parse_index(&p, end, &si) || p >= end || *p != '.') continue;
        p++;
        if (!parse_index(&p, end, &bi) || p >= end || *p != '.') continue;
        if (si < a->stages && bi + 1 > a->depths[si]) a->depths[si] = bi + 1;
    }
    for (i = 0; i < a->stages; i++) {
        /* each block has at least 13 tensors: more blocks than the file can hold are missing keys */
        if (a->depths[i] > set->count / 13 + 1)
            return pcn_fail(err, PCN_ERR_WEIGHTS,
                            "weights name block stages.%zu.%zu, but %zu tensors cannot hold %zu blocks", i,
                            a->depths[i] - 1, set->count, a->depths[i]);
        if (a->depths[i] == 0) continue;
        t = find(set, "stages.%zu.%zu.token_mixer.dwconv1.conv_h.weight", i, 0);
        if (!t)
            return pcn_fail(err, PCN_ERR_WEIGHTS,
                            "cannot infer the architecture: missing key stages.%zu.0.token_mixer.dwconv1.conv_h.weight",
                            i);
        if (t->ndim < 3)
            return pcn_fail(err, PCN_ERR_WEIGHTS,
                            "stages.%zu.0.token_mixer.dwconv1.conv_h.weight has %zu dimensions, expected 4", i,
                            t->ndim);
        a->kernels[i] = t->shape[2];
    }
    t = pcn_tensor_set_find(set, "head.weight");
    if (!t) return pcn_fail(err, PCN_ERR_WEIGHTS, "cannot infer the architecture: missing key head.weight");
    if (t->ndim < 1) return pcn_fail(err, PCN_ERR_WEIGHTS, "head.weight has no dimensions");
    a->classes = t->shape[0];
    /* the configuration's own rules (clause 2.4) */
    for (i = 0; i < a->stages; i++) {
        if (a->dims[i] < 2 || a->dims[i] % 2 || a->dims[i] > ((size_t)1 << 24))
            return pcn_fail(err, PCN_ERR_WEIGHTS,
                            "stage %zu has %zu channels: dims must be even, 2..16777216 (clause 2.4)", i, a->dims[i]);
        if (a->depths[i] && (a->kernels[i] < 1 || a->kernels[i] % 2 == 0 || a->kernels[i] > ((size_t)1 << 24)))
            return pcn_fail(err, PCN_ERR_WEIGHTS,
                            "stage %zu has an oversized kernel of %zu taps: it must be odd (clause 2.4)", i,
                            a->kernels[i]);
    }
    if (a->classes < 1 || a->classes > ((size_t)1 << 24))
        return pcn_fail(err, PCN_ERR_WEIGHTS, "head.weight declares %zu classes (1..16777216)", a->classes);
    return PCN_OK;
}

/* One expected tensor: its name and shape (clause 2.2). */
typedef struct expect_t {
    char name[96];
    size_t ndim, shape[4];
} expect_t;

static void ex_set(expect_t *e, size_t ndim, size_t d0, size_t d1, size_t d2, size_t d3) {
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
    e->shape[2] = d2;
    e->shape[3] = d3;
}

/* Calls visit(e, ctx) for every expected tensor in the official order; stops at a non-OK status. */
typedef pcn_status (*visit_fn)(const expect_t *e, void *ctx);

static pcn_status each_expected(const arch *a, visit_fn visit, void *ctx) {
    expect_t e;
    pcn_status st;
    size_t i, j, cin = PCN_ARCH_IN_CHANS;
#define EXPECT(ND, D0, D1, D2, D3, ...)                                                                                \
    do {                                                                                                               \
        snprintf(e.name, sizeof e.name, __VA_ARGS__);                                                                  \
        ex_set(&e, ND, D0, D1, D2, D3);                                                                                \
        if ((st = visit(&e, ctx)) != PCN_OK) return st;                                                                \
    } while (0)
    for (i = 0; i < a->stages; i++) {
        const size_t c = a->dims[i];
        if (i == 0) {
            EXPECT(4, c, cin, PCN_ARCH_STEM_KERNEL, PCN_ARCH_STEM_KERNEL, "downsample_layers.0.conv.weight");
            EXPECT(1, c, 0, 0, 0, "downsample_layers.0.conv.bias");
            EXPECT(1, c, 0, 0, 0, "downsample_layers.0.post_norm.weight");
        } else {
            EXPECT(1, cin, 0, 0, 0, "downsample_layers.%zu.pre_norm.weight", i);
            EXPECT(4, c, cin, PCN_ARCH_DOWN_KERNEL, PCN_ARCH_DOWN_KERNEL, "downsample_layers.%zu.conv.weight", i);
            EXPECT(1, c, 0, 0, 0, "downsample_layers.%zu.conv.bias", i);
        }
        cin = c;
    }
    for (i = 0; i < a->stages; i++) {
        const size_t c = a->dims[i], k = a->kernels[i], med = PCN_ARCH_EXPANSION * c, hid = PCN_ARCH_MLP_RATIO * c;
        for (j = 0; j < a->depths[i]; j++) {
            EXPECT(1, c, 0, 0, 0, "stages.%zu.%zu.norm1.weight", i, j);
            EXPECT(4, med, c, 1, 1, "stages.%zu.%zu.token_mixer.pwconv1.weight", i, j);
            EXPECT(1, med, 0, 0, 0, "stages.%zu.%zu.token_mixer.pwconv1.bias", i, j);
            EXPECT(4, med / 2, 1, k, 1, "stages.%zu.%zu.token_mixer.dwconv1.conv_h.weight", i, j);
            EXPECT(4, med / 2, 1, 1, k, "stages.%zu.%zu.token_mixer.dwconv1.conv_w.weight", i, j);
            EXPECT(4, med / 2, 1, PCN_ARCH_LOCAL_KERNEL, PCN_ARCH_LOCAL_KERNEL,
                   "stages.%zu.%zu.token_mixer.dwconv2.weight", i, j);
            EXPECT(4, c, med / 2, 1, 1, "stages.%zu.%zu.token_mixer.pwconv2.weight", i, j);
            if (i >= PCN_ARCH_RES_SCALE_FIRST) EXPECT(1, c, 0, 0, 0, "stages.%zu.%zu.res_scale1.scale", i, j);
            EXPECT(1, c, 0, 0, 0, "stages.%zu.%zu.norm2.weight", i, j);
            EXPECT(2, hid, c, 0, 0, "stages.%zu.%zu.mlp.fc1.weight", i, j);
            EXPECT(1, hid, 0, 0, 0, "stages.%zu.%zu.mlp.fc1.bias", i, j);
            EXPECT(2, c, hid / 2, 0, 0, "stages.%zu.%zu.mlp.fc2.weight", i, j);
            if (i >= PCN_ARCH_RES_SCALE_FIRST) EXPECT(1, c, 0, 0, 0, "stages.%zu.%zu.res_scale2.scale", i, j);
        }
    }
    EXPECT(1, cin, 0, 0, 0, "norm.weight");
    EXPECT(1, cin, 0, 0, 0, "norm.bias");
    EXPECT(2, a->classes, cin, 0, 0, "head.weight");
    EXPECT(1, a->classes, 0, 0, 0, "head.bias");
#undef EXPECT
    return PCN_OK;
}

/* A short description of a configuration for messages. */
static void describe(const arch *a, char *out, size_t n) {
    size_t i, used = (size_t)snprintf(out, n, "depths=[");
    for (i = 0; i < a->stages && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%zu", i ? "," : "", a->depths[i]);
    if (used < n) used += (size_t)snprintf(out + used, n - used, "] dims=[");
    for (i = 0; i < a->stages && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%zu", i ? "," : "", a->dims[i]);
    if (used < n) snprintf(out + used, n - used, "]");
}

/* Appends a name to a bounded list "a, b, ..." */
static void list_add(char *list, size_t cap, size_t *shown, const char *name, size_t len) {
    size_t used = strlen(list);
    if (*shown >= MAX_LISTED || used + len + 3 >= cap) return;
    snprintf(list + used, cap - used, "%s%.*s", *shown ? ", " : "", (int)len, name);
    (*shown)++;
}

typedef struct check_ctx {
    pcn_tensor_set *set;
    size_t missing, missing_shown;
    char missing_list[160];
    const pcn_tensor_ref *bad_shape;
    expect_t bad_expect;
    const pcn_tensor_ref *bad_dtype;
    size_t params;
} check_ctx;

static pcn_status check_one(const expect_t *e, void *vctx) {
    check_ctx *c = (check_ctx *)vctx;
    pcn_tensor_ref *t = (pcn_tensor_ref *)pcn_tensor_set_find(c->set, e->name);
    size_t k;
    if (!t) {
        c->missing++;
        list_add(c->missing_list, sizeof c->missing_list, &c->missing_shown, e->name, strlen(e->name));
        return PCN_OK;
    }
    t->used = 1;
    if (!c->bad_shape) {
        int same = t->ndim == e->ndim;
        for (k = 0; same && k < e->ndim; k++) same = t->shape[k] == e->shape[k];
        if (!same) {
            c->bad_shape = t;
            c->bad_expect = *e;
        }
    }
    if (!c->bad_dtype && (t->dtype < PCN_DTYPE_F32 || t->dtype > PCN_DTYPE_F64)) c->bad_dtype = t;
    c->params += t->count;
    return PCN_OK;
}

static void shape_str(char *out, size_t n, size_t ndim, const size_t *shape) {
    size_t k, used = (size_t)snprintf(out, n, "(");
    for (k = 0; k < ndim && used < n; k++)
        used += (size_t)snprintf(out + used, n - used, "%zu%s", shape[k], ndim == 1 ? "," : k + 1 < ndim ? ", " : "");
    if (used < n) snprintf(out + used, n - used, ")");
}

static pcn_status check_names(pcn_tensor_set *set, const arch *a, size_t *params, pcn_error *err) {
    check_ctx c;
    size_t i, unexpected = 0, shown = 0;
    char ulist[160] = "", desc[96];
    memset(&c, 0, sizeof c);
    c.set = set;
    for (i = 0; i < set->count; i++) set->t[i].used = 0;
    each_expected(a, check_one, &c);
    for (i = 0; i < set->count; i++)
        if (!set->t[i].used) {
            unexpected++;
            list_add(ulist, sizeof ulist, &shown, set->t[i].name, set->t[i].name_len);
        }
    describe(a, desc, sizeof desc);
    if (c.missing || unexpected) {
        char mpart[220] = "", upart[220] = "";
        if (c.missing)
            snprintf(mpart, sizeof mpart, "missing keys (%zu): %s%s", c.missing, c.missing_list,
                     c.missing > c.missing_shown ? ", ..." : "");
        if (unexpected)
            snprintf(upart, sizeof upart, "%sunexpected keys (%zu): %s%s", c.missing ? "; " : "", unexpected, ulist,
                     unexpected > shown ? ", ..." : "");
        return pcn_fail(err, PCN_ERR_WEIGHTS, "weights do not match %s: %s%s", desc, mpart, upart);
    }
    if (c.bad_shape) {
        char got[64], want[64];
        shape_str(got, sizeof got, c.bad_shape->ndim, c.bad_shape->shape);
        shape_str(want, sizeof want, c.bad_expect.ndim, c.bad_expect.shape);
        return pcn_fail(err, PCN_ERR_WEIGHTS, "weights do not match %s: %s has shape %s, expected %s", desc,
                        c.bad_expect.name, got, want);
    }
    if (c.bad_dtype)
        return pcn_fail(err, PCN_ERR_WEIGHTS,
                        "%.80s has dtype %s; weights must be floating point (F32, F16, BF16, F64)", c.bad_dtype->name,
                        pcn_dtype_label(c.bad_dtype->dtype));
    *params = c.params;
    return PCN_OK;
}

/* ------------------------------------------------------------------ building the model */

typedef struct builder {
    pcn_model *m;
    const pcn_tensor_set *set;
    const source *src;
    float *f32;         /* the largest tensor as float32 */
    float *tmp;         /* the same size, for reordering */
    unsigned char *raw; /* the largest tensor's bytes (file sources) */
    size_t vec_used;
    pcn_error *err;
} builder;

/* Tensor `name` as float32 in b->f32; NULL (err set) on failure. */
static const float *load(builder *b, const char *name, const pcn_tensor_ref **tref) {
    const pcn_tensor_ref *t = pcn_tensor_set_find(b->set, name);
    if (!t) { /* checked before: cannot happen */
        pcn_fail(b->err, PCN_ERR_WEIGHTS, "missing key %s", name);
        return NULL;
    }
    if (read_tensor(b->src, t, b->f32, b->raw, b->err) != PCN_OK) return NULL;
    if (tref) *tref = t;
    return b->f32;
}

/* A vector tensor copied into the model's vector storage. */
static const float *vector(builder *b, const char *fmt, size_t i, size_t j) {
    char name[128];
    const pcn_tensor_ref *t;
    const float *v;
    float *dst;
    snprintf(name, sizeof name, fmt, i, j);
    if (!(v = load(b, name, &t))) return NULL;
    dst = b->m->vectors + b->vec_used;
    memcpy(dst, v, t->count * sizeof(float));
    b->vec_used += (t->count + 15) / 16 * 16;
    return dst;
}

static pcn_status gemm_from(builder *b, pcn_gemm_b *out, const char *wname, const char *bname, int pair) {
    const pcn_tensor_ref *t;
    const float *w = load(b, wname, &t);
    size_t n, kk;
    float *bias = NULL;
    pcn_status st;
    if (!w) return b->err ? b->err->code : PCN_ERR_FILE;
    n = t->shape[0];
    kk = t->count / n;
    if (bname) {
        const pcn_tensor_ref *bt = pcn_tensor_set_find(b->set, bname);
        bias = b->tmp;
        if (read_tensor(b->src, bt, bias, b->raw, b->err) != PCN_OK) return b->err ? b->err->code : PCN_ERR_FILE;
    }
    st = pcn_gemm_b_pack(out, b->m->gemm, w, (ptrdiff_t)kk, 1, bias, (ptrdiff_t)kk, (ptrdiff_t)n, pair, b->err);
    return st;
}

/* A strided convolution's weight (Cout, Cin, KH, KW) as B (KH*KW*Cin, Cout) in (ky, kx, c) row
 * order (the implicit im2col of plan.c), with its bias. */
static pcn_status conv_from(builder *b, pcn_gemm_b *out, size_t i) {
    char wname[64], bname[64];
    const pcn_tensor_ref *t, *bt;
    const float *w;
    size_t co, ci, kh, kw, o, c, y, x;
    snprintf(wname, sizeof wname, "downsample_layers.%zu.conv.weight", i);
    snprintf(bname, sizeof bname, "downsample_layers.%zu.conv.bias", i);
    if (!(w = load(b, wname, &t))) return b->err ? b->err->code : PCN_ERR_FILE;
    co = t->shape[0];
    ci = t->shape[1];
    kh = t->shape[2];
    kw = t->shape[3];
    for (o = 0; o < co; o++)
        for (c = 0; c < ci; c++)
            for (y = 0; y < kh; y++)
                for (x = 0; x < kw; x++) b->tmp[((y * kw + x) * ci + c) * co + o] = w[((o * ci + c) * kh + y) * kw + x];
    bt = pcn_tensor_set_find(b->set, bname);
    if (read_tensor(b->src, bt, b->f32, b->raw, b->err) != PCN_OK) return b->err ? b->err->code : PCN_ERR_FILE;
    return pcn_gemm_b_pack(out, b->m->gemm, b->tmp, (ptrdiff_t)co, 0, b->f32, (ptrdiff_t)(kh * kw * ci), (ptrdiff_t)co,
                           0, b->err);
}

static pcn_status build(builder *b, const arch *a) {
    pcn_model *m = b->m;
    char wn[96], bn[96];
    size_t i, j;
    pcn_status st;
    const float *v;
#define NEED(x)                                                                                                        \
    do {                                                                                                               \
        if (!(x)) return b->err ? b->err->code : PCN_ERR_FILE;                                                         \
    } while (0)
    if ((st = conv_from(b, &m->stem, 0)) != PCN_OK) return st;
    NEED(m->post_norm = vector(b, "downsample_layers.%zu.post_norm.weight", 0, 0));
    for (i = 1; i < a->stages; i++) {
        if ((st = conv_from(b, &m->down[i], i)) != PCN_OK) return st;
        NEED(m->pre_norm[i] = vector(b, "downsample_layers.%zu.pre_norm.weight", i, 0));
    }
    for (i = 0; i < a->stages; i++) {
        if (!a->depths[i]) continue;
        m->blocks[i] = (pcn_block_w *)calloc(a->depths[i], sizeof(pcn_block_w));
        if (!m->blocks[i]) return pcn_fail(b->err, PCN_ERR_NOMEM, "model: out of memory");
        for (j = 0; j < a->depths[i]; j++) {
            pcn_block_w *bw = &m->blocks[i][j];
            NEED(bw->norm1 = vector(b, "stages.%zu.%zu.norm1.weight", i, j));
            NEED(bw->norm2 = vector(b, "stages.%zu.%zu.norm2.weight", i, j));
            NEED(bw->kh = vector(b, "stages.%zu.%zu.token_mixer.dwconv1.conv_h.weight", i, j));
            NEED(bw->kw = vector(b, "stages.%zu.%zu.token_mixer.dwconv1.conv_w.weight", i, j));
            NEED(bw->k7 = vector(b, "stages.%zu.%zu.token_mixer.dwconv2.weight", i, j));
            if (i >= PCN_ARCH_RES_SCALE_FIRST) {
                NEED(bw->scale1 = vector(b, "stages.%zu.%zu.res_scale1.scale", i, j));
                NEED(bw->scale2 = vector(b, "stages.%zu.%zu.res_scale2.scale", i, j));
            }
            snprintf(wn, sizeof wn, "stages.%zu.%zu.token_mixer.pwconv1.weight", i, j);
            snprintf(bn, sizeof bn, "stages.%zu.%zu.token_mixer.pwconv1.bias", i, j);
            if ((st = gemm_from(b, &bw->pw1, wn, bn, 1)) != PCN_OK) return st;
            snprintf(wn, sizeof wn, "stages.%zu.%zu.token_mixer.pwconv2.weight", i, j);
            if ((st = gemm_from(b, &bw->pw2, wn, NULL, 0)) != PCN_OK) return st;
            snprintf(wn, sizeof wn, "stages.%zu.%zu.mlp.fc1.weight", i, j);
            snprintf(bn, sizeof bn, "stages.%zu.%zu.mlp.fc1.bias", i, j);
            if ((st = gemm_from(b, &bw->fc1, wn, bn, 1)) != PCN_OK) return st;
            snprintf(wn, sizeof wn, "stages.%zu.%zu.mlp.fc2.weight", i, j);
            if ((st = gemm_from(b, &bw->fc2, wn, NULL, 0)) != PCN_OK) return st;
        }
    }
    NEED(m->norm_w = vector(b, "norm.weight", 0, 0));
    NEED(m->norm_b = vector(b, "norm.bias", 0, 0));
    NEED(m->head_b = vector(b, "head.bias", 0, 0));
    NEED(v = load(b, "head.weight", NULL));
    {
        const size_t K = a->classes, C = a->dims[a->stages - 1];
        float *wt = m->vectors + b->vec_used;
        size_t k, c;
        for (k = 0; k < K; k++)
            for (c = 0; c < C; c++) wt[c * K + k] = v[k * C + c];
        m->head_wt = wt;
        b->vec_used += (K * C + 15) / 16 * 16;
    }
#undef NEED
    return PCN_OK;
}

static size_t r16(size_t n) {
    return (n + 15) / 16 * 16;
}

/* Floats of vector storage: every tensor that is not packed for the GEMM (norm weights, kernels,
 * scales, the head), each rounded to 16 floats as vector() places them. */
static size_t vector_floats(const arch *a) {
    size_t i, n = r16(a->dims[0]), last = a->dims[a->stages - 1];
    for (i = 1; i < a->stages; i++) n += r16(a->dims[i - 1]);
    for (i = 0; i < a->stages; i++) {
        const size_t c = a->dims[i];
        n += a->depths[i] *
             (2 * r16(c) + 2 * r16(c * a->kernels[i]) + r16(c * 49) + (i >= PCN_ARCH_RES_SCALE_FIRST ? 2 * r16(c) : 0));
    }
    return n + 2 * r16(last) + r16(a->classes) + r16(a->classes * last);
}

void pcn_model_free(pcn_model *m) {
    size_t i, j;
    if (!m) return;
    pcn_gemm_b_free(&m->stem);
    for (i = 0; i < PCN_MAX_STAGES; i++) {
        pcn_gemm_b_free(&m->down[i]);
        if (m->blocks[i]) {
            for (j = 0; j < m->info.depths[i]; j++) {
                pcn_gemm_b_free(&m->blocks[i][j].pw1);
                pcn_gemm_b_free(&m->blocks[i][j].pw2);
                pcn_gemm_b_free(&m->blocks[i][j].fc1);
                pcn_gemm_b_free(&m->blocks[i][j].fc2);
            }
            free(m->blocks[i]);
        }
    }
    free(m->vectors);
    free(m);
}

static pcn_status check_model_options(const pcn_model_options *opt, pcn_error *err) {
    if (!opt) return PCN_OK;
    if ((int)opt->isa < 0 || (int)opt->isa >= PCN_ISA_COUNT)
        return pcn_fail(err, PCN_ERR_ARG, "model options: isa = %d is not a pcn_isa value", (int)opt->isa);
    if ((int)opt->oversized < PCN_OVERSIZED_FIXED || (int)opt->oversized > PCN_OVERSIZED_SIZE)
        return pcn_fail(err, PCN_ERR_ARG, "model options: oversized = %d is not a pcn_oversized_mode value",
                        (int)opt->oversized);
    if (opt->oversized == PCN_OVERSIZED_SIZE &&
        (opt->oversized_size < 1 || opt->oversized_size % 2 == 0 || opt->oversized_size > PCN_MAX_KERNEL))
        return pcn_fail(err, PCN_ERR_ARG, "model options: oversized_size = %zu must be odd and in 1..%d",
                        opt->oversized_size, PCN_MAX_KERNEL);
    return PCN_OK;
}

/* The model of an indexed tensor set whose bytes are in `src`. */
static pcn_status model_from_set(pcn_model **out, pcn_tensor_set *set, const source *src, const pcn_model_options *opt,
                                 pcn_error *err) {
    const pcn_model_options o = opt ? *opt : pcn_model_options_default();
    const pcn_isa isa = o.isa == PCN_ISA_AUTO ? pcn_isa_best() : o.isa;
    arch a;
    size_t params = 0, i, largest = 0;
    builder b;
    pcn_model *m;
    pcn_status st;
    if ((st = infer_arch(set, &a, err)) != PCN_OK) return st;
    if ((st = check_names(set, &a, &params, err)) != PCN_OK) return st;
    for (i = 0; i < set->count; i++) {
        const size_t bytes = set->t[i].count * set->t[i].itemsize;
        if (bytes > largest) largest = bytes;
        if (set->t[i].count > largest) largest = set->t[i].count;
    }
    m = (pcn_model *)calloc(1, sizeof *m);
    if (!m) return pcn_fail(err, PCN_ERR_NOMEM, "model: out of memory");
    m->conv = pcn_select_kernels(isa);
    m->fused = pcn_select_fused(isa);
    m->gemm = pcn_select_gemm(isa);
    if (!m->conv || !m->fused || !m->gemm) {
        free(m);
        return pcn_fail(err, PCN_ERR_ISA, "ISA %s is not available in this build or on this CPU", pcn_isa_name(isa));
    }
    m->info.stages = a.stages;
    for (i = 0; i < a.stages; i++) {
        m->info.depths[i] = a.depths[i];
        m->info.dims[i] = a.dims[i];
        m->info.kernel_sizes[i] = a.depths[i] ? a.kernels[i] : 0;
    }
    m->info.num_classes = a.classes;
    m->info.parameters = params;
    m->info.isa = isa;
    m->info.oversized = o.oversized;
    m->info.oversized_size = o.oversized == PCN_OVERSIZED_SIZE ? o.oversized_size : 0;
    memset(&b, 0, sizeof b);
    b.m = m;
    b.set = set;
    b.src = src;
    b.err = err;
    m->vectors_len = vector_floats(&a);
    m->vectors = (float *)malloc(sizeof(float) * m->vectors_len);
    b.f32 = (float *)malloc(sizeof(float) * largest + 64);
    b.tmp = (float *)malloc(sizeof(float) * largest + 64);
    b.raw = src->f || src->read ? (unsigned char *)malloc(largest + 64) : NULL;
    if (!m->vectors || !b.f32 || !b.tmp || ((src->f || src->read) && !b.raw)) {
        st = pcn_fail(err, PCN_ERR_NOMEM, "model: cannot allocate %zu bytes for the weights", largest * 9);
    } else {
        st = build(&b, &a);
    }
    free(b.f32);
    free(b.tmp);
    free(b.raw);
    if (st != PCN_OK) {
        pcn_model_free(m);
        return st;
    }
    {
        size_t bytes = m->vectors_len * sizeof(float), s2, j;
        const pcn_gemm_b *gs[4];
        bytes += (size_t)(m->stem.panels * m->stem.Kp * m->stem.nv * m->stem.vl) * sizeof(float);
        for (i = 1; i < a.stages; i++)
            bytes += (size_t)(m->down[i].panels * m->down[i].Kp * m->down[i].nv * m->down[i].vl) * sizeof(float);
        for (i = 0; i < a.stages; i++)
            for (j = 0; j < a.depths[i]; j++) {
                gs[0] = &m->blocks[i][j].pw1;
                gs[1] = &m->blocks[i][j].pw2;
                gs[2] = &m->blocks[i][j].fc1;
                gs[3] = &m->blocks[i][j].fc2;
                for (s2 = 0; s2 < 4; s2++)
                    bytes +=
                        (size_t)(gs[s2]->panels * gs[s2]->Kp * gs[s2]->nv * gs[s2]->vl + 2 * gs[s2]->N) * sizeof(float);
            }
        m->info.packed_bytes = bytes;
    }
    *out = m;
    return pcn_ok(err);
}

/* ------------------------------------------------------------------ public entry points */

pcn_status pcn_model_load_memory(pcn_model **PCN_RESTRICT out, const void *PCN_RESTRICT data, size_t size,
                                 const pcn_model_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    const unsigned char *p = (const unsigned char *)data;
    pcn_tensor_set set;
    source src;
    size_t hlen;
    pcn_status st;
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "pcn_model_load_memory: out is NULL");
    *out = NULL;
    if (!data) return pcn_fail(err, PCN_ERR_NULL, "pcn_model_load_memory: data is NULL");
    if ((st = check_model_options(opt, err)) != PCN_OK) return st;
    if ((st = pcn_st_header_length(p, size, &hlen, err)) != PCN_OK) return st;
    if ((st = pcn_st_parse(p + 8, hlen, size - 8 - hlen, &set, err)) != PCN_OK) return st;
    if ((st = pcn_tensor_set_index(&set, err)) == PCN_OK) {
        memset(&src, 0, sizeof src);
        src.mem = p + 8 + hlen;
        st = model_from_set(out, &set, &src, opt, err);
    }
    pcn_tensor_set_free(&set);
    return st;
}

pcn_status pcn_model_load_file(pcn_model **PCN_RESTRICT out, const char *PCN_RESTRICT path,
                               const pcn_model_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    FILE *f;
    unsigned char head[8];
    unsigned char *json = NULL;
    uint64_t fsize;
    size_t hlen;
    pcn_tensor_set set;
    source src;
    pcn_status st;
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "pcn_model_load_file: out is NULL");
    *out = NULL;
    if (!path) return pcn_fail(err, PCN_ERR_NULL, "pcn_model_load_file: path is NULL");
    if ((st = check_model_options(opt, err)) != PCN_OK) return st;
    errno = 0;
    f = fopen(path, "rb");
    if (!f) return pcn_fail(err, PCN_ERR_FILE, "cannot open %.200s: %s", path, errno ? strerror(errno) : "error");
#ifdef PCN_HAVE_POSIX_FILES
    {
        struct stat sb;
        if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
            fclose(f);
            return pcn_fail(err, PCN_ERR_FILE, "%.200s is not a regular file", path);
        }
        fsize = (uint64_t)sb.st_size;
    }
#else
    if (fseek(f, 0, SEEK_END) != 0 || ftell(f) < 0) {
        fclose(f);
        return pcn_fail(err, PCN_ERR_FILE, "cannot read %.200s", path);
    }
    fsize = (uint64_t)ftell(f);
    rewind(f);
#endif
    if (fsize > (uint64_t)SIZE_MAX / 2) {
        fclose(f);
        return pcn_fail(err, PCN_ERR_FILE, "%.200s is too large", path);
    }
    if (fread(head, 1, 8, f) != 8 && fsize >= 8) {
        fclose(f);
        return pcn_fail(err, PCN_ERR_FILE, "cannot read %.200s", path);
    }
    if ((st = pcn_st_header_length(head, (size_t)fsize, &hlen, err)) != PCN_OK) {
        fclose(f);
        return st;
    }
    json = (unsigned char *)malloc(hlen + 1);
    if (!json) {
        fclose(f);
        return pcn_fail(err, PCN_ERR_NOMEM, "cannot allocate the %zu-byte safetensors header", hlen);
    }
    if (fread(json, 1, hlen, f) != hlen) {
        free(json);
        fclose(f);
        return pcn_fail(err, PCN_ERR_FILE, "%.200s ends inside its header", path);
    }
    st = pcn_st_parse(json, hlen, (size_t)fsize - 8 - hlen, &set, err);
    free(json);
    if (st == PCN_OK) {
        if ((st = pcn_tensor_set_index(&set, err)) == PCN_OK) {
            memset(&src, 0, sizeof src);
            src.f = f;
            src.data_start = 8 + (uint64_t)hlen;
            st = model_from_set(out, &set, &src, opt, err);
        }
        pcn_tensor_set_free(&set);
    }
    fclose(f);
    return st;
}

/* pcn_model_from_tensors (read NULL: the data are in tensors[i].data) and pcn_model_from_reader. */
static pcn_status from_array(pcn_model **out, const pcn_tensor *tensors, size_t count, pcn_tensor_reader read,
                             void *context, const pcn_model_options *opt, const char *op, pcn_error *err) {
    pcn_tensor_set set;
    source src;
    size_t i, k;
    pcn_status st;
    if (!out) return pcn_fail(err, PCN_ERR_NULL, "%s: out is NULL", op);
    *out = NULL;
    if (!tensors && count) return pcn_fail(err, PCN_ERR_NULL, "%s: tensors is NULL", op);
    if ((st = check_model_options(opt, err)) != PCN_OK) return st;
    if (count > PCN_MAX_ELEMS / sizeof(pcn_tensor_ref))
        return pcn_fail(err, PCN_ERR_OVERFLOW, "%s: count is too large", op);
    memset(&set, 0, sizeof set);
    set.t = (pcn_tensor_ref *)calloc(count ? count : 1, sizeof *set.t);
    if (!set.t) return pcn_fail(err, PCN_ERR_NOMEM, "%s: out of memory", op);
    set.count = count;
    for (i = 0; i < count; i++) {
        const pcn_tensor *in = &tensors[i];
        pcn_tensor_ref *t = &set.t[i];
        size_t nbytes;
        int ovf = 0;
        if (!in->name) {
            pcn_tensor_set_free(&set);
            return pcn_fail(err, PCN_ERR_NULL, "%s: tensors[%zu].name is NULL", op, i);
        }
        if ((int)in->dtype < PCN_DTYPE_F32 || (int)in->dtype > PCN_DTYPE_F64) {
            pcn_fail(err, PCN_ERR_ARG, "%s: tensor '%.80s' has dtype %d, not a pcn_dtype value", op, in->name,
                     (int)in->dtype);
            pcn_tensor_set_free(&set);
            return PCN_ERR_ARG;
        }
        if (in->ndim > PCN_TENSOR_MAX_DIMS) {
            pcn_fail(err, PCN_ERR_SHAPE, "%s: tensor '%.80s' has %zu dimensions (at most %d)", op, in->name, in->ndim,
                     PCN_TENSOR_MAX_DIMS);
            pcn_tensor_set_free(&set);
            return PCN_ERR_SHAPE;
        }
        t->name = in->name;
        t->name_len = strlen(in->name);
        t->dtype = (int)in->dtype;
        t->itemsize = pcn_dtype_size(t->dtype);
        t->ndim = in->ndim;
        t->count = 1;
        for (k = 0; k < in->ndim; k++) {
            t->shape[k] = in->shape[k];
            ovf |= pcn_mul_ovf(t->count, in->shape[k], &t->count);
        }
        if (ovf || pcn_mul_ovf(t->count, t->itemsize, &nbytes) || t->count > PCN_MAX_ELEMS) {
            pcn_fail(err, PCN_ERR_OVERFLOW, "%s: tensor '%.80s' is too large", op, in->name);
            pcn_tensor_set_free(&set);
            return PCN_ERR_OVERFLOW;
        }
        if (!read && !in->data && t->count) {
            pcn_fail(err, PCN_ERR_NULL, "%s: tensor '%.80s' has no data", op, in->name);
            pcn_tensor_set_free(&set);
            return PCN_ERR_NULL;
        }
        t->data = read ? NULL : in->data;
        t->little = host_little();
        t->index = i;
    }
    if ((st = pcn_tensor_set_index(&set, err)) == PCN_OK) {
        memset(&src, 0, sizeof src);
        src.read = read;
        src.context = context;
        st = model_from_set(out, &set, &src, opt, err);
    }
    pcn_tensor_set_free(&set);
    return st;
}

pcn_status pcn_model_from_tensors(pcn_model **PCN_RESTRICT out, const pcn_tensor *PCN_RESTRICT tensors, size_t count,
                                  const pcn_model_options *PCN_RESTRICT opt, pcn_error *PCN_RESTRICT err) {
    return from_array(out, tensors, count, NULL, NULL, opt, "pcn_model_from_tensors", err);
}

pcn_status pcn_model_from_reader(pcn_model **PCN_RESTRICT out, const pcn_tensor *PCN_RESTRICT tensors, size_t count,
                                 pcn_tensor_reader read, void *context, const pcn_model_options *PCN_RESTRICT opt,
                                 pcn_error *PCN_RESTRICT err) {
    if (!read) {
        if (out) *out = NULL;
        return pcn_fail(err, PCN_ERR_NULL, "pcn_model_from_reader: read is NULL");
    }
    return from_array(out, tensors, count, read, context, opt, "pcn_model_from_reader", err);
}

pcn_status pcn_model_get_info(const pcn_model *PCN_RESTRICT model, pcn_model_info *PCN_RESTRICT info,
                              pcn_error *PCN_RESTRICT err) {
    if (!model || !info)
        return pcn_fail(err, PCN_ERR_NULL, "pcn_model_get_info: %s is NULL", !model ? "model" : "info");
    *info = model->info;
    return pcn_ok(err);
}
