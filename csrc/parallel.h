/* Shared helpers of the C core. */
#ifndef FASTNN_PARALLEL_H
#define FASTNN_PARALLEL_H

#include <stddef.h>

/* Below this many elements touched, an OpenMP team costs more than it saves. */
#define FASTNN_PARALLEL_MIN_WORK 32768

/* Outputs o in [*lo, *hi) of a strided window read input index o * stride + offset inside
 * [0, size); outputs outside that range read padding. 0 <= *lo <= *hi <= out. */
static inline void fastnn_valid_range(ptrdiff_t offset, ptrdiff_t stride, ptrdiff_t size,
                                      ptrdiff_t out, ptrdiff_t *lo, ptrdiff_t *hi)
{
    ptrdiff_t first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    ptrdiff_t end = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
    if (first > out) first = out;
    if (end > out) end = out;
    if (end < first) end = first;
    *lo = first;
    *hi = end;
}

#endif
