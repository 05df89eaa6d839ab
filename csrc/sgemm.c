/* fastnn's packed AVX-512 sgemm; see sgemm.h. */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sgemm.h"

#include "avx512.h"

#define MR 8        /* rows of C per micro-tile (broadcast from the A panel) */
#define NR 32       /* columns of C per micro-tile (two zmm vectors of the B panel) */
#define KC 256      /* depth of one packed block: a B panel is KC x NR floats = 32 KB */
#define MC 256      /* rows of op(A) packed at a time: 256 KB of A panels, in L2 */
#define NC 4096     /* columns of op(B) packed at a time: at most 4 MB of B panels per thread */

static inline int min_int(int a, int b) { return a < b ? a : b; }

/* A thread's packing buffer is freed when the thread exits (a Python thread calling a dense layer
 * has its own), through this key's destructor; the _Thread_local copies are the fast path. */
static pthread_key_t buffer_key;
static pthread_once_t buffer_key_once = PTHREAD_ONCE_INIT;
static int buffer_key_ok = 0;

static void make_buffer_key(void)
{
    buffer_key_ok = pthread_key_create(&buffer_key, free) == 0;
}

/* The thread's packing buffer, at least ``floats`` long and 64-byte aligned (NULL if out of memory). */
static float *packing_buffer(size_t floats)
{
    static _Thread_local float *buffer = NULL;
    static _Thread_local size_t capacity = 0;
    if (floats > capacity) {
        pthread_once(&buffer_key_once, make_buffer_key);
        if (!buffer_key_ok)
            return NULL;
        free(buffer);
        size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
        buffer = aligned_alloc(64, bytes);
        capacity = buffer ? bytes / sizeof(float) : 0;
        if (pthread_setspecific(buffer_key, buffer) != 0) {
            free(buffer);
            buffer = NULL;
            capacity = 0;
        }
    }
    return buffer;
}

#if FASTNN_HAVE_AVX512_KERNEL

/* The epilogue of one row of the tile: c = alpha acc + beta c (+ bias) (ReLU), beta == 0 never
 * reading c; ``mask`` selects the columns that exist. */
__attribute__((target("avx512f"), always_inline))
static inline void store_row(float *c, __mmask16 mask, __m512 acc, __m512 alpha, float beta, int add_bias,
                             float bias, int relu)
{
    __m512 v = _mm512_mul_ps(acc, alpha);
    if (beta != 0)
        v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c), v);
    if (add_bias)
        v = _mm512_add_ps(v, _mm512_set1_ps(bias));
    if (relu)   /* max(v, 0) with NaN kept, like relu_forward of activation: v < 0 ? 0 : v */
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
    _mm512_mask_storeu_ps(c, mask, v);
}

/* C tile (mr x nr, nr <= 16 * halves) from an A panel and a B panel of depth kc. */
__attribute__((target("avx512f"), always_inline))
static inline void micro_tile(const int halves, int kc, const float *restrict ap, const float *restrict bp,
                              float *c, int ldc, int mr, int nr, float alpha, float beta,
                              const float *bias, int relu)
{
    __m512 c0[MR], c1[MR];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
    }
    #pragma GCC unroll 4
    for (int kk = 0; kk < kc; ++kk) {
        const __m512 b0 = _mm512_load_ps(bp + (ptrdiff_t)kk * NR);
        const __m512 b1 = halves == 2 ? _mm512_load_ps(bp + (ptrdiff_t)kk * NR + 16) : b0;
        #pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            const __m512 a = _mm512_set1_ps(ap[(ptrdiff_t)kk * MR + i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            if (halves == 2)
                c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    const __m512 va = _mm512_set1_ps(alpha);
    /* constant trip count, rows past mr skipped: the accumulators stay in registers (a loop to mr
     * would index them at run time and put all 16 on the stack) */
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        if (i >= mr)
            break;
        const float bi = bias ? bias[i] : 0;
        store_row(c + (ptrdiff_t)i * ldc, m0, c0[i], va, beta, bias != NULL, bi, relu);
        if (halves == 2)
            store_row(c + (ptrdiff_t)i * ldc + 16, m1, c1[i], va, beta, bias != NULL, bi, relu);
    }
}

__attribute__((target("avx512f"), noinline))
static void tile_full(int kc, const float *ap, const float *bp, float *c, int ldc, int mr, int nr, float alpha,
                      float beta, const float *bias, int relu)
{
    micro_tile(2, kc, ap, bp, c, ldc, mr, nr, alpha, beta, bias, relu);
}

__attribute__((target("avx512f"), noinline))
static void tile_half(int kc, const float *ap, const float *bp, float *c, int ldc, int mr, int nr, float alpha,
                      float beta, const float *bias, int relu)
{
    micro_tile(1, kc, ap, bp, c, ldc, mr, nr, alpha, beta, bias, relu);
}

/* r[i] = column i of the 16 x 16 block whose rows are r[0..15]. */
__attribute__((target("avx512f"), always_inline))
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {           /* interleave row pairs */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {           /* 4 x 4 blocks within each 128-bit lane */
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int h = 0; h < 16; h += 8)             /* then the 128-bit lanes themselves */
        for (int i = 0; i < 4; ++i) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
        }
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}

/* Rows [i0, i0 + mc) and depth [k0, k0 + kc) of op(A) as panels of MR rows, ``stride`` floats
 * apart: panel[p stride + kk MR + i] = op(A)[i0 + p MR + i, k0 + kk], zero beyond row i0 + mc. */
__attribute__((target("avx512f")))
static void pack_a(int trans, const float *a, int lda, int i0, int mc, int k0, int kc, float *panel,
                   ptrdiff_t stride)
{
    for (int p0 = 0; p0 < mc; p0 += MR, panel += stride) {
        const int mr = min_int(MR, mc - p0);
        if (trans) {            /* op(A)[i, k] = a[k lda + i]: MR consecutive floats per k */
            for (int kk = 0; kk < kc; ++kk) {
                const float *src = a + (ptrdiff_t)(k0 + kk) * lda + i0 + p0;
                float *dst = panel + (ptrdiff_t)kk * MR;
                for (int i = 0; i < mr; ++i) dst[i] = src[i];
                for (int i = mr; i < MR; ++i) dst[i] = 0;
            }
        } else {                /* op(A)[i, k] = a[i lda + k]: 8 x 16 blocks transposed in registers */
            for (int kk0 = 0; kk0 < kc; kk0 += 16) {
                const int depth = min_int(16, kc - kk0);
                const __mmask16 in_depth = (__mmask16)(depth == 16 ? 0xFFFF : (1u << depth) - 1);
                __m512 r[16];
                for (int i = 0; i < 16; ++i)
                    r[i] = i < mr ? _mm512_maskz_loadu_ps(in_depth, a + (ptrdiff_t)(i0 + p0 + i) * lda + k0 + kk0)
                                  : _mm512_setzero_ps();
                transpose16(r);
                for (int kk = 0; kk < depth; ++kk)   /* the first MR lanes of column kk */
                    _mm256_storeu_ps(panel + (ptrdiff_t)(kk0 + kk) * MR, _mm512_castps512_ps256(r[kk]));
            }
        }
    }
}

/* Depth [k0, k0 + kc) of op(B), all n columns, as panels of NR columns:
 * panel[(q kc + kk) NR + j] = op(B)[k0 + kk, q NR + j], zero beyond column n. */
__attribute__((target("avx512f")))
static void pack_b(int trans, const float *b, int ldb, int n, int k0, int kc, float *panel)
{
    for (int q0 = 0; q0 < n; q0 += NR, panel += (ptrdiff_t)kc * NR) {
        const int nr = min_int(NR, n - q0);
        if (trans) {            /* op(B)[k, j] = b[j ldb + k]: 16 x 16 blocks transposed in registers */
            for (int j0 = 0; j0 < NR; j0 += 16)
                for (int kk0 = 0; kk0 < kc; kk0 += 16) {
                    const int rows = nr - j0 < 16 ? (nr - j0 > 0 ? nr - j0 : 0) : 16, depth = min_int(16, kc - kk0);
                    const __mmask16 in_depth = (__mmask16)(depth == 16 ? 0xFFFF : (1u << depth) - 1);
                    __m512 r[16];
                    for (int j = 0; j < 16; ++j)
                        r[j] = j < rows ? _mm512_maskz_loadu_ps(in_depth, b + (ptrdiff_t)(q0 + j0 + j) * ldb + k0 + kk0)
                                        : _mm512_setzero_ps();
                    transpose16(r);
                    for (int kk = 0; kk < depth; ++kk)
                        _mm512_store_ps(panel + (ptrdiff_t)(kk0 + kk) * NR + j0, r[kk]);
                }
        } else {                /* op(B)[k, j] = b[k ldb + j]: two (masked) vector copies per k */
            const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
            const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
            const float *src = b + (ptrdiff_t)k0 * ldb + q0;
            for (int kk = 0; kk < kc; ++kk, src += ldb) {
                _mm512_store_ps(panel + (ptrdiff_t)kk * NR, _mm512_maskz_loadu_ps(m0, src));
                _mm512_store_ps(panel + (ptrdiff_t)kk * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
        }
    }
}

int fastnn_sgemm_available(void)
{
    return fastnn_cpu_runs_avx512();
}

static int enabled = -1;     /* -1: not decided yet (the CPU is asked on first use) */

int fastnn_sgemm_enabled(void)
{
    if (enabled < 0)
        enabled = fastnn_sgemm_available();
    return enabled;
}

void fastnn_sgemm_set_enabled(int on)
{
    enabled = on && fastnn_sgemm_available();
}

ptrdiff_t fastnn_sgemm_packed_a_size(int m, int k)
{
    return ((ptrdiff_t)m + MR - 1) / MR * MR * (k > 0 ? k : 0);
}

void fastnn_sgemm_pack_a(int trans_a, int m, int k, const float *a, int lda, float *packed)
{
    if (m > 0 && k > 0)
        pack_a(trans_a, a, lda, 0, m, 0, k, packed, (ptrdiff_t)k * MR);
}

/* The depth blocks of a product: ``count`` blocks of ``depth`` (the last one shorter). */
static void depth_blocks(int k, int *count, int *depth)
{
    *count = k > 0 ? (k + KC - 1) / KC : 1;
    *depth = k > 0 ? (k + *count - 1) / *count : 0;      /* balanced: 800 = 4 x 200, not 3 x 256 + 32 */
}

/* Rows [i0, i0 + mc) of C for depth block [k0, k0 + kc): A panels ``a_stride`` floats apart
 * (their first element at depth k0), B panels packed for that block. */
__attribute__((target("avx512f")))
static void block_product(int mc, int n, int kc, const float *a_panels, ptrdiff_t a_stride, const float *b_panels,
                          float alpha, float beta, float *c, int ldc, const float *row_bias, int relu)
{
    for (int q = 0; q * NR < n; ++q) {
        const int nr = min_int(NR, n - q * NR);
        const float *bp = b_panels + (ptrdiff_t)q * kc * NR;
        for (int p0 = 0; p0 < mc; p0 += MR) {
            const int mr = min_int(MR, mc - p0);
            float *tile = c + (ptrdiff_t)p0 * ldc + q * NR;
            const float *bias = row_bias ? row_bias + p0 : NULL;
            const float *ap = a_panels + (ptrdiff_t)(p0 / MR) * a_stride;
            if (nr > 16)
                tile_full(kc, ap, bp, tile, ldc, mr, nr, alpha, beta, bias, relu);
            else
                tile_half(kc, ap, bp, tile, ldc, mr, nr, alpha, beta, bias, relu);
        }
    }
}

/* C[:, :n] for n <= NC columns. op(A) comes packed (``packed_a``: all rows, full depth, from
 * fastnn_sgemm_pack_a) or is packed here from (trans_a, a, lda), MC rows at a time. */
static int product_columns(int trans_a, const float *a, int lda, const float *packed_a, int trans_b,
                           const float *b, int ldb, int m, int n, int k, float alpha, float beta, float *c, int ldc,
                           const float *row_bias, int relu)
{
    int k_blocks, kc_max;
    depth_blocks(k, &k_blocks, &kc_max);
    const size_t b_size = (size_t)((n + NR - 1) / NR) * NR * kc_max;
    const size_t a_size = packed_a ? 0 : (size_t)((min_int(m, MC) + MR - 1) / MR) * MR * kc_max;
    float *b_panels = packing_buffer(b_size + a_size + 16);
    if (!b_panels)
        return -1;
    float *a_panels = b_panels + (b_size + 15) / 16 * 16;
    for (int kb = 0; kb < k_blocks; ++kb) {
        const int k0 = kb * kc_max, kc = min_int(kc_max, k - k0), last = kb == k_blocks - 1;
        if (kc > 0)
            pack_b(trans_b, b, ldb, n, k0, kc, b_panels);
        for (int i0 = 0; i0 < m; i0 += MC) {
            const int mc = min_int(MC, m - i0);
            const float *panels = a_panels;
            ptrdiff_t stride = (ptrdiff_t)kc * MR;
            if (packed_a) {        /* MC is a multiple of MR: row i0 starts panel i0 / MR */
                stride = (ptrdiff_t)k * MR;
                panels = packed_a + (ptrdiff_t)(i0 / MR) * stride + (ptrdiff_t)k0 * MR;
            } else if (kc > 0) {
                pack_a(trans_a, a, lda, i0, mc, k0, kc, a_panels, stride);
            }
            /* the first block applies beta, later ones accumulate; the last adds the bias and the ReLU */
            block_product(mc, n, kc, panels, stride, b_panels, alpha, kb == 0 ? beta : 1.0f,
                          c + (ptrdiff_t)i0 * ldc, ldc, last && row_bias ? row_bias + i0 : NULL, relu && last);
        }
    }
    return 0;
}

/* Sizes whose loops (steps of MC rows, NC columns) would pass INT_MAX: left to BLAS. */
static int too_large(int m, int n)
{
    return m > INT_MAX - MC || n > INT_MAX - NC;
}

/* The product in blocks of NC columns: op(B)[:, j0:] and C[:, j0:]. Only the first block can fail
 * (it asks for the largest buffer), so a -1 always means that C is untouched: callers redo it with BLAS. */
static int product(int trans_a, const float *a, int lda, const float *packed_a, int trans_b, const float *b,
                   int ldb, int m, int n, int k, float alpha, float beta, float *c, int ldc, const float *row_bias,
                   int relu)
{
    if (m <= 0 || n <= 0)
        return 0;
    if (too_large(m, n))
        return -1;
    for (int j0 = 0; j0 < n; j0 += NC) {
        const float *bj = trans_b ? b + (ptrdiff_t)j0 * ldb : b + j0;
        if (product_columns(trans_a, a, lda, packed_a, trans_b, bj, ldb, m, min_int(NC, n - j0), k, alpha, beta,
                            c + j0, ldc, row_bias, relu) != 0)
            return -1;
    }
    return 0;
}

int fastnn_sgemm_packed(int m, int n, int k, float alpha, const float *packed_a, int trans_b, const float *b,
                        int ldb, float beta, float *c, int ldc, const float *row_bias, int relu)
{
    return product(0, NULL, 0, packed_a, trans_b, b, ldb, m, n, k, alpha, beta, c, ldc, row_bias, relu);
}

int fastnn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc, const float *row_bias, int relu)
{
    return product(trans_a, a, lda, NULL, trans_b, b, ldb, m, n, k, alpha, beta, c, ldc, row_bias, relu);
}

#else   /* no AVX-512 kernel in this build: callers use BLAS */

int fastnn_sgemm_available(void) { return 0; }

int fastnn_sgemm_enabled(void) { return 0; }

void fastnn_sgemm_set_enabled(int on) { (void)on; }

int fastnn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc, const float *row_bias, int relu)
{
    (void)trans_a; (void)trans_b; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda;
    (void)b; (void)ldb; (void)beta; (void)c; (void)ldc; (void)row_bias; (void)relu;
    (void)packing_buffer;
    return -1;
}

ptrdiff_t fastnn_sgemm_packed_a_size(int m, int k) { (void)m; (void)k; return 0; }

void fastnn_sgemm_pack_a(int trans_a, int m, int k, const float *a, int lda, float *packed)
{
    (void)trans_a; (void)m; (void)k; (void)a; (void)lda; (void)packed;
}

int fastnn_sgemm_packed(int m, int n, int k, float alpha, const float *packed_a, int trans_b, const float *b,
                        int ldb, float beta, float *c, int ldc, const float *row_bias, int relu)
{
    (void)m; (void)n; (void)k; (void)alpha; (void)packed_a; (void)trans_b; (void)b; (void)ldb; (void)beta;
    (void)c; (void)ldc; (void)row_bias; (void)relu;
    return -1;
}

#endif
