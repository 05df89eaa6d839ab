"""Separable 2-D resampling on the device (same contract as ``reference/resample.py``): upsampling
(nearest, bilinear) and adaptive average pooling as y = A_h x A_wᵀ per (n, c) plane.

Two launches of the tiled GEMM (``linear.gemm``) each way, with the planes folded into the GEMM's
columns by its split-column layout (no transposing copies):
    T (N C H, Wo)       = x (N C H, W) A_wᵀ                       plain row-major product
    y (Ho, N C · Wo)    = A_h (Ho, H) T (H, N C · Wo)             T read as (N C, H, Wo), p = Wo
and backward grad_x = A_hᵀ grad_y A_w the same way. The small matrices are built on the host by the
reference and copied to the device once per (size, mode, dtype): a cache, so a training step makes
no transfer for them.
"""
from __future__ import annotations

import numpy as np

from ..reference import resample as _reference
from ._core import empty, to_device
from .elementwise import contiguous
from .linear import gemm, plain

__all__ = ["interpolation_matrix", "adaptive_avg_matrix", "resample2d_forward", "resample2d_backward"]

_MATRICES = {}      # (builder, arguments) -> device array


def _on_device(builder, *args):
    key = (builder.__name__,) + tuple(np.dtype(a).str if isinstance(a, (type, np.dtype)) else a for a in args)
    matrix = _MATRICES.get(key)
    if matrix is None:
        matrix = _MATRICES[key] = to_device(np.ascontiguousarray(builder(*args)))
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
    if not (planes and rows_out and cols_out):
        return out
    t = empty((planes * h, cols_out), x.dtype)
    xa, px = plain(x.reshape(planes * h, w))
    ra, pr = plain(right)
    # T = X op(right)ᵀ: op(right)ᵀ is right stored transposed unless right_transposed
    gemm(xa, 0, px, ra, int(not right_transposed), pr, t.reshape(1, planes * h, cols_out), cols_out,
         planes * h, cols_out, w)
    la, pl = plain(left)
    gemm(la, int(left_transposed), pl, t.reshape(planes, h, cols_out), 0, cols_out,
         out.reshape(planes, rows_out, cols_out), cols_out, rows_out, planes * cols_out, h)
    return out


def resample2d_forward(x, matrix_h, matrix_w):
    """y = A_h x A_wᵀ for every (n, c) plane. x (N, C, H, W) -> y (N, C, Ho, Wo)."""
    return _separable(x, matrix_h, False, matrix_w, False)


def resample2d_backward(grad_y, matrix_h, matrix_w):
    """grad_x = A_hᵀ grad_y A_w."""
    return _separable(grad_y, matrix_h, True, matrix_w, True)
