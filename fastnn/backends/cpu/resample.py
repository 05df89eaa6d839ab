"""Compiled separable resampling (y = A_h x A_wᵀ per plane) and max-unpooling, parallel over planes.

Mirrors ``reference/resample.py``; the interpolation/averaging matrices come from the reference.
"""
import numba as nb
import numpy as np

from ..reference.resample import adaptive_avg_matrix, interpolation_matrix  # noqa: F401 (re-exported)
from ._numba import fused_kernel

__all__ = ["resample2d_forward", "resample2d_backward", "max_unpool2d_forward", "max_unpool2d_backward"]


@fused_kernel
def _resample(x, a_h, a_w, y):
    planes, h, w = x.shape
    ho, wo = a_h.shape[0], a_w.shape[0]
    for p in nb.prange(planes):
        tmp = np.zeros((ho, w), dtype=x.dtype)  # A_h x
        for i in range(ho):
            for k in range(h):
                a = a_h[i, k]
                if a != 0:
                    for j in range(w):
                        tmp[i, j] += a * x[p, k, j]
        for i in range(ho):
            for j in range(wo):
                s = 0.0
                for k in range(w):
                    s += tmp[i, k] * a_w[j, k]
                y[p, i, j] = s


def _apply(x, a_h, a_w):
    n, c, h, w = x.shape
    x3 = np.ascontiguousarray(x).reshape(n * c, h, w)
    y = np.empty((n * c, a_h.shape[0], a_w.shape[0]), x.dtype)
    _resample(x3, np.ascontiguousarray(a_h, dtype=x.dtype), np.ascontiguousarray(a_w, dtype=x.dtype), y)
    return y.reshape(n, c, a_h.shape[0], a_w.shape[0])


def resample2d_forward(x, matrix_h, matrix_w):
    """y = A_h x A_wᵀ for every (n, c) plane."""
    return _apply(x, matrix_h, matrix_w)


def resample2d_backward(grad_y, matrix_h, matrix_w):
    """grad_x = A_hᵀ grad_y A_w (the same kernel with transposed matrices)."""
    return _apply(grad_y, matrix_h.T, matrix_w.T)


@fused_kernel
def _unpool(x, indices, y):
    planes, m = x.shape
    for p in nb.prange(planes):
        for i in range(m):
            y[p, indices[p, i]] = x[p, i]


@fused_kernel
def _unpool_backward(grad_y, indices, grad_x):
    planes, m = indices.shape
    for p in nb.prange(planes):
        for i in range(m):
            grad_x[p, i] = grad_y[p, indices[p, i]]


def max_unpool2d_forward(x, indices, output_hw):
    """Scatter x (N, C, h, w) to flat positions ``indices`` of zero (N, C, Ho, Wo) planes."""
    n, c = x.shape[:2]
    y = np.zeros((n * c, output_hw[0] * output_hw[1]), x.dtype)
    _unpool(np.ascontiguousarray(x).reshape(n * c, -1), np.ascontiguousarray(indices).reshape(n * c, -1), y)
    return y.reshape(n, c, *output_hw)


def max_unpool2d_backward(grad_y, indices):
    """grad_x = grad_y gathered at ``indices``."""
    n, c = grad_y.shape[:2]
    grad_x = np.empty((n * c, indices[0, 0].size), grad_y.dtype)
    _unpool_backward(np.ascontiguousarray(grad_y).reshape(n * c, -1),
                     np.ascontiguousarray(indices).reshape(n * c, -1), grad_x)
    return grad_x.reshape(indices.shape)
