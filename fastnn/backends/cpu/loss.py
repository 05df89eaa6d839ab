"""Softmax + cross-entropy fused into one forward and one backward kernel (N, C logits).

Mirrors ``reference/loss.py``: loss_n = -sum_c q_nc log softmax(x_n)_c, q = (1-ε) onehot + ε/C;
grad = (softmax(x) - q) * grad_loss / N. Other shapes (N, C, d1, ...) use the reference kernel.
"""
import math

import numba as nb
import numpy as np

from ..reference import loss as _reference
from ._numba import fused_kernel

__all__ = ["cross_entropy_forward", "cross_entropy_backward"]


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
    for i in nb.prange(n):
        s = scale[i]
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
    if reduction == "none":
        scale = np.ascontiguousarray(grad_loss, dtype=np.float64).reshape(n)
    else:
        g = float(grad_loss) / (n if reduction == "mean" else 1)
        scale = np.full(n, g)
    grad = np.empty_like(probs)
    _backward(probs, np.ascontiguousarray(target), label_smoothing, scale, grad)
    return grad
