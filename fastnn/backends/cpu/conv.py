"""Compiled 2-D convolution: C im2col/col2im (OpenMP) + one BLAS GEMM per group per pass.

Mirrors ``reference/conv.py`` (y = W · im2col(x) + b; grad_W = grad_y cols^T,
grad_cols = W^T grad_y, grad_x = col2im(grad_cols)) with the whole mini-batch in one GEMM:
the column matrix is laid out (C kH kW, N Ho Wo), so per group g
    forward      Y_g (O/G, N P)   = W_g (O/G, K)  · cols_g (K, N P)      then Y -> NCHW + b
    grad weight  gW_g (O/G, K)    = gY_g (O/G, N P) · cols_g^T           (cols saved by forward)
    grad input   gcols_g (K, N P) = W_g^T · gY_g                         then col2im -> grad_x
with K = C/G kH kW and P = Ho Wo; gY is grad_y moved to (O, N P) by the same pass that sums grad_b.
"""
import threading
import weakref

import numpy as np

from ..reference import conv as _reference
from ..reference.conv import conv_output_size

from . import _blas, _im2col

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]

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
    """y = W · im2col(x) + b: one im2col over the batch, one GEMM per group, bias in the epilogue."""
    if np.dtype(x.dtype) not in _COMPILED_DTYPES:
        return _reference.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    dtype = x.dtype
    weight = np.ascontiguousarray(weight, dtype)
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    ho, wo = _output_hw(x.shape, (kh, kw), stride, padding, dilation)
    k = cg * kh * kw                                                   # GEMM depth per group
    cols = _buffers.empty((c * kh * kw, n * ho * wo), dtype)
    _im2col.im2col(x, cols.reshape(-1), (kh, kw), stride, padding, dilation, True)

    w_g = weight.reshape(groups, o // groups, k)                       # (G, O/G, K)
    cols_g = cols.reshape(groups, k, n * ho * wo)                      # (G, K, N P)
    y_cnhw = _buffers.empty((groups, o // groups, n * ho * wo), dtype)
    for g in range(groups):
        _blas.gemm(w_g[g], cols_g[g], y_cnhw[g])

    y = np.empty((n, o, ho, wo), dtype)
    _im2col.cnhw_to_nchw(y_cnhw.reshape(o, n, ho * wo), y.reshape(n, o, ho * wo),
                         None if bias is None else np.ascontiguousarray(bias, dtype))
    saved = (x.shape, weight, cols, stride, padding, dilation, groups, bias is not None)
    return y, saved


def conv2d_backward(grad_y, saved, needs_input_grad):
    """(grad_x, grad_W, grad_b); grad_W reuses the forward's cols, grad_x = col2im(W^T gY)."""
    x_shape, weight, cols, stride, padding, dilation, groups, has_bias = saved
    if np.dtype(cols.dtype) not in _COMPILED_DTYPES:
        return _reference.conv2d_backward(grad_y, saved, needs_input_grad)
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
