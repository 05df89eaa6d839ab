/* The body of csrc/im2col.c for one scalar type; included once per type with
 * SCALAR (float or double) and SUFFIXED(name) (name_f32 or name_f64) defined. */

#include "row_sum_template.h"

/* One segment of cols: row r = (c, i, j) of image n, Ho Wo consecutive entries at ``segment``. */
static inline void SUFFIXED(im2col_segment)(const SCALAR *x, const conv_geometry *g, ptrdiff_t n,
                                            ptrdiff_t r, SCALAR *segment)
{
    const ptrdiff_t taps = g->kernel_h * g->kernel_w, out_w = g->out_w;
    const ptrdiff_t c = r / taps, i = r % taps / g->kernel_w, j = r % g->kernel_w;
    const SCALAR *plane = x + (n * g->channels + c) * g->height * g->width;
    const ptrdiff_t w_offset = j * g->dilation_w - g->pad_w;
    ptrdiff_t lo, hi;
    fastnn_valid_range(w_offset, g->stride_w, g->width, out_w, &lo, &hi);
    for (ptrdiff_t oh = 0; oh < g->out_h; ++oh) {
        SCALAR *dst = segment + oh * out_w;
        const ptrdiff_t ih = oh * g->stride_h - g->pad_h + i * g->dilation_h;
        if (ih < 0 || ih >= g->height) {
            memset(dst, 0, (size_t)out_w * sizeof(SCALAR));
            continue;
        }
        const SCALAR *src = plane + ih * g->width;
        for (ptrdiff_t ow = 0; ow < lo; ++ow) dst[ow] = 0;
        if (g->stride_w == 1) {
            memcpy(dst + lo, src + lo + w_offset, (size_t)(hi - lo) * sizeof(SCALAR));
        } else {
            for (ptrdiff_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * g->stride_w + w_offset];
        }
        for (ptrdiff_t ow = hi; ow < out_w; ++ow) dst[ow] = 0;
    }
}

/* Plane c of image n of x = the sum of its kH kW rows of cols placed back (overwrites the plane). */
static inline void SUFFIXED(col2im_plane)(const SCALAR *cols, const conv_geometry *g, ptrdiff_t n,
                                          ptrdiff_t c, SCALAR *x, ptrdiff_t row_stride,
                                          ptrdiff_t image_stride)
{
    const ptrdiff_t plane_size = g->height * g->width;
    const ptrdiff_t taps = g->kernel_h * g->kernel_w, out_w = g->out_w;
    SCALAR *plane = x + (n * g->channels + c) * plane_size;
    memset(plane, 0, (size_t)plane_size * sizeof(SCALAR));
    for (ptrdiff_t i = 0; i < g->kernel_h; ++i) {
        for (ptrdiff_t j = 0; j < g->kernel_w; ++j) {
            const SCALAR *segment = cols + (c * taps + i * g->kernel_w + j) * row_stride + n * image_stride;
            const ptrdiff_t w_offset = j * g->dilation_w - g->pad_w;
            ptrdiff_t lo, hi;
            fastnn_valid_range(w_offset, g->stride_w, g->width, out_w, &lo, &hi);
            for (ptrdiff_t oh = 0; oh < g->out_h; ++oh) {
                const ptrdiff_t ih = oh * g->stride_h - g->pad_h + i * g->dilation_h;
                if (ih < 0 || ih >= g->height) continue;
                const SCALAR *src = segment + oh * out_w;
                SCALAR *dst = plane + ih * g->width;
                if (g->stride_w == 1) {
                    for (ptrdiff_t ow = lo; ow < hi; ++ow) dst[ow + w_offset] += src[ow];
                } else {
                    for (ptrdiff_t ow = lo; ow < hi; ++ow) dst[ow * g->stride_w + w_offset] += src[ow];
                }
            }
        }
    }
}

void SUFFIXED(im2col)(const SCALAR *x, const conv_geometry *g, SCALAR *cols,
                      ptrdiff_t row_stride, ptrdiff_t image_stride)
{
    const ptrdiff_t rows = g->channels * g->kernel_h * g->kernel_w, segments = rows * g->batch;
    /* A segment is one (row, image) pair: Ho Wo consecutive entries of cols. Visiting them in
     * memory order gives each thread one contiguous stretch of cols to write (the writes are
     * what costs; x is small and stays in cache). */
    const int batched = row_stride > image_stride;

    #pragma omp parallel for schedule(static) if (segments * g->out_h * g->out_w > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t s = 0; s < segments; ++s) {
        const ptrdiff_t r = batched ? s / g->batch : s % rows;
        const ptrdiff_t n = batched ? s % g->batch : s / rows;
        SUFFIXED(im2col_segment)(x, g, n, r, cols + r * row_stride + n * image_stride);
    }
}

void SUFFIXED(col2im)(const SCALAR *cols, const conv_geometry *g, SCALAR *x,
                      ptrdiff_t row_stride, ptrdiff_t image_stride)
{
    const ptrdiff_t planes = g->batch * g->channels;
    const ptrdiff_t work = planes * g->kernel_h * g->kernel_w * g->out_h * g->out_w;
    /* Each thread owns whole planes of x, so the sums need no atomics. Planes are visited in the
     * memory order of cols (channel-major when batched), so that each thread reads the kH kW rows
     * of its channels front to back. */
    const int batched = row_stride > image_stride;

    #pragma omp parallel for schedule(static) if (work > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t t = 0; t < planes; ++t) {
        const ptrdiff_t c = batched ? t / g->batch : t % g->channels;
        const ptrdiff_t n = batched ? t % g->batch : t / g->channels;
        SUFFIXED(col2im_plane)(cols, g, n, c, x, row_stride, image_stride);
    }
}

/* Image n of x with its padding written out: (C, H + 2 pH, W + 2 pW), zeros around x. */
static void SUFFIXED(pad_image)(const SCALAR *x, const conv_geometry *g, ptrdiff_t n, SCALAR *padded)
{
    const ptrdiff_t height = g->height, width = g->width;
    const ptrdiff_t padded_h = height + 2 * g->pad_h, padded_w = width + 2 * g->pad_w;
    const SCALAR *image = x + n * g->channels * height * width;
    if (g->pad_h || g->pad_w)
        memset(padded, 0, (size_t)(g->channels * padded_h * padded_w) * sizeof(SCALAR));
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t h = 0; h < height; ++h)
            memcpy(padded + (c * padded_h + h + g->pad_h) * padded_w + g->pad_w,
                   image + (c * height + h) * width, (size_t)width * sizeof(SCALAR));
}

/* With the padding written out, every row of a segment is a plain strided copy, with no edge
 * cases: cols[(c, i, j)][oh][ow] = padded[c][oh sH + i dH][ow sW + j dW]. */
void SUFFIXED(im2col_image)(const SCALAR *x, const conv_geometry *g, ptrdiff_t n,
                            SCALAR *restrict cols, SCALAR *restrict padded)
{
    const ptrdiff_t padded_h = g->height + 2 * g->pad_h, padded_w = g->width + 2 * g->pad_w;
    const ptrdiff_t out_h = g->out_h, out_w = g->out_w, stride_w = g->stride_w;
    SUFFIXED(pad_image)(x, g, n, padded);
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t i = 0; i < g->kernel_h; ++i)
            for (ptrdiff_t j = 0; j < g->kernel_w; ++j) {
                const SCALAR *restrict src = padded + (c * padded_h + i * g->dilation_h) * padded_w
                                             + j * g->dilation_w;
                for (ptrdiff_t oh = 0; oh < out_h; ++oh, cols += out_w) {
                    const SCALAR *restrict row = src + oh * g->stride_h * padded_w;
                    if (stride_w == 1)
                        for (ptrdiff_t ow = 0; ow < out_w; ++ow) cols[ow] = row[ow];
                    else
                        for (ptrdiff_t ow = 0; ow < out_w; ++ow) cols[ow] = row[ow * stride_w];
                }
            }
}

/* The transpose: every entry of cols added onto the padded image, whose inside is image n. */
void SUFFIXED(col2im_image)(const SCALAR *restrict cols, const conv_geometry *g, ptrdiff_t n,
                            SCALAR *x, SCALAR *restrict padded)
{
    const ptrdiff_t height = g->height, width = g->width;
    const ptrdiff_t padded_h = height + 2 * g->pad_h, padded_w = width + 2 * g->pad_w;
    const ptrdiff_t out_h = g->out_h, out_w = g->out_w, stride_w = g->stride_w;
    memset(padded, 0, (size_t)(g->channels * padded_h * padded_w) * sizeof(SCALAR));
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t i = 0; i < g->kernel_h; ++i)
            for (ptrdiff_t j = 0; j < g->kernel_w; ++j) {
                SCALAR *restrict dst = padded + (c * padded_h + i * g->dilation_h) * padded_w
                                       + j * g->dilation_w;
                for (ptrdiff_t oh = 0; oh < out_h; ++oh, cols += out_w) {
                    SCALAR *restrict row = dst + oh * g->stride_h * padded_w;
                    if (stride_w == 1)
                        for (ptrdiff_t ow = 0; ow < out_w; ++ow) row[ow] += cols[ow];
                    else
                        for (ptrdiff_t ow = 0; ow < out_w; ++ow) row[ow * stride_w] += cols[ow];
                }
            }
    SCALAR *image = x + n * g->channels * height * width;
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t h = 0; h < height; ++h)
            memcpy(image + (c * height + h) * width,
                   padded + (c * padded_h + h + g->pad_h) * padded_w + g->pad_w, (size_t)width * sizeof(SCALAR));
}

void SUFFIXED(cnhw_to_nchw)(const SCALAR *src, const SCALAR *bias, SCALAR *dst,
                            ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t plane)
{
    const ptrdiff_t rows = batch * channels;

    #pragma omp parallel for schedule(static) if (rows * plane > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t no = 0; no < rows; ++no) {
        const ptrdiff_t n = no / channels, o = no % channels;
        const SCALAR *in = src + (o * batch + n) * plane;
        SCALAR *out = dst + no * plane;
        const SCALAR b = bias ? bias[o] : 0;
        for (ptrdiff_t p = 0; p < plane; ++p) out[p] = in[p] + b;
    }
}

void SUFFIXED(nchw_to_cnhw)(const SCALAR *src, SCALAR *dst, SCALAR *channel_sum,
                            ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t plane)
{
    #pragma omp parallel for schedule(static) if (batch * channels * plane > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t o = 0; o < channels; ++o) {
        double sum = 0;  /* N Ho Wo terms: rows in 8 partial sums, rows added in double */
        for (ptrdiff_t n = 0; n < batch; ++n) {
            const SCALAR *in = src + (n * channels + o) * plane;
            SCALAR *out = dst + (o * batch + n) * plane;
            memcpy(out, in, (size_t)plane * sizeof(SCALAR));
            if (channel_sum) sum += SUFFIXED(row_sum)(in, plane);
        }
        if (channel_sum) channel_sum[o] = (SCALAR)sum;
    }
}
