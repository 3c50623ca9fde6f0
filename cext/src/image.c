/*
 * image.c - PPM input and the official evaluation's preprocessing (spec clause 16.6; clause 15.6
 * states the transform). The resize reproduces Pillow's 8-bit BICUBIC resampling (Pillow's
 * src/libImaging/Resample.c, read for its arithmetic: double-precision filter weights normalised
 * per output pixel, converted to 22-bit fixed point, a horizontal pass then a vertical one, each
 * rounded and clipped to 8 bits), computed only for the pixels the centre crop keeps.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pcn_image.h"
#include "pcn_internal.h"

#define PRECISION_BITS 22 /* 32 - 8 - 2, as Pillow */

static const float MEAN[3] = {0.485f, 0.456f, 0.406f}; /* ImageNet (timm IMAGENET_DEFAULT_MEAN) */
static const float STD[3] = {0.229f, 0.224f, 0.225f};  /* (timm IMAGENET_DEFAULT_STD) */

/* ------------------------------------------------------------------ PPM */

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Skips whitespace and comments, then reads a decimal; 0 on a malformed header. */
static int ppm_number(const unsigned char *p, size_t size, size_t *pos, size_t *value) {
    size_t i = *pos, v = 0, digits = 0;
    for (;;) {
        while (i < size && is_space(p[i])) i++;
        if (i < size && p[i] == '#') {
            while (i < size && p[i] != '\n' && p[i] != '\r') i++;
            continue;
        }
        break;
    }
    while (i < size && p[i] >= '0' && p[i] <= '9') {
        if (v > 100000000) return 0;
        v = v * 10 + (size_t)(p[i++] - '0');
        digits++;
    }
    if (!digits) return 0;
    *pos = i;
    *value = v;
    return 1;
}

pcn_status pcn_ppm_parse(const void *PCN_RESTRICT data, size_t size, size_t *PCN_RESTRICT width,
                         size_t *PCN_RESTRICT height, const unsigned char **PCN_RESTRICT pixels,
                         pcn_error *PCN_RESTRICT err) {
    const unsigned char *p = (const unsigned char *)data;
    size_t pos = 2, w, h, maxval, need;
    if (!data || !width || !height || !pixels) return pcn_fail(err, PCN_ERR_NULL, "pcn_ppm_parse: an argument is NULL");
    if (size < 2 || p[0] != 'P' || p[1] != '6')
        return pcn_fail(err, PCN_ERR_FORMAT, "not a binary PPM image (P6): the file does not start with \"P6\"");
    if (!ppm_number(p, size, &pos, &w) || !ppm_number(p, size, &pos, &h) || !ppm_number(p, size, &pos, &maxval))
        return pcn_fail(err, PCN_ERR_FORMAT, "PPM header is malformed (expected P6 width height maxval)");
    if (pos >= size || !is_space(p[pos]))
        return pcn_fail(err, PCN_ERR_FORMAT, "PPM header is malformed: no whitespace byte after maxval");
    pos++;
    if (w < 1 || h < 1 || w > PCN_IMAGE_MAX_SIDE || h > PCN_IMAGE_MAX_SIDE)
        return pcn_fail(err, PCN_ERR_SHAPE, "PPM image of %zux%zu pixels: sides must be in 1..%d", w, h,
                        PCN_IMAGE_MAX_SIDE);
    if ((double)w * (double)h > PCN_IMAGE_MAX_PIXELS)
        return pcn_fail(err, PCN_ERR_SHAPE, "image is %zux%zu pixels, over the limit of %d", w, h,
                        PCN_IMAGE_MAX_PIXELS);
    if (maxval != 255)
        return pcn_fail(err, PCN_ERR_FORMAT, "PPM maxval %zu is not supported (only 8-bit images, maxval 255)", maxval);
    if (h > SIZE_MAX / 3 / w) return pcn_fail(err, PCN_ERR_SHAPE, "PPM image of %zux%zu pixels is too large", w, h);
    need = w * h * 3;
    if (need > size - pos)
        return pcn_fail(err, PCN_ERR_FORMAT,
                        "PPM raster of %zux%zu pixels needs %zu bytes, the file has %zu after the header", w, h,
                        w * h * 3, size - pos);
    *width = w;
    *height = h;
    *pixels = p + pos;
    return pcn_ok(err);
}

/* ------------------------------------------------------------------ Pillow's bicubic resampling */

static double bicubic(double x) { /* a = -0.5 */
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Fixed-point coefficients of output pixels [first, first + count) of a resize from in_size to
 * out_size: per pixel the first input index bounds[2i], the tap count bounds[2i+1] and ksize
 * coefficients. Returns ksize, 0 when out of memory. */
static size_t coefficients(size_t in_size, size_t out_size, size_t first, size_t count, int **bounds_out,
                           int32_t **k_out) {
    const double scale = (double)((float)in_size - 0.0f) / (double)out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale, support = 2.0 * filterscale;
    const size_t ksize = (size_t)ceil(support) * 2 + 1;
    double *k = (double *)malloc(ksize * sizeof(double));
    int *bounds = (int *)malloc(2 * count * sizeof(int));
    int32_t *kk = (int32_t *)calloc(ksize * count, sizeof(int32_t));
    size_t i;
    if (!k || !bounds || !kk) {
        free(k);
        free(bounds);
        free(kk);
        return 0;
    }
    for (i = 0; i < count; i++) {
        const double center = 0.0 + ((double)(first + i) + 0.5) * scale, ss = 1.0 / filterscale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5), x;
        if (xmin < 0) xmin = 0;
        if (xmax > (int)in_size) xmax = (int)in_size;
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            const double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) k[x] /= ww;
            kk[i * ksize + (size_t)x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                                                 : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        }
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *k_out = kk;
    return ksize;
}

static unsigned char clip8(int64_t ss) {
    if (ss < 0) return 0;
    ss >>= PRECISION_BITS;
    return (unsigned char)(ss > 255 ? 255 : ss);
}

/* Python's round((d) / 2) for an integer d >= 0: halves to even. */
static size_t half_round_even(size_t d) {
    const size_t q = d / 2;
    return d % 2 == 0 ? q : (q % 2 == 0 ? q : q + 1);
}

pcn_status pcn_image_preprocess(const unsigned char *PCN_RESTRICT rgb, size_t width, size_t height, size_t resize,
                                size_t crop, float *PCN_RESTRICT out, pcn_error *PCN_RESTRICT err) {
    const char *op = "pcn_image_preprocess";
    size_t new_w, new_h, top, left, ylo, yhi, rows, y, x, c;
    int *vb = NULL, *hb = NULL;
    int32_t *vk = NULL, *hk = NULL;
    size_t vks = 0, hks = 0;
    unsigned char *temp = NULL, *final = NULL;
    int need_h, need_v;
    pcn_status st;
    if (!rgb || !out) return pcn_fail(err, PCN_ERR_NULL, "%s: %s is NULL", op, !rgb ? "rgb" : "out");
    if (width < 1 || height < 1 || width > PCN_IMAGE_MAX_SIDE || height > PCN_IMAGE_MAX_SIDE)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: image sides must be in 1..%d, got %zux%zu", op, PCN_IMAGE_MAX_SIDE,
                        width, height);
    if ((double)width * (double)height > PCN_IMAGE_MAX_PIXELS)
        return pcn_fail(err, PCN_ERR_SHAPE, "image is %zux%zu pixels, over the limit of %d", width, height,
                        PCN_IMAGE_MAX_PIXELS);
    if (crop < 1 || resize < crop || resize > PCN_IMAGE_MAX_SIDE)
        return pcn_fail(err, PCN_ERR_SHAPE, "%s: need 1 <= crop (%zu) <= resize (%zu) <= %d", op, crop, resize,
                        PCN_IMAGE_MAX_SIDE);
    /* the shorter side to `resize`, the longer int(resize * long / short) (Python float division) */
    {
        const double longer = floor((double)resize * (double)(width <= height ? height : width) /
                                    (double)(width <= height ? width : height));
        if ((double)resize * longer > PCN_IMAGE_MAX_RESIZED_PIXELS)
            return pcn_fail(err, PCN_ERR_SHAPE,
                            "image is %zux%zu pixels: resizing its shorter side to %zu makes %.0fx%.0f, over the "
                            "limit of %d pixels (aspect ratio too extreme)",
                            width, height, resize, width <= height ? (double)resize : longer,
                            width <= height ? longer : (double)resize, PCN_IMAGE_MAX_RESIZED_PIXELS);
        new_w = width <= height ? resize : (size_t)longer;
        new_h = width <= height ? (size_t)longer : resize;
    }
    top = half_round_even(new_h - crop);
    left = half_round_even(new_w - crop);
    need_h = new_w != width;
    need_v = new_h != height;
    if (need_v) {
        size_t i;
        vks = coefficients(height, new_h, top, crop, &vb, &vk);
        if (!vks) goto nomem;
        ylo = (size_t)vb[0];
        yhi = 0;
        for (i = 0; i < crop; i++) {
            if ((size_t)vb[2 * i] < ylo) ylo = (size_t)vb[2 * i];
            if ((size_t)(vb[2 * i] + vb[2 * i + 1]) > yhi) yhi = (size_t)(vb[2 * i] + vb[2 * i + 1]);
        }
        if (yhi < ylo) yhi = ylo;
    } else {
        ylo = top;
        yhi = top + crop;
    }
    rows = yhi - ylo;
    if (need_h && !(hks = coefficients(width, new_w, left, crop, &hb, &hk))) goto nomem;
    temp = (unsigned char *)malloc(rows * crop * 3 + 1);
    final = (unsigned char *)malloc(crop * crop * 3);
    if (!temp || !final) goto nomem;
    /* horizontal pass (or the input's columns) for input rows [ylo, yhi) */
    for (y = 0; y < rows; y++) {
        const unsigned char *src = rgb + (ylo + y) * width * 3;
        unsigned char *dst = temp + y * crop * 3;
        for (x = 0; x < crop; x++) {
            if (!need_h) {
                memcpy(dst + x * 3, src + (left + x) * 3, 3);
                continue;
            }
            for (c = 0; c < 3; c++) {
                const int32_t *k = hk + x * hks;
                int64_t ss = (int64_t)1 << (PRECISION_BITS - 1);
                int t;
                for (t = 0; t < hb[2 * x + 1]; t++) ss += (int64_t)src[(size_t)(hb[2 * x] + t) * 3 + c] * k[t];
                dst[x * 3 + c] = clip8(ss);
            }
        }
    }
    /* vertical pass (or the kept rows) */
    for (y = 0; y < crop; y++)
        for (x = 0; x < crop; x++)
            for (c = 0; c < 3; c++) {
                if (!need_v) {
                    final[(y * crop + x) * 3 + c] = temp[(y * crop + x) * 3 + c];
                    continue;
                }
                {
                    const int32_t *k = vk + y * vks;
                    int64_t ss = (int64_t)1 << (PRECISION_BITS - 1);
                    int t;
                    for (t = 0; t < vb[2 * y + 1]; t++)
                        ss += (int64_t)temp[(((size_t)vb[2 * y] - ylo + (size_t)t) * crop + x) * 3 + c] * k[t];
                    final[(y * crop + x) * 3 + c] = clip8(ss);
                }
            }
    /* to [0, 1], then ImageNet normalisation, CHW (float32 as NumPy computes it) */
    for (c = 0; c < 3; c++)
        for (y = 0; y < crop * crop; y++) {
            const float v = (float) final[y * 3 + c] / 255.0f;
            out[c * crop * crop + y] = (v - MEAN[c]) / STD[c];
        }
    st = pcn_ok(err);
    goto done;
nomem:
    st = pcn_fail(err, PCN_ERR_NOMEM, "%s: out of memory", op);
done:
    free(vb);
    free(vk);
    free(hb);
    free(hk);
    free(temp);
    free(final);
    return st;
}
