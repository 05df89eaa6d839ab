"""Row-major GEMM over the BLAS that SciPy ships (``scipy.linalg.cython_blas``), float32 and float64.

BLAS is column-major; a row-major matrix is its transpose seen column-major. So the row-major
product C = op(A) op(B) is computed as the column-major product C^T = op(B)^T op(A)^T: same
buffers, operands swapped, m and n swapped.

Threads: fastnn runs every parallel loop, GEMMs included, on ONE pool (OpenMP, shared with
Numba's omp layer). A large product is cut into ``omp_get_max_threads()`` blocks of rows of C
(or of columns, when C is wider than tall), each computed by a single-threaded BLAS call on its
own OpenMP thread; SciPy's OpenBLAS itself is kept at one thread (``fastnn.threads``), so no
second pool spins between GEMMs while the im2col/col2im/pooling loops run.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.limits cimport INT_MAX
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

cimport openmp


cdef extern from "sgemm.h" nogil:
    int fastnn_sgemm_available()
    int fastnn_sgemm_enabled()
    void fastnn_sgemm_set_enabled(int on)
    int fastnn_sgemm_suits(int m, int n, int k)
    int fastnn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc, const float *row_bias, int relu)


# below this many multiply-adds a GEMM runs on the calling thread (waking the pool costs more)
cdef Py_ssize_t SPLIT_MIN_MACS = 1 << 18
cdef bint _split = False   # set by fastnn.threads once SciPy's OpenBLAS is limited to one thread
cdef bint _blas_one_thread = False   # SciPy's OpenBLAS runs one thread (set by fastnn.threads)
fastnn_sgemm_set_enabled(fastnn_sgemm_available())     # decided once, before any parallel region


def set_own_sgemm(bint on):
    """float32 products of a suitable shape (``fastnn_sgemm_suits``) on fastnn's AVX-512 sgemm
    (csrc/sgemm.c, where the CPU has it) or all on BLAS; returns the previous setting."""
    previous = bool(fastnn_sgemm_enabled())
    fastnn_sgemm_set_enabled(on)
    return previous


def own_sgemm_enabled():
    return bool(fastnn_sgemm_enabled())


cdef (Py_ssize_t, Py_ssize_t, Py_ssize_t) _product_shape(
        str op, Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t c0, Py_ssize_t c1,
        bint trans_a, bint trans_b) except *:
    """(m, n, k) of out (m x n) = op(a) op(b) for a (a0, a1), b (b0, b1), out (c0, c1); a
    ValueError naming ``op`` unless the shapes agree."""
    cdef Py_ssize_t m = a1 if trans_a else a0
    cdef Py_ssize_t k = a0 if trans_a else a1
    cdef Py_ssize_t k_b = b1 if trans_b else b0
    cdef Py_ssize_t n = b0 if trans_b else b1
    if k != k_b or c0 != m or c1 != n:
        raise ValueError(f"{op}: op(a) is ({m}, {k}) and op(b) is ({k_b}, {n}); out must be ({m}, {n}), "
                         f"got ({c0}, {c1})")
    return m, n, k


cdef Py_ssize_t _leading_dimension(name, const float[:, :] m) except -1:
    """Elements between rows of ``m``, whose rows must each be contiguous."""
    cdef Py_ssize_t size = sizeof(float)
    if m.shape[1] > 1 and m.strides[1] != size:
        raise ValueError(f"own_sgemm: the rows of {name} must be contiguous (stride {m.strides[1]} bytes)")
    if m.shape[0] <= 1:
        return max(m.shape[1], 1)
    if m.strides[0] % size or m.strides[0] < m.shape[1] * size:
        raise ValueError(f"own_sgemm: {name} has overlapping or misaligned rows (stride {m.strides[0]} bytes)")
    return max(m.strides[0] // size, 1)


def own_sgemm(const float[:, :] a not None, const float[:, :] b not None, float[:, :] out not None,
              bint trans_a=False, bint trans_b=False, float alpha=1.0, float beta=0.0,
              const float[::1] bias=None, bint relu=False):
    """out = alpha op(a) op(b) + beta out (+ bias[i] on row i, then max(., 0) with relu) on fastnn's
    sgemm alone, whatever the shape (for its tests and benchmarks; ``gemm`` picks the kernel).
    Rows of a, b and out may be strided (views of wider arrays); releases the GIL."""
    if not fastnn_sgemm_available():
        raise RuntimeError("own_sgemm: this CPU or build has no AVX-512 sgemm kernel")
    cdef Py_ssize_t m, n, k
    m, n, k = _product_shape("own_sgemm", a.shape[0], a.shape[1], b.shape[0], b.shape[1], out.shape[0],
                             out.shape[1], trans_a, trans_b)
    if bias is not None and bias.shape[0] != m:
        raise ValueError(f"own_sgemm: bias must have shape ({m},), got ({bias.shape[0]},)")
    cdef Py_ssize_t lda = _leading_dimension("a", a)
    cdef Py_ssize_t ldb = _leading_dimension("b", b)
    cdef Py_ssize_t ldc = _leading_dimension("out", out)
    if max(m, n, k, lda, ldb, ldc) > INT_MAX or m > INT_MAX - 256 or n > INT_MAX - 4096:
        raise ValueError("own_sgemm: a dimension exceeds the 32-bit range the kernel takes (m <= 2**31 - 257, "
                         "n <= 2**31 - 4097)")
    if m == 0 or n == 0:
        return
    cdef const float *bias_ptr = &bias[0] if bias is not None else NULL
    cdef const float *a_ptr = &a[0, 0] if a.shape[0] and a.shape[1] else NULL
    cdef const float *b_ptr = &b[0, 0] if b.shape[0] and b.shape[1] else NULL
    cdef int status
    with nogil:
        status = fastnn_sgemm(trans_a, trans_b, <int> m, <int> n, <int> k, alpha, a_ptr, <int> lda,
                              b_ptr, <int> ldb, beta, &out[0, 0], <int> ldc, bias_ptr, relu)
    if status != 0:
        raise MemoryError("own_sgemm: could not allocate the packing buffer")


def set_split(bint enabled):
    """Let GEMMs run as OpenMP-partitioned single-threaded BLAS calls (True) or as one BLAS call."""
    global _split
    _split = enabled


def get_split():
    return _split


def set_blas_single_threaded(bint one_thread):
    """Tell the GEMMs that SciPy's OpenBLAS runs one thread (fastnn.threads limited it): then every
    float32 product may use fastnn's single-threaded sgemm, cut across threads or not."""
    global _blas_one_thread
    _blas_one_thread = one_thread


cdef void gemv_colmajor(char trans, int m, int n, floating alpha, const floating *a, int lda,
                        const floating *x, int incx, floating beta, floating *y, int incy) noexcept nogil:
    """y = alpha op(A) x + beta y for the column-major (m x n) A; x and y with strides incx, incy."""
    if floating is float:
        sgemv(&trans, &m, &n, &alpha, <float *> a, &lda, <float *> x, &incx, &beta, y, &incy)
    else:
        dgemv(&trans, &m, &n, &alpha, <double *> a, &lda, <double *> x, &incx, &beta, y, &incy)


cdef void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                        const floating *a, int lda, const floating *b, int ldb, floating beta,
                        floating *c, int ldc, bint single_threaded) noexcept nogil:
    """C (m x n) = alpha op(A) op(B) + beta C on row-major buffers; op(A) is (m x k), op(B) (k x n).

    float32 products of a shape that suits it run on fastnn's sgemm (csrc/sgemm.c) where the call
    is ``single_threaded`` anyway (one block of a cut product, or a small one); a multi-threaded
    BLAS call is not replaced by a single-threaded kernel.

    A product with one row or one column of C is a matrix-vector product: it goes to gemv,
    which reads the matrix once at memory speed (BLAS's gemm packs it first; for the batch-1
    forward of a 3136 x 1024 dense layer that is 4x slower)."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef char not_ta = b'N' if trans_a else b'T'
    if m == 1:      # c^T = op(B)^T a^T; row-major B (k x n) is column-major (n x k), and so on
        gemv_colmajor(tb, k if trans_b else n, n if trans_b else k, alpha,
                      b, ldb, a, lda if trans_a else 1, beta, c, 1)
    elif n == 1:    # c = op(A) b, b a column of op(B) (stride ldb unless B is stored transposed);
                    # c is a column of C, ldc apart (a one-column block of a product cut by columns)
        gemv_colmajor(not_ta, m if trans_a else k, k if trans_a else m, alpha,
                      a, lda, b, 1 if trans_b else ldb, beta, c, ldc)
    elif floating is float:
        if single_threaded and fastnn_sgemm_enabled() and fastnn_sgemm_suits(m, n, k):
            if fastnn_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, 0) == 0:
                return
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> b, &ldb, <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> b, &ldb, <double *> a, &lda, &beta, c, &ldc)


def gemm(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] out,
         bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0):
    """out = alpha op(a) op(b) + beta out, with op(M) = M.T where trans_* is set; releases the GIL.

    a, b, out: C-contiguous 2-D arrays of one dtype (float32 or float64); out is written in place.
    """
    cdef Py_ssize_t m, n, k
    cdef Py_ssize_t i, j
    m, n, k = _product_shape("gemm", a.shape[0], a.shape[1], b.shape[0], b.shape[1], out.shape[0], out.shape[1],
                             trans_a, trans_b)
    if max(a.shape[0], a.shape[1], b.shape[0], b.shape[1]) > INT_MAX:
        raise ValueError("gemm: a dimension exceeds the 32-bit BLAS integer range")
    if m == 0 or n == 0:
        return
    if k == 0:  # BLAS would reject a zero leading dimension; the product is empty
        for i in range(m):
            for j in range(n):
                out[i, j] = 0 if beta == 0 else <floating> (beta * out[i, j])
        return
    cdef int parts = openmp.omp_get_max_threads() if _split and m * n * k >= SPLIT_MIN_MACS else 1
    cdef int lda = <int> a.shape[1]
    cdef int ldb = <int> b.shape[1]
    cdef int part, start, stop
    cdef bint by_rows = m >= n
    cdef Py_ssize_t extent = m if by_rows else n
    cdef Py_ssize_t step
    if parts > 1:
        step = (extent + parts - 1) // parts
        step = (step + 15) // 16 * 16          # blocks of whole 16-wide register tiles
        parts = <int> ((extent + step - 1) // step)
    if parts <= 1:
        with nogil:
            gemm_rowmajor(trans_a, trans_b, <int> m, <int> n, <int> k, <floating> alpha,
                          &a[0, 0], lda, &b[0, 0], ldb, <floating> beta, &out[0, 0], <int> n,
                          _split or _blas_one_thread or m * n * k < SPLIT_MIN_MACS)
        return
    for part in prange(parts, nogil=True, num_threads=parts, schedule="static", chunksize=1):
        start = <int> (part * step)
        stop = <int> min(extent, start + step)
        if by_rows:   # rows start:stop of C = rows of op(A) times op(B)
            gemm_rowmajor(trans_a, trans_b, stop - start, <int> n, <int> k, <floating> alpha,
                          &a[0, start] if trans_a else &a[start, 0], lda, &b[0, 0], ldb, <floating> beta,
                          &out[start, 0], <int> n, True)
        else:         # columns start:stop of C = op(A) times columns of op(B)
            gemm_rowmajor(trans_a, trans_b, <int> m, stop - start, <int> k, <floating> alpha,
                          &a[0, 0], lda, &b[start, 0] if trans_b else &b[0, start], ldb, <floating> beta,
                          &out[0, start], <int> n, True)
