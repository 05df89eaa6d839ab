/* The body of csrc/pool.c for one scalar type; included once per type with
 * SCALAR (float or double) and SUFFIXED(name) (name_f32 or name_f64) defined.
 *
 * The window loops run tap by tap over a whole output row (for kernel tap (i, j), output ow reads
 * input column ow sW - pW + j), like the reference: the inner loop is then a branch-free,
 * vectorisable pass over the row instead of a 2x2 scan with an unpredictable comparison. */

/* Max pooling scans one output row at a time in blocks of POOL_ROW_BLOCK outputs, keeping the
 * running max and its index in local arrays; the index has the width of SCALAR (INDEX), so the
 * compare-and-select over a row vectorises. */
#ifndef POOL_ROW_BLOCK
#define POOL_ROW_BLOCK 256
#endif

/* Outputs [*lo, *hi) of a row whose kernel tap reads input column ow stride + offset inside the
 * row. Without padding every window lies inside the input, so that is the whole row, with none
 * of fastnn_valid_range's divisions (which cost more than the 2x2 max of a small row). */
static inline void SUFFIXED(tap_range)(ptrdiff_t offset, ptrdiff_t stride, ptrdiff_t width, ptrdiff_t out_w,
                                       ptrdiff_t pad_w, ptrdiff_t *lo, ptrdiff_t *hi)
{
    if (pad_w == 0) {
        *lo = 0;
        *hi = out_w;
    } else {
        fastnn_valid_range(offset, stride, width, out_w, lo, hi);
    }
}

/* One kernel tap over outputs [lo, hi) of a block: output ow reads row[ow stride + offset]. */
static inline __attribute__((always_inline)) void SUFFIXED(max_pool_tap)(
    const SCALAR *restrict row, ptrdiff_t stride, ptrdiff_t offset, INDEX row_index, ptrdiff_t lo,
    ptrdiff_t hi, SCALAR *restrict best, INDEX *restrict arg)
{
    for (ptrdiff_t ow = lo; ow < hi; ++ow) {
        const ptrdiff_t iw = ow * stride + offset;
        const SCALAR v = row[iw];
        const int take = (v > best[ow]) | (v != v);   /* keep the first max; a NaN wins */
        best[ow] = take ? v : best[ow];
        arg[ow] = take ? row_index + (INDEX)iw : arg[ow];
    }
}

/* MaxPool2d(2) (2x2 windows, stride 2, no padding: every zoo model's pooling) on one plane. The
 * general kernel below spends its time on loop control for rows this short (7 to 14 outputs);
 * here each output compares its 4 values in the general kernel's order (take v where v > max or
 * v is NaN), with selects instead of branches, so that the loop over a row vectorises. */
static void SUFFIXED(max_pool2x2_plane)(const SCALAR *restrict in, ptrdiff_t width, ptrdiff_t out_h,
                                        ptrdiff_t out_w, SCALAR *restrict y, int64_t *restrict indices)
{
    for (ptrdiff_t oh = 0; oh < out_h; ++oh) {
        const SCALAR *top = in + 2 * oh * width, *bottom = top + width;
        const INDEX row_index = (INDEX)(2 * oh * width);
        for (ptrdiff_t ow = 0; ow < out_w; ++ow) {
            const SCALAR a = top[2 * ow], b = top[2 * ow + 1], c = bottom[2 * ow], d = bottom[2 * ow + 1];
            SCALAR best = a;
            INDEX arg = 0;
            int take = (b > best) | (b != b);
            best = take ? b : best;
            arg = take ? 1 : arg;
            take = (c > best) | (c != c);
            best = take ? c : best;
            arg = take ? (INDEX)width : arg;
            take = (d > best) | (d != d);
            best = take ? d : best;
            arg = take ? (INDEX)width + 1 : arg;
            y[oh * out_w + ow] = best;
            indices[oh * out_w + ow] = (int64_t)(row_index + (INDEX)(2 * ow) + arg);
        }
    }
}

void SUFFIXED(max_pool2d_forward)(const SCALAR *x, const pool_geometry *g, SCALAR *y, int64_t *indices)
{
    if (g->kernel_h == 2 && g->kernel_w == 2 && g->stride_h == 2 && g->stride_w == 2 && g->pad_h == 0
            && g->pad_w == 0) {
        #pragma omp parallel for schedule(static) if (g->planes * g->height * g->width > FASTNN_PARALLEL_MIN_WORK)
        for (ptrdiff_t p = 0; p < g->planes; ++p)
            SUFFIXED(max_pool2x2_plane)(x + p * g->height * g->width, g->width, g->out_h, g->out_w,
                                        y + p * g->out_h * g->out_w, indices + p * g->out_h * g->out_w);
        return;
    }

    const ptrdiff_t height = g->height, width = g->width, out_h = g->out_h, out_w = g->out_w;
    const ptrdiff_t kernel_h = g->kernel_h, kernel_w = g->kernel_w, stride_h = g->stride_h, stride_w = g->stride_w;
    const ptrdiff_t pad_h = g->pad_h, pad_w = g->pad_w, plane_in = height * width, plane_out = out_h * out_w;

    #pragma omp parallel for schedule(static) if (g->planes * plane_in > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t p = 0; p < g->planes; ++p) {
        const SCALAR *in = x + p * plane_in;
        SCALAR best_block[POOL_ROW_BLOCK];
        INDEX arg_block[POOL_ROW_BLOCK];
        for (ptrdiff_t oh = 0; oh < out_h; ++oh) {
            const ptrdiff_t top = oh * stride_h - pad_h;
            for (ptrdiff_t start = 0; start < out_w; start += POOL_ROW_BLOCK) {
                const ptrdiff_t end = start + POOL_ROW_BLOCK < out_w ? start + POOL_ROW_BLOCK : out_w;
                /* shifted so that best[ow] is output ow of this row */
                SCALAR *best = best_block - start;
                INDEX *arg = arg_block - start;
                /* the scan starts at the first position inside the input, with -inf as the max */
                for (ptrdiff_t ow = start; ow < end; ++ow) {
                    const ptrdiff_t left = ow * stride_w - pad_w;
                    best[ow] = -INFINITY;
                    arg[ow] = (INDEX)((top < 0 ? 0 : top) * width + (left < 0 ? 0 : left));
                }
                for (ptrdiff_t i = 0; i < kernel_h; ++i) {
                    const ptrdiff_t ih = top + i;
                    if (ih < 0 || ih >= height) continue;
                    const SCALAR *row = in + ih * width;
                    for (ptrdiff_t j = 0; j < kernel_w; ++j) {
                        const ptrdiff_t offset = j - pad_w;
                        ptrdiff_t lo, hi;
                        SUFFIXED(tap_range)(offset, stride_w, width, out_w, pad_w, &lo, &hi);
                        lo = lo > start ? lo : start;
                        hi = hi < end ? hi : end;
                        /* a constant stride lets the compiler vectorise the common cases */
                        if (stride_w == 1)
                            SUFFIXED(max_pool_tap)(row, 1, offset, (INDEX)(ih * width), lo, hi, best, arg);
                        else if (stride_w == 2)
                            SUFFIXED(max_pool_tap)(row, 2, offset, (INDEX)(ih * width), lo, hi, best, arg);
                        else
                            SUFFIXED(max_pool_tap)(row, stride_w, offset, (INDEX)(ih * width), lo, hi, best, arg);
                    }
                }
                SCALAR *y_row = y + p * plane_out + oh * out_w;
                int64_t *indices_row = indices + p * plane_out + oh * out_w;
                for (ptrdiff_t ow = start; ow < end; ++ow) {
                    y_row[ow] = best[ow];
                    indices_row[ow] = arg[ow];
                }
            }
        }
    }
}

void SUFFIXED(max_pool2d_backward)(const SCALAR *grad_y, const int64_t *indices, const pool_geometry *g,
                                   SCALAR *grad_x)
{
    const ptrdiff_t plane_in = g->height * g->width, plane_out = g->out_h * g->out_w;

    #pragma omp parallel for schedule(static) if (g->planes * plane_in > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t p = 0; p < g->planes; ++p) {
        SCALAR *gx = grad_x + p * plane_in;
        const SCALAR *gy = grad_y + p * plane_out;
        const int64_t *arg = indices + p * plane_out;
        memset(gx, 0, (size_t)plane_in * sizeof(SCALAR));
        for (ptrdiff_t k = 0; k < plane_out; ++k)
            if (arg[k] >= 0 && arg[k] < plane_in) gx[arg[k]] += gy[k];
    }
}

void SUFFIXED(avg_pool2d_forward)(const SCALAR *x, const pool_geometry *g, SCALAR *y)
{
    const ptrdiff_t height = g->height, width = g->width, out_h = g->out_h, out_w = g->out_w;
    const ptrdiff_t kernel_h = g->kernel_h, kernel_w = g->kernel_w, stride_h = g->stride_h, stride_w = g->stride_w;
    const ptrdiff_t pad_h = g->pad_h, pad_w = g->pad_w, plane_in = height * width, plane_out = out_h * out_w;
    const SCALAR inv_count = (SCALAR)1 / (SCALAR)(kernel_h * kernel_w);

    #pragma omp parallel for schedule(static) if (g->planes * plane_in > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t p = 0; p < g->planes; ++p) {
        const SCALAR *in = x + p * plane_in;
        for (ptrdiff_t oh = 0; oh < out_h; ++oh) {
            SCALAR *restrict sum = y + p * plane_out + oh * out_w;
            const ptrdiff_t top = oh * stride_h - pad_h;
            for (ptrdiff_t ow = 0; ow < out_w; ++ow) sum[ow] = 0;
            for (ptrdiff_t i = 0; i < kernel_h; ++i) {
                const ptrdiff_t ih = top + i;
                if (ih < 0 || ih >= height) continue;
                const SCALAR *row = in + ih * width;
                for (ptrdiff_t j = 0; j < kernel_w; ++j) {
                    const ptrdiff_t offset = j - pad_w;
                    ptrdiff_t lo, hi;
                    SUFFIXED(tap_range)(offset, stride_w, width, out_w, pad_w, &lo, &hi);
                    for (ptrdiff_t ow = lo; ow < hi; ++ow) sum[ow] += row[ow * stride_w + offset];
                }
            }
            for (ptrdiff_t ow = 0; ow < out_w; ++ow) sum[ow] *= inv_count;
        }
    }
}

void SUFFIXED(avg_pool2d_backward)(const SCALAR *grad_y, const pool_geometry *g, SCALAR *grad_x)
{
    const ptrdiff_t height = g->height, width = g->width, out_h = g->out_h, out_w = g->out_w;
    const ptrdiff_t kernel_h = g->kernel_h, kernel_w = g->kernel_w, stride_h = g->stride_h, stride_w = g->stride_w;
    const ptrdiff_t pad_h = g->pad_h, pad_w = g->pad_w, plane_in = height * width, plane_out = out_h * out_w;
    const SCALAR inv_count = (SCALAR)1 / (SCALAR)(kernel_h * kernel_w);

    #pragma omp parallel for schedule(static) if (g->planes * plane_in > FASTNN_PARALLEL_MIN_WORK)
    for (ptrdiff_t p = 0; p < g->planes; ++p) {
        SCALAR *gx = grad_x + p * plane_in;
        memset(gx, 0, (size_t)plane_in * sizeof(SCALAR));
        for (ptrdiff_t oh = 0; oh < out_h; ++oh) {
            const SCALAR *gy = grad_y + p * plane_out + oh * out_w;
            const ptrdiff_t top = oh * stride_h - pad_h;
            for (ptrdiff_t i = 0; i < kernel_h; ++i) {
                const ptrdiff_t ih = top + i;
                if (ih < 0 || ih >= height) continue;
                SCALAR *restrict row = gx + ih * width;
                for (ptrdiff_t j = 0; j < kernel_w; ++j) {
                    const ptrdiff_t offset = j - pad_w;
                    ptrdiff_t lo, hi;
                    SUFFIXED(tap_range)(offset, stride_w, width, out_w, pad_w, &lo, &hi);
                    /* one tap never hits a column twice, so this pass has no dependences */
                    for (ptrdiff_t ow = lo; ow < hi; ++ow) row[ow * stride_w + offset] += gy[ow] * inv_count;
                }
            }
        }
    }
}
