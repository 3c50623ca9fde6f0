/*
 * pcn_golden.h - the golden test-vector file format, version 1 (spec clause 12.6).
 *
 * One test case per file (extension .pcng), written by `python -m parcnetv2.cext.golden` from the
 * NumPy reference and read by the C program pcn_selfcheck. All integers and floats are
 * little-endian; floats are IEEE-754. Layout:
 *
 *   header, 128 bytes
 *     0   char[8]  magic "PCNGOLD\0"
 *     8   u32      version (1)
 *     12  u32      byte-order mark 0x01020304 (bytes 04 03 02 01 in the file)
 *     16  u32      op: 1 dwconv2d, 2 oversized_conv, 3 parc_spatial, 4 reparameterize
 *     20  u32      layout of x and of the output: 0 NCHW, 1 NHWC
 *     24  u32      path for parc_spatial: 0 auto, 1 separable, 2 dense (0 otherwise)
 *     28  u32      flags: bit 0 = a bias array is present
 *     32  u64[8]   N, C, H, W, KH, KW, PH, PW   (oversized/parc: KH = len(k_h), KW = len(k_w),
 *                                             PH = KH/2, PW = KW/2; reparameterize: N=H=W=0)
 *     96  u64      reduction length n used in the bound
 *     104 f64      safety factor c of the tolerance policy (spec clause 11)
 *     112 f64      unit roundoff u of float32 (2^-24)
 *     120 u32      number of arrays that follow
 *     124 u32      reserved, 0
 *   then each array: 56-byte header + data
 *     0   char[16] name, NUL padded: x, weight, bias, k_h, k_w, k7, expected, magnitude
 *     16  u32      dtype: 1 float32, 2 float64
 *     20  u32      ndim (1..4)
 *     24  u64[4]   dims (unused trailing dims 0)
 *     56  data     prod(dims) elements, C order
 *
 * Inputs are float32 in PyTorch's weight shapes; x is in the stated layout. "expected" is the
 * float64 reference output on those float32 inputs, "magnitude" the reference on absolute values
 * (both in the output layout). An output y passes when, element-wise,
 *     |y - expected| <= c * sqrt(n) * u * magnitude + FLT_MIN.
 */
#ifndef PCN_GOLDEN_H
#define PCN_GOLDEN_H

#define PCN_GOLDEN_MAGIC              "PCNGOLD"
#define PCN_GOLDEN_VERSION            1u
#define PCN_GOLDEN_BOM                0x01020304u
#define PCN_GOLDEN_HEADER_BYTES       128
#define PCN_GOLDEN_ARRAY_HEADER_BYTES 56

enum { PCN_GOLDEN_DWCONV2D = 1, PCN_GOLDEN_OVERSIZED = 2, PCN_GOLDEN_PARC = 3, PCN_GOLDEN_REPARAM = 4 };
enum { PCN_GOLDEN_F32 = 1, PCN_GOLDEN_F64 = 2 };

#endif
