/* im2col / col2im for 2-D convolution, and the layout epilogues around the GEMMs.
 *
 * Index map (cross-correlation, as in PyTorch's conv2d), for channel c and kernel offset (i, j):
 *     row r = (c kH + i) kW + j,   column (n, oh, ow)
 *     cols[r][n][oh][ow] = x[n][c][oh sH - pH + i dH][ow sW - pW + j dW]   (0 outside x)
 * im2col writes that map; col2im is its transpose: it sums every column entry back onto the
 * input position it was read from, so overlapping windows accumulate.
 *
 * The column matrix is addressed as cols[r * row_stride + n * image_stride + oh Wo + ow], which
 * serves both layouts:
 *     per image (N, C kH kW, Ho Wo):  row_stride = Ho Wo,    image_stride = C kH kW Ho Wo
 *     batched   (C kH kW, N Ho Wo):   row_stride = N Ho Wo,  image_stride = Ho Wo
 * The batched layout turns a whole mini-batch into one GEMM per group.
 *
 * All kernels are parallel (OpenMP) over the N*C planes of x (or the O rows of the epilogues);
 * each thread owns whole planes, so col2im accumulates without atomics.
 */
#ifndef FASTNN_IM2COL_H
#define FASTNN_IM2COL_H

#include <stddef.h>

typedef struct {
    ptrdiff_t batch, channels, height, width;      /* x: (N, C, H, W) */
    ptrdiff_t kernel_h, kernel_w;
    ptrdiff_t stride_h, stride_w;                  /* >= 1 */
    ptrdiff_t pad_h, pad_w;                        /* >= 0 */
    ptrdiff_t dilation_h, dilation_w;              /* >= 1 */
    ptrdiff_t out_h, out_w;                        /* (H + 2 pH - dH (kH - 1) - 1) / sH + 1 */
} conv_geometry;

void im2col_f32(const float *x, const conv_geometry *g, float *cols,
                ptrdiff_t row_stride, ptrdiff_t image_stride);
void im2col_f64(const double *x, const conv_geometry *g, double *cols,
                ptrdiff_t row_stride, ptrdiff_t image_stride);

/* x = col2im(cols): x is overwritten (zeroed, then accumulated). */
void col2im_f32(const float *cols, const conv_geometry *g, float *x,
                ptrdiff_t row_stride, ptrdiff_t image_stride);
void col2im_f64(const double *cols, const conv_geometry *g, double *x,
                ptrdiff_t row_stride, ptrdiff_t image_stride);

/* One image, on the calling thread (the per-image convolution of conv.h calls these from its own
 * parallel loop): cols (C kH kW, Ho Wo) of image n of x, and image n of x = col2im(cols)
 * (overwritten). Both go through ``padded``, a scratch image with the padding written out
 * (padded_image_size(g) scalars), so that their inner loops are plain copies and sums.
 * g->batch is only the extent of x. */
static inline ptrdiff_t padded_image_size(const conv_geometry *g)
{
    return g->channels * (g->height + 2 * g->pad_h) * (g->width + 2 * g->pad_w);
}
void im2col_image_f32(const float *x, const conv_geometry *g, ptrdiff_t n, float *cols, float *padded);
void im2col_image_f64(const double *x, const conv_geometry *g, ptrdiff_t n, double *cols, double *padded);
void col2im_image_f32(const float *cols, const conv_geometry *g, ptrdiff_t n, float *x, float *padded);
void col2im_image_f64(const double *cols, const conv_geometry *g, ptrdiff_t n, double *x, double *padded);

/* Forward epilogue: the GEMM result (O, N, P) to NCHW plus bias:
 *     dst[n][o][p] = src[o][n][p] + bias[o]        (bias may be NULL) */
void cnhw_to_nchw_f32(const float *src, const float *bias, float *dst,
                      ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t plane);
void cnhw_to_nchw_f64(const double *src, const double *bias, double *dst,
                      ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t plane);

/* Backward prologue: grad_y (N, O, P) to the GEMM layout (O, N, P), and the bias gradient:
 *     dst[o][n][p] = src[n][o][p],   channel_sum[o] = sum over n, p of src[n][o][p]
 * (channel_sum may be NULL). */
void nchw_to_cnhw_f32(const float *src, float *dst, float *channel_sum,
                      ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t plane);
void nchw_to_cnhw_f64(const double *src, double *dst, double *channel_sum,
                      ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t plane);

#endif
