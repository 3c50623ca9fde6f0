/*
 * pcn_image.h - images for the model without Python (spec clause 16.6): binary PPM files and the
 * official evaluation's preprocessing. Same conventions as parcnetv2.h.
 */
#ifndef PCN_IMAGE_H
#define PCN_IMAGE_H

#include "parcnetv2.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest PPM width or height accepted. */
#define PCN_IMAGE_MAX_SIDE 65536
/* Image limits of spec clause 15.6, shared with the Python preprocessing (parcnetv2.engine.preprocess
 * reads them from here): an image is decoded only when width x height is at most
 * PCN_IMAGE_MAX_PIXELS (Pillow's default limit, 256 MiB of 24-bit pixels / 3), and resized only
 * when the resized image (shorter side to `resize`) has at most PCN_IMAGE_MAX_RESIZED_PIXELS
 * (256 x 65536: aspect ratios up to 256:1). */
#define PCN_IMAGE_MAX_PIXELS         89478485
#define PCN_IMAGE_MAX_RESIZED_PIXELS 16777216

/*
 * Parse a binary PPM (netpbm "P6": magic, width, height, maxval as ASCII decimals separated by
 * whitespace or '#' comments, one whitespace byte, then height x width x 3 bytes RGB). Only
 * maxval 255 (8 bits per sample) is accepted; sides 1..PCN_IMAGE_MAX_SIDE and at most
 * PCN_IMAGE_MAX_PIXELS pixels (PCN_ERR_SHAPE); the raster must be in
 * the `size` bytes (trailing bytes are ignored). *pixels points into data (nothing is allocated).
 */
pcn_status pcn_ppm_parse(const void *PCN_RESTRICT data, size_t size, size_t *PCN_RESTRICT width,
                         size_t *PCN_RESTRICT height, const unsigned char **PCN_RESTRICT pixels,
                         pcn_error *PCN_RESTRICT err);

/*
 * The official evaluation's preprocessing (spec clause 15.6, timm's eval transforms): resize so the
 * shorter side is `resize` pixels (the longer one int(resize * long / short)) with Pillow's
 * BICUBIC filter (a = -0.5, support scaled when reducing, 22-bit fixed-point coefficients, the
 * horizontal pass then the vertical one, each rounded and clipped to 8 bits, exactly as Pillow's
 * Resample.c does it), crop the centre crop x crop (offsets rounded half to even as Python's
 * round), scale to [0, 1] and normalise with the ImageNet mean and std in float32:
 * out = (p / 255 - mean[c]) / std[c]. Only the cropped pixels are computed (the same values as a
 * full resize followed by the crop).
 *   rgb (height, width, 3) uint8 -> out (3, crop, crop) float32 CHW; 1 <= crop <= resize <= 65536.
 * Images over PCN_IMAGE_MAX_PIXELS, or whose resized size is over PCN_IMAGE_MAX_RESIZED_PIXELS, are
 * refused (PCN_ERR_SHAPE) before anything is allocated.
 */
pcn_status pcn_image_preprocess(const unsigned char *PCN_RESTRICT rgb, size_t width, size_t height, size_t resize,
                                size_t crop, float *PCN_RESTRICT out, pcn_error *PCN_RESTRICT err);

#ifdef __cplusplus
}
#endif
#endif /* PCN_IMAGE_H */
