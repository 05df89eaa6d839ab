"""Fused loss kernels, mirroring ``reference/loss.py``: one pass forward, one pass backward.

* softmax + cross-entropy (N, C logits): loss_n = -sum_c q_nc log softmax(x_n)_c,
  q = (1-ε) onehot + ε/C; grad = (softmax(x) - q) * grad_loss / N.
* NLL on (N, C) log-probabilities: loss_n = -lp[n, t_n]; grad[n, t_n] = -grad_loss / N.
* L1: diff and |diff| in one pass; grad = sign(diff) * grad_loss (/ n).
* BCE with logits: w t softplus(-x) + (1 - t) softplus(x), softplus(z) = max(z, 0) + log1p(e^-|z|);
  grad_x = (σ(x)(w t + 1 - t) - w t) s, grad_t = (w softplus(-x) - softplus(x)) s.
Other shapes (N, C, d1, ...) of cross-entropy and NLL use the reference kernel. The reductions
(mean/sum) are NumPy's pairwise sums over the per-item losses, as in the reference.
"""
import math

import numba as nb
import numpy as np

from ..reference import loss as _reference
from ..reference.loss import _reduce
from ._numba import cached_njit, fused_kernel

__all__ = ["cross_entropy_forward", "cross_entropy_backward", "nll_loss_forward", "nll_loss_backward",
           "l1_loss_forward", "l1_loss_backward", "bce_with_logits_forward", "bce_with_logits_backward"]


def _scale(grad_loss, reduction, n, dtype):
    """Per-item factor of a backward kernel: one value, grad_loss (/ n items for 'mean'), or for
    'none' the n values of grad_loss. Kernels read scale[i] when it has more than one entry."""
    if reduction == "none":
        return np.ascontiguousarray(grad_loss, dtype=dtype).reshape(-1)
    return np.full(1, float(grad_loss) / (max(n, 1) if reduction == "mean" else 1), dtype)


@fused_kernel
def _forward(logits, target, smoothing, probs, losses):
    n, c = logits.shape
    for i in nb.prange(n):
        row_max = logits[i, 0]
        for j in range(1, c):
            if logits[i, j] > row_max:
                row_max = logits[i, j]
        total = 0.0
        for j in range(c):
            e = math.exp(logits[i, j] - row_max)
            probs[i, j] = e
            total += e
        log_total = math.log(total)
        sum_log_p = 0.0
        for j in range(c):
            probs[i, j] /= total
            sum_log_p += logits[i, j] - row_max - log_total
        picked = logits[i, target[i]] - row_max - log_total
        losses[i] = -(1 - smoothing) * picked - smoothing / c * sum_log_p


@fused_kernel
def _backward(probs, target, smoothing, scale, grad):
    n, c = probs.shape
    off = smoothing / c
    per_item = scale.size > 1
    for i in nb.prange(n):
        s = scale[i] if per_item else scale[0]
        for j in range(c):
            grad[i, j] = (probs[i, j] - off) * s
        grad[i, target[i]] -= (1 - smoothing) * s


def cross_entropy_forward(logits, target, reduction, label_smoothing):
    if logits.ndim != 2:
        return _reference.cross_entropy_forward(logits, target, reduction, label_smoothing)
    logits = np.ascontiguousarray(logits)
    probs = np.empty_like(logits)
    losses = np.empty(logits.shape[0], dtype=np.float64)
    _forward(logits, np.ascontiguousarray(target), label_smoothing, probs, losses)
    if reduction == "mean":
        loss = np.asarray(losses.mean(), dtype=logits.dtype)
    elif reduction == "sum":
        loss = np.asarray(losses.sum(), dtype=logits.dtype)
    else:
        loss = losses.astype(logits.dtype)
    return loss, ("fused", probs, target, reduction, label_smoothing)


def cross_entropy_backward(grad_loss, saved):
    if not (isinstance(saved[0], str) and saved[0] == "fused"):
        return _reference.cross_entropy_backward(grad_loss, saved)
    _, probs, target, reduction, label_smoothing = saved
    n = probs.shape[0]
    scale = _scale(grad_loss, reduction, n, np.float64)
    grad = np.empty_like(probs)
    _backward(probs, np.ascontiguousarray(target), label_smoothing, scale, grad)
    return grad


@fused_kernel
def _nll_forward(log_probs, target, losses):
    for i in nb.prange(log_probs.shape[0]):
        losses[i] = -log_probs[i, target[i]]


@fused_kernel
def _nll_backward(grad, target, scale):
    n, c = grad.shape
    per_item = scale.size > 1
    for i in nb.prange(n):
        for j in range(c):
            grad[i, j] = 0
        grad[i, target[i]] = -(scale[i] if per_item else scale[0])


def nll_loss_forward(log_probs, target, reduction):
    if log_probs.ndim != 2:
        return _reference.nll_loss_forward(log_probs, target, reduction)
    losses = np.empty(log_probs.shape[0], log_probs.dtype)
    _nll_forward(np.ascontiguousarray(log_probs), np.ascontiguousarray(target), losses)
    return _reduce(losses, reduction)


def nll_loss_backward(grad_loss, log_probs_shape, dtype, target, reduction):
    if len(log_probs_shape) != 2:
        return _reference.nll_loss_backward(grad_loss, log_probs_shape, dtype, target, reduction)
    grad = np.empty(log_probs_shape, dtype)
    n = log_probs_shape[0]
    scale = _scale(grad_loss, reduction, n, dtype)
    _nll_backward(grad, np.ascontiguousarray(target), scale)
    return grad


@fused_kernel
def _l1_forward(x, target, diff, absolute):
    for i in nb.prange(x.size):
        d = x[i] - target[i]
        diff[i] = d
        absolute[i] = abs(d)


@fused_kernel
def _l1_backward(diff, scale, grad):
    per_item = scale.size > 1
    for i in nb.prange(diff.size):
        d = diff[i]
        sign = 1.0 if d > 0 else (-1.0 if d < 0 else (d if d != d else 0.0))   # NaN stays NaN
        grad[i] = sign * (scale[i] if per_item else scale[0])


def l1_loss_forward(x, target, reduction):
    x, target = np.ascontiguousarray(x), np.ascontiguousarray(target, dtype=x.dtype)
    if x.shape != target.shape:
        return _reference.l1_loss_forward(x, target, reduction)
    diff, absolute = np.empty_like(x), np.empty_like(x)
    _l1_forward(x.reshape(-1), target.reshape(-1), diff.reshape(-1), absolute.reshape(-1))
    return _reduce(absolute, reduction), diff


def l1_loss_backward(grad_loss, diff, reduction):
    grad = np.empty_like(diff)
    scale = _scale(grad_loss, reduction, diff.size, diff.dtype)
    _l1_backward(np.ascontiguousarray(diff).reshape(-1), scale, grad.reshape(-1))
    return grad


@cached_njit(inline="always")
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@fused_kernel
def _bce_forward(x, target, weight, per_item):
    for i in nb.prange(x.size):
        t = target[i]
        per_item[i] = weight[i] * t * _softplus(-x[i]) + (1 - t) * _softplus(x[i])


@fused_kernel
def _bce_backward(x, target, weight, scale, grad_x, grad_t):
    per_item = scale.size > 1
    for i in nb.prange(x.size):
        v, t, w = x[i], target[i], weight[i]
        e = math.exp(-abs(v))
        sig = 1 / (1 + e) if v >= 0 else e / (1 + e)
        s = scale[i] if per_item else scale[0]
        grad_x[i] = (sig * (w * t + 1 - t) - w * t) * s
        grad_t[i] = (w * _softplus(-v) - _softplus(v)) * s


def _bce_operands(x, target, pos_weight):
    x = np.ascontiguousarray(x)
    target = np.ascontiguousarray(target, dtype=x.dtype)
    weight = np.ones(x.shape, x.dtype) if pos_weight is None else np.ascontiguousarray(
        np.broadcast_to(np.asarray(pos_weight, x.dtype), x.shape))
    return x, target, weight


def bce_with_logits_forward(x, target, reduction, pos_weight=None):
    if x.shape != np.shape(target):
        return _reference.bce_with_logits_forward(x, target, reduction, pos_weight)
    x, target, weight = _bce_operands(x, target, pos_weight)
    per_item = np.empty_like(x)
    _bce_forward(x.reshape(-1), target.reshape(-1), weight.reshape(-1), per_item.reshape(-1))
    return _reduce(per_item, reduction)


def bce_with_logits_backward(grad_loss, x, target, reduction, pos_weight=None):
    if x.shape != np.shape(target):
        return _reference.bce_with_logits_backward(grad_loss, x, target, reduction, pos_weight)
    x, target, weight = _bce_operands(x, target, pos_weight)
    grad_x, grad_t = np.empty_like(x), np.empty_like(x)
    scale = _scale(grad_loss, reduction, x.size, x.dtype)
    _bce_backward(x.reshape(-1), target.reshape(-1), weight.reshape(-1), scale,
                  grad_x.reshape(-1), grad_t.reshape(-1))
    return grad_x, grad_t
