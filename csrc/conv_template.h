/* The body of csrc/conv.c for one scalar type; included once per type with
 * SCALAR (float or double) and SUFFIXED(name) (name_f32 or name_f64) defined. */

#include "row_sum_template.h"

/* C (m x n) = alpha op(A) op(B) + beta C on row-major buffers, through column-major BLAS:
 * the row-major C is C^T seen column-major, so the operands swap (as in _blas.pyx). */
static inline void SUFFIXED(gemm_rowmajor)(SUFFIXED(blas_gemm) gemm, int trans_a, int trans_b,
                                           int m, int n, int k, SCALAR alpha, const SCALAR *a,
                                           int lda, const SCALAR *b, int ldb, SCALAR beta,
                                           SCALAR *c, int ldc)
{
    char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
    gemm(&tb, &ta, &n, &m, &k, &alpha, (SCALAR *)b, &ldb, (SCALAR *)a, &lda, &beta, c, &ldc);
}

/* out = grad ⊙ 1[y > 0] (relu_backward of activation). grad[e] is loaded whatever the sign of
 * y[e], so that the compiler may turn the select into a vector mask: reading it only where y > 0
 * compiles to a branch, which mispredicts half the time (7x slower on tfconvnet's conv1). */
static inline void SUFFIXED(relu_mask)(const SCALAR *restrict grad, const SCALAR *restrict y,
                                       SCALAR *restrict out, ptrdiff_t len)
{
    for (ptrdiff_t e = 0; e < len; ++e) {
        const SCALAR g = grad[e];
        out[e] = y[e] > 0 ? g : (SCALAR)0;
    }
}

/* fastnn's own sgemm (sgemm.h) for float: the weights of every group packed once per call, as
 * op(A) = W_g (the forward) or W_g^T (grad_cols), ``*stride`` floats apart. NULL for double, when
 * the kernel is disabled or unavailable, or out of memory: the caller then uses BLAS. */
static SCALAR *SUFFIXED(packed_weights)(const SCALAR *weight, ptrdiff_t groups, ptrdiff_t rows_out,
                                        ptrdiff_t k, ptrdiff_t plane, int transposed, ptrdiff_t *stride)
{
#if SCALAR_IS_FLOAT
    const int m = (int)(transposed ? k : rows_out), depth = (int)(transposed ? rows_out : k);
    if (!fastnn_sgemm_enabled() || !fastnn_sgemm_suits(m, (int)plane, depth))
        return NULL;
    *stride = fastnn_sgemm_packed_a_size(m, depth);
    float *packed = malloc((size_t)(groups * *stride + 1) * sizeof(float));
    if (packed)
        for (ptrdiff_t group = 0; group < groups; ++group)
            fastnn_sgemm_pack_a(transposed, m, depth, weight + group * rows_out * k, (int)k,
                                packed + group * *stride);
    return packed;
#else
    (void)weight; (void)groups; (void)rows_out; (void)k; (void)plane; (void)transposed; (void)stride;
    return NULL;
#endif
}

/* C (m x n) = packed op(A) B (+ bias, then ReLU) with fastnn's sgemm; -1 if it could not run. */
static inline int SUFFIXED(packed_product)(const SCALAR *packed_a, int m, int n, int k, const SCALAR *b,
                                           int ldb, SCALAR *c, int ldc, const SCALAR *bias, int relu)
{
#if SCALAR_IS_FLOAT
    return fastnn_sgemm_packed(m, n, k, 1.0f, packed_a, 0, b, ldb, 0.0f, c, ldc, bias, relu);
#else
    (void)packed_a; (void)m; (void)n; (void)k; (void)b; (void)ldb; (void)c; (void)ldc; (void)bias; (void)relu;
    return -1;
#endif
}

/* C (m x n) += A B^T with fastnn's sgemm (grad_W); -1 if ``own`` is 0 (read once per call, before the
 * parallel region), the shape does not suit it, or it could not run. */
static inline int SUFFIXED(own_gemm_accumulate_nt)(int own, int m, int n, int k, const SCALAR *a, int lda,
                                                   const SCALAR *b, int ldb, SCALAR *c, int ldc)
{
#if SCALAR_IS_FLOAT
    if (!own || !fastnn_sgemm_suits(m, n, k))
        return -1;
    return fastnn_sgemm(0, 1, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c, ldc, NULL, 0);
#else
    (void)own; (void)m; (void)n; (void)k; (void)a; (void)lda; (void)b; (void)ldb; (void)c; (void)ldc;
    return -1;
#endif
}

/* A 1x1 kernel with stride 1 and no padding: the columns of image n are image n itself. */
static inline int SUFFIXED(is_pointwise)(const conv_geometry *g)
{
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1
        && g->pad_h == 0 && g->pad_w == 0;
}

void SUFFIXED(conv2d_forward_images)(const SCALAR *x, const SCALAR *weight, const SCALAR *bias,
                                     const conv_geometry *g, ptrdiff_t out_channels,
                                     ptrdiff_t groups, int relu, int threads, SCALAR *workspace,
                                     SCALAR *y, SUFFIXED(blas_gemm) gemm)
{
    const ptrdiff_t plane = g->out_h * g->out_w, image = g->channels * g->height * g->width;
    const ptrdiff_t k = g->channels / groups * g->kernel_h * g->kernel_w, rows_out = out_channels / groups;
    const int pointwise = SUFFIXED(is_pointwise)(g);
    ptrdiff_t packed_stride = 0;
    SCALAR *packed_w = SUFFIXED(packed_weights)(weight, groups, rows_out, k, plane, 0, &packed_stride);

    #pragma omp parallel for num_threads(threads) schedule(static)
    for (ptrdiff_t n = 0; n < g->batch; ++n) {
        SCALAR *cols = workspace + (ptrdiff_t)omp_get_thread_num() * conv_workspace_size(g, out_channels);
        SCALAR *padded = cols + (k * groups + out_channels) * plane;
        if (pointwise)
            cols = (SCALAR *)x + n * image;      /* read only */
        else
            SUFFIXED(im2col_image)(x, g, n, cols, padded);
        SCALAR *out = y + n * out_channels * plane;
        if (packed_w) {                         /* bias and ReLU in the GEMM's epilogue */
            int failed = 0;
            for (ptrdiff_t group = 0; group < groups && !failed; ++group)
                failed = SUFFIXED(packed_product)(packed_w + group * packed_stride, (int)rows_out, (int)plane,
                                                  (int)k, cols + group * k * plane, (int)plane,
                                                  out + group * rows_out * plane, (int)plane,
                                                  bias ? bias + group * rows_out : NULL, relu);
            if (!failed)
                continue;
        }
        for (ptrdiff_t group = 0; group < groups; ++group)
            SUFFIXED(gemm_rowmajor)(gemm, 0, 0, (int)rows_out, (int)plane, (int)k, 1,
                                    weight + group * rows_out * k, (int)k, cols + group * k * plane,
                                    (int)plane, 0, out + group * rows_out * plane, (int)plane);
        if (bias || relu)                      /* the epilogue, while image n is in cache */
            for (ptrdiff_t o = 0; o < out_channels; ++o) {
                const SCALAR b = bias ? bias[o] : 0;
                SCALAR *row = out + o * plane;
                if (relu)
                    for (ptrdiff_t p = 0; p < plane; ++p) {
                        const SCALAR v = row[p] + b;
                        row[p] = v < 0 ? 0 : v;        /* relu_forward of activation: NaN stays */
                    }
                else
                    for (ptrdiff_t p = 0; p < plane; ++p) row[p] += b;
            }
    }
    free(packed_w);
}

void SUFFIXED(conv2d_backward_images)(const SCALAR *x, const SCALAR *weight, const SCALAR *grad_y,
                                      const SCALAR *relu_y, const conv_geometry *g, ptrdiff_t out_channels,
                                      ptrdiff_t groups, int threads, SCALAR *workspace,
                                      SCALAR *grad_x, SCALAR *grad_w, SCALAR *grad_w_partial,
                                      SCALAR *grad_b, double *grad_b_partial,
                                      SUFFIXED(blas_gemm) gemm)
{
    const ptrdiff_t plane = g->out_h * g->out_w, image = g->channels * g->height * g->width;
    const ptrdiff_t k = g->channels / groups * g->kernel_h * g->kernel_w, rows_out = out_channels / groups;
    const ptrdiff_t weight_size = out_channels * k;
    const int pointwise = SUFFIXED(is_pointwise)(g);
    ptrdiff_t packed_stride = 0;
    SCALAR *packed_wt = grad_x ? SUFFIXED(packed_weights)(weight, groups, rows_out, k, plane, 1, &packed_stride) : NULL;
#if SCALAR_IS_FLOAT
    const int own_grad_w = fastnn_sgemm_enabled();
#else
    const int own_grad_w = 0;
#endif

    #pragma omp parallel num_threads(threads)
    {
        const int thread = omp_get_thread_num(), team = omp_get_num_threads();
        SCALAR *cols = workspace + (ptrdiff_t)thread * conv_workspace_size(g, out_channels);
        SCALAR *masked = cols + k * groups * plane;       /* (O, P): grad_y[n] 1[relu_y[n] > 0] */
        SCALAR *padded = masked + out_channels * plane;
        SCALAR *my_grad_w = grad_w ? grad_w_partial + thread * weight_size : NULL;
        double *my_grad_b = grad_b ? grad_b_partial + thread * out_channels : NULL;
        if (my_grad_w) memset(my_grad_w, 0, (size_t)weight_size * sizeof(SCALAR));
        if (my_grad_b) memset(my_grad_b, 0, (size_t)out_channels * sizeof(double));

        #pragma omp for schedule(static)
        for (ptrdiff_t n = 0; n < g->batch; ++n) {
            const SCALAR *gy = grad_y + n * out_channels * plane;
            if (relu_y) {
                SUFFIXED(relu_mask)(gy, relu_y + n * out_channels * plane, masked, out_channels * plane);
                gy = masked;
            }
            if (my_grad_w) {
                const SCALAR *x_cols = cols;
                if (pointwise)
                    x_cols = x + n * image;
                else
                    SUFFIXED(im2col_image)(x, g, n, cols, padded);
                for (ptrdiff_t group = 0; group < groups; ++group)
                    if (SUFFIXED(own_gemm_accumulate_nt)(own_grad_w, (int)rows_out, (int)k, (int)plane,
                                                         gy + group * rows_out * plane, (int)plane,
                                                         x_cols + group * k * plane, (int)plane,
                                                         my_grad_w + group * rows_out * k, (int)k) != 0)
                        SUFFIXED(gemm_rowmajor)(gemm, 0, 1, (int)rows_out, (int)k, (int)plane, 1,
                                                gy + group * rows_out * plane, (int)plane,
                                                x_cols + group * k * plane, (int)plane, 1,
                                                my_grad_w + group * rows_out * k, (int)k);
            }
            if (my_grad_b)
                for (ptrdiff_t o = 0; o < out_channels; ++o)
                    my_grad_b[o] += SUFFIXED(row_sum)(gy + o * plane, plane);
            if (grad_x) {
                SCALAR *grad_cols = pointwise ? grad_x + n * image : cols;
                for (ptrdiff_t group = 0; group < groups; ++group)
                    if (!packed_wt
                        || SUFFIXED(packed_product)(packed_wt + group * packed_stride, (int)k, (int)plane,
                                                    (int)rows_out, gy + group * rows_out * plane, (int)plane,
                                                    grad_cols + group * k * plane, (int)plane, NULL, 0) != 0)
                        SUFFIXED(gemm_rowmajor)(gemm, 1, 0, (int)k, (int)plane, (int)rows_out, 1,
                                                weight + group * rows_out * k, (int)k,
                                                gy + group * rows_out * plane, (int)plane, 0,
                                                grad_cols + group * k * plane, (int)plane);
                if (!pointwise)
                    SUFFIXED(col2im_image)(cols, g, n, grad_x, padded);
            }
        }   /* implicit barrier: every partial sum is complete */

        if (grad_w) {
            #pragma omp for schedule(static)
            for (ptrdiff_t e = 0; e < weight_size; ++e) {
                SCALAR sum = 0;
                for (int t = 0; t < team; ++t) sum += grad_w_partial[t * weight_size + e];
                grad_w[e] = sum;
            }
        }
        if (grad_b)
            SUFFIXED(sum_thread_partials)(grad_b_partial, team, out_channels, grad_b);
    }
    free(packed_wt);
}
