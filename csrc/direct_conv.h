/* Direct 2-D convolution for layers with few channels: float32, stride 1, dilation 1, one group,
 * AVX-512. The math of reference/conv.py without the column matrix:
 *
 *     forward      y[n, o, oh, ow]  = b[o] + sum_{c, i, j} W[o, c, i, j] xp[n, c, oh + i, ow + j]
 *     grad weight  gW[o, c, i, j]   = sum_{n, oh, ow} gy[n, o, oh, ow] xp[n, c, oh + i, ow + j]
 *     grad input   gxp[n, c, oh + i, ow + j] += sum_o W[o, c, i, j] gy[n, o, oh, ow]
 *     grad bias    gb[o]            = sum_{n, oh, ow} gy[n, o, oh, ow]
 *
 * xp is x with its padding written out (one image per thread, in the workspace), gxp the same
 * for grad_x, cropped at the end; gy is grad_y ⊙ 1[relu_y > 0] when the forward fused a ReLU.
 *
 * Why it exists: im2col + GEMM spends its time on packing and call overhead when the GEMM is
 * small (LeNet's 6 x 25 x 784 and 16 x 150 x 100 per image; a 5x5 convolution of one input
 * channel). Here an output row is a vector of 16 (or 32) pixels: each tap loads one shifted
 * row of xp and does an FMA into the accumulators of 8 output channels, which never leave
 * registers; the W of 8 output channels at one tap are 8 consecutive floats (the weights are
 * packed once per call). The weight gradient keeps one accumulator per tap, 25 taps at a time,
 * vectorised over 16 output channels (grad_y transposed per image) or, for few output channels,
 * over 16 pixels of a row; the accumulators go into 16-lane partial sums per thread. The input gradient holds grad_y of 16 (8)
 * output channels in registers and scatters sum_o W gy into gxp, one tap at a time.
 *
 * Images are spread over OpenMP threads as in conv.h; per-thread partial sums are added in
 * thread order, so with a fixed thread count the results are the same on every run.
 * fastnn_direct_conv_available() is 0 on a CPU without AVX-512F or a compiler without the target
 * attribute; the caller (fastnn/backends/cpu/conv.py) then uses the im2col kernels.
 */
#ifndef FASTNN_DIRECT_CONV_H
#define FASTNN_DIRECT_CONV_H

#include <stddef.h>

#include "im2col.h"

int fastnn_direct_conv_available(void);

/* The largest kernel (kH kW taps) the kernels take. */
#define DIRECT_CONV_MAX_TAPS 64

static inline ptrdiff_t direct_round16(ptrdiff_t n) { return (n + 15) / 16 * 16; }

/* Floats of the packed weights at the start of the workspace (room for either packing). */
static inline ptrdiff_t direct_conv_packed_size(const conv_geometry *g, ptrdiff_t out_channels)
{
    return direct_round16(out_channels) * g->channels * g->kernel_h * g->kernel_w;
}

/* Whether the weight gradient runs vectorised over 16 output channels (1) or over 16 pixels of a
 * row (0): whichever fills more lanes (LeNet's 6 -> 16 layer: channels; its 1 -> 6 layer: pixels). */
static inline int direct_conv_weight_grad_by_channels(const conv_geometry *g, ptrdiff_t out_channels)
{
    return (double)out_channels / (double)direct_round16(out_channels)
        >= (double)g->out_w / (double)direct_round16(g->out_w);
}

/* Floats of the weight gradient's per-thread partial sums: 16 lanes per (channel block, c, tap),
 * or per (o, c, tap) when vectorised over pixels. */
static inline ptrdiff_t direct_conv_weight_grad_partial_size(const conv_geometry *g, ptrdiff_t out_channels)
{
    const ptrdiff_t k = g->channels * g->kernel_h * g->kernel_w;
    return (direct_conv_weight_grad_by_channels(g, out_channels) ? direct_round16(out_channels) : 16 * out_channels) * k;
}

/* Floats of one thread's scratch: xp, gxp (with 32 floats of slack for unmasked vector stores),
 * one image of masked grad_y (O, Ho Wo), the same transposed (Ho Wo, O rounded up to 16), and the
 * partial sums of grad_W. */
static inline ptrdiff_t direct_conv_thread_size(const conv_geometry *g, ptrdiff_t out_channels)
{
    const ptrdiff_t padded = g->channels * (g->height + 2 * g->pad_h) * (g->width + 2 * g->pad_w);
    const ptrdiff_t plane = g->out_h * g->out_w, padded_channels = direct_round16(out_channels);
    return 2 * direct_round16(padded) + 32 + direct_round16(out_channels * plane) + plane * padded_channels
        + direct_conv_weight_grad_partial_size(g, out_channels);
}

static inline ptrdiff_t direct_conv_workspace_size(const conv_geometry *g, ptrdiff_t out_channels,
                                                   int threads)
{
    return direct_conv_packed_size(g, out_channels) + threads * direct_conv_thread_size(g, out_channels);
}

/* y (N, O, Ho, Wo) = conv2d(x (N, C, H, W), weight (O, C, kH, kW)) + bias (NULL: none), then
 * max(y, 0) if relu. g has stride 1 and dilation 1. */
void direct_conv2d_forward_f32(const float *x, const float *weight, const float *bias,
                               const conv_geometry *g, ptrdiff_t out_channels, int relu, int threads,
                               float *workspace, float *y);

/* grad_x, grad_w and grad_b (+ grad_b_partial: threads * O doubles), each NULL when not asked
 * for, overwritten; relu_y as in conv.h (NULL: grad_y unmasked). */
void direct_conv2d_backward_f32(const float *x, const float *weight, const float *grad_y,
                                const float *relu_y, const conv_geometry *g, ptrdiff_t out_channels,
                                int threads, float *workspace, float *grad_x, float *grad_w,
                                float *grad_b, double *grad_b_partial);

#endif
