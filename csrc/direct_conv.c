/* Direct convolution for layers with few channels (AVX-512); see direct_conv.h. */
#include <omp.h>
#include <string.h>

#include "direct_conv.h"

#define SCALAR float
#define SUFFIXED(name) name##_f32
#include "row_sum_template.h"
#undef SCALAR
#undef SUFFIXED

#include "avx512.h"

#define FORWARD_CHANNELS 8      /* output channels per forward tile (x 1 or 2 vectors of pixels) */
#define FORWARD_PIXELS 14       /* pixels per forward tile vectorised over 16 output channels     */
#define GRAD_W_TAPS 25          /* kernel taps (i, j) of one weight-gradient tile (x 16 channels) */
#define PIXEL_GRAD_W_CHANNELS 4 /* output channels x ...                                          */
#define PIXEL_GRAD_W_COLUMNS 6  /* ... kernel columns of one weight-gradient tile (x 16 pixels)   */

int fastnn_direct_conv_available(void)
{
    return fastnn_cpu_runs_avx512();
}

/* The padded copy of one image (C, H, W) -> (C, H + 2 pH, W + 2 pW), zeros around. */
static void pad_image(const float *image, const conv_geometry *g, float *padded)
{
    const ptrdiff_t padded_w = g->width + 2 * g->pad_w, padded_h = g->height + 2 * g->pad_h;
    for (ptrdiff_t c = 0; c < g->channels; ++c) {
        float *plane = padded + c * padded_h * padded_w;
        memset(plane, 0, (size_t)(g->pad_h * padded_w) * sizeof(float));
        for (ptrdiff_t h = 0; h < g->height; ++h) {
            float *row = plane + (g->pad_h + h) * padded_w;
            memset(row, 0, (size_t)g->pad_w * sizeof(float));
            memcpy(row + g->pad_w, image + (c * g->height + h) * g->width, (size_t)g->width * sizeof(float));
            memset(row + g->pad_w + g->width, 0, (size_t)g->pad_w * sizeof(float));
        }
        memset(plane + (g->pad_h + g->height) * padded_w, 0, (size_t)(g->pad_h * padded_w) * sizeof(float));
    }
}

/* The inverse of pad_image for a gradient: the interior of ``padded`` into image (C, H, W). */
static void crop_image(const float *padded, const conv_geometry *g, float *image)
{
    const ptrdiff_t padded_w = g->width + 2 * g->pad_w, padded_h = g->height + 2 * g->pad_h;
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t h = 0; h < g->height; ++h)
            memcpy(image + (c * g->height + h) * g->width,
                   padded + (c * padded_h + g->pad_h + h) * padded_w + g->pad_w, (size_t)g->width * sizeof(float));
}

/* packed[block][c][i][j][lane] = W[block * lanes + lane][c][i][j], zero past the last channel. */
static void pack_weights(const float *weight, ptrdiff_t out_channels, ptrdiff_t k, int lanes, float *packed)
{
    const ptrdiff_t blocks = (out_channels + lanes - 1) / lanes;
    for (ptrdiff_t block = 0; block < blocks; ++block)
        for (ptrdiff_t tap = 0; tap < k; ++tap)
            for (int lane = 0; lane < lanes; ++lane) {
                const ptrdiff_t o = block * lanes + lane;
                packed[(block * k + tap) * lanes + lane] = o < out_channels ? weight[o * k + tap] : 0.0f;
            }
}

static inline ptrdiff_t padded_size(const conv_geometry *g)
{
    return g->channels * (g->height + 2 * g->pad_h) * (g->width + 2 * g->pad_w);
}

#if FASTNN_HAVE_AVX512_KERNEL

static inline __mmask16 lanes_mask(ptrdiff_t count)
{
    return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
}

/* One forward tile: ``count`` <= 8 output channels x one row chunk of 16 (halves = 1) or 32
 * (halves = 2) pixels, masks m0/m1 marking the pixels that exist. xp points at (c 0, row oh,
 * column ow0) of the padded image, w at the packed [c][i][j][8] block, out at (o0, oh, ow0). */
__attribute__((target("avx512f"), always_inline))
static inline void forward_tile(const int halves, const float *xp, ptrdiff_t xp_plane, ptrdiff_t xp_row,
                                const conv_geometry *g, const float *w, __mmask16 m0, __mmask16 m1,
                                float *out, ptrdiff_t out_plane, int count, const float *bias, int relu)
{
    __m512 acc[FORWARD_CHANNELS][2];
#pragma GCC unroll 8
    for (int o = 0; o < FORWARD_CHANNELS; ++o)
        acc[o][0] = acc[o][1] = _mm512_setzero_ps();
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t i = 0; i < g->kernel_h; ++i) {
            const float *row = xp + c * xp_plane + i * xp_row;
            for (ptrdiff_t j = 0; j < g->kernel_w; ++j, w += FORWARD_CHANNELS) {
                const __m512 x0 = _mm512_maskz_loadu_ps(m0, row + j);
                const __m512 x1 = halves == 2 ? _mm512_maskz_loadu_ps(m1, row + j + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
                for (int o = 0; o < FORWARD_CHANNELS; ++o) {
                    const __m512 b = _mm512_set1_ps(w[o]);
                    acc[o][0] = _mm512_fmadd_ps(b, x0, acc[o][0]);
                    if (halves == 2)
                        acc[o][1] = _mm512_fmadd_ps(b, x1, acc[o][1]);
                }
            }
        }
#pragma GCC unroll 8
    for (int o = 0; o < FORWARD_CHANNELS; ++o) {
        if (o >= count)
            break;
        const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
#pragma GCC unroll 2
        for (int h = 0; h < halves; ++h) {
            __m512 v = _mm512_add_ps(acc[o][h], b);
            if (relu)   /* v < 0 ? 0 : v, NaN kept (relu_forward of activation) */
                v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ),
                                       _mm512_setzero_ps());
            _mm512_mask_storeu_ps(out + o * out_plane + 16 * h, h ? m1 : m0, v);
        }
    }
}

__attribute__((target("avx512f"), noinline))
static void forward_tile_16(const float *xp, ptrdiff_t xp_plane, ptrdiff_t xp_row, const conv_geometry *g,
                            const float *w, __mmask16 m0, float *out, ptrdiff_t out_plane, int count,
                            const float *bias, int relu)
{
    forward_tile(1, xp, xp_plane, xp_row, g, w, m0, 0, out, out_plane, count, bias, relu);
}

__attribute__((target("avx512f"), noinline))
static void forward_tile_32(const float *xp, ptrdiff_t xp_plane, ptrdiff_t xp_row, const conv_geometry *g,
                            const float *w, __mmask16 m0, __mmask16 m1, float *out, ptrdiff_t out_plane,
                            int count, const float *bias, int relu)
{
    forward_tile(2, xp, xp_plane, xp_row, g, w, m0, m1, out, out_plane, count, bias, relu);
}

__attribute__((target("avx512f"), noinline))
static void forward_tile_channels(const float *xp, ptrdiff_t xp_plane, ptrdiff_t xp_row, const conv_geometry *g,
                                  const float *w, int pixels, float *out, ptrdiff_t out_plane, int count,
                                  const float *bias, int relu);

/* Which forward tile fills more vector lanes: pixel rows of 16 or 32 x blocks of 8 channels, or
 * blocks of 16 channels (for a narrow output with 16 or more channels). 1: channels. */
static int forward_by_channels(const conv_geometry *g, ptrdiff_t out_channels)
{
    const double pixel_lanes = (double)g->out_w / (double)(16 * ((g->out_w + 15) / 16))
        * (double)out_channels / (double)(FORWARD_CHANNELS * ((out_channels + FORWARD_CHANNELS - 1) / FORWARD_CHANNELS));
    const double channel_lanes = (double)out_channels / (double)direct_round16(out_channels);
    return channel_lanes > pixel_lanes;
}

/* y[n] from the padded image xp: every block of output channels, every row, every chunk. */
__attribute__((target("avx512f")))
static void forward_image(const float *xp, const float *packed, const float *bias, const conv_geometry *g,
                          ptrdiff_t out_channels, int relu, int by_channels, float *out)
{
    const ptrdiff_t xp_row = g->width + 2 * g->pad_w, xp_plane = (g->height + 2 * g->pad_h) * xp_row;
    const ptrdiff_t plane = g->out_h * g->out_w, k = g->channels * g->kernel_h * g->kernel_w;
    if (by_channels) {
        for (ptrdiff_t o0 = 0; o0 < out_channels; o0 += 16) {
            const int count = (int)(out_channels - o0 < 16 ? out_channels - o0 : 16);
            for (ptrdiff_t oh = 0; oh < g->out_h; ++oh)
                for (ptrdiff_t ow0 = 0; ow0 < g->out_w; ow0 += FORWARD_PIXELS) {
                    const int pixels = (int)(g->out_w - ow0 < FORWARD_PIXELS ? g->out_w - ow0 : FORWARD_PIXELS);
                    forward_tile_channels(xp + oh * xp_row + ow0, xp_plane, xp_row, g, packed + o0 * k, pixels,
                                          out + o0 * plane + oh * g->out_w + ow0, plane, count,
                                          bias ? bias + o0 : NULL, relu);
                }
        }
        return;
    }
    for (ptrdiff_t o0 = 0; o0 < out_channels; o0 += FORWARD_CHANNELS) {
        const int count = (int)(out_channels - o0 < FORWARD_CHANNELS ? out_channels - o0 : FORWARD_CHANNELS);
        const float *w = packed + o0 * k;
        for (ptrdiff_t oh = 0; oh < g->out_h; ++oh)
            for (ptrdiff_t ow0 = 0; ow0 < g->out_w;) {
                const ptrdiff_t left = g->out_w - ow0;
                float *dst = out + o0 * plane + oh * g->out_w + ow0;
                const float *src = xp + oh * xp_row + ow0;
                const float *b = bias ? bias + o0 : NULL;
                if (left > 16) {
                    const ptrdiff_t width = left < 32 ? left : 32;
                    forward_tile_32(src, xp_plane, xp_row, g, w, 0xFFFF, lanes_mask(width - 16), dst, plane,
                                    count, b, relu);
                    ow0 += width;
                } else {
                    forward_tile_16(src, xp_plane, xp_row, g, w, lanes_mask(left), dst, plane, count, b, relu);
                    ow0 += left;
                }
            }
    }
}

/* The forward vectorised over 16 output channels instead of pixels, for narrow outputs (LeNet's
 * 10 x 10 planes fill 10 of 16 pixel lanes, but all 16 channel lanes): for up to 14 pixels of
 * row oh from ow0, one accumulator per pixel, each tap one load of W[block, c, i, j] (packed
 * [block][c][i][j][16]) and one broadcast x per pixel. The tile is transposed to NCHW through
 * a 14 x 16 scratch on the stack. */
__attribute__((target("avx512f"), noinline))
static void forward_tile_channels(const float *xp, ptrdiff_t xp_plane, ptrdiff_t xp_row, const conv_geometry *g,
                                  const float *w, int pixels, float *out, ptrdiff_t out_plane, int count,
                                  const float *bias, int relu)
{
    __m512 acc[FORWARD_PIXELS];
#pragma GCC unroll 14
    for (int r = 0; r < FORWARD_PIXELS; ++r) acc[r] = _mm512_setzero_ps();
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t i = 0; i < g->kernel_h; ++i) {
            const float *row = xp + c * xp_plane + i * xp_row;
            for (ptrdiff_t j = 0; j < g->kernel_w; ++j, w += 16) {
                const __m512 wv = _mm512_loadu_ps(w);
#pragma GCC unroll 14
                for (int r = 0; r < FORWARD_PIXELS; ++r) {
                    if (r >= pixels)
                        break;
                    acc[r] = _mm512_fmadd_ps(wv, _mm512_set1_ps(row[j + r]), acc[r]);
                }
            }
        }
    const __mmask16 valid = lanes_mask(count);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(valid, bias) : _mm512_setzero_ps();
    float tile[FORWARD_PIXELS][16];
#pragma GCC unroll 14
    for (int r = 0; r < FORWARD_PIXELS; ++r) {
        if (r >= pixels)
            break;
        __m512 v = _mm512_add_ps(acc[r], b);
        if (relu)
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
        _mm512_storeu_ps(tile[r], v);
    }
    for (int o = 0; o < count; ++o)
        for (int r = 0; r < pixels; ++r) out[o * out_plane + r] = tile[r][o];
}

/* grad_W partial sums of one image, vectorised over output channels: gyt is grad_y transposed to
 * (Ho Wo, O rounded up to 16); for each block of 16 output channels, input channel c and block of
 * up to 25 taps (i, j) of the kernel, one accumulator per tap sweeps every pixel:
 *     acc[t] += gyt[p, block] * xp[c, oh + i_t, ow + j_t]     (broadcast)
 * and is added into the partials part[block][c][tap][16]. */
__attribute__((target("avx512f"), noinline))
static void weight_grad_image(const float *xp, const float *gyt, const conv_geometry *g,
                              ptrdiff_t out_channels, const ptrdiff_t *tap_offsets, float *part)
{
    const ptrdiff_t xp_row = g->width + 2 * g->pad_w, xp_plane = (g->height + 2 * g->pad_h) * xp_row;
    const ptrdiff_t taps = g->kernel_h * g->kernel_w, padded_channels = direct_round16(out_channels);
    for (ptrdiff_t block = 0; block < padded_channels / 16; ++block)
        for (ptrdiff_t c = 0; c < g->channels; ++c)
            for (ptrdiff_t t0 = 0; t0 < taps; t0 += GRAD_W_TAPS) {
                const int tn = (int)(taps - t0 < GRAD_W_TAPS ? taps - t0 : GRAD_W_TAPS);
                const ptrdiff_t *offsets = tap_offsets + t0;
                float *dst = part + ((block * g->channels + c) * taps + t0) * 16;
                __m512 acc[GRAD_W_TAPS];
#pragma GCC unroll 25
                for (int t = 0; t < GRAD_W_TAPS; ++t) acc[t] = _mm512_setzero_ps();
                for (ptrdiff_t oh = 0; oh < g->out_h; ++oh) {
                    const float *x_row = xp + c * xp_plane + oh * xp_row;
                    const float *g_row = gyt + (oh * g->out_w * padded_channels) + block * 16;
                    for (ptrdiff_t ow = 0; ow < g->out_w; ++ow) {
                        const __m512 gv = _mm512_loadu_ps(g_row + ow * padded_channels);
                        const float *x_at = x_row + ow;
#pragma GCC unroll 25
                        for (int t = 0; t < GRAD_W_TAPS; ++t) {
                            if (t >= tn)
                                break;
                            acc[t] = _mm512_fmadd_ps(gv, _mm512_set1_ps(x_at[offsets[t]]), acc[t]);
                        }
                    }
                }
#pragma GCC unroll 25
                for (int t = 0; t < GRAD_W_TAPS; ++t)
                    if (t < tn)
                        _mm512_storeu_ps(dst + 16 * t, _mm512_add_ps(_mm512_loadu_ps(dst + 16 * t), acc[t]));
            }
}

/* grad_W partial sums of one image for few output channels, vectorised over 16 pixels of a row:
 * for each input channel c, kernel row i, 4 output channels and 6 kernel columns, 24
 * accumulators sweep every row chunk of the image (each gy vector serves 6 taps, each shifted x
 * vector 4 channels),
 *     acc[o][j] += gy[o, oh, ow0 + lane] * xp[c, oh + i, ow0 + j + lane]
 * and are added into the partials part[o][c][i][j][16] (the lanes are summed at the end). */
__attribute__((target("avx512f"), noinline))
static void weight_grad_image_pixels(const float *xp, const float *gy, const conv_geometry *g,
                                     ptrdiff_t out_channels, float *part)
{
    const ptrdiff_t xp_row = g->width + 2 * g->pad_w, xp_plane = (g->height + 2 * g->pad_h) * xp_row;
    const ptrdiff_t plane = g->out_h * g->out_w, kw = g->kernel_w;
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t i = 0; i < g->kernel_h; ++i)
            for (ptrdiff_t o0 = 0; o0 < out_channels; o0 += PIXEL_GRAD_W_CHANNELS)
                for (ptrdiff_t j0 = 0; j0 < kw; j0 += PIXEL_GRAD_W_COLUMNS) {
                    const int on = (int)(out_channels - o0 < PIXEL_GRAD_W_CHANNELS ? out_channels - o0
                                                                                   : PIXEL_GRAD_W_CHANNELS);
                    const int jn = (int)(kw - j0 < PIXEL_GRAD_W_COLUMNS ? kw - j0 : PIXEL_GRAD_W_COLUMNS);
                    __m512 acc[PIXEL_GRAD_W_CHANNELS][PIXEL_GRAD_W_COLUMNS];
#pragma GCC unroll 4
                    for (int o = 0; o < PIXEL_GRAD_W_CHANNELS; ++o)
#pragma GCC unroll 6
                        for (int j = 0; j < PIXEL_GRAD_W_COLUMNS; ++j) acc[o][j] = _mm512_setzero_ps();
                    for (ptrdiff_t oh = 0; oh < g->out_h; ++oh) {
                        const float *x_row = xp + c * xp_plane + (oh + i) * xp_row + j0;
                        const float *g_row = gy + o0 * plane + oh * g->out_w;
                        for (ptrdiff_t ow0 = 0; ow0 < g->out_w; ow0 += 16) {
                            const __mmask16 m = lanes_mask(g->out_w - ow0);
                            __m512 gv[PIXEL_GRAD_W_CHANNELS];
#pragma GCC unroll 4
                            for (int o = 0; o < PIXEL_GRAD_W_CHANNELS; ++o)
                                gv[o] = o < on ? _mm512_maskz_loadu_ps(m, g_row + o * plane + ow0) : _mm512_setzero_ps();
#pragma GCC unroll 6
                            for (int j = 0; j < PIXEL_GRAD_W_COLUMNS; ++j) {
                                if (j >= jn)
                                    break;
                                const __m512 xv = _mm512_maskz_loadu_ps(m, x_row + ow0 + j);
#pragma GCC unroll 4
                                for (int o = 0; o < PIXEL_GRAD_W_CHANNELS; ++o)
                                    acc[o][j] = _mm512_fmadd_ps(gv[o], xv, acc[o][j]);
                            }
                        }
                    }
#pragma GCC unroll 4
                    for (int o = 0; o < PIXEL_GRAD_W_CHANNELS; ++o)
#pragma GCC unroll 6
                        for (int j = 0; j < PIXEL_GRAD_W_COLUMNS; ++j)
                            if (o < on && j < jn) {
                                float *dst = part + ((((o0 + o) * g->channels + c) * g->kernel_h + i) * kw + j0 + j) * 16;
                                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), acc[o][j]));
                            }
                }
}

/* One input-gradient tile: grad_y of ``count`` <= 16 / halves output channels (from o0) on one row
 * chunk held in registers; for every tap (c, i, j) the sum over those channels of W gy is added
 * into gxp at (c, oh + i, ow0 + j). w points at the packed [c][i][j][16] block plus the lane of
 * o0 within it. Four FMA chains per vector keep the latency hidden; j runs outside i so that two
 * consecutive read-modify-writes never overlap. */
__attribute__((target("avx512f"), always_inline))
static inline void input_grad_tile(const int halves, const float *gy, ptrdiff_t plane, int count,
                                   const float *w, const conv_geometry *g, float *gxp, ptrdiff_t xp_plane,
                                   ptrdiff_t xp_row, __mmask16 m0, __mmask16 m1)
{
    enum { CHANNELS = 16 };
    const int channels = CHANNELS / halves;
    __m512 gv[CHANNELS][2];
#pragma GCC unroll 16
    for (int o = 0; o < CHANNELS; ++o) {
        if (o >= channels)
            break;
        gv[o][0] = o < count ? _mm512_maskz_loadu_ps(m0, gy + o * plane) : _mm512_setzero_ps();
        gv[o][1] = halves == 2 && o < count ? _mm512_maskz_loadu_ps(m1, gy + o * plane + 16) : _mm512_setzero_ps();
    }
    const ptrdiff_t kh = g->kernel_h, kw = g->kernel_w;
    for (ptrdiff_t c = 0; c < g->channels; ++c)
        for (ptrdiff_t j = 0; j < kw; ++j)
            for (ptrdiff_t i = 0; i < kh; ++i) {
                const float *wt = w + ((c * kh + i) * kw + j) * 16;
                __m512 s[4][2];
#pragma GCC unroll 4
                for (int a = 0; a < 4; ++a) s[a][0] = s[a][1] = _mm512_setzero_ps();
#pragma GCC unroll 16
                for (int o = 0; o < CHANNELS; ++o) {
                    if (o >= channels)
                        break;
                    const __m512 b = _mm512_set1_ps(wt[o]);
                    s[o & 3][0] = _mm512_fmadd_ps(b, gv[o][0], s[o & 3][0]);
                    if (halves == 2)
                        s[o & 3][1] = _mm512_fmadd_ps(b, gv[o][1], s[o & 3][1]);
                }
                float *dst = gxp + c * xp_plane + i * xp_row + j;
#pragma GCC unroll 2
                for (int h = 0; h < halves; ++h) {
                    const __mmask16 m = h ? m1 : m0;
                    /* the lanes past the row are zeroed: there gy is 0, but W gy is NaN for an
                     * infinite W, and the unmasked store would add it to the next row */
                    const __m512 sum = _mm512_maskz_mov_ps(m, _mm512_add_ps(_mm512_add_ps(s[0][h], s[1][h]),
                                                                            _mm512_add_ps(s[2][h], s[3][h])));
                    _mm512_storeu_ps(dst + 16 * h, _mm512_add_ps(_mm512_loadu_ps(dst + 16 * h), sum));
                }
            }
}

__attribute__((target("avx512f"), noinline))
static void input_grad_tile_16(const float *gy, ptrdiff_t plane, int count, const float *w, const conv_geometry *g,
                               float *gxp, ptrdiff_t xp_plane, ptrdiff_t xp_row, __mmask16 m0)
{
    input_grad_tile(1, gy, plane, count, w, g, gxp, xp_plane, xp_row, m0, 0);
}

__attribute__((target("avx512f"), noinline))
static void input_grad_tile_32(const float *gy, ptrdiff_t plane, int count, const float *w, const conv_geometry *g,
                               float *gxp, ptrdiff_t xp_plane, ptrdiff_t xp_row, __mmask16 m0, __mmask16 m1)
{
    input_grad_tile(2, gy, plane, count, w, g, gxp, xp_plane, xp_row, m0, m1);
}

/* gxp (the padded grad_x of one image, zeroed here) from gy (O, Ho, Wo). */
__attribute__((target("avx512f")))
static void input_grad_image(const float *gy, const float *packed, const conv_geometry *g,
                             ptrdiff_t out_channels, float *gxp)
{
    const ptrdiff_t xp_row = g->width + 2 * g->pad_w, xp_plane = (g->height + 2 * g->pad_h) * xp_row;
    const ptrdiff_t plane = g->out_h * g->out_w, k = g->channels * g->kernel_h * g->kernel_w;
    memset(gxp, 0, (size_t)padded_size(g) * sizeof(float));
    for (ptrdiff_t oh = 0; oh < g->out_h; ++oh)
        for (ptrdiff_t ow0 = 0; ow0 < g->out_w;) {
            const ptrdiff_t left = g->out_w - ow0;
            const int halves = left > 16 ? 2 : 1;
            const ptrdiff_t width = halves == 2 ? (left < 32 ? left : 32) : left;
            const int step = 16 / halves;
            for (ptrdiff_t o0 = 0; o0 < out_channels; o0 += step) {
                const int count = (int)(out_channels - o0 < step ? out_channels - o0 : step);
                const float *src = gy + o0 * plane + oh * g->out_w + ow0;
                const float *w = packed + (o0 / 16) * 16 * k + o0 % 16;
                float *dst = gxp + oh * xp_row + ow0;
                if (halves == 2)
                    input_grad_tile_32(src, plane, count, w, g, dst, xp_plane, xp_row, 0xFFFF, lanes_mask(width - 16));
                else
                    input_grad_tile_16(src, plane, count, w, g, dst, xp_plane, xp_row, lanes_mask(width));
            }
            ow0 += width;
        }
}

#endif  /* FASTNN_HAVE_AVX512_KERNEL */

void direct_conv2d_forward_f32(const float *x, const float *weight, const float *bias,
                               const conv_geometry *g, ptrdiff_t out_channels, int relu, int threads,
                               float *workspace, float *y)
{
#if FASTNN_HAVE_AVX512_KERNEL
    const ptrdiff_t k = g->channels * g->kernel_h * g->kernel_w, image = g->channels * g->height * g->width;
    const ptrdiff_t plane = g->out_h * g->out_w, scratch = direct_conv_thread_size(g, out_channels);
    const int by_channels = forward_by_channels(g, out_channels);
    float *packed = workspace;
    pack_weights(weight, out_channels, k, by_channels ? 16 : FORWARD_CHANNELS, packed);
    float *scratches = workspace + direct_conv_packed_size(g, out_channels);

    #pragma omp parallel for num_threads(threads) schedule(static)
    for (ptrdiff_t n = 0; n < g->batch; ++n) {
        float *xp = scratches + (ptrdiff_t)omp_get_thread_num() * scratch;
        pad_image(x + n * image, g, xp);
        forward_image(xp, packed, bias, g, out_channels, relu, by_channels, y + n * out_channels * plane);
    }
#else
    (void)x; (void)weight; (void)bias; (void)g; (void)out_channels; (void)relu; (void)threads;
    (void)workspace; (void)y;
#endif
}

void direct_conv2d_backward_f32(const float *x, const float *weight, const float *grad_y,
                                const float *relu_y, const conv_geometry *g, ptrdiff_t out_channels,
                                int threads, float *workspace, float *grad_x, float *grad_w,
                                float *grad_b, double *grad_b_partial)
{
#if FASTNN_HAVE_AVX512_KERNEL
    const ptrdiff_t k = g->channels * g->kernel_h * g->kernel_w, image = g->channels * g->height * g->width;
    const ptrdiff_t plane = g->out_h * g->out_w, scratch = direct_conv_thread_size(g, out_channels);
    const ptrdiff_t padded = direct_round16(padded_size(g)), weight_size = out_channels * k;
    const ptrdiff_t padded_channels = direct_round16(out_channels), taps = g->kernel_h * g->kernel_w;
    const ptrdiff_t transposed_offset = 2 * padded + 32 + direct_round16(out_channels * plane);
    const ptrdiff_t part_offset = transposed_offset + plane * padded_channels;
    const int by_channels = direct_conv_weight_grad_by_channels(g, out_channels);
    ptrdiff_t tap_offsets[DIRECT_CONV_MAX_TAPS];
    for (ptrdiff_t t = 0; t < taps; ++t)
        tap_offsets[t] = (t / g->kernel_w) * (g->width + 2 * g->pad_w) + t % g->kernel_w;
    float *packed = workspace;
    if (grad_x)
        pack_weights(weight, out_channels, k, 16, packed);
    float *scratches = workspace + direct_conv_packed_size(g, out_channels);

    #pragma omp parallel num_threads(threads)
    {
        const int thread = omp_get_thread_num(), team = omp_get_num_threads();
        float *xp = scratches + (ptrdiff_t)thread * scratch, *gxp = xp + padded, *masked = gxp + padded + 32;
        float *transposed = xp + transposed_offset, *part = xp + part_offset;
        double *my_grad_b = grad_b ? grad_b_partial + thread * out_channels : NULL;
        if (grad_w) {
            memset(part, 0, (size_t)direct_conv_weight_grad_partial_size(g, out_channels) * sizeof(float));
            if (by_channels)   /* channels past O stay 0 */
                memset(transposed, 0, (size_t)(plane * padded_channels) * sizeof(float));
        }
        if (my_grad_b) memset(my_grad_b, 0, (size_t)out_channels * sizeof(double));

        #pragma omp for schedule(static)
        for (ptrdiff_t n = 0; n < g->batch; ++n) {
            const float *gy = grad_y + n * out_channels * plane;
            if (relu_y) {
                const float *y = relu_y + n * out_channels * plane;
                for (ptrdiff_t e = 0; e < out_channels * plane; ++e) {
                    const float v = gy[e];
                    masked[e] = y[e] > 0 ? v : 0.0f;     /* relu_backward of activation */
                }
                gy = masked;
            }
            if (my_grad_b)
                for (ptrdiff_t o = 0; o < out_channels; ++o)
                    my_grad_b[o] += row_sum_f32(gy + o * plane, plane);
            if (grad_w) {
                pad_image(x + n * image, g, xp);
                if (by_channels) {
                    for (ptrdiff_t o = 0; o < out_channels; ++o)
                        for (ptrdiff_t p = 0; p < plane; ++p) transposed[p * padded_channels + o] = gy[o * plane + p];
                    weight_grad_image(xp, transposed, g, out_channels, tap_offsets, part);
                } else {
                    weight_grad_image_pixels(xp, gy, g, out_channels, part);
                }
            }
            if (grad_x) {
                input_grad_image(gy, packed, g, out_channels, gxp);
                crop_image(gxp, g, grad_x + n * image);
            }
        }   /* implicit barrier: every partial sum is complete */

        if (grad_w) {
            #pragma omp for schedule(static)
            for (ptrdiff_t e = 0; e < weight_size; ++e) {
                float sum = 0;
                if (by_channels) {      /* lane o % 16 of (block, c, tap) */
                    const ptrdiff_t o = e / k, at = ((o / 16) * k + e % k) * 16 + o % 16;
                    for (int t = 0; t < team; ++t) sum += scratches[(ptrdiff_t)t * scratch + part_offset + at];
                } else {                /* the 16 lanes of (o, c, tap) */
                    for (int t = 0; t < team; ++t) {
                        const float *lanes = scratches + (ptrdiff_t)t * scratch + part_offset + e * 16;
                        for (int lane = 0; lane < 16; ++lane) sum += lanes[lane];
                    }
                }
                grad_w[e] = sum;
            }
        }
        if (grad_b)
            sum_thread_partials_f32(grad_b_partial, team, out_channels, grad_b);
    }
#else
    (void)x; (void)weight; (void)grad_y; (void)relu_y; (void)g; (void)out_channels; (void)threads;
    (void)workspace; (void)grad_x; (void)grad_w; (void)grad_b; (void)grad_b_partial;
#endif
}
