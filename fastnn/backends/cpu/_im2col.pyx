"""Cython bindings of csrc/im2col.c: im2col/col2im in the per-image and the batched layout, and
the layout epilogues around the convolution GEMMs. Outputs are allocated by the caller
(fastnn/backends/cpu/conv.py); shapes are checked here so that a wrong call raises instead of
writing out of bounds. The GIL is released while C runs."""
from cython cimport floating

from ._conv_geometry cimport conv_geometry, conv_geometry_of


cdef extern from "im2col.h" nogil:
    void im2col_f32(const float *x, const conv_geometry *g, float *cols, Py_ssize_t row_stride,
                    Py_ssize_t image_stride)
    void im2col_f64(const double *x, const conv_geometry *g, double *cols, Py_ssize_t row_stride,
                    Py_ssize_t image_stride)
    void col2im_f32(const float *cols, const conv_geometry *g, float *x, Py_ssize_t row_stride,
                    Py_ssize_t image_stride)
    void col2im_f64(const double *cols, const conv_geometry *g, double *x, Py_ssize_t row_stride,
                    Py_ssize_t image_stride)
    void cnhw_to_nchw_f32(const float *src, const float *bias, float *dst, Py_ssize_t batch,
                          Py_ssize_t channels, Py_ssize_t plane)
    void cnhw_to_nchw_f64(const double *src, const double *bias, double *dst, Py_ssize_t batch,
                          Py_ssize_t channels, Py_ssize_t plane)
    void nchw_to_cnhw_f32(const float *src, float *dst, float *channel_sum, Py_ssize_t batch,
                          Py_ssize_t channels, Py_ssize_t plane)
    void nchw_to_cnhw_f64(const double *src, double *dst, double *channel_sum, Py_ssize_t batch,
                          Py_ssize_t channels, Py_ssize_t plane)


cdef inline Py_ssize_t _numel(const Py_ssize_t *shape):
    return shape[0] * shape[1] * shape[2] * shape[3]


cdef void _strides(const conv_geometry *g, bint batched, Py_ssize_t *row_stride,
                   Py_ssize_t *image_stride) noexcept:
    cdef Py_ssize_t plane = g.out_h * g.out_w
    if batched:   # (C kH kW, N Ho Wo)
        row_stride[0] = g.batch * plane
        image_stride[0] = plane
    else:         # (N, C kH kW, Ho Wo)
        row_stride[0] = plane
        image_stride[0] = g.channels * g.kernel_h * g.kernel_w * plane


cdef Py_ssize_t _cols_size(const conv_geometry *g):
    return g.batch * g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w


def im2col(const floating[:, :, :, ::1] x, floating[::1] cols, kernel_size, stride, padding, dilation,
           bint batched):
    """Fill ``cols`` (flat) with the column matrix of ``x``: (N, C kH kW, Ho Wo), or
    (C kH kW, N Ho Wo) when ``batched``. See csrc/im2col.h for the index map."""
    cdef conv_geometry g = conv_geometry_of(x.shape, kernel_size, stride, padding, dilation)
    cdef Py_ssize_t row_stride, image_stride
    if cols.shape[0] != _cols_size(&g):
        raise ValueError(f"im2col: cols has {cols.shape[0]} elements, expected {_cols_size(&g)}")
    if cols.shape[0] == 0:
        return
    _strides(&g, batched, &row_stride, &image_stride)
    with nogil:
        if floating is float:
            im2col_f32(&x[0, 0, 0, 0], &g, &cols[0], row_stride, image_stride)
        else:
            im2col_f64(&x[0, 0, 0, 0], &g, &cols[0], row_stride, image_stride)


def col2im(const floating[::1] cols, floating[:, :, :, ::1] x, kernel_size, stride, padding, dilation,
           bint batched):
    """Overwrite ``x`` with the sum of every column entry placed back where im2col read it."""
    cdef conv_geometry g = conv_geometry_of(x.shape, kernel_size, stride, padding, dilation)
    cdef Py_ssize_t row_stride, image_stride
    if cols.shape[0] != _cols_size(&g):
        raise ValueError(f"col2im: cols has {cols.shape[0]} elements, expected {_cols_size(&g)}")
    if _numel(x.shape) == 0:
        return
    if cols.shape[0] == 0:  # unreachable for a valid geometry; keeps &cols[0] safe
        x[...] = 0
        return
    _strides(&g, batched, &row_stride, &image_stride)
    with nogil:
        if floating is float:
            col2im_f32(&cols[0], &g, &x[0, 0, 0, 0], row_stride, image_stride)
        else:
            col2im_f64(&cols[0], &g, &x[0, 0, 0, 0], row_stride, image_stride)


def cnhw_to_nchw(const floating[:, :, ::1] src, floating[:, :, ::1] dst, const floating[::1] bias=None):
    """dst[n, o, p] = src[o, n, p] + bias[o]: the GEMM output (O, N, P) to NCHW, bias in the epilogue."""
    cdef Py_ssize_t channels = src.shape[0], batch = src.shape[1], plane = src.shape[2]
    cdef const floating *bias_ptr = NULL
    if dst.shape[0] != batch or dst.shape[1] != channels or dst.shape[2] != plane:
        raise ValueError(f"cnhw_to_nchw: dst must be ({batch}, {channels}, {plane})")
    if bias is not None:
        if bias.shape[0] != channels:
            raise ValueError(f"cnhw_to_nchw: bias must have {channels} entries, got {bias.shape[0]}")
        if channels:
            bias_ptr = &bias[0]
    if batch * channels * plane == 0:
        return
    with nogil:
        if floating is float:
            cnhw_to_nchw_f32(&src[0, 0, 0], bias_ptr, &dst[0, 0, 0], batch, channels, plane)
        else:
            cnhw_to_nchw_f64(&src[0, 0, 0], bias_ptr, &dst[0, 0, 0], batch, channels, plane)


def nchw_to_cnhw(const floating[:, :, ::1] src, floating[:, :, ::1] dst, floating[::1] channel_sum=None):
    """dst[o, n, p] = src[n, o, p]; channel_sum[o] = sum of src[:, o, :] (the bias gradient)."""
    cdef Py_ssize_t batch = src.shape[0], channels = src.shape[1], plane = src.shape[2]
    cdef floating *sum_ptr = NULL
    if dst.shape[0] != channels or dst.shape[1] != batch or dst.shape[2] != plane:
        raise ValueError(f"nchw_to_cnhw: dst must be ({channels}, {batch}, {plane})")
    if channel_sum is not None:
        if channel_sum.shape[0] != channels:
            raise ValueError(f"nchw_to_cnhw: channel_sum must have {channels} entries")
        if batch * plane == 0:
            channel_sum[:] = 0
        if channels:
            sum_ptr = &channel_sum[0]
    if batch * channels * plane == 0:
        return
    with nogil:
        if floating is float:
            nchw_to_cnhw_f32(&src[0, 0, 0], &dst[0, 0, 0], sum_ptr, batch, channels, plane)
        else:
            nchw_to_cnhw_f64(&src[0, 0, 0], &dst[0, 0, 0], sum_ptr, batch, channels, plane)
