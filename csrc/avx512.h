/* The AVX-512 kernels of the C core (sgemm.c, direct_conv.c, winograd_conv.c): whether this build
 * compiles them (x86-64 with GCC or Clang, which take per-function target("avx512f") attributes,
 * so the rest of the build stays generic x86-64), and whether this CPU runs them. */
#ifndef FASTNN_AVX512_H
#define FASTNN_AVX512_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTNN_HAVE_AVX512_KERNEL 1
#include <immintrin.h>
#else
#define FASTNN_HAVE_AVX512_KERNEL 0
#endif

/* 1 if the AVX-512 kernels are compiled in and the CPU has AVX-512F. */
static inline int fastnn_cpu_runs_avx512(void)
{
#if FASTNN_HAVE_AVX512_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
#else
    return 0;
#endif
}

#endif
