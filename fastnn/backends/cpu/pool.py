"""Compiled max and average pooling (csrc/pool.c, OpenMP over the N*C planes).

Mirrors ``reference/pool.py``: max pooling with int64 flat H*W argmax indices (padding = -inf,
first maximum, NaN wins), average pooling with count_include_pad=True.
"""
import numpy as np

from ..reference import pool as _reference
from ..reference.pool import pool_output_size
from . import _pool

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"]

_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _output_shape(x_shape, kernel_size, stride, padding):
    n, c, h, w = x_shape
    return (n, c, pool_output_size(h, kernel_size[0], stride[0], padding[0]),
            pool_output_size(w, kernel_size[1], stride[1], padding[1]))


def max_pool2d_forward(x, kernel_size, stride, padding):
    """(y, indices): window maxima and their flat H*W positions (int64)."""
    if np.dtype(x.dtype) not in _COMPILED_DTYPES:
        return _reference.max_pool2d_forward(x, kernel_size, stride, padding)
    x = np.ascontiguousarray(x)
    shape = _output_shape(x.shape, kernel_size, stride, padding)
    y = np.empty(shape, x.dtype)
    indices = np.empty(shape, np.int64)
    _pool.max_pool2d_forward(x, y, indices, kernel_size, stride, padding)
    return y, indices


def max_pool2d_backward(grad_y, indices, x_shape):
    """grad_x[n, c].flat[indices[n, c]] += grad_y[n, c]."""
    if np.dtype(grad_y.dtype) not in _COMPILED_DTYPES:
        return _reference.max_pool2d_backward(grad_y, indices, x_shape)
    grad_y = np.ascontiguousarray(grad_y)
    indices = np.ascontiguousarray(indices, np.int64)
    grad_x = np.empty(tuple(x_shape), grad_y.dtype)
    _pool.max_pool2d_backward(grad_y, indices, grad_x)
    return grad_x


def avg_pool2d_forward(x, kernel_size, stride, padding):
    """y = Σ window / (kH kW), zeros in the padding."""
    if np.dtype(x.dtype) not in _COMPILED_DTYPES:
        return _reference.avg_pool2d_forward(x, kernel_size, stride, padding)
    x = np.ascontiguousarray(x)
    y = np.empty(_output_shape(x.shape, kernel_size, stride, padding), x.dtype)
    _pool.avg_pool2d_forward(x, y, kernel_size, stride, padding)
    return y


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    """grad_x[window] += grad_y / (kH kW) for every window."""
    if np.dtype(grad_y.dtype) not in _COMPILED_DTYPES:
        return _reference.avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding)
    grad_y = np.ascontiguousarray(grad_y)
    grad_x = np.empty(tuple(x_shape), grad_y.dtype)
    _pool.avg_pool2d_backward(grad_y, grad_x, kernel_size, stride, padding)
    return grad_x
