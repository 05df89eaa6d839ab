"""Max and average pooling."""

from __future__ import annotations

import builtins  # noqa: F401
import numbers  # noqa: F401

import numpy as np  # noqa: F401

from .. import autograd  # noqa: F401
from ..backend import kernels_for  # noqa: F401
from ..tensor import Tensor, _to_array, as_tensor  # noqa: F401
from ._common import (_axes, _check_ndim, _data, _dim, _float_tensor, _host_only, _pair, _reduction,  # noqa: F401
                      _result, _same_dtype, _unbroadcast)



def _pool_args(op, x, kernel_size, stride, padding):
    _check_ndim(x, (4,), op, "input", "(N, C, H, W)")
    ks = _pair(kernel_size, op, "kernel_size", 1)
    st = (
        ks
        if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
        else _pair(stride, op, "stride", 1)
    )
    pad = _pair(padding, op, "padding", 0)
    if pad[0] * 2 > ks[0] or pad[1] * 2 > ks[1]:
        raise ValueError(f"{op}: padding {pad} must be at most half of kernel_size {ks}")
    h, w = x.shape[2:]
    if ks[0] > h + 2 * pad[0] or ks[1] > w + 2 * pad[1]:
        raise ValueError(
            f"{op}: kernel_size {ks} is larger than the padded input "
            f"({h + 2 * pad[0]}, {w + 2 * pad[1]}); input shape {tuple(x.shape)}"
        )
    return ks, st, pad


def max_pool2d(input, kernel_size, stride=None, padding=0, return_indices=False):
    """Max over each kernel window; ``indices`` are flat positions in the input's H*W plane.

    Shape: input (N, C, H, W) -> output (N, C, Ho, Wo), Ho = (H + 2 pad - kH) // stride + 1.
    With ``return_indices=True`` returns (output, indices) with int64 indices for ``max_unpool2d``.
    """
    op = "max_pool2d"
    x = _float_tensor(input, op)
    ks, st, pad = _pool_args(op, x, kernel_size, stride, padding)
    k = kernels_for(x)
    y, indices = k.max_pool2d_forward(x.data, ks, st, pad)
    shape = x.shape
    out = _result(y, op, (x,), lambda g: (k.max_pool2d_backward(g, indices, shape),))
    return (out, Tensor(indices)) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0) -> Tensor:
    """Mean over each kernel window (padding counted as zeros, like PyTorch's default)."""
    op = "avg_pool2d"
    x = _float_tensor(input, op)
    ks, st, pad = _pool_args(op, x, kernel_size, stride, padding)
    k = kernels_for(x)
    y = k.avg_pool2d_forward(x.data, ks, st, pad)
    shape = x.shape
    return _result(y, op, (x,), lambda g: (k.avg_pool2d_backward(g, shape, ks, st, pad),))


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Place each value back at the position ``indices`` recorded by ``max_pool2d``; zeros elsewhere.

    Shape: input and indices (N, C, h, w) -> (N, C, Ho, Wo), Ho = (h - 1) stride - 2 pad + kH,
    or ``output_size`` (the last two entries are used).
    """
    op = "max_unpool2d"
    x = _float_tensor(input, op)
    _check_ndim(x, (4,), op, "input", "(N, C, H, W)")
    indices = indices if isinstance(indices, Tensor) else as_tensor(indices, name=f"{op}: indices")
    if np.dtype(indices.dtype).kind not in "iu" or tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{op}: indices must be integers of the input's shape {tuple(x.shape)}, got "
                         f"{indices.dtype} {tuple(indices.shape)}")
    ks = _pair(kernel_size, op, "kernel_size", 1)
    st = ks if stride is None else _pair(stride, op, "stride", 1)
    pad = _pair(padding, op, "padding", 0)
    if output_size is None:
        out_hw = tuple((x.shape[2 + i] - 1) * st[i] - 2 * pad[i] + ks[i] for i in range(2))
    else:
        out_hw = tuple(int(v) for v in tuple(output_size)[-2:])
    plane = out_hw[0] * out_hw[1]
    k = kernels_for(x, indices)      # checked where the indices live: no copy of them to the host
    if k.max_unpool2d_indices_outside(indices.data, plane):
        values = indices.numpy()
        raise ValueError(f"{op}: indices must lie in [0, {plane}) for output size {out_hw}, got values in "
                         f"[{int(values.min())}, {int(values.max())}]")
    idx = indices.data.astype(np.int64, copy=False) if isinstance(indices.data, np.ndarray) else indices.data
    y = k.max_unpool2d_forward(x.data, idx, out_hw)
    return _result(y, op, (x,), lambda g: (k.max_unpool2d_backward(g, idx),))


def _resample(op, x, matrix_h, matrix_w):
    k = kernels_for(x)
    y = k.resample2d_forward(x.data, matrix_h, matrix_w)
    return _result(y, op, (x,), lambda g: (k.resample2d_backward(g, matrix_h, matrix_w),))


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Average pooling to a fixed (Ho, Wo): window i spans [floor(i H / Ho), ceil((i + 1) H / Ho))."""
    op = "adaptive_avg_pool2d"
    x = _float_tensor(input, op)
    _check_ndim(x, (4,), op, "input", "(N, C, H, W)")
    size = (output_size, output_size) if isinstance(output_size, numbers.Integral) else tuple(output_size)
    if len(size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    size = tuple(x.shape[2 + i] if s is None else s for i, s in enumerate(size))
    if any(not isinstance(s, numbers.Integral) or s < 1 for s in size):
        raise ValueError(f"{op}: output_size must be positive, got {output_size!r}")
    k = kernels_for(x)
    return _resample(op, x, k.adaptive_avg_matrix(x.shape[2], size[0], x.dtype),
                     k.adaptive_avg_matrix(x.shape[3], size[1], x.dtype))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None) -> Tensor:
    """Upsample (N, C, H, W) by ``scale_factor`` or to ``size`` with ``nearest`` or ``bilinear``."""
    op = "interpolate"
    x = _float_tensor(input, op)
    _check_ndim(x, (4,), op, "input", "(N, C, H, W)")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"{op}: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if align_corners and mode == "nearest":
        raise ValueError(f"{op}: align_corners can only be set with mode='bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size or scale_factor")
    in_hw = x.shape[2:]
    if scale_factor is not None:
        factors = (scale_factor, scale_factor) if isinstance(scale_factor, numbers.Real) else tuple(scale_factor)
        if len(factors) != 2 or any(not isinstance(f, numbers.Real) or f <= 0 for f in factors):
            raise ValueError(f"{op}: scale_factor must be a positive number or pair, got {scale_factor!r}")
        out_hw = tuple(int(np.floor(in_hw[i] * factors[i])) for i in range(2))
        scales = tuple(1.0 / f for f in factors)
    else:
        out_hw = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
        if len(out_hw) != 2 or any(not isinstance(s, numbers.Integral) or s < 1 for s in out_hw):
            raise ValueError(f"{op}: size must be a positive int or pair, got {size!r}")
        scales = tuple(in_hw[i] / out_hw[i] for i in range(2))
    k = kernels_for(x)
    kind = "nearest" if mode == "nearest" else "linear"
    mats = [k.interpolation_matrix(in_hw[i], out_hw[i], kind, scales[i], bool(align_corners), x.dtype)
            for i in range(2)]
    return _resample(op, x, *mats)
