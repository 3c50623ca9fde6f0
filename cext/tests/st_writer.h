/*
 * st_writer.h - test helpers (spec clause 16): the tensors of a small ParCNetV2 configuration
 * under the official names and shapes (clause 2.2, written out here independently of model.c,
 * so the loader's checks are tested against the spec's table), with random weights, and a
 * .safetensors writer into memory. Header-only, for tests/test_model.c and tests/fuzz.c.
 */
#ifndef PCN_TESTS_ST_WRITER_H
#define PCN_TESTS_ST_WRITER_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

typedef struct st_tensor {
    char name[96];
    char dtype[8];
    size_t ndim, shape[4], count;
    float *data;
} st_tensor;

typedef struct st_model {
    st_tensor t[512];
    size_t n;
} st_model;

/* Appends one tensor with random values: matrices ~ U(-1, 1) * sqrt(3 / fan_in) (unit variance
 * through a layer), vectors (norm weights, scales) +-[0.5, 1.5], biases U(-0.3, 0.3). */
static void st_add(st_model *m, uint64_t *rng, const char *name, size_t ndim, size_t d0, size_t d1, size_t d2,
                   size_t d3) {
    st_tensor *t = &m->t[m->n++];
    const size_t dims[4] = {d0, d1, d2, d3};
    size_t i, fan_in = 1;
    snprintf(t->name, sizeof t->name, "%s", name);
    strcpy(t->dtype, "F32");
    t->ndim = ndim;
    t->count = 1;
    for (i = 0; i < ndim; i++) {
        t->shape[i] = dims[i];
        t->count *= dims[i];
        if (i) fan_in *= dims[i];
    }
    t->data = (float *)malloc(sizeof(float) * (t->count ? t->count : 1));
    for (i = 0; i < t->count; i++) {
        const double u = check_rand(rng);
        if (ndim >= 2)
            t->data[i] = (float)(u * sqrt(3.0 / (double)fan_in));
        else if (strstr(name, "bias"))
            t->data[i] = (float)(0.3 * u);
        else
            t->data[i] = (float)((u < 0 ? -1.0 : 1.0) * (0.5 + fabs(u)));
    }
}

/* The official tensors of a configuration (stages <= 4), in the official order. */
static void st_model_make(st_model *m, size_t stages, const size_t *depths, const size_t *dims, const size_t *kernels,
                          size_t classes, uint64_t seed) {
    char n[96];
    size_t i, j, cin = 3;
    uint64_t rng = seed * 2654435761u + 1;
    m->n = 0;
    for (i = 0; i < stages; i++) {
        const size_t c = dims[i];
        if (i == 0) {
            st_add(m, &rng, "downsample_layers.0.conv.weight", 4, c, 3, 7, 7);
            st_add(m, &rng, "downsample_layers.0.conv.bias", 1, c, 0, 0, 0);
            st_add(m, &rng, "downsample_layers.0.post_norm.weight", 1, c, 0, 0, 0);
        } else {
            snprintf(n, sizeof n, "downsample_layers.%zu.pre_norm.weight", i);
            st_add(m, &rng, n, 1, cin, 0, 0, 0);
            snprintf(n, sizeof n, "downsample_layers.%zu.conv.weight", i);
            st_add(m, &rng, n, 4, c, cin, 3, 3);
            snprintf(n, sizeof n, "downsample_layers.%zu.conv.bias", i);
            st_add(m, &rng, n, 1, c, 0, 0, 0);
        }
        cin = c;
    }
    for (i = 0; i < stages; i++) {
        const size_t c = dims[i], k = kernels[i];
        for (j = 0; j < depths[i]; j++) {
#define ADD(ND, A, B, C, D, LEAF)                                                                                      \
    do {                                                                                                               \
        snprintf(n, sizeof n, "stages.%zu.%zu." LEAF, i, j);                                                           \
        st_add(m, &rng, n, ND, A, B, C, D);                                                                            \
    } while (0)
            ADD(1, c, 0, 0, 0, "norm1.weight");
            ADD(4, 2 * c, c, 1, 1, "token_mixer.pwconv1.weight");
            ADD(1, 2 * c, 0, 0, 0, "token_mixer.pwconv1.bias");
            ADD(4, c, 1, k, 1, "token_mixer.dwconv1.conv_h.weight");
            ADD(4, c, 1, 1, k, "token_mixer.dwconv1.conv_w.weight");
            ADD(4, c, 1, 7, 7, "token_mixer.dwconv2.weight");
            ADD(4, c, c, 1, 1, "token_mixer.pwconv2.weight");
            if (i >= 2) ADD(1, c, 0, 0, 0, "res_scale1.scale");
            ADD(1, c, 0, 0, 0, "norm2.weight");
            ADD(2, 5 * c, c, 0, 0, "mlp.fc1.weight");
            ADD(1, 5 * c, 0, 0, 0, "mlp.fc1.bias");
            ADD(2, c, 5 * c / 2, 0, 0, "mlp.fc2.weight");
            if (i >= 2) ADD(1, c, 0, 0, 0, "res_scale2.scale");
#undef ADD
        }
    }
    st_add(m, &rng, "norm.weight", 1, cin, 0, 0, 0);
    st_add(m, &rng, "norm.bias", 1, cin, 0, 0, 0);
    st_add(m, &rng, "head.weight", 2, classes, cin, 0, 0);
    st_add(m, &rng, "head.bias", 1, classes, 0, 0, 0);
}

static void st_model_free(st_model *m) {
    size_t i;
    for (i = 0; i < m->n; i++) free(m->t[i].data);
    m->n = 0;
}

/* A .safetensors file of the tensors (float32 data little-endian; the header as the project's
 * writer lays it out, padded with spaces to 8 bytes). Caller frees. */
static unsigned char *st_write(const st_tensor *t, size_t n, size_t *size) {
    size_t cap = 256 + 160 * n, len = 0, i, k, off = 0, total;
    char *h = (char *)malloc(cap);
    unsigned char *out;
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (i = 0; i < n; i++) {
        const size_t bytes = t[i].count * 4;
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t[i].name,
                                t[i].dtype);
        for (k = 0; k < t[i].ndim; k++)
            len += (size_t)snprintf(h + len, cap - len, "%s%zu", k ? "," : "", t[i].shape[k]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while ((8 + len) % 8) h[len++] = ' ';
    total = 8 + len + off;
    out = (unsigned char *)malloc(total);
    for (k = 0; k < 8; k++) out[k] = (unsigned char)((uint64_t)len >> (8 * k));
    memcpy(out + 8, h, len);
    off = 8 + len;
    for (i = 0; i < n; i++)
        for (k = 0; k < t[i].count; k++) {
            uint32_t v;
            int b;
            memcpy(&v, &t[i].data[k], 4);
            for (b = 0; b < 4; b++) out[off++] = (unsigned char)(v >> (8 * b));
        }
    free(h);
    *size = total;
    return out;
}

#endif
