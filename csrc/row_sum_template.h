/* SUFFIXED(row_sum) and SUFFIXED(sum_thread_partials) for one SCALAR type, for the kernel templates
 * that sum rows and per-thread partial sums (included once per type and translation unit, like them). */

/* Sum of a row: 8 independent partial sums (vectorised, and more accurate than one running sum). */
static inline double SUFFIXED(row_sum)(const SCALAR *a, ptrdiff_t len)
{
    SCALAR partial[8] = {0};
    ptrdiff_t p = 0;
    for (; p + 8 <= len; p += 8)
        for (int lane = 0; lane < 8; ++lane) partial[lane] += a[p + lane];
    double sum = 0;
    for (int lane = 0; lane < 8; ++lane) sum += partial[lane];
    for (; p < len; ++p) sum += a[p];
    return sum;
}

/* out[o] = sum over the team's threads t, in thread order, of partial[t n + o] (the per-thread bias
 * gradients of the convolution kernels): an orphaned omp for, called inside their parallel region
 * after the barrier that completes the partials. */
static inline void SUFFIXED(sum_thread_partials)(const double *partial, int team, ptrdiff_t n, SCALAR *out)
{
    #pragma omp for schedule(static)
    for (ptrdiff_t o = 0; o < n; ++o) {
        double sum = 0;
        for (int t = 0; t < team; ++t) sum += partial[(ptrdiff_t)t * n + o];
        out[o] = (SCALAR)sum;
    }
}
