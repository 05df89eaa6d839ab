/* Winograd convolution F(2x2, 5x5) for float32 5x5 layers with many channels (AVX-512 and
 * fastnn's sgemm): tfconvnet's and bnconvnet's 32 -> 64 layer.
 *
 * The output is cut into 2 x 2 tiles; tile t of image n reads the 6 x 6 window d_t of the padded
 * input at (2 ty, 2 tx). With the transform matrices B^T (6 x 6), G (6 x 5) and A^T (2 x 6) of
 * the points 0, 1, -1, 2, -2, infinity (Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016), for every output channel o:
 *
 *     y_t[o] = A^T [ sum_c U[o, c] ⊙ V_t[c] ] A,   U[o, c] = G W[o, c] G^T,   V_t[c] = B^T d_t[c] B
 *
 * so for each of the 36 positions xi of the 6 x 6 transformed tile the sum over c is one GEMM
 *     M[xi] (tiles, O) = V[xi] (tiles, C) U[xi] (C, O)
 * which does 36 C O multiply-adds per 4 outputs where im2col does 4 * 25 C O: 2.8x fewer.
 * The backward:
 *     grad_x = the same forward on grad_y with W flipped and transposed (O <-> C), padding 4 - p
 *     grad_W = G^T dU G,   dU[xi] (C, O) = sum over tiles V[xi]^T (C, tiles) dM[xi] (tiles, O),
 *              dM_t = A grad_y_t A^T                           (the adjoint of the output transform)
 * The transforms run 16 channels to a vector on images copied to (H, W, C) layout; tiles of a
 * group of images form the GEMMs' rows (WINOGRAD_TILES_PER_GROUP, so that V and M stay near L2),
 * groups are spread over OpenMP threads, and the per-thread dU are added in thread order (the
 * same bits on every run at a fixed thread count).
 *
 * Requirements (checked by the Cython binding): stride 1, dilation 1, one group, a 5 x 5 kernel,
 * padding <= 4, fastnn_sgemm_available(). Rounding: the transforms scale by up to 5 and 1/24, so
 * the error is about 10x im2col's (~4e-6 of max|y| on tfconvnet's layer; tests/kernels). An input
 * or weight beyond ~1e36 overflows the transforms, and an infinite one gives NaN where im2col gives
 * +-Inf (the transforms subtract it from itself).
 */
#ifndef FASTNN_WINOGRAD_CONV_H
#define FASTNN_WINOGRAD_CONV_H

#include <stddef.h>

#define WINOGRAD_TILES_PER_GROUP 128   /* GEMM rows per group: about 2 images of 14 x 14 */
#define WINOGRAD_POSITIONS 36          /* 6 x 6 transformed tile */

/* One convolution as the Winograd kernels see it: input (batch, in_channels, in_h, in_w), padded
 * by pad_h, pad_w, into output (batch, out_channels, out_h, out_w) = in + 2 pad - 4. */
typedef struct {
    ptrdiff_t batch, in_channels, in_h, in_w, pad_h, pad_w, out_channels, out_h, out_w;
} winograd_shape;

static inline ptrdiff_t winograd_round16(ptrdiff_t n) { return (n + 15) / 16 * 16; }
static inline ptrdiff_t winograd_tiles(const winograd_shape *s) { return ((s->out_h + 1) / 2) * ((s->out_w + 1) / 2); }
static inline ptrdiff_t winograd_group(const winograd_shape *s)
{
    const ptrdiff_t tiles = winograd_tiles(s);
    const ptrdiff_t per_group = tiles < 1 ? 1 : WINOGRAD_TILES_PER_GROUP / tiles;
    return per_group < 1 ? 1 : per_group;
}

/* Floats of one thread's scratch for a forward of shape s: the (H, W, C) copy of one padded
 * image, V and M of one group. */
static inline ptrdiff_t winograd_forward_thread_size(const winograd_shape *s)
{
    const ptrdiff_t rows = winograd_group(s) * winograd_tiles(s);
    const ptrdiff_t image = (2 * ((s->out_h + 1) / 2) + 4) * (2 * ((s->out_w + 1) / 2) + 4)
        * winograd_round16(s->in_channels);
    return image + WINOGRAD_POSITIONS * rows * (winograd_round16(s->in_channels) + winograd_round16(s->out_channels));
}

/* Floats of one thread's scratch for the weight gradient: the (H, W, C) copies of one padded
 * image and of its grad_y, V and dM of one group, and its dU. */
static inline ptrdiff_t winograd_weight_grad_thread_size(const winograd_shape *s)
{
    return winograd_forward_thread_size(s)
        + (2 * ((s->out_h + 1) / 2)) * (2 * ((s->out_w + 1) / 2)) * winograd_round16(s->out_channels)
        + WINOGRAD_POSITIONS * winograd_round16(s->in_channels) * winograd_round16(s->out_channels);
}

/* Floats of the transformed weights U (or the summed dU). */
static inline ptrdiff_t winograd_weights_size(const winograd_shape *s)
{
    return WINOGRAD_POSITIONS * winograd_round16(s->in_channels) * winograd_round16(s->out_channels);
}

int fastnn_winograd_available(void);

/* out = conv2d(in, W) (+ bias) (then max(., 0) if relu) for shape s; W is (out_channels,
 * in_channels, 5, 5), or with ``flip`` (in_channels, out_channels, 5, 5) used rotated by 180
 * degrees and transposed (the input gradient). mask: NULL, or an array shaped as ``in`` by which
 * the input is multiplied as 1[mask > 0] (a fused ReLU's backward). workspace:
 * winograd_weights_size(s) + threads * winograd_forward_thread_size(s) floats.
 * Returns 0, or -1 if fastnn's sgemm could not allocate its packing buffers (out is then garbage). */
int winograd_conv2d_forward_f32(const float *in, const float *mask, const float *weight, int flip,
                                const float *bias, int relu, const winograd_shape *s, int threads,
                                float *workspace, float *out);

/* grad_w (O, C, 5, 5) and grad_b (O,) (either may be NULL; grad_b_partial: threads * O doubles)
 * of the forward of shape s at grad_y (masked by relu_y > 0 unless relu_y is NULL). workspace:
 * winograd_weights_size(s) + threads * winograd_weight_grad_thread_size(s) floats. Returns 0 or -1
 * as the forward. */
int winograd_conv2d_weight_grad_f32(const float *x, const float *grad_y, const float *relu_y,
                                    const winograd_shape *s, int threads, float *workspace, float *grad_w,
                                    float *grad_b, double *grad_b_partial);

#endif
