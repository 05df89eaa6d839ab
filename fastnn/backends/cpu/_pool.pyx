"""Cython bindings of csrc/pool.c: max pooling with int64 argmax indices and average pooling
(count_include_pad=True), float32 and float64. Outputs are allocated by the caller
(fastnn/backends/cpu/pool.py); shapes are checked here. The GIL is released while C runs."""
from cython cimport floating
from libc.stdint cimport INT32_MAX, int64_t


cdef extern from "pool.h" nogil:
    ctypedef struct pool_geometry:
        Py_ssize_t planes, height, width
        Py_ssize_t kernel_h, kernel_w
        Py_ssize_t stride_h, stride_w
        Py_ssize_t pad_h, pad_w
        Py_ssize_t out_h, out_w

    void max_pool2d_forward_f32(const float *x, const pool_geometry *g, float *y, int64_t *indices)
    void max_pool2d_forward_f64(const double *x, const pool_geometry *g, double *y, int64_t *indices)
    void max_pool2d_backward_f32(const float *grad_y, const int64_t *indices, const pool_geometry *g,
                                 float *grad_x)
    void max_pool2d_backward_f64(const double *grad_y, const int64_t *indices, const pool_geometry *g,
                                 double *grad_x)
    void avg_pool2d_forward_f32(const float *x, const pool_geometry *g, float *y)
    void avg_pool2d_forward_f64(const double *x, const pool_geometry *g, double *y)
    void avg_pool2d_backward_f32(const float *grad_y, const pool_geometry *g, float *grad_x)
    void avg_pool2d_backward_f64(const double *grad_y, const pool_geometry *g, double *grad_x)


cdef inline tuple _shape4(const Py_ssize_t *shape):
    return (shape[0], shape[1], shape[2], shape[3])


cdef pool_geometry _geometry(str op, const Py_ssize_t *x_shape, const Py_ssize_t *y_shape, kernel_size,
                             stride, padding) except *:
    cdef pool_geometry g
    g.planes = x_shape[0] * x_shape[1]
    g.height, g.width = x_shape[2], x_shape[3]
    g.kernel_h, g.kernel_w = kernel_size
    g.stride_h, g.stride_w = stride
    g.pad_h, g.pad_w = padding
    if min(g.kernel_h, g.kernel_w, g.stride_h, g.stride_w) < 1 or min(g.pad_h, g.pad_w) < 0:
        raise ValueError(f"{op}: invalid geometry kernel_size={kernel_size}, stride={stride}, padding={padding}")
    if g.height * g.width > INT32_MAX:  # the float32 max-pool scan keeps 32-bit plane indices
        raise ValueError(f"{op}: an input plane of {g.height} x {g.width} exceeds 2^31 elements")
    g.out_h = (g.height + 2 * g.pad_h - g.kernel_h) // g.stride_h + 1
    g.out_w = (g.width + 2 * g.pad_w - g.kernel_w) // g.stride_w + 1
    expected = (x_shape[0], x_shape[1], g.out_h, g.out_w)
    if _shape4(y_shape) != expected:
        raise ValueError(f"{op}: output must have shape {expected}, got {_shape4(y_shape)}")
    return g


cdef inline Py_ssize_t _numel(const Py_ssize_t *shape):
    return shape[0] * shape[1] * shape[2] * shape[3]


def max_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                       int64_t[:, :, :, ::1] indices, kernel_size, stride, padding):
    """y = max over each window (padding = -inf); indices = flat H*W position of the maximum."""
    cdef pool_geometry g = _geometry("max_pool2d_forward", x.shape, y.shape,
                                     kernel_size, stride, padding)
    if _shape4(indices.shape) != _shape4(y.shape):
        raise ValueError("max_pool2d_forward: indices must have the output's shape")
    if _numel(y.shape) == 0:
        return
    with nogil:
        if floating is float:
            max_pool2d_forward_f32(&x[0, 0, 0, 0], &g, &y[0, 0, 0, 0], &indices[0, 0, 0, 0])
        else:
            max_pool2d_forward_f64(&x[0, 0, 0, 0], &g, &y[0, 0, 0, 0], &indices[0, 0, 0, 0])


def max_pool2d_backward(const floating[:, :, :, ::1] grad_y, const int64_t[:, :, :, ::1] indices,
                        floating[:, :, :, ::1] grad_x):
    """grad_x[n, c].flat[indices[n, c, i, j]] += grad_y[n, c, i, j]  (grad_x is overwritten).

    Only the plane sizes matter here, so no window geometry is needed."""
    cdef pool_geometry g
    if grad_y.shape[0] != grad_x.shape[0] or grad_y.shape[1] != grad_x.shape[1] \
            or _shape4(indices.shape) != _shape4(grad_y.shape):
        raise ValueError(f"max_pool2d_backward: grad_y {_shape4(grad_y.shape)} and indices "
                         f"{_shape4(indices.shape)} must match grad_x {_shape4(grad_x.shape)} in N, C")
    g.planes = grad_x.shape[0] * grad_x.shape[1]
    g.height, g.width = grad_x.shape[2], grad_x.shape[3]
    g.out_h, g.out_w = grad_y.shape[2], grad_y.shape[3]
    g.kernel_h = g.kernel_w = g.stride_h = g.stride_w = 1  # unused by the scatter
    g.pad_h = g.pad_w = 0
    if _numel(grad_x.shape) == 0:
        return
    if _numel(grad_y.shape) == 0:
        grad_x[...] = 0
        return
    with nogil:
        if floating is float:
            max_pool2d_backward_f32(&grad_y[0, 0, 0, 0], &indices[0, 0, 0, 0], &g, &grad_x[0, 0, 0, 0])
        else:
            max_pool2d_backward_f64(&grad_y[0, 0, 0, 0], &indices[0, 0, 0, 0], &g, &grad_x[0, 0, 0, 0])


def avg_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, kernel_size, stride, padding):
    """y = sum over each window / (kH kW), padding counted as zeros."""
    cdef pool_geometry g = _geometry("avg_pool2d_forward", x.shape, y.shape,
                                     kernel_size, stride, padding)
    if _numel(y.shape) == 0:
        return
    with nogil:
        if floating is float:
            avg_pool2d_forward_f32(&x[0, 0, 0, 0], &g, &y[0, 0, 0, 0])
        else:
            avg_pool2d_forward_f64(&x[0, 0, 0, 0], &g, &y[0, 0, 0, 0])


def avg_pool2d_backward(const floating[:, :, :, ::1] grad_y, floating[:, :, :, ::1] grad_x,
                        kernel_size, stride, padding):
    """grad_x[window] += grad_y / (kH kW) for every window (grad_x is overwritten)."""
    cdef pool_geometry g = _geometry("avg_pool2d_backward", grad_x.shape, grad_y.shape,
                                     kernel_size, stride, padding)
    if _numel(grad_x.shape) == 0:
        return
    if _numel(grad_y.shape) == 0:
        grad_x[...] = 0
        return
    with nogil:
        if floating is float:
            avg_pool2d_backward_f32(&grad_y[0, 0, 0, 0], &g, &grad_x[0, 0, 0, 0])
        else:
            avg_pool2d_backward_f64(&grad_y[0, 0, 0, 0], &g, &grad_x[0, 0, 0, 0])
