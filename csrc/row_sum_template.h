/* SUFFIXED(row_sum) for one SCALAR type, for the kernel templates that sum rows (included once
 * per type and translation unit, like them). */

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
