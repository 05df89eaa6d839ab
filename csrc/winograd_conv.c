/* Winograd convolution F(2x2, 5x5); see winograd_conv.h. */
#include <omp.h>
#include <string.h>

#include "sgemm.h"
#include "winograd_conv.h"

#define SCALAR float
#define SUFFIXED(name) name##_f32
#include "row_sum_template.h"
#undef SCALAR
#undef SUFFIXED

#include "avx512.h"

#define N_ 6   /* transformed tile side */
#define R_ 5   /* kernel side */

/* G (6 x 5): the kernel transform U = G W G^T. */
static const double G_[N_][R_] = {
    {1.0 / 4, 0, 0, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3},
    {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3, 2.0 / 3},
    {0, 0, 0, 0, 1},
};

int fastnn_winograd_available(void)
{
    return fastnn_sgemm_available();
}

/* U[xi][c][o] = (G W[o, c] G^T)[xi] in (in, out) = (cpad, opad) blocks, zero past the channels; W as
 * given ((out, in, 5, 5)) or, with flip, W'[o][c] = W[c][o] rotated by 180 degrees. Shared among
 * the threads of the enclosing parallel region (an orphaned omp for; ends with its barrier). */
static void transform_weights(const float *weight, int flip, const winograd_shape *s, float *u)
{
    const ptrdiff_t cpad = winograd_round16(s->in_channels), opad = winograd_round16(s->out_channels);
    #pragma omp for schedule(static)
    for (ptrdiff_t cell = 0; cell < cpad * opad; ++cell) {
        const ptrdiff_t c = cell / opad, o = cell % opad;
        if (c >= s->in_channels || o >= s->out_channels) {
            for (int xi = 0; xi < WINOGRAD_POSITIONS; ++xi) u[xi * cpad * opad + cell] = 0.0f;
            continue;
        }
        double w[R_][R_], gw[N_][R_];
        for (int i = 0; i < R_; ++i)
            for (int j = 0; j < R_; ++j)
                w[i][j] = flip ? weight[((c * s->out_channels + o) * R_ + (R_ - 1 - i)) * R_ + (R_ - 1 - j)]
                               : weight[((o * s->in_channels + c) * R_ + i) * R_ + j];
        for (int a = 0; a < N_; ++a)
            for (int j = 0; j < R_; ++j) {
                double sum = 0;
                for (int i = 0; i < R_; ++i) sum += G_[a][i] * w[i][j];
                gw[a][j] = sum;
            }
        for (int a = 0; a < N_; ++a)
            for (int b = 0; b < N_; ++b) {
                double sum = 0;
                for (int j = 0; j < R_; ++j) sum += gw[a][j] * G_[b][j];
                u[(a * N_ + b) * cpad * opad + cell] = (float)sum;
            }
    }
}

/* grad_w[o][c] = G^T dU[., c, o] G: the adjoint of transform_weights (no flip). */
static void untransform_weight_grad(const float *du, const winograd_shape *s, float *grad_w)
{
    const ptrdiff_t cpad = winograd_round16(s->in_channels), opad = winograd_round16(s->out_channels);
    #pragma omp for schedule(static)
    for (ptrdiff_t oc = 0; oc < s->out_channels * s->in_channels; ++oc) {
        const ptrdiff_t o = oc / s->in_channels, c = oc % s->in_channels;
        double t[N_][R_];
        for (int a = 0; a < N_; ++a)
            for (int j = 0; j < R_; ++j) {
                double sum = 0;
                for (int b = 0; b < N_; ++b) sum += (double)du[((a * N_ + b) * cpad + c) * opad + o] * G_[b][j];
                t[a][j] = sum;
            }
        for (int i = 0; i < R_; ++i)
            for (int j = 0; j < R_; ++j) {
                double sum = 0;
                for (int a = 0; a < N_; ++a) sum += G_[a][i] * t[a][j];
                grad_w[((o * s->in_channels + c) * R_ + i) * R_ + j] = (float)sum;
            }
    }
}

/* Image (channels, h, w) (times 1[mask > 0] where mask is given) into hwc (rows, cols, cpad): at
 * (y + pad_h, x + pad_w), zeros everywhere else. */
static void to_hwc(const float *image, const float *mask, ptrdiff_t channels, ptrdiff_t h, ptrdiff_t w,
                   ptrdiff_t pad_h, ptrdiff_t pad_w, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t cpad, float *hwc)
{
    memset(hwc, 0, (size_t)(rows * cols * cpad) * sizeof(float));
    for (ptrdiff_t c = 0; c < channels; ++c)
        for (ptrdiff_t y = 0; y < h; ++y) {
            const float *src = image + (c * h + y) * w;
            const float *keep = mask ? mask + (c * h + y) * w : NULL;
            float *dst = hwc + ((y + pad_h) * cols + pad_w) * cpad + c;
            for (ptrdiff_t x = 0; x < w; ++x) {
                const float v = src[x];
                dst[x * cpad] = keep ? (keep[x] > 0 ? v : 0.0f) : v;
            }
        }
}

#if FASTNN_HAVE_AVX512_KERNEL

/* out = B^T in for one 6-vector: the rows of B^T are
 *   [4 0 -5 0 1 0] [0 -4 -4 1 1 0] [0 4 -4 -1 1 0] [0 -2 -1 2 1 0] [0 2 -1 -2 1 0] [0 4 0 -5 0 1] */
__attribute__((target("avx512f"), always_inline))
static inline void apply_bt(const __m512 in[N_], __m512 out[N_])
{
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f);
    const __m512 s34 = _mm512_add_ps(in[3], in[4]), d34 = _mm512_sub_ps(in[4], in[3]);
    const __m512 s12 = _mm512_add_ps(in[1], in[2]), d12 = _mm512_sub_ps(in[1], in[2]);
    out[0] = _mm512_add_ps(_mm512_fmsub_ps(four, in[0], _mm512_mul_ps(five, in[2])), in[4]);
    out[1] = _mm512_fnmadd_ps(four, s12, s34);                                 /* -4 (in1 + in2) + in3 + in4 */
    out[2] = _mm512_fmadd_ps(four, d12, d34);                                  /* 4 (in1 - in2) - in3 + in4 */
    const __m512 t = _mm512_sub_ps(in[4], in[2]), d31 = _mm512_sub_ps(in[3], in[1]);
    out[3] = _mm512_fmadd_ps(two, d31, t);                                     /* -2 in1 - in2 + 2 in3 + in4 */
    out[4] = _mm512_fnmadd_ps(two, d31, t);                                    /* 2 in1 - in2 - 2 in3 + in4 */
    out[5] = _mm512_add_ps(_mm512_fmsub_ps(four, in[1], _mm512_mul_ps(five, in[3])), in[5]);
}

/* out = A^T in: [1 1 1 1 1 0] and [0 1 -1 2 -2 1]. */
__attribute__((target("avx512f"), always_inline))
static inline void apply_at(const __m512 in[N_], __m512 out[2])
{
    const __m512 s12 = _mm512_add_ps(in[1], in[2]), s34 = _mm512_add_ps(in[3], in[4]);
    const __m512 d12 = _mm512_sub_ps(in[1], in[2]), d34 = _mm512_sub_ps(in[3], in[4]);
    out[0] = _mm512_add_ps(_mm512_add_ps(in[0], s12), s34);
    out[1] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12), in[5]);
}

/* out = A in for a 2-vector (the transpose of apply_at): [u0, u0 + u1, u0 - u1, u0 + 2 u1, u0 - 2 u1, u1]. */
__attribute__((target("avx512f"), always_inline))
static inline void apply_a(__m512 u0, __m512 u1, __m512 out[N_])
{
    const __m512 two = _mm512_set1_ps(2.0f);
    out[0] = u0;
    out[1] = _mm512_add_ps(u0, u1);
    out[2] = _mm512_sub_ps(u0, u1);
    out[3] = _mm512_fmadd_ps(two, u1, u0);
    out[4] = _mm512_fnmadd_ps(two, u1, u0);
    out[5] = u1;
}

/* V[xi][row0 + t][.] = (B^T d_t B)[xi] for the tiles of one image in hwc (2 th + 4, 2 tw + 4, cpad);
 * ``rows`` is the row count of each V[xi]. */
__attribute__((target("avx512f")))
static void input_transform(const float *hwc, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t cpad, float *v,
                            ptrdiff_t rows, ptrdiff_t row0)
{
    const ptrdiff_t cols = 2 * tw + 4;
    for (ptrdiff_t ty = 0; ty < th; ++ty)
        for (ptrdiff_t tx = 0; tx < tw; ++tx) {
            const ptrdiff_t t = row0 + ty * tw + tx;
            for (ptrdiff_t cb = 0; cb < cpad; cb += 16) {
                __m512 rows_t[N_][N_];                       /* (B^T d)[a][b] */
                for (int b = 0; b < N_; ++b) {
                    __m512 column[N_], out[N_];
                    for (int a = 0; a < N_; ++a)
                        column[a] = _mm512_loadu_ps(hwc + ((2 * ty + a) * cols + 2 * tx + b) * cpad + cb);
                    apply_bt(column, out);
                    for (int a = 0; a < N_; ++a) rows_t[a][b] = out[a];
                }
                for (int a = 0; a < N_; ++a) {
                    __m512 out[N_];
                    apply_bt(rows_t[a], out);
                    for (int b = 0; b < N_; ++b)
                        _mm512_storeu_ps(v + ((a * N_ + b) * rows + t) * cpad + cb, out[b]);
                }
            }
        }
}

/* One image of out (channels, out_h, out_w) from M[xi][row0 + t][.]: y_t = A^T M_t A (+ bias, ReLU). */
__attribute__((target("avx512f")))
static void output_transform(const float *m, ptrdiff_t rows, ptrdiff_t row0, const winograd_shape *s,
                             const float *bias, int relu, float *out)
{
    const ptrdiff_t th = (s->out_h + 1) / 2, tw = (s->out_w + 1) / 2, opad = winograd_round16(s->out_channels);
    const ptrdiff_t plane = s->out_h * s->out_w;
    for (ptrdiff_t ty = 0; ty < th; ++ty)
        for (ptrdiff_t tx = 0; tx < tw; ++tx) {
            const ptrdiff_t t = row0 + ty * tw + tx;
            const int tile_h = 2 * ty + 1 < s->out_h ? 2 : 1, tile_w = 2 * tx + 1 < s->out_w ? 2 : 1;
            for (ptrdiff_t ob = 0; ob < opad; ob += 16) {
                __m512 half[2][N_];                          /* (A^T M)[i][b] */
                for (int b = 0; b < N_; ++b) {
                    __m512 column[N_], pair[2];
                    for (int a = 0; a < N_; ++a)
                        column[a] = _mm512_loadu_ps(m + ((a * N_ + b) * rows + t) * opad + ob);
                    apply_at(column, pair);
                    half[0][b] = pair[0];
                    half[1][b] = pair[1];
                }
                const ptrdiff_t count = s->out_channels - ob < 16 ? s->out_channels - ob : 16;
                const __m512 b = bias ? _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1u), bias + ob)
                                      : _mm512_setzero_ps();
                float tile[2][2][16];
                for (int i = 0; i < 2; ++i) {
                    __m512 pair[2];
                    apply_at(half[i], pair);
                    for (int j = 0; j < 2; ++j) {
                        __m512 v = _mm512_add_ps(pair[j], b);
                        if (relu)   /* v < 0 ? 0 : v, NaN kept (relu_forward of activation) */
                            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ),
                                                   _mm512_setzero_ps());
                        _mm512_storeu_ps(tile[i][j], v);
                    }
                }
                for (ptrdiff_t o = 0; o < count; ++o) {
                    float *dst = out + (ob + o) * plane + 2 * ty * s->out_w + 2 * tx;
                    for (int i = 0; i < tile_h; ++i)
                        for (int j = 0; j < tile_w; ++j) dst[i * s->out_w + j] = tile[i][j][o];
                }
            }
        }
}

/* dM[xi][row0 + t][.] = (A dY_t A^T)[xi] for the tiles of one image of grad_y in hwc (2 th, 2 tw, opad). */
__attribute__((target("avx512f")))
static void grad_output_transform(const float *hwc, ptrdiff_t th, ptrdiff_t tw, ptrdiff_t opad, float *dm,
                                  ptrdiff_t rows, ptrdiff_t row0)
{
    const ptrdiff_t cols = 2 * tw;
    for (ptrdiff_t ty = 0; ty < th; ++ty)
        for (ptrdiff_t tx = 0; tx < tw; ++tx) {
            const ptrdiff_t t = row0 + ty * tw + tx;
            for (ptrdiff_t ob = 0; ob < opad; ob += 16) {
                __m512 spread[2][N_];                        /* (dY A^T)[i][b] */
                for (int i = 0; i < 2; ++i) {
                    const float *row = hwc + ((2 * ty + i) * cols + 2 * tx) * opad + ob;
                    apply_a(_mm512_loadu_ps(row), _mm512_loadu_ps(row + opad), spread[i]);
                }
                for (int b = 0; b < N_; ++b) {
                    __m512 column[N_];
                    apply_a(spread[0][b], spread[1][b], column);
                    for (int a = 0; a < N_; ++a)
                        _mm512_storeu_ps(dm + ((a * N_ + b) * rows + t) * opad + ob, column[a]);
                }
            }
        }
}

/* sums[o] += sum over the pixels of hwc (rows x cols, opad) of channel o, 16 channels to a vector:
 * float sums per row (pixels in order), added to per-lane double totals, then to sums. */
__attribute__((target("avx512f")))
static void channel_sums(const float *hwc, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t opad, ptrdiff_t channels,
                         double *sums)
{
    for (ptrdiff_t ob = 0; ob < opad; ob += 16) {
        __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
        for (ptrdiff_t r = 0; r < rows; ++r) {
            __m512 acc = _mm512_setzero_ps();
            for (ptrdiff_t p = r * cols; p < (r + 1) * cols; ++p)
                acc = _mm512_add_ps(acc, _mm512_loadu_ps(hwc + p * opad + ob));
            low = _mm512_add_pd(low, _mm512_cvtps_pd(_mm512_castps512_ps256(acc)));
            high = _mm512_add_pd(high, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1))));
        }
        double lanes[16];
        _mm512_storeu_pd(lanes, low);
        _mm512_storeu_pd(lanes + 8, high);
        for (ptrdiff_t o = ob; o < ob + 16 && o < channels; ++o) sums[o] += lanes[o - ob];
    }
}

#endif  /* FASTNN_HAVE_AVX512_KERNEL */

int winograd_conv2d_forward_f32(const float *in, const float *mask, const float *weight, int flip,
                                const float *bias, int relu, const winograd_shape *s, int threads,
                                float *workspace, float *out)
{
#if FASTNN_HAVE_AVX512_KERNEL
    const ptrdiff_t th = (s->out_h + 1) / 2, tw = (s->out_w + 1) / 2, tiles = th * tw;
    const ptrdiff_t cpad = winograd_round16(s->in_channels), opad = winograd_round16(s->out_channels);
    const ptrdiff_t group = winograd_group(s), rows = group * tiles, groups = (s->batch + group - 1) / group;
    const ptrdiff_t image_in = s->in_channels * s->in_h * s->in_w, image_out = s->out_channels * s->out_h * s->out_w;
    const ptrdiff_t scratch = winograd_forward_thread_size(s), hwc_size = (2 * th + 4) * (2 * tw + 4) * cpad;
    float *u = workspace;
    int failed = 0;

    #pragma omp parallel num_threads(threads) reduction(|:failed)
    {
        transform_weights(weight, flip, s, u);      /* ends with a barrier */
        float *hwc = workspace + winograd_weights_size(s) + (ptrdiff_t)omp_get_thread_num() * scratch;
        float *v = hwc + hwc_size, *m = v + WINOGRAD_POSITIONS * rows * cpad;

        #pragma omp for schedule(static)
        for (ptrdiff_t gi = 0; gi < groups; ++gi) {
            const ptrdiff_t n0 = gi * group, n1 = n0 + group < s->batch ? n0 + group : s->batch;
            const int used = (int)((n1 - n0) * tiles);
            for (ptrdiff_t n = n0; n < n1; ++n) {
                to_hwc(in + n * image_in, mask ? mask + n * image_in : NULL, s->in_channels, s->in_h, s->in_w,
                       s->pad_h, s->pad_w, 2 * th + 4, 2 * tw + 4, cpad, hwc);
                input_transform(hwc, th, tw, cpad, v, rows, (n - n0) * tiles);
            }
            for (int xi = 0; xi < WINOGRAD_POSITIONS; ++xi)
                failed |= fastnn_sgemm(0, 0, used, (int)opad, (int)cpad, 1.0f, v + xi * rows * cpad, (int)cpad,
                                       u + xi * cpad * opad, (int)opad, 0.0f, m + xi * rows * opad, (int)opad,
                                       NULL, 0) != 0;
            for (ptrdiff_t n = n0; n < n1; ++n)
                output_transform(m, rows, (n - n0) * tiles, s, bias, relu, out + n * image_out);
        }
    }
    return failed ? -1 : 0;
#else
    (void)in; (void)mask; (void)weight; (void)flip; (void)bias; (void)relu; (void)s; (void)threads;
    (void)workspace; (void)out;
    return -1;
#endif
}

int winograd_conv2d_weight_grad_f32(const float *x, const float *grad_y, const float *relu_y,
                                    const winograd_shape *s, int threads, float *workspace, float *grad_w,
                                    float *grad_b, double *grad_b_partial)
{
#if FASTNN_HAVE_AVX512_KERNEL
    const ptrdiff_t th = (s->out_h + 1) / 2, tw = (s->out_w + 1) / 2, tiles = th * tw;
    const ptrdiff_t cpad = winograd_round16(s->in_channels), opad = winograd_round16(s->out_channels);
    const ptrdiff_t group = winograd_group(s), rows = group * tiles, groups = (s->batch + group - 1) / group;
    const ptrdiff_t image_in = s->in_channels * s->in_h * s->in_w, plane = s->out_h * s->out_w;
    const ptrdiff_t scratch = winograd_weight_grad_thread_size(s), hwc_size = (2 * th + 4) * (2 * tw + 4) * cpad;
    const ptrdiff_t weights = winograd_weights_size(s);
    const ptrdiff_t du_offset = scratch - weights;      /* the thread's dU: the end of its scratch */
    float *du_total = workspace, *scratches = workspace + weights;
    int failed = 0;

    #pragma omp parallel num_threads(threads) reduction(|:failed)
    {
        const int thread = omp_get_thread_num(), team = omp_get_num_threads();
        float *hwc = scratches + (ptrdiff_t)thread * scratch;
        float *v = hwc + hwc_size, *dm = v + WINOGRAD_POSITIONS * rows * cpad;
        float *hwc_grad = dm + WINOGRAD_POSITIONS * rows * opad, *du = hwc + du_offset;
        double *my_grad_b = grad_b ? grad_b_partial + (ptrdiff_t)thread * s->out_channels : NULL;
        if (grad_w) memset(du, 0, (size_t)weights * sizeof(float));
        if (my_grad_b) memset(my_grad_b, 0, (size_t)s->out_channels * sizeof(double));

        #pragma omp for schedule(static)
        for (ptrdiff_t gi = 0; gi < groups; ++gi) {
            const ptrdiff_t n0 = gi * group, n1 = n0 + group < s->batch ? n0 + group : s->batch;
            for (ptrdiff_t n = n0; n < n1; ++n) {
                const float *gy = grad_y + n * s->out_channels * plane;
                const float *keep = relu_y ? relu_y + n * s->out_channels * plane : NULL;
                to_hwc(gy, keep, s->out_channels, s->out_h, s->out_w, 0, 0, 2 * th, 2 * tw, opad, hwc_grad);
                if (my_grad_b)
                    channel_sums(hwc_grad, 2 * th, 2 * tw, opad, s->out_channels, my_grad_b);
                if (!grad_w)
                    continue;
                to_hwc(x + n * image_in, NULL, s->in_channels, s->in_h, s->in_w, s->pad_h, s->pad_w,
                       2 * th + 4, 2 * tw + 4, cpad, hwc);
                input_transform(hwc, th, tw, cpad, v, rows, (n - n0) * tiles);
                grad_output_transform(hwc_grad, th, tw, opad, dm, rows, (n - n0) * tiles);
            }
            if (grad_w)
                for (int xi = 0; xi < WINOGRAD_POSITIONS; ++xi)
                    failed |= fastnn_sgemm(1, 0, (int)cpad, (int)opad, (int)((n1 - n0) * tiles), 1.0f,
                                           v + xi * rows * cpad, (int)cpad, dm + xi * rows * opad, (int)opad,
                                           1.0f, du + xi * cpad * opad, (int)opad, NULL, 0) != 0;
        }   /* implicit barrier: every partial dU is complete */

        if (grad_w) {
            #pragma omp for schedule(static)
            for (ptrdiff_t e = 0; e < weights; ++e) {
                float sum = 0;
                for (int t = 0; t < team; ++t) sum += scratches[(ptrdiff_t)t * scratch + du_offset + e];
                du_total[e] = sum;
            }   /* implicit barrier */
            untransform_weight_grad(du_total, s, grad_w);
        }
        if (grad_b)
            sum_thread_partials_f32(grad_b_partial, team, s->out_channels, grad_b);
    }
    return failed ? -1 : 0;
#else
    (void)x; (void)grad_y; (void)relu_y; (void)s; (void)threads; (void)workspace; (void)grad_w; (void)grad_b;
    (void)grad_b_partial;
    return -1;
#endif
}
