/* 2-D convolution one image at a time, the images spread over OpenMP threads.
 *
 * The batched layout of im2col.h makes one large GEMM per pass, but its column matrix
 * (C kH kW, N Ho Wo) is 40 MB for tfconvnet's conv2 at batch 64: it falls out of every cache
 * between im2col, GEMM and col2im, and the GEMM output needs a transpose to NCHW. Here each
 * thread takes whole images, unrolls image n into its own workspace (C kH kW, Ho Wo), 627 KB
 * for that layer, which stays in L2, and calls a single-threaded BLAS GEMM whose output is
 * image n of y in NCHW. Per image n and group g, the math of reference/conv.py:
 *     forward      y[n]_g   = W_g cols[n]_g + b_g
 *     grad weight  grad_W_g = sum_n grad_y[n]_g cols[n]_g^T   (cols unrolled again from x; one
 *                                                             accumulator per thread)
 *     grad bias    grad_b   = sum_{n, p} grad_y[n]
 *     grad input   grad_x[n] = col2im(W_g^T grad_y[n]_g)      (into the same workspace)
 * With ``relu`` set the forward returns max(y, 0), computed while image n is in cache (nn.Sequential
 * fuses a Conv2d with the ReLU after it), and the backward takes that output as ``relu_y`` and
 * starts from grad_y[n] 1[relu_y[n] > 0], staged per thread (the relu_backward of activation).
 * The per-thread partial sums are added in thread order, so with a fixed thread count the
 * result is the same on every run. A 1x1 kernel with stride 1 and no padding reads x (and
 * writes grad_x) where the others use the workspace.
 *
 * ``gemm`` is BLAS's Fortran sgemm/dgemm (scipy.linalg.cython_blas) and must run single-threaded.
 * ``workspace`` holds threads * conv_workspace_size(g) scalars; ``grad_w_partial`` threads * O C/G kH kW
 * scalars and ``grad_b_partial`` threads * O doubles (NULL where that gradient is not asked for,
 * as are grad_x, grad_w and grad_b).
 */
#ifndef FASTNN_CONV_H
#define FASTNN_CONV_H

#include <stddef.h>

#include "im2col.h"

/* Scalars of workspace per thread: one image's column matrix, its padded copy (im2col.h), and
 * one image of grad_y (O, Ho, Wo) with the ReLU mask applied. */
static inline ptrdiff_t conv_workspace_size(const conv_geometry *g, ptrdiff_t out_channels)
{
    return (g->channels * g->kernel_h * g->kernel_w + out_channels) * g->out_h * g->out_w
        + padded_image_size(g);
}

typedef void (*blas_gemm_f32)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                              float *a, int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*blas_gemm_f64)(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                              double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                              int *ldc);

/* y (N, O, Ho, Wo) = conv2d(x (N, C, H, W), weight (O, C/G, kH, kW)) + bias (O,) (bias may be
 * NULL), then max(y, 0) if relu */
void conv2d_forward_images_f32(const float *x, const float *weight, const float *bias,
                               const conv_geometry *g, ptrdiff_t out_channels, ptrdiff_t groups,
                               int relu, int threads, float *workspace, float *y, blas_gemm_f32 gemm);
void conv2d_forward_images_f64(const double *x, const double *weight, const double *bias,
                               const conv_geometry *g, ptrdiff_t out_channels, ptrdiff_t groups,
                               int relu, int threads, double *workspace, double *y, blas_gemm_f64 gemm);

/* grad_x (N, C, H, W), grad_w (O, C/G, kH, kW) and grad_b (O,) from grad_y (N, O, Ho, Wo); all
 * overwritten. relu_y: the forward's output when it had relu set, else NULL. */
void conv2d_backward_images_f32(const float *x, const float *weight, const float *grad_y,
                                const float *relu_y,
                                const conv_geometry *g, ptrdiff_t out_channels, ptrdiff_t groups,
                                int threads, float *workspace, float *grad_x, float *grad_w,
                                float *grad_w_partial, float *grad_b, double *grad_b_partial,
                                blas_gemm_f32 gemm);
void conv2d_backward_images_f64(const double *x, const double *weight, const double *grad_y,
                                const double *relu_y,
                                const conv_geometry *g, ptrdiff_t out_channels, ptrdiff_t groups,
                                int threads, double *workspace, double *grad_x, double *grad_w,
                                double *grad_w_partial, double *grad_b, double *grad_b_partial,
                                blas_gemm_f64 gemm);

#endif
