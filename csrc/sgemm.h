/* fastnn's own single-precision GEMM for AVX-512 CPUs: packed panels and an 8 x 32 register tile.
 *
 *     C (m x n) = alpha op(A) op(B) + beta C   (+ bias[i] on row i, then max(., 0) if relu)
 *
 * on row-major buffers, op(M) = M^T where trans_* is set; single-threaded (callers run one per
 * OpenMP thread). The same product as BLAS's sgemm, laid out the way BLIS and OpenBLAS do it:
 *
 *   for each block of NC = 4096 columns of op(B) and C:
 *   for each block of KC columns of op(A) (rows of op(B)):
 *       pack that block of op(B) into panels of NR = 32 columns, k-major (zero-padded)
 *       for each block of MC rows of op(A):
 *           pack it into panels of MR = 8 rows, k-major (zero-padded)
 *           for each B panel j, for each A panel r:
 *               the micro-kernel: 16 zmm accumulators += a[k, 0..7] (broadcast) * b[k, 0..31]
 *               over the KC block, then the epilogue (alpha, beta, bias, ReLU) into C
 *
 * The B panel (KC x 32 floats) stays in L1 while the A panels stream from L2. A last panel of
 * 16 columns or fewer runs a half-width kernel, so an odd n wastes at most 15 columns of work.
 *
 * Why it exists: the per-image convolution's GEMMs are small (tfconvnet's conv2: 64 x 196 x 800
 * per image), where scipy's OpenBLAS runs at ~75% of this kind of core's FMA peak; this kernel
 * runs the same shape at ~85% (bench/bench_gemm.py). The bias and the fused ReLU are applied
 * while the tile is in registers.
 *
 * fastnn_sgemm_available() is 0 on a CPU without AVX-512F or a compiler without the target
 * attribute; callers then use BLAS. Packing buffers are per thread (at most 4 MB of B panels and
 * 256 KB of A panels), grown on demand, kept for the thread's next call and freed when it exits.
 */
#ifndef FASTNN_SGEMM_H
#define FASTNN_SGEMM_H

#include <stddef.h>

int fastnn_sgemm_available(void);

/* Whether the convolution uses this kernel (default: where available; off to compare with BLAS).
 * A plain global of the extension module: its Cython module sets it at import, and again only
 * outside parallel regions. */
int fastnn_sgemm_enabled(void);
void fastnn_sgemm_set_enabled(int on);

/* 1 if a product of this shape is one this kernel runs faster than OpenBLAS: at least 32 x 64 with
 * depth 64. Smaller ones (a 5x5 convolution of one input channel: depth 25; LeNet's 16-channel
 * layer) lose to OpenBLAS's small-matrix kernels, which skip packing (tests/kernels,
 * bench/bench_conv.py). */
static inline int fastnn_sgemm_suits(int m, int n, int k)
{
    return m >= 32 && n >= 64 && k >= 64;
}

/* Returns 0, or -1 if a packing buffer could not be allocated or m is within 256 (n within 4096)
 * of INT_MAX: nothing written to C then, use BLAS. */
int fastnn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc, const float *row_bias, int relu);

/* The same product with op(A) packed once beforehand (reused across calls, e.g. a convolution's
 * weights for every image): fastnn_sgemm_pack_a writes fastnn_sgemm_packed_a_size(m, k) floats
 * that fastnn_sgemm_packed reads. */
ptrdiff_t fastnn_sgemm_packed_a_size(int m, int k);
void fastnn_sgemm_pack_a(int trans_a, int m, int k, const float *a, int lda, float *packed);
int fastnn_sgemm_packed(int m, int n, int k, float alpha, const float *packed_a, int trans_b, const float *b,
                        int ldb, float beta, float *c, int ldc, const float *row_bias, int relu);

#endif
