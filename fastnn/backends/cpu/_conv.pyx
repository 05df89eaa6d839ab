"""Cython bindings of the per-image convolution (csrc/conv.c: one image per OpenMP thread at a time,
each image one single-threaded GEMM over a column matrix that stays in cache: fastnn's packed AVX-512
sgemm (csrc/sgemm.c) for float32 where the CPU has AVX-512, else BLAS (``scipy.linalg.cython_blas``)),
of the direct convolution (csrc/direct_conv.c) and of the Winograd one (csrc/winograd_conv.c). Outputs and workspaces are allocated by the caller (fastnn/backends/cpu/conv.py); every
shape is checked here, so a wrong call raises instead of writing out of bounds. The GIL is
released while C runs."""
from cython cimport floating
from libc.limits cimport INT_MAX
from scipy.linalg.cython_blas cimport dgemm, sgemm

from ._conv_geometry cimport conv_geometry, conv_geometry_of


cdef extern from "conv.h" nogil:
    Py_ssize_t conv_workspace_size(const conv_geometry *g, Py_ssize_t out_channels)
    ctypedef void (*blas_gemm_f32)(char *, char *, int *, int *, int *, float *, float *, int *,
                                   float *, int *, float *, float *, int *)
    ctypedef void (*blas_gemm_f64)(char *, char *, int *, int *, int *, double *, double *, int *,
                                   double *, int *, double *, double *, int *)
    void conv2d_forward_images_f32(const float *x, const float *weight, const float *bias,
                                   const conv_geometry *g, Py_ssize_t out_channels, Py_ssize_t groups,
                                   int relu, int threads, float *workspace, float *y, blas_gemm_f32 gemm)
    void conv2d_forward_images_f64(const double *x, const double *weight, const double *bias,
                                   const conv_geometry *g, Py_ssize_t out_channels, Py_ssize_t groups,
                                   int relu, int threads, double *workspace, double *y, blas_gemm_f64 gemm)
    void conv2d_backward_images_f32(const float *x, const float *weight, const float *grad_y,
                                    const float *relu_y, const conv_geometry *g, Py_ssize_t out_channels,
                                    Py_ssize_t groups, int threads, float *workspace, float *grad_x, float *grad_w,
                                    float *grad_w_partial, float *grad_b, double *grad_b_partial,
                                    blas_gemm_f32 gemm)
    void conv2d_backward_images_f64(const double *x, const double *weight, const double *grad_y,
                                    const double *relu_y, const conv_geometry *g, Py_ssize_t out_channels,
                                    Py_ssize_t groups, int threads, double *workspace, double *grad_x, double *grad_w,
                                    double *grad_w_partial, double *grad_b, double *grad_b_partial,
                                    blas_gemm_f64 gemm)


cdef extern from "sgemm.h" nogil:
    int fastnn_sgemm_available()
    int fastnn_sgemm_enabled()
    void fastnn_sgemm_set_enabled(int on)


fastnn_sgemm_set_enabled(fastnn_sgemm_available())     # decided once, before any parallel region


def own_sgemm_available():
    """True if this CPU runs fastnn's AVX-512 sgemm (csrc/sgemm.c)."""
    return bool(fastnn_sgemm_available())


def own_sgemm_enabled():
    """True if the float32 per-image convolution uses fastnn's sgemm rather than SciPy's BLAS."""
    return bool(fastnn_sgemm_enabled())


def set_own_sgemm(bint on):
    """Use fastnn's sgemm (where available) or BLAS for the float32 per-image convolution; returns
    the previous setting. For benchmarks and tests: both compute the same product."""
    previous = bool(fastnn_sgemm_enabled())
    fastnn_sgemm_set_enabled(on)
    return previous


cdef tuple _shape4(const Py_ssize_t *shape):
    return (shape[0], shape[1], shape[2], shape[3])


cdef void _expect(name, tuple shape, tuple expected) except *:
    if shape != expected:
        raise ValueError(f"conv2d (compiled kernel): {name} must have shape {expected}, got {shape}")


cdef void _check_gradients(kernel, tuple expected_grad_y, tuple x_shape, tuple weight_shape, grad_y, grad_x,
                           grad_w, grad_b, grad_b_partial, relu_y, int threads) except *:
    """The shapes of a backward binding's gradient arguments (memoryviews, or None where not given):
    grad_y as expected, grad_x / grad_w as x / weight, grad_b (O,) with its per-thread scratch
    (threads O), relu_y as grad_y."""
    _expect("grad_y", tuple(grad_y.shape), expected_grad_y)
    if grad_x is not None:
        _expect("grad_x", tuple(grad_x.shape), x_shape)
    if grad_w is not None:
        _expect("grad_w", tuple(grad_w.shape), weight_shape)
    if grad_b is not None:
        _expect("grad_b", tuple(grad_b.shape), (weight_shape[0],))
        if grad_b_partial is None:
            raise ValueError(f"conv2d ({kernel}): grad_b needs grad_b_partial")
        _expect("grad_b_partial", tuple(grad_b_partial.shape), (threads * weight_shape[0],))
    if relu_y is not None:
        _expect("relu_y", tuple(relu_y.shape), expected_grad_y)


cdef conv_geometry _checked(const Py_ssize_t *x_shape, const Py_ssize_t *weight_shape, Py_ssize_t groups,
                            kernel_size, stride, padding, dilation, int threads,
                            Py_ssize_t workspace_size) except *:
    """The geometry of x and weight; raises unless it is non-empty and the workspace fits it."""
    cdef conv_geometry g = conv_geometry_of(x_shape, kernel_size, stride, padding, dilation)
    cdef Py_ssize_t out_channels = weight_shape[0]
    if min(g.batch, g.channels, g.height, g.width, out_channels) < 1:
        raise ValueError(f"conv2d (per image): x {_shape4(x_shape)} and weight {_shape4(weight_shape)} "
                         "must be non-empty (the batched kernels take empty convolutions)")
    if groups < 1 or g.channels % groups or out_channels % groups \
            or weight_shape[1] * groups != g.channels \
            or weight_shape[2] != g.kernel_h or weight_shape[3] != g.kernel_w:
        raise ValueError(f"conv2d (per image): weight {_shape4(weight_shape)} with groups={groups} and "
                         f"kernel_size={kernel_size} does not fit {g.channels} input channels")
    if threads < 1:
        raise ValueError(f"conv2d (per image): threads must be >= 1, got {threads}")
    cdef Py_ssize_t per_thread = conv_workspace_size(&g, out_channels)
    if workspace_size != threads * per_thread:
        raise ValueError(f"conv2d (per image): workspace must hold threads * {per_thread} = "
                         f"{threads * per_thread} elements, got {workspace_size}")
    if max(out_channels, g.channels * g.kernel_h * g.kernel_w, g.out_h * g.out_w) > INT_MAX:
        raise ValueError("conv2d (per image): a GEMM dimension exceeds the 32-bit BLAS integer range")
    return g


def workspace_size(x_shape, Py_ssize_t out_channels, kernel_size, stride, padding, dilation, int threads):
    """Elements of the workspace that the per-image kernels need for x of shape ``x_shape``."""
    cdef Py_ssize_t shape[4]
    shape[0], shape[1], shape[2], shape[3] = x_shape
    cdef conv_geometry g = conv_geometry_of(shape, kernel_size, stride, padding, dilation)
    return threads * conv_workspace_size(&g, out_channels)


def conv2d_forward_images(const floating[:, :, :, ::1] x not None, const floating[:, :, :, ::1] weight not None,
                          const floating[::1] bias, Py_ssize_t groups, kernel_size, stride, padding,
                          dilation, floating[::1] workspace not None, floating[:, :, :, ::1] y not None, int threads,
                          bint relu=False):
    """y = conv2d(x, weight) + bias, one image per thread; bias may be None; max(y, 0) if relu."""
    cdef conv_geometry g = _checked(x.shape, weight.shape, groups, kernel_size, stride, padding,
                                    dilation, threads, workspace.shape[0])
    cdef Py_ssize_t out_channels = weight.shape[0]
    _expect("y", _shape4(y.shape), (g.batch, out_channels, g.out_h, g.out_w))
    cdef const floating *bias_ptr = NULL
    if bias is not None:
        _expect("bias", (bias.shape[0],), (out_channels,))
        bias_ptr = &bias[0]
    with nogil:
        if floating is float:
            conv2d_forward_images_f32(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], bias_ptr, &g, out_channels,
                                      groups, relu, threads, &workspace[0], &y[0, 0, 0, 0], sgemm)
        else:
            conv2d_forward_images_f64(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], bias_ptr, &g, out_channels,
                                      groups, relu, threads, &workspace[0], &y[0, 0, 0, 0], dgemm)


def conv2d_backward_images(const floating[:, :, :, ::1] x not None, const floating[:, :, :, ::1] weight not None,
                           const floating[:, :, :, ::1] grad_y not None, Py_ssize_t groups, kernel_size, stride,
                           padding, dilation, floating[::1] workspace not None, floating[:, :, :, ::1] grad_x,
                           floating[:, :, :, ::1] grad_w, floating[::1] grad_w_partial,
                           floating[::1] grad_b, double[::1] grad_b_partial, int threads,
                           const floating[:, :, :, ::1] relu_y=None):
    """Overwrite grad_x, grad_w and grad_b (each may be None) with the gradients of conv2d at
    grad_y; grad_w_partial / grad_b_partial are per-thread scratch (threads * size of the gradient).
    relu_y: the output of a forward with relu set; grad_y is then masked by relu_y > 0 first."""
    cdef conv_geometry g = _checked(x.shape, weight.shape, groups, kernel_size, stride, padding,
                                    dilation, threads, workspace.shape[0])
    cdef Py_ssize_t out_channels = weight.shape[0]
    _check_gradients("per image", (g.batch, out_channels, g.out_h, g.out_w), _shape4(x.shape), _shape4(weight.shape),
                     grad_y, grad_x, grad_w, grad_b, grad_b_partial, relu_y, threads)
    if grad_w is not None:
        if grad_w_partial is None:
            raise ValueError("conv2d (per image): grad_w needs grad_w_partial")
        _expect("grad_w_partial", (grad_w_partial.shape[0],), (threads * weight.shape[0] * weight.shape[1]
                                                               * weight.shape[2] * weight.shape[3],))
    cdef const floating *relu_y_ptr = NULL
    if relu_y is not None:
        relu_y_ptr = &relu_y[0, 0, 0, 0]
    cdef floating *grad_x_ptr = &grad_x[0, 0, 0, 0] if grad_x is not None else NULL
    cdef floating *grad_w_ptr = &grad_w[0, 0, 0, 0] if grad_w is not None else NULL
    cdef floating *grad_w_partial_ptr = &grad_w_partial[0] if grad_w is not None else NULL
    cdef floating *grad_b_ptr = &grad_b[0] if grad_b is not None else NULL
    cdef double *grad_b_partial_ptr = &grad_b_partial[0] if grad_b is not None else NULL
    with nogil:
        if floating is float:
            conv2d_backward_images_f32(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_y[0, 0, 0, 0], relu_y_ptr, &g,
                                       out_channels, groups, threads, &workspace[0], grad_x_ptr,
                                       grad_w_ptr, grad_w_partial_ptr, grad_b_ptr, grad_b_partial_ptr,
                                       sgemm)
        else:
            conv2d_backward_images_f64(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_y[0, 0, 0, 0], relu_y_ptr, &g,
                                       out_channels, groups, threads, &workspace[0], grad_x_ptr,
                                       grad_w_ptr, grad_w_partial_ptr, grad_b_ptr, grad_b_partial_ptr,
                                       dgemm)


# ---- direct convolution (csrc/direct_conv.c): float32, stride 1, dilation 1, one group ----

cdef extern from "direct_conv.h" nogil:
    int fastnn_direct_conv_available()
    int DIRECT_CONV_MAX_TAPS
    Py_ssize_t direct_conv_workspace_size(const conv_geometry *g, Py_ssize_t out_channels, int threads)
    void direct_conv2d_forward_f32(const float *x, const float *weight, const float *bias,
                                   const conv_geometry *g, Py_ssize_t out_channels, int relu, int threads,
                                   float *workspace, float *y)
    void direct_conv2d_backward_f32(const float *x, const float *weight, const float *grad_y,
                                    const float *relu_y, const conv_geometry *g, Py_ssize_t out_channels,
                                    int threads, float *workspace, float *grad_x, float *grad_w,
                                    float *grad_b, double *grad_b_partial)


DIRECT_MAX_TAPS = DIRECT_CONV_MAX_TAPS


def direct_available():
    """True if this CPU runs the direct convolution of csrc/direct_conv.c (AVX-512F)."""
    return bool(fastnn_direct_conv_available())


cdef conv_geometry _direct_checked(const Py_ssize_t *x_shape, const Py_ssize_t *weight_shape, padding,
                                   int threads, Py_ssize_t workspace_size) except *:
    """The geometry of a direct convolution; raises unless it is one the kernel takes."""
    if not fastnn_direct_conv_available():
        raise RuntimeError("conv2d (direct): this CPU has no AVX-512F; use the im2col kernels")
    cdef conv_geometry g = conv_geometry_of(x_shape, (weight_shape[2], weight_shape[3]), (1, 1), padding, (1, 1))
    if min(g.batch, g.channels, weight_shape[0]) < 1:
        raise ValueError(f"conv2d (direct): x {_shape4(x_shape)} and weight {_shape4(weight_shape)} "
                         "must be non-empty")
    if weight_shape[1] != g.channels:
        raise ValueError(f"conv2d (direct): weight {_shape4(weight_shape)} must have {g.channels} input "
                         "channels (one group)")
    if g.kernel_h * g.kernel_w > DIRECT_CONV_MAX_TAPS:
        raise ValueError(f"conv2d (direct): kernel {(g.kernel_h, g.kernel_w)} has more than "
                         f"{DIRECT_CONV_MAX_TAPS} taps")
    if threads < 1:
        raise ValueError(f"conv2d (direct): threads must be >= 1, got {threads}")
    cdef Py_ssize_t expected = direct_conv_workspace_size(&g, weight_shape[0], threads)
    if workspace_size != expected:
        raise ValueError(f"conv2d (direct): workspace must hold {expected} elements, got {workspace_size}")
    return g


def direct_workspace_size(x_shape, Py_ssize_t out_channels, kernel_size, padding, int threads):
    """float32 elements of the workspace that the direct kernels need for x of shape ``x_shape``."""
    cdef Py_ssize_t shape[4]
    shape[0], shape[1], shape[2], shape[3] = x_shape
    cdef conv_geometry g = conv_geometry_of(shape, kernel_size, (1, 1), padding, (1, 1))
    return direct_conv_workspace_size(&g, out_channels, threads)


def conv2d_direct_forward(const float[:, :, :, ::1] x not None, const float[:, :, :, ::1] weight not None,
                          const float[::1] bias, padding, float[::1] workspace not None,
                          float[:, :, :, ::1] y not None, int threads, bint relu=False):
    """y = conv2d(x, weight) + bias (stride 1, dilation 1, one group), max(y, 0) if relu; bias may be None."""
    cdef conv_geometry g = _direct_checked(x.shape, weight.shape, padding, threads, workspace.shape[0])
    cdef Py_ssize_t out_channels = weight.shape[0]
    _expect("y", _shape4(y.shape), (g.batch, out_channels, g.out_h, g.out_w))
    cdef const float *bias_ptr = NULL
    if bias is not None:
        _expect("bias", (bias.shape[0],), (out_channels,))
        bias_ptr = &bias[0]
    with nogil:
        direct_conv2d_forward_f32(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], bias_ptr, &g, out_channels, relu,
                                  threads, &workspace[0], &y[0, 0, 0, 0])


def conv2d_direct_backward(const float[:, :, :, ::1] x not None, const float[:, :, :, ::1] weight not None,
                           const float[:, :, :, ::1] grad_y not None, padding, float[::1] workspace not None,
                           float[:, :, :, ::1] grad_x, float[:, :, :, ::1] grad_w, float[::1] grad_b,
                           double[::1] grad_b_partial, int threads, const float[:, :, :, ::1] relu_y=None):
    """Overwrite grad_x, grad_w and grad_b (each may be None) with the gradients of the direct
    conv2d at grad_y; grad_b_partial is per-thread scratch (threads * O). relu_y as in
    conv2d_backward_images."""
    cdef conv_geometry g = _direct_checked(x.shape, weight.shape, padding, threads, workspace.shape[0])
    cdef Py_ssize_t out_channels = weight.shape[0]
    _check_gradients("direct", (g.batch, out_channels, g.out_h, g.out_w), _shape4(x.shape), _shape4(weight.shape),
                     grad_y, grad_x, grad_w, grad_b, grad_b_partial, relu_y, threads)
    cdef const float *relu_y_ptr = NULL
    if relu_y is not None:
        relu_y_ptr = &relu_y[0, 0, 0, 0]
    cdef float *grad_x_ptr = &grad_x[0, 0, 0, 0] if grad_x is not None else NULL
    cdef float *grad_w_ptr = &grad_w[0, 0, 0, 0] if grad_w is not None else NULL
    cdef float *grad_b_ptr = &grad_b[0] if grad_b is not None else NULL
    cdef double *grad_b_partial_ptr = &grad_b_partial[0] if grad_b is not None else NULL
    with nogil:
        direct_conv2d_backward_f32(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_y[0, 0, 0, 0], relu_y_ptr, &g,
                                   out_channels, threads, &workspace[0], grad_x_ptr, grad_w_ptr, grad_b_ptr,
                                   grad_b_partial_ptr)


# ---- Winograd F(2x2, 5x5) (csrc/winograd_conv.c): float32 5x5, stride 1, dilation 1, one group ----

cdef extern from "winograd_conv.h" nogil:
    ctypedef struct winograd_shape:
        Py_ssize_t batch, in_channels, in_h, in_w, pad_h, pad_w, out_channels, out_h, out_w
    int fastnn_winograd_available()
    Py_ssize_t winograd_tiles(const winograd_shape *s)
    Py_ssize_t winograd_weights_size(const winograd_shape *s)
    Py_ssize_t winograd_forward_thread_size(const winograd_shape *s)
    Py_ssize_t winograd_weight_grad_thread_size(const winograd_shape *s)
    int winograd_conv2d_forward_f32(const float *inp, const float *mask, const float *weight, int flip,
                                    const float *bias, int relu, const winograd_shape *s, int threads,
                                    float *workspace, float *out)
    int winograd_conv2d_weight_grad_f32(const float *x, const float *grad_y, const float *relu_y,
                                        const winograd_shape *s, int threads, float *workspace, float *grad_w,
                                        float *grad_b, double *grad_b_partial)


def winograd_available():
    """True if this CPU runs the Winograd convolution of csrc/winograd_conv.c (AVX-512F)."""
    return bool(fastnn_winograd_available())


cdef winograd_shape _winograd_input_grad_shape(const winograd_shape *s):
    """grad_x as a forward: grad_y in, padding 4 - p, channels swapped."""
    cdef winograd_shape t
    t.batch, t.in_channels, t.in_h, t.in_w = s.batch, s.out_channels, s.out_h, s.out_w
    t.pad_h, t.pad_w = 4 - s.pad_h, 4 - s.pad_w
    t.out_channels, t.out_h, t.out_w = s.in_channels, s.in_h, s.in_w
    return t


cdef winograd_shape _winograd_shape(x_shape, Py_ssize_t out_channels, padding) except *:
    """The forward's shape; ValueError unless a 5x5 kernel fits x with this padding (0 to 4)."""
    cdef winograd_shape s
    s.batch, s.in_channels, s.in_h, s.in_w = x_shape
    s.pad_h, s.pad_w = padding
    s.out_channels = out_channels
    if not (0 <= s.pad_h <= 4 and 0 <= s.pad_w <= 4):
        raise ValueError(f"conv2d (winograd): padding must be 0 to 4 on each side, got {padding}")
    s.out_h, s.out_w = s.in_h + 2 * s.pad_h - 4, s.in_w + 2 * s.pad_w - 4
    if min(s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.out_h, s.out_w) < 1:
        raise ValueError(f"conv2d (winograd): x {tuple(x_shape)} must be non-empty and, with {out_channels} output "
                         f"channels and padding {padding}, give a non-empty output")
    cdef winograd_shape t = _winograd_input_grad_shape(&s)
    if max(s.in_channels, s.out_channels) > 1 << 20 or max(winograd_tiles(&s), winograd_tiles(&t)) > INT_MAX - 256:
        raise ValueError("conv2d (winograd): too many channels or tiles for the GEMM's 32-bit sizes")
    return s


cdef Py_ssize_t _winograd_workspace(const winograd_shape *s, int threads):
    cdef winograd_shape t = _winograd_input_grad_shape(s)
    cdef Py_ssize_t per_thread = max(winograd_forward_thread_size(s), winograd_forward_thread_size(&t),
                                     winograd_weight_grad_thread_size(s))
    return winograd_weights_size(s) + threads * per_thread


def winograd_workspace_size(x_shape, Py_ssize_t out_channels, padding, int threads):
    """float32 elements of the workspace that the Winograd forward and backward need."""
    cdef winograd_shape s = _winograd_shape(x_shape, out_channels, padding)
    return _winograd_workspace(&s, threads)


cdef winograd_shape _winograd_checked(const Py_ssize_t *x_shape, const Py_ssize_t *weight_shape, padding,
                                      int threads, Py_ssize_t workspace_size) except *:
    if not fastnn_winograd_available():
        raise RuntimeError("conv2d (winograd): this CPU has no AVX-512F; use the im2col kernels")
    if weight_shape[1] != x_shape[1] or weight_shape[2] != 5 or weight_shape[3] != 5:
        raise ValueError(f"conv2d (winograd): weight {_shape4(weight_shape)} must be (O, {x_shape[1]}, 5, 5)")
    if threads < 1:
        raise ValueError(f"conv2d (winograd): threads must be >= 1, got {threads}")
    cdef winograd_shape s = _winograd_shape(_shape4(x_shape), weight_shape[0], padding)
    cdef Py_ssize_t expected = _winograd_workspace(&s, threads)
    if workspace_size != expected:
        raise ValueError(f"conv2d (winograd): workspace must hold {expected} elements, got {workspace_size}")
    return s


def conv2d_winograd_forward(const float[:, :, :, ::1] x not None, const float[:, :, :, ::1] weight not None,
                            const float[::1] bias, padding, float[::1] workspace not None,
                            float[:, :, :, ::1] y not None, int threads, bint relu=False):
    """y = conv2d(x, weight) + bias for a 5x5 kernel, stride 1; max(y, 0) if relu; bias may be None."""
    cdef winograd_shape s = _winograd_checked(x.shape, weight.shape, padding, threads, workspace.shape[0])
    _expect("y", _shape4(y.shape), (s.batch, s.out_channels, s.out_h, s.out_w))
    cdef const float *bias_ptr = NULL
    if bias is not None:
        _expect("bias", (bias.shape[0],), (s.out_channels,))
        bias_ptr = &bias[0]
    cdef int status
    with nogil:
        status = winograd_conv2d_forward_f32(&x[0, 0, 0, 0], NULL, &weight[0, 0, 0, 0], 0, bias_ptr, relu, &s,
                                             threads, &workspace[0], &y[0, 0, 0, 0])
    if status != 0:
        raise MemoryError("conv2d (winograd): fastnn's sgemm could not allocate its packing buffers")


def conv2d_winograd_backward(const float[:, :, :, ::1] x not None, const float[:, :, :, ::1] weight not None,
                             const float[:, :, :, ::1] grad_y not None, padding, float[::1] workspace not None,
                             float[:, :, :, ::1] grad_x, float[:, :, :, ::1] grad_w, float[::1] grad_b,
                             double[::1] grad_b_partial, int threads, const float[:, :, :, ::1] relu_y=None):
    """Overwrite grad_x, grad_w and grad_b (each may be None) with the gradients of the Winograd
    conv2d at grad_y; grad_b_partial is per-thread scratch (threads * O). relu_y as in
    conv2d_backward_images."""
    cdef winograd_shape s = _winograd_checked(x.shape, weight.shape, padding, threads, workspace.shape[0])
    cdef winograd_shape t = _winograd_input_grad_shape(&s)
    _check_gradients("winograd", (s.batch, s.out_channels, s.out_h, s.out_w), _shape4(x.shape), _shape4(weight.shape),
                     grad_y, grad_x, grad_w, grad_b, grad_b_partial, relu_y, threads)
    cdef const float *relu_y_ptr = NULL
    if relu_y is not None:
        relu_y_ptr = &relu_y[0, 0, 0, 0]
    cdef float *grad_w_ptr = &grad_w[0, 0, 0, 0] if grad_w is not None else NULL
    cdef float *grad_b_ptr = &grad_b[0] if grad_b is not None else NULL
    cdef double *grad_b_partial_ptr = &grad_b_partial[0] if grad_b is not None else NULL
    cdef int status = 0
    with nogil:
        if grad_x is not None:
            status = winograd_conv2d_forward_f32(&grad_y[0, 0, 0, 0], relu_y_ptr, &weight[0, 0, 0, 0], 1, NULL, 0,
                                                 &t, threads, &workspace[0], &grad_x[0, 0, 0, 0])
        if status == 0 and (grad_w_ptr != NULL or grad_b_ptr != NULL):
            status = winograd_conv2d_weight_grad_f32(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], relu_y_ptr, &s, threads,
                                                     &workspace[0], grad_w_ptr, grad_b_ptr, grad_b_partial_ptr)
    if status != 0:
        raise MemoryError("conv2d (winograd): fastnn's sgemm could not allocate its packing buffers")
