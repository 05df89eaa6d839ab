"""Separable 2-D resampling on the device (same contract as ``reference/resample.py``): upsampling
(nearest, bilinear) and adaptive average pooling as y = A_h x A_wᵀ per (n, c) plane.

Two launches of the tiled GEMM (``linear.gemm``) each way, with the planes folded into the GEMM's
rows and columns by its split-column layout (no transposing copies):
    T (N C H, Wo)       = x (N C H, W) A_wᵀ                       plain row-major product
    y (Ho, N C · Wo)    = A_h (Ho, H) T (H, N C · Wo)             T read as (N C, H, Wo), p = Wo
and backward grad_x = A_hᵀ grad_y A_w the same way. The small matrices are built on the host by the
reference and copied to the device once per (size, mode, scale, dtype): an LRU cache of 64, so a
training step makes no transfer for them.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..reference import resample as _reference
from ._core import context_key, empty, to_device
from .elementwise import contiguous
from .linear import gemm, plain

__all__ = ["interpolation_matrix", "adaptive_avg_matrix", "resample2d_forward", "resample2d_backward"]

_MATRICES = OrderedDict()       # (builder, arguments) -> device array, least recently used first
_CACHED_MATRICES = 64           # bounded: random-scale augmentation would otherwise grow it forever


def _on_device(builder, *args):
    key = (builder.__name__, context_key()) + tuple(np.dtype(a).str if isinstance(a, (type, np.dtype)) else a
                                                   for a in args)
    matrix = _MATRICES.pop(key, None)
    if matrix is None:
        matrix = to_device(np.ascontiguousarray(builder(*args)))
        while len(_MATRICES) >= _CACHED_MATRICES:
            _MATRICES.popitem(last=False)
    _MATRICES[key] = matrix
    return matrix


def interpolation_matrix(in_size, out_size, mode, scale, align_corners, dtype):
    """The reference's (out_size, in_size) interpolation matrix, as a cached device array."""
    return _on_device(_reference.interpolation_matrix, int(in_size), int(out_size), mode, float(scale),
                      bool(align_corners), np.dtype(dtype))


def adaptive_avg_matrix(in_size, out_size, dtype):
    """The reference's (out_size, in_size) averaging matrix, as a cached device array."""
    return _on_device(_reference.adaptive_avg_matrix, int(in_size), int(out_size), np.dtype(dtype))


def _separable(x, left, left_transposed, right, right_transposed):
    """op(left) x[n, c] op(right)ᵀ for every plane of x (N, C, H, W), with op = transpose where set:
    two GEMM launches."""
    x = contiguous(x)
    n, c, h, w = x.shape
    planes = n * c
    rows_out = left.shape[1] if left_transposed else left.shape[0]      # op(left) is (rows_out, h)
    cols_out = right.shape[1] if right_transposed else right.shape[0]   # op(right) is (cols_out, w)
    out = empty((n, c, rows_out, cols_out), x.dtype)
    if not (planes and rows_out and cols_out and h and w):
        return out
    x3 = x.reshape(planes, h, w)
    out3 = out.reshape(planes, rows_out, cols_out)
    ra, pr = plain(right)
    la, pl = plain(left)
    t = empty((planes * h, cols_out), x.dtype)
    # T = X op(right)ᵀ: op(right)ᵀ is right stored transposed unless right_transposed
    gemm(x3.reshape(1, planes * h, w), 0, w, ra, int(not right_transposed), pr,
         t.reshape(1, planes * h, cols_out), cols_out, planes * h, cols_out, w)
    gemm(la, int(left_transposed), pl, t.reshape(planes, h, cols_out), 0, cols_out,
         out3, cols_out, rows_out, planes * cols_out, h)
    return out


def resample2d_forward(x, matrix_h, matrix_w):
    """y = A_h x A_wᵀ for every (n, c) plane. x (N, C, H, W) -> y (N, C, Ho, Wo)."""
    return _separable(x, matrix_h, False, matrix_w, False)


def resample2d_backward(grad_y, matrix_h, matrix_w):
    """grad_x = A_hᵀ grad_y A_w."""
    return _separable(grad_y, matrix_h, True, matrix_w, True)
