"""Separable 2-D resampling: y = A_h · x · A_wᵀ per (n, c) plane.

Upsampling (nearest, bilinear) and adaptive average pooling are all linear maps that act on rows
and columns independently, so each is a pair of small matrices A_h (Ho, H) and A_w (Wo, W):
    y[n, c] = A_h x[n, c] A_wᵀ,      grad_x[n, c] = A_hᵀ grad_y[n, c] A_w.
"""
import math

import numpy as np

__all__ = ["interpolation_matrix", "adaptive_avg_matrix", "resample2d_forward", "resample2d_backward",
           "max_unpool2d_forward", "max_unpool2d_backward", "max_unpool2d_indices_outside"]


def interpolation_matrix(in_size, out_size, mode, scale, align_corners, dtype):
    """(out_size, in_size) matrix of PyTorch's 1-D ``nearest`` or ``linear`` interpolation.

    ``scale`` is in_size / out_size as PyTorch uses it (1 / scale_factor when one was given).
    """
    a = np.zeros((out_size, in_size), dtype)
    rows = np.arange(out_size)
    if mode == "nearest":
        src = np.minimum(np.floor(rows * scale).astype(np.int64), in_size - 1)
        a[rows, src] = 1
        return a
    if align_corners:
        src = rows * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros(out_size)
    else:
        src = np.maximum((rows + 0.5) * scale - 0.5, 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    np.add.at(a, (rows, i0), 1 - lam)
    np.add.at(a, (rows, i1), lam)
    return a


def adaptive_avg_matrix(in_size, out_size, dtype):
    """(out_size, in_size) matrix averaging window i = [floor(i H / Ho), ceil((i + 1) H / Ho))."""
    a = np.zeros((out_size, in_size), dtype)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = math.ceil((i + 1) * in_size / out_size)
        a[i, start:end] = 1 / (end - start)
    return a


def resample2d_forward(x, matrix_h, matrix_w):
    """y = A_h x A_wᵀ for every (n, c) plane. x (N, C, H, W) -> y (N, C, Ho, Wo)."""
    return np.matmul(np.matmul(matrix_h, x), matrix_w.T)


def resample2d_backward(grad_y, matrix_h, matrix_w):
    """grad_x = A_hᵀ grad_y A_w."""
    return np.matmul(np.matmul(matrix_h.T, grad_y), matrix_w)


def max_unpool2d_forward(x, indices, output_hw):
    """Scatter each value of x (N, C, h, w) to position ``indices`` (flat in the Ho*Wo plane)."""
    n, c = x.shape[:2]
    y = np.zeros((n, c, output_hw[0] * output_hw[1]), x.dtype)
    np.put_along_axis(y, indices.reshape(n, c, -1), x.reshape(n, c, -1), axis=2)
    return y.reshape(n, c, *output_hw)


def max_unpool2d_backward(grad_y, indices):
    """grad_x = grad_y gathered at ``indices``."""
    n, c = grad_y.shape[:2]
    flat = grad_y.reshape(n, c, -1)
    return np.take_along_axis(flat, indices.reshape(n, c, -1), axis=2).reshape(indices.shape)


def max_unpool2d_indices_outside(indices, plane):
    """How many of ``indices`` lie outside [0, plane): max_unpool2d's argument check, run where
    the indices live."""
    return int(np.count_nonzero((indices < 0) | (indices >= plane)))
