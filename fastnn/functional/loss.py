"""Loss functions."""

from __future__ import annotations

import numbers

import numpy as np

from ..backend import kernels_for
from ..tensor import Tensor, _to_array
from ._common import _result, _float_tensor, _data, _reduction


def cross_entropy(input, target, reduction="mean", label_smoothing=0.0) -> Tensor:
    """Softmax cross-entropy with integer class targets and optional label smoothing.

    Shape: input (N, C) or (N, C, d1, ...) logits; target (N,) or (N, d1, ...) int64 in [0, C).
    """
    op = "cross_entropy"
    x = _float_tensor(input, op)
    _reduction(op, reduction)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C) or (N, C, d1, ...) logits, got shape {tuple(x.shape)}")
    t = _to_array(_data(target), name=f"{op}: target")
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: target must hold integer class indices (int64), got dtype {t.dtype}; "
            "for probabilities use a one-hot target with mse_loss or binary_cross_entropy_with_logits"
        )
    expected = (x.shape[0],) + tuple(x.shape[2:])
    if tuple(t.shape) != expected:
        raise ValueError(
            f"{op}: target must have shape {expected} for input of shape {tuple(x.shape)}, got {tuple(t.shape)}"
        )
    c = x.shape[1]
    if t.size and (t.min() < 0 or t.max() >= c):
        bad = t.min() if t.min() < 0 else t.max()
        raise IndexError(f"{op}: target value {int(bad)} is out of range for {c} classes (expected 0..{c - 1})")
    if not isinstance(label_smoothing, numbers.Real) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    k = kernels_for(x)
    loss, saved = k.cross_entropy_forward(x.data, t.astype(np.int64, copy=False), reduction, float(label_smoothing))
    return _result(loss, op, (x,), lambda g: (k.cross_entropy_backward(g, saved),))


def mse_loss(input, target, reduction="mean") -> Tensor:
    """mean((input - target)²) (or sum / none)."""
    op = "mse_loss"
    x = _float_tensor(input, op)
    t = _float_tensor(target, op, "target")
    _reduction(op, reduction)
    if x.shape != t.shape:
        raise ValueError(f"{op}: input shape {tuple(x.shape)} and target shape {tuple(t.shape)} must match")
    k = kernels_for(x, t)
    loss, diff = k.mse_loss_forward(x.data, t.data.astype(x.dtype, copy=False), reduction)

    def backward(g):
        gx = k.mse_loss_backward(g if reduction != "none" else g, diff, reduction)
        return gx, (-gx if t.requires_grad else None)

    return _result(loss, op, (x, t), backward)
