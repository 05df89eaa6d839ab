/* Max and average pooling over the N*C planes of an NCHW array.
 *
 * Window of output (oh, ow): input rows oh sH - pH + i (i < kH), columns ow sW - pW + j (j < kW);
 * positions outside the input are padding.
 *   max: padding acts as -inf; indices[n][c][oh][ow] = ih W + iw of the maximum. The scan starts
 *        at the first position inside the input and keeps the first maximum; a NaN always wins
 *        (PyTorch's CPU kernel: take v if v > max || isnan(v)).
 *   avg: padding counts as zeros in a window of kH kW elements (count_include_pad=True).
 * Every kernel is OpenMP-parallel over planes; backward kernels overwrite grad_x.
 */
#ifndef FASTNN_POOL_H
#define FASTNN_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    ptrdiff_t planes, height, width;  /* input (N*C, H, W) */
    ptrdiff_t kernel_h, kernel_w;
    ptrdiff_t stride_h, stride_w;
    ptrdiff_t pad_h, pad_w;
    ptrdiff_t out_h, out_w;           /* (H + 2 pH - kH) / sH + 1 */
} pool_geometry;

void max_pool2d_forward_f32(const float *x, const pool_geometry *g, float *y, int64_t *indices);
void max_pool2d_forward_f64(const double *x, const pool_geometry *g, double *y, int64_t *indices);
/* Indices outside [0, H W) are skipped. */
void max_pool2d_backward_f32(const float *grad_y, const int64_t *indices, const pool_geometry *g, float *grad_x);
void max_pool2d_backward_f64(const double *grad_y, const int64_t *indices, const pool_geometry *g, double *grad_x);

void avg_pool2d_forward_f32(const float *x, const pool_geometry *g, float *y);
void avg_pool2d_forward_f64(const double *x, const pool_geometry *g, double *y);
void avg_pool2d_backward_f32(const float *grad_y, const pool_geometry *g, float *grad_x);
void avg_pool2d_backward_f64(const double *grad_y, const pool_geometry *g, double *grad_x);

#endif
