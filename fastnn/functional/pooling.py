"""Max and average pooling."""

from __future__ import annotations


from ..backend import kernels_for
from ..tensor import Tensor
from ._common import _result, _float_tensor, _check_ndim, _pair


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
