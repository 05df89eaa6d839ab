"""Loss functions."""

from __future__ import annotations

import builtins  # noqa: F401
import numbers  # noqa: F401

import numpy as np  # noqa: F401

from .. import autograd  # noqa: F401
from .. import device as _device
from ..backend import kernels_for  # noqa: F401
from ..tensor import Tensor, _to_array, as_tensor  # noqa: F401
from ._common import (_axes, _check_ndim, _data, _dim, _float_tensor, _host_only, _pair, _reduction,  # noqa: F401
                      _result, _same_dtype, _unbroadcast)



def cross_entropy(input, target, reduction="mean", label_smoothing=0.0) -> Tensor:
    """Softmax cross-entropy with integer class targets and optional label smoothing.

    Shape: input (N, C) or (N, C, d1, ...) logits; target (N,) or (N, d1, ...) int64 in [0, C).
    """
    op = "cross_entropy"
    x = _float_tensor(input, op)
    _reduction(op, reduction)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C) or (N, C, d1, ...) logits, got shape {tuple(x.shape)}")
    k = kernels_for(x)
    if k.NAME == "cuda":
        return _cross_entropy_cuda(k, x, target, reduction, label_smoothing)
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
    loss, saved = k.cross_entropy_forward(x.data, t.astype(np.int64, copy=False), reduction, float(label_smoothing))
    return _result(loss, op, (x,), lambda g: (k.cross_entropy_backward(g, saved),))


def _cross_entropy_cuda(k, x, target, reduction, label_smoothing):
    """cross_entropy on the cuda device: the target's values are not read back to the host (no
    round trip); a target outside [0, C) makes its item's loss NaN instead of raising."""
    op = "cross_entropy"
    t = _device_class_target(op, k, x, target)
    if not isinstance(label_smoothing, numbers.Real) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    loss, saved = k.cross_entropy_forward(x.data, t, reduction, float(label_smoothing))
    return _result(loss, op, (x,), lambda g: (k.cross_entropy_backward(g, saved),))


def _device_class_target(op, k, x, target):
    """The integer class target of a loss on the cuda device, as an int64 device array. Its values
    are not read back to the host (no round trip): a target outside [0, C) gives its item a NaN
    loss instead of raising."""
    if isinstance(target, Tensor) and target.device != "cuda":
        raise RuntimeError(f"{op}: expected all tensors on the same device, got input on cuda and target on "
                           f"{target.device}; move the target with .to('cuda')")
    t = _data(target)
    if not _device.is_device_array(t):
        t = k.to_device(_to_array(t, name=f"{op}: target"))   # a NumPy target: host to device only
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices (int64), got dtype {t.dtype}")
    expected = (x.shape[0],) + tuple(x.shape[2:])
    if tuple(t.shape) != expected:
        raise ValueError(
            f"{op}: target must have shape {expected} for input of shape {tuple(x.shape)}, got {tuple(t.shape)}")
    return k.astype(t, np.int64)


def mse_loss(input, target, reduction="mean") -> Tensor:
    """mean((input - target)²) (or sum / none)."""
    op = "mse_loss"
    x = _float_tensor(input, op)
    t = _float_tensor(target, op, "target")
    _reduction(op, reduction)
    if x.shape != t.shape:
        raise ValueError(f"{op}: input shape {tuple(x.shape)} and target shape {tuple(t.shape)} must match")
    k = kernels_for(x, t)
    loss, diff = k.mse_loss_forward(x.data, _data_as(t, x.dtype), reduction)

    def backward(g):
        gx = k.mse_loss_backward(g if reduction != "none" else g, diff, reduction)
        return gx, (_negative(k, gx) if t.requires_grad else None)

    return _result(loss, op, (x, t), backward)


def _class_target(op, x, target):
    _host_only(op, x, target)
    t = _to_array(_data(target), name=f"{op}: target")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices (int64), got dtype {t.dtype}")
    expected = (x.shape[0],) + tuple(x.shape[2:])
    if tuple(t.shape) != expected:
        raise ValueError(f"{op}: target must have shape {expected} for input of shape {tuple(x.shape)}, "
                         f"got {tuple(t.shape)}")
    c = x.shape[1]
    if t.size and (t.min() < 0 or t.max() >= c):
        bad = t.min() if t.min() < 0 else t.max()
        raise IndexError(f"{op}: target value {int(bad)} is out of range for {c} classes (expected 0..{c - 1})")
    return t.astype(np.int64, copy=False)


def nll_loss(input, target, reduction="mean") -> Tensor:
    """Negative log-likelihood of integer targets given log-probabilities (N, C, *). On the cuda
    device, like cross_entropy, a target outside [0, C) gives a NaN loss instead of raising."""
    op = "nll_loss"
    x = _float_tensor(input, op)
    _reduction(op, reduction)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C) or (N, C, d1, ...) log-probabilities, got shape {tuple(x.shape)}")
    k = kernels_for(x)
    t = _device_class_target(op, k, x, target) if k.NAME == "cuda" else _class_target(op, x, target)
    loss = k.nll_loss_forward(x.data, t, reduction)
    return _result(loss, op, (x,), lambda g: (k.nll_loss_backward(g, x.shape, x.dtype, t, reduction),))


def _data_as(t, dtype):
    """t's array in ``dtype`` (a converting copy on t's device when it differs)."""
    return t.data if t.dtype == dtype else t.type(dtype).data


def _negative(k, a):
    """-a for a host array or a cuda device array (the gradient of a paired loss's target)."""
    return k.unary("neg", a).reshape(a.shape) if _device.is_device_array(a) else -a


def _paired_loss(op, input, target, reduction):
    x = _float_tensor(input, op)
    t = _float_tensor(target, op, "target")
    _reduction(op, reduction)
    if x.shape != t.shape:
        raise ValueError(f"{op}: input shape {tuple(x.shape)} and target shape {tuple(t.shape)} must match")
    return x, t


def l1_loss(input, target, reduction="mean") -> Tensor:
    """mean(|input - target|) (or sum / none)."""
    x, t = _paired_loss("l1_loss", input, target, reduction)
    k = kernels_for(x, t)
    loss, diff = k.l1_loss_forward(x.data, _data_as(t, x.dtype), reduction)

    def backward(g):
        gx = k.l1_loss_backward(g, diff, reduction)
        return gx, (_negative(k, gx) if t.requires_grad else None)

    return _result(loss, "l1_loss", (x, t), backward)


def binary_cross_entropy_with_logits(input, target, reduction="mean", pos_weight=None) -> Tensor:
    """-[w_p t log σ(x) + (1 - t) log(1 - σ(x))], stable for large |x|; target in [0, 1]."""
    op = "binary_cross_entropy_with_logits"
    x, t = _paired_loss(op, input, target, reduction)
    pw = None
    if pos_weight is not None:
        w = _float_tensor(pos_weight, op, "pos_weight")
        pw = _data_as(w.to(x.device) if w.device != x.device else w, x.dtype)
    k = kernels_for(x, t)
    td = _data_as(t, x.dtype)
    loss = k.bce_with_logits_forward(x.data, td, reduction, pw)
    return _result(loss, op, (x, t), lambda g: k.bce_with_logits_backward(g, x.data, td, reduction, pw))


def pairwise_distance(x1, x2, p=2.0, eps=1e-6) -> Tensor:
    """||x1 - x2 + eps||_p along the last dim (PyTorch's pairwise_distance)."""
    from .tensor_ops import abs as abs_, pow as pow_, sub, sum as sum_
    diff = sub(x1, x2) + eps
    return pow_(sum_(pow_(abs_(diff), p), -1), 1.0 / p)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, reduction="mean") -> Tensor:
    """mean(max(d(a, p) - d(a, n) + margin, 0)), d = pairwise_distance; pulls a to p, pushes n away.

    Shape: anchor, positive, negative (N, D) (or (D,)).
    """
    op = "triplet_margin_loss"
    a = _float_tensor(anchor, op, "anchor")
    pos = _float_tensor(positive, op, "positive")
    neg = _float_tensor(negative, op, "negative")
    _reduction(op, reduction)
    if not (a.shape == pos.shape == neg.shape) or a.ndim not in (1, 2):
        raise ValueError(f"{op}: anchor, positive and negative must share one (N, D) or (D,) shape, got "
                         f"{tuple(a.shape)}, {tuple(pos.shape)}, {tuple(neg.shape)}")
    if not isinstance(p, numbers.Real) or p <= 0:
        raise ValueError(f"{op}: p must be a positive norm degree, got {p!r}")
    from .activation import relu
    from .tensor_ops import mean as mean_, sum as sum_
    d_pos = pairwise_distance(a, pos, p, eps)
    d_neg = pairwise_distance(a, neg, p, eps)
    if swap:
        d_swap = pairwise_distance(pos, neg, p, eps)
        d_neg = _min(d_neg, d_swap)
    losses = relu(d_pos - d_neg + margin)
    if reduction == "mean":
        return mean_(losses)
    if reduction == "sum":
        return sum_(losses)
    return losses


def _min(a, b):
    _host_only("triplet_margin_loss (swap)", a, b)
    take_a = a.data <= b.data
    return _result(np.where(take_a, a.data, b.data), "minimum", (a, b),
                   lambda g: (g * take_a, g * ~take_a))


def one_hot(tensor, num_classes=-1) -> Tensor:
    """Integer indices (*) -> int64 one-hot (*, num_classes) (num_classes=-1: max index + 1)."""
    op = "one_hot"
    _host_only(op, tensor)
    t = _to_array(_data(tensor), name=f"{op}: tensor")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: tensor must hold integer class indices, got dtype {t.dtype}")
    if num_classes == -1:
        num_classes = int(t.max()) + 1 if t.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"{op}: num_classes must be a positive int (or -1), got {num_classes!r}")
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        bad = t.min() if t.min() < 0 else t.max()
        raise IndexError(f"{op}: class index {int(bad)} is out of range for num_classes={num_classes}")
    out = np.zeros(t.shape + (num_classes,), np.int64)
    np.put_along_axis(out, t[..., None].astype(np.int64), 1, axis=-1)
    return Tensor(out)
