"""Compiled 2-D convolution in four schedules: C im2col/col2im (OpenMP) + GEMMs per image or batched,
a direct kernel for small 5x5 layers, and Winograd for 5x5 layers with many channels.

The im2col schedules mirror ``reference/conv.py`` (y = W · im2col(x) + b; grad_W = grad_y cols^T,
grad_cols = W^T grad_y, grad_x = col2im(grad_cols)).

**Per image** (csrc/conv.h; mini-batches of at least ``PER_IMAGE_MIN_IMAGES_PER_THREAD`` images
per thread): each OpenMP thread takes whole images, unrolls one image at a time into its own
column matrix (C kH kW, Ho Wo), small enough to stay in L2, and runs a single-threaded GEMM
whose output is that image of y in NCHW; the backward unrolls the image again for grad_W and
reuses the same workspace for grad_cols and col2im. Nothing of the size of the whole batch's
column matrix is written or kept: the forward saves x.

**Batched** (small mini-batches, batch-1 inference, or when BLAS could not be made
single-threaded): the whole mini-batch in one GEMM per group, each GEMM cut across the threads
by ``_blas.gemm``; the column matrix is laid out (C kH kW, N Ho Wo), so per group g
    forward      Y_g (O/G, N P)   = W_g (O/G, K)  · cols_g (K, N P)      then Y -> NCHW + b
    grad weight  gW_g (O/G, K)    = gY_g (O/G, N P) · cols_g^T           (cols saved by forward)
    grad input   gcols_g (K, N P) = W_g^T · gY_g                         then col2im -> grad_x
with K = C/G kH kW and P = Ho Wo; gY is grad_y moved to (O, N P) by the same pass that sums grad_b.

**Direct** (csrc/direct_conv.h; float32, stride 1, dilation 1, one group, at most
``DIRECT_MAX_OUT_CHANNELS`` output channels, kernels of ``DIRECT_MIN_TAPS`` to 64 taps, at most
``DIRECT_MAX_DEPTH`` input channels x taps, an AVX-512 CPU): no column matrix at all; each thread
pads its image and runs the convolution's sums with the output pixels (or channels) in vector lanes,
forward and backward. LeNet's convolutions (6 and 16 output channels) are small enough that
im2col + GEMM spends its time packing.

**Winograd** (csrc/winograd_conv.h; float32 5x5 kernels, stride 1, dilation 1, one group, padding
<= 4, at least ``WINOGRAD_MIN_CHANNELS`` input and output channels, ``PER_IMAGE_MIN_IMAGES_PER_THREAD``
images per thread, fastnn's sgemm on): F(2x2, 5x5), 36 GEMMs over 6x6-transformed tiles instead of
one over the column matrix, 2.8x fewer multiply-adds; grad_x is the same forward on grad_y with the
kernel flipped, grad_W a sum of GEMMs in the transformed domain. tfconvnet's 32 -> 64 layer.
Its rounding error is about 10x im2col's (the transforms scale by up to 5 and 1/24: ~4e-6 of
max|y| on tfconvnet's layer), and an input or weight beyond ~1e36 (or infinite) overflows the
transforms into NaN/Inf where im2col stays finite (or gives +-Inf);
``set_winograd_enabled(False)`` gives the im2col schedules back. Winograd is tried before direct.
A backward always runs in its forward's schedule, whatever the switches say by then.
"""
import threading
import weakref

import numpy as np

from ..reference import conv as _reference
from ..reference.conv import conv_output_size

from . import _blas, _conv, _im2col, _openmp
from .activation import relu_backward, relu_forward

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv2d_relu_forward", "conv2d_relu_backward"]

_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _BufferPool:
    """Recycles the multi-megabyte buffers of the column matrices and GEMM outputs.

    A fresh large ``np.empty`` is mapped and faulted in page by page (the kernel zeroes each one):
    for conv2 of tfconvnet at batch 64 that costs about as much as the im2col that fills it.
    An array from ``empty`` gives its buffer back here when it is garbage-collected; at most
    ``max_bytes`` of free buffers are kept, oldest dropped first. Only for arrays that stay
    inside this module (temporaries and ``saved``): views of them must not outlive them.
    """

    min_bytes = 1 << 20

    def __init__(self, max_bytes=512 << 20):
        self.max_bytes = max_bytes
        self._free = []                    # oldest first
        self._lock = threading.Lock()

    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes < self.min_bytes:
            return np.empty(shape, dtype)
        buffer = None
        with self._lock:
            for i, candidate in enumerate(self._free):
                if candidate.nbytes == nbytes:
                    buffer = self._free.pop(i)
                    break
        if buffer is None:
            buffer = np.empty(nbytes, np.uint8)
        array = buffer.view(dtype).reshape(shape)
        weakref.finalize(array, self._give_back, buffer).atexit = False
        return array

    def _give_back(self, buffer):
        with self._lock:
            self._free.append(buffer)
            while sum(b.nbytes for b in self._free) > self.max_bytes:
                self._free.pop(0)


_buffers = _BufferPool()

# The per-image schedule runs when every thread gets at least this many images: below that,
# threads idle while one finishes its images, and the batched schedule, which cuts each GEMM
# across the threads, is faster (bench/bench_conv.py, batch 1 to 8).
PER_IMAGE_MIN_IMAGES_PER_THREAD = 2


# Measured with bench/bench_conv.py (direct against per image, batch 64): the direct kernels win on
# LeNet's two 5x5 layers (1 -> 6, 6 -> 16). A review measured them slower on a 3x3 1 -> 16 stem (backward
# 0.58 against 0.41 ms), a 1x1 8 -> 3 head and a 1x1 128 -> 16 layer, hence the limits on taps and depth.
DIRECT_MAX_OUT_CHANNELS = 16
DIRECT_MIN_TAPS = 25
DIRECT_MAX_DEPTH = 256
_direct = {"enabled": _conv.direct_available()}


def direct_available():
    """True if this CPU runs the direct convolution kernels (AVX-512F)."""
    return _conv.direct_available()


def set_direct_enabled(on):
    """Use the direct kernels where they apply (default where available) or never; returns the
    previous setting. For benchmarks and tests: both schedules compute the same convolution."""
    previous = _direct["enabled"]
    _direct["enabled"] = bool(on) and _conv.direct_available()
    return previous


def _direct_suits(x, weight, stride, dilation, groups):
    """True if the direct kernels take this convolution (x and weight contiguous, same dtype)."""
    o, c, kh, kw = weight.shape
    return (_direct["enabled"] and x.dtype == np.float32 and groups == 1 and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1) and o <= DIRECT_MAX_OUT_CHANNELS
            and DIRECT_MIN_TAPS <= kh * kw <= _conv.DIRECT_MAX_TAPS and c * kh * kw <= DIRECT_MAX_DEPTH
            and x.size > 0 and weight.size > 0)


def _direct_threads(x):
    """Threads for the direct kernels: no more than images (each thread's scratch holds one)."""
    return max(1, min(_openmp.get_num_threads(), x.shape[0]))


# tfconvnet's conv2 at batch 64 (bench/bench_conv.py, medians): forward 4.3 against 8.0 ms, backward 9.3 against
# 16.1 ms in the per-image schedule. Few channels leave the transforms without GEMM work to save.
WINOGRAD_MIN_CHANNELS = 16
_winograd = {"enabled": _conv.winograd_available()}


def set_winograd_enabled(on):
    """Use the Winograd kernels where they apply (default where available) or never; returns the
    previous setting."""
    previous = _winograd["enabled"]
    _winograd["enabled"] = bool(on) and _conv.winograd_available()
    return previous


def _winograd_suits(x, weight, stride, padding, dilation, groups):
    """True if the Winograd kernels take this convolution (x and weight contiguous, same dtype)."""
    o, c, kh, kw = weight.shape
    return (_winograd["enabled"] and _conv.own_sgemm_enabled() and x.dtype == np.float32 and groups == 1
            and (kh, kw) == (5, 5) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and all(0 <= p <= 4 for p in padding) and min(o, c) >= WINOGRAD_MIN_CHANNELS
            and x.size > 0 and x.shape[0] >= PER_IMAGE_MIN_IMAGES_PER_THREAD * _openmp.get_num_threads())


def _per_image_threads(x, weight):
    """Threads for the per-image schedule of this convolution, or 0 to use the batched one."""
    threads = _openmp.get_num_threads()
    if not _blas.get_split() and threads > 1:   # BLAS keeps its own pool: per-thread GEMMs would oversubscribe
        return 0
    if x.size == 0 or weight.size == 0 or x.shape[0] < PER_IMAGE_MIN_IMAGES_PER_THREAD * threads:
        return 0
    return threads


def _output_hw(x_shape, kernel_size, stride, padding, dilation):
    return tuple(conv_output_size(x_shape[2 + a], kernel_size[a], stride[a], padding[a], dilation[a])
                 for a in range(2))


def im2col(x, kernel_size, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C kH kW, Ho Wo); see reference.im2col."""
    if np.dtype(x.dtype) not in _COMPILED_DTYPES:
        return _reference.im2col(x, kernel_size, stride, padding, dilation)
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    ho, wo = _output_hw(x.shape, kernel_size, stride, padding, dilation)
    cols = np.empty((n, c * kernel_size[0] * kernel_size[1], ho * wo), x.dtype)
    _im2col.im2col(x, cols.reshape(-1), kernel_size, stride, padding, dilation, False)
    return cols


def col2im(cols, x_shape, kernel_size, stride, padding, dilation):
    """cols (N, C kH kW, Ho Wo) -> x (N, C, H, W), overlaps summed; see reference.col2im."""
    if np.dtype(cols.dtype) not in _COMPILED_DTYPES:
        return _reference.col2im(cols, x_shape, kernel_size, stride, padding, dilation)
    cols = np.ascontiguousarray(cols)
    x = np.empty(tuple(x_shape), cols.dtype)
    _im2col.col2im(cols.reshape(-1), x, kernel_size, stride, padding, dilation, False)
    return x


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """y (N, O, Ho, Wo) = W · im2col(x) + b, per image or batched (see the module docstring)."""
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, relu=False)


def conv2d_relu_forward(x, weight, bias, stride, padding, dilation, groups):
    """max(conv2d(x), 0) for a Conv2d followed by a ReLU (nn.Sequential fuses the pair): in the
    per-image, direct and Winograd schedules the ReLU is part of the epilogue (``_RELU_FUSED``),
    in the batched one relu_forward runs after."""
    y, saved = _conv2d(x, weight, bias, stride, padding, dilation, groups, relu=True)
    if saved[0] not in _RELU_FUSED:
        y = relu_forward(y)
    return y, saved


def conv2d_relu_backward(grad_y, y, saved, needs_input_grad):
    """conv2d_backward at grad_y ⊙ 1[y > 0], y the output of conv2d_relu_forward; in the per-image,
    direct and Winograd schedules the mask is applied inside the kernel."""
    if saved[0] == "images":
        return _backward_images(grad_y, saved[1:], needs_input_grad, relu_y=y)
    if saved[0] == "direct":
        return _backward_direct(grad_y, saved[1:], needs_input_grad, relu_y=y)
    if saved[0] == "winograd":
        return _backward_winograd(grad_y, saved[1:], needs_input_grad, relu_y=y)
    return conv2d_backward(relu_backward(grad_y, y), saved, needs_input_grad)


_RELU_FUSED = ("images", "direct", "winograd")     # schedules whose forward applies the ReLU itself


def _conv2d(x, weight, bias, stride, padding, dilation, groups, relu):
    """conv2d_forward; with ``relu`` the per-image and direct schedules apply the ReLU in their
    epilogue (saved[0] in _RELU_FUSED says that it did)."""
    if np.dtype(x.dtype) not in _COMPILED_DTYPES:
        return _reference.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    dtype = x.dtype
    weight = np.ascontiguousarray(weight, dtype)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype)
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    ho, wo = _output_hw(x.shape, (kh, kw), stride, padding, dilation)
    if _winograd_suits(x, weight, stride, padding, dilation, groups):
        threads = _openmp.get_num_threads()
        workspace = _buffers.empty(_conv.winograd_workspace_size(x.shape, o, tuple(padding), threads), dtype)
        y = np.empty((n, o, ho, wo), dtype)
        try:
            _conv.conv2d_winograd_forward(x, weight, bias, tuple(padding), workspace, y, threads, relu)
            return y, ("winograd", x, weight, stride, padding, dilation, groups, bias is not None)
        except MemoryError:   # the sgemm's packing buffers: the im2col schedules use BLAS instead
            pass
    if _direct_suits(x, weight, stride, dilation, groups):
        threads = _direct_threads(x)
        workspace = _buffers.empty(_conv.direct_workspace_size(x.shape, o, (kh, kw), tuple(padding), threads), dtype)
        y = np.empty((n, o, ho, wo), dtype)
        _conv.conv2d_direct_forward(x, weight, bias, tuple(padding), workspace, y, threads, relu)
        return y, ("direct", x, weight, stride, padding, dilation, groups, bias is not None)
    threads = _per_image_threads(x, weight)
    if threads:
        workspace = _buffers.empty(_conv.workspace_size(x.shape, o, (kh, kw), stride, padding, dilation, threads),
                                   dtype)
        y = np.empty((n, o, ho, wo), dtype)
        _conv.conv2d_forward_images(x, weight, bias, groups, (kh, kw), stride, padding, dilation,
                                    workspace, y, threads, relu)
        return y, ("images", x, weight, stride, padding, dilation, groups, bias is not None)
    k = cg * kh * kw                                                   # GEMM depth per group
    cols = _buffers.empty((c * kh * kw, n * ho * wo), dtype)
    _im2col.im2col(x, cols.reshape(-1), (kh, kw), stride, padding, dilation, True)

    w_g = weight.reshape(groups, o // groups, k)                       # (G, O/G, K)
    cols_g = cols.reshape(groups, k, n * ho * wo)                      # (G, K, N P)
    y_cnhw = _buffers.empty((groups, o // groups, n * ho * wo), dtype)
    for g in range(groups):
        _blas.gemm(w_g[g], cols_g[g], y_cnhw[g])

    y = np.empty((n, o, ho, wo), dtype)
    _im2col.cnhw_to_nchw(y_cnhw.reshape(o, n, ho * wo), y.reshape(n, o, ho * wo), bias)
    return y, ("batched", x.shape, weight, cols, stride, padding, dilation, groups, bias is not None)


def conv2d_backward(grad_y, saved, needs_input_grad):
    """(grad_x, grad_W, grad_b), each None unless asked for, in the schedule of the forward."""
    if saved[0] == "images":
        return _backward_images(grad_y, saved[1:], needs_input_grad)
    if saved[0] == "batched":
        return _backward_batched(grad_y, saved[1:], needs_input_grad)
    if saved[0] == "direct":
        return _backward_direct(grad_y, saved[1:], needs_input_grad)
    if saved[0] == "winograd":
        return _backward_winograd(grad_y, saved[1:], needs_input_grad)
    return _reference.conv2d_backward(grad_y, saved, needs_input_grad)


def _backward_winograd(grad_y, saved, needs_input_grad, relu_y=None):
    """The backward of a Winograd forward: grad_x by the flipped-kernel forward, grad_W in the
    transformed domain (saved as by the per-image forward)."""
    x, weight, stride, padding, dilation, groups, has_bias = saved
    o = weight.shape[0]
    grad_y = np.ascontiguousarray(grad_y, np.float32)
    threads = _openmp.get_num_threads()
    grad_x = np.empty(x.shape, np.float32) if needs_input_grad[0] else None
    grad_w = np.empty(weight.shape, np.float32) if needs_input_grad[1] else None
    grad_b = np.empty(o, np.float32) if has_bias and needs_input_grad[2] else None
    if grad_x is None and grad_w is None and grad_b is None:
        return None, None, None
    workspace = _buffers.empty(_conv.winograd_workspace_size(x.shape, o, tuple(padding), threads), np.float32)
    grad_b_partial = None if grad_b is None else np.empty(threads * o, np.float64)
    try:
        _conv.conv2d_winograd_backward(x, weight, grad_y, tuple(padding), workspace, grad_x, grad_w, grad_b,
                                       grad_b_partial, threads,
                                       None if relu_y is None else np.ascontiguousarray(relu_y, np.float32))
    except MemoryError:   # the sgemm's packing buffers: the same gradients per image, on BLAS
        return _backward_images(grad_y, saved, needs_input_grad, relu_y)
    return grad_x, grad_w, grad_b


def _backward_direct(grad_y, saved, needs_input_grad, relu_y=None):
    """The backward of a direct forward (which saved as the per-image one does)."""
    x, weight, stride, padding, dilation, groups, has_bias = saved
    o = weight.shape[0]
    grad_y = np.ascontiguousarray(grad_y, np.float32)
    threads = _direct_threads(x)
    grad_x = np.empty(x.shape, np.float32) if needs_input_grad[0] else None
    grad_w = np.empty(weight.shape, np.float32) if needs_input_grad[1] else None
    grad_b = np.empty(o, np.float32) if has_bias and needs_input_grad[2] else None
    if grad_x is None and grad_w is None and grad_b is None:
        return None, None, None
    workspace = _buffers.empty(_conv.direct_workspace_size(x.shape, o, weight.shape[2:], tuple(padding), threads),
                               np.float32)
    grad_b_partial = None if grad_b is None else np.empty(threads * o, np.float64)
    _conv.conv2d_direct_backward(x, weight, grad_y, tuple(padding), workspace, grad_x, grad_w, grad_b,
                                 grad_b_partial, threads,
                                 None if relu_y is None else np.ascontiguousarray(relu_y, np.float32))
    return grad_x, grad_w, grad_b


def _backward_images(grad_y, saved, needs_input_grad, relu_y=None):
    """Per image: grad_W = sum_n gy[n] im2col(x[n])^T, grad_x[n] = col2im(W^T gy[n]), grad_b = sum gy,
    with gy = grad_y, or grad_y ⊙ 1[relu_y > 0] after a forward with the ReLU fused."""
    x, weight, stride, padding, dilation, groups, has_bias = saved
    dtype = x.dtype
    o, _, kh, kw = weight.shape
    grad_y = np.ascontiguousarray(grad_y, dtype)
    threads = _openmp.get_num_threads()
    grad_x = np.empty(x.shape, dtype) if needs_input_grad[0] else None
    grad_w = np.empty(weight.shape, dtype) if needs_input_grad[1] else None
    grad_b = np.empty(o, dtype) if has_bias and needs_input_grad[2] else None
    if grad_x is None and grad_w is None and grad_b is None:
        return None, None, None
    workspace = _buffers.empty(_conv.workspace_size(x.shape, o, (kh, kw), stride, padding, dilation, threads), dtype)
    grad_w_partial = None if grad_w is None else np.empty(threads * weight.size, dtype)
    grad_b_partial = None if grad_b is None else np.empty(threads * o, np.float64)
    _conv.conv2d_backward_images(x, weight, grad_y, groups, (kh, kw), stride, padding, dilation,
                                 workspace, grad_x, grad_w, grad_w_partial, grad_b, grad_b_partial,
                                 threads, None if relu_y is None else np.ascontiguousarray(relu_y, dtype))
    return grad_x, grad_w, grad_b


def _backward_batched(grad_y, saved, needs_input_grad):
    """(grad_x, grad_W, grad_b); grad_W reuses the forward's cols, grad_x = col2im(W^T gY)."""
    x_shape, weight, cols, stride, padding, dilation, groups, has_bias = saved
    dtype = cols.dtype
    n = x_shape[0]
    o, cg, kh, kw = weight.shape
    k = cg * kh * kw
    grad_y = np.ascontiguousarray(grad_y, dtype)
    p = grad_y.shape[2] * grad_y.shape[3]

    gy = _buffers.empty((o, n, p), dtype)                              # grad_y as (O, N P)
    grad_b = np.empty(o, dtype) if has_bias and needs_input_grad[2] else None
    _im2col.nchw_to_cnhw(grad_y.reshape(n, o, p), gy, grad_b)
    gy_g = gy.reshape(groups, o // groups, n * p)                      # (G, O/G, N P)
    w_g = weight.reshape(groups, o // groups, k)                       # (G, O/G, K)
    cols_g = cols.reshape(groups, k, n * p)                            # (G, K, N P)

    grad_x = grad_w = None
    if needs_input_grad[1]:
        grad_w = np.empty(w_g.shape, dtype)
        for g in range(groups):
            _blas.gemm(gy_g[g], cols_g[g], grad_w[g], trans_b=True)
        grad_w = grad_w.reshape(weight.shape)
    if needs_input_grad[0]:
        grad_cols = _buffers.empty(cols_g.shape, dtype)
        for g in range(groups):
            _blas.gemm(w_g[g], gy_g[g], grad_cols[g], trans_a=True)
        grad_x = np.empty(x_shape, dtype)
        _im2col.col2im(grad_cols.reshape(-1), grad_x, (kh, kw), stride, padding, dilation, True)
    return grad_x, grad_w, grad_b
