"""Fused Numba kernels for activations: one pass forward, one Hadamard pass backward.

Mirrors ``reference/activation.py``: grad_x = grad_y ⊙ f'(z), with f' written from the output y.
"""
import math

import numba as nb
import numpy as np

from ..reference.dropout import (dropout_forward as reference_dropout_forward, hash_bits, hash_seed, keep_scale,
                                 keep_threshold)
from ._numba import cached_njit, fused_kernel

__all__ = ["relu_forward", "relu_backward", "sigmoid_backward", "tanh_backward", "leaky_relu_forward",
           "leaky_relu_backward", "elu_forward", "elu_backward", "dropout_forward", "dropout_backward"]


@fused_kernel
def _relu_forward(x, y):
    for i in nb.prange(x.size):
        v = x[i]
        y[i] = 0 if v < 0 else v  # NaN propagates, like np.maximum


@fused_kernel
def _relu_backward(grad_y, y, grad_x):
    for i in nb.prange(y.size):
        grad_x[i] = grad_y[i] if y[i] > 0 else 0


@fused_kernel
def _sigmoid_backward(grad_y, y, grad_x):
    for i in nb.prange(y.size):
        grad_x[i] = grad_y[i] * y[i] * (1 - y[i])


@fused_kernel
def _tanh_backward(grad_y, y, grad_x):
    for i in nb.prange(y.size):
        grad_x[i] = grad_y[i] * (1 - y[i] * y[i])


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def relu_forward(x):
    """y = max(x, 0)."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _relu_forward(x.reshape(-1), y.reshape(-1))
    return y


def relu_inplace(y):
    """y = max(y, 0) in place, for an array the caller just created (C-contiguous); returns y."""
    flat = y.reshape(-1)
    _relu_forward(flat, flat)  # element i reads x[i] before it writes y[i]: aliasing is safe
    return y


def _hadamard(kernel, grad_y, y):
    grad_x = np.empty(y.shape, dtype=y.dtype)
    kernel(_flat(grad_y.astype(y.dtype, copy=False)), _flat(y), grad_x.reshape(-1))
    return grad_x


def relu_backward(grad_y, y):
    """grad_x = grad_y ⊙ 1[y > 0]."""
    return _hadamard(_relu_backward, grad_y, y)


def sigmoid_backward(grad_y, y):
    """grad_x = grad_y ⊙ y (1 - y)."""
    return _hadamard(_sigmoid_backward, grad_y, y)


def tanh_backward(grad_y, y):
    """grad_x = grad_y ⊙ (1 - y²)."""
    return _hadamard(_tanh_backward, grad_y, y)


@fused_kernel
def _leaky_relu_forward(x, slope, y):
    for i in nb.prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@fused_kernel
def _leaky_relu_backward(grad_y, x, slope, grad_x):
    for i in nb.prange(x.size):
        grad_x[i] = grad_y[i] if x[i] > 0 else grad_y[i] * slope


@fused_kernel
def _elu_forward(x, alpha, y):
    for i in nb.prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else alpha * math.expm1(v)


@fused_kernel
def _elu_backward(grad_y, y, alpha, grad_x):
    for i in nb.prange(y.size):
        grad_x[i] = grad_y[i] if y[i] > 0 else grad_y[i] * (y[i] + alpha)


def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope * x."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _leaky_relu_forward(x.reshape(-1), negative_slope, y.reshape(-1))
    return y


def leaky_relu_backward(grad_y, x, negative_slope):
    """grad_x = grad_y ⊙ (1 if x > 0 else negative_slope)."""
    grad_x = np.empty(x.shape, dtype=x.dtype)
    _leaky_relu_backward(_flat(grad_y.astype(x.dtype, copy=False)), _flat(x), negative_slope, grad_x.reshape(-1))
    return grad_x


def elu_forward(x, alpha):
    """y = x if x > 0 else alpha (e^x - 1)."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _elu_forward(x.reshape(-1), alpha, y.reshape(-1))
    return y


def elu_backward(grad_y, y, alpha):
    """grad_x = grad_y ⊙ (1 if y > 0 else y + alpha)."""
    grad_x = np.empty(y.shape, dtype=y.dtype)
    _elu_backward(_flat(grad_y.astype(y.dtype, copy=False)), _flat(y), alpha, grad_x.reshape(-1))
    return grad_x


_hash_bits = cached_njit(hash_bits)      # reference/dropout.py's hash, compiled (Numba's int64 wraps like it)


@fused_kernel
def _dropout(x, seed, threshold, scale, y):
    for i in nb.prange(x.size):
        y[i] = x[i] * scale if _hash_bits(seed, i) >= threshold else 0


def dropout_forward(x, p, seed):
    """y = x · 1 / (1 - p) where hash(seed, i) >= ceil(p 2³²) (i: the C-order index), else 0: the
    mask of ``reference/dropout.py`` and of the cuda kernels, never stored."""
    if x.dtype not in (np.float32, np.float64):     # float16: NumPy's (Numba has no float16 on the cpu)
        return reference_dropout_forward(x, p, seed)
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _dropout(x.reshape(-1), hash_seed(seed), keep_threshold(p), keep_scale(p, x.dtype), y.reshape(-1))
    return y


def dropout_backward(grad_y, p, seed):
    """grad_x = grad_y · 1 / (1 - p) where the forward kept the element, else 0 (the same mask)."""
    return dropout_forward(grad_y, p, seed)
