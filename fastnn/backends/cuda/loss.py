"""Softmax, log-softmax, the fused softmax + cross-entropy, and the MSE loss on the device.

Same math as ``reference/softmax.py`` and ``reference/loss.py``. Cross-entropy is one launch
forward (per-row log-sum-exp, the row's loss, its gradient (softmax - q), and the block's
reduction to the mean, all in one kernel) and one launch backward (the saved gradient times the
upstream scalar). Targets outside [0, C) cannot be checked on the host without a device round
trip: their rows produce a NaN loss instead (so ``fit`` stops on it).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ._core import SIMULATOR, empty, launch, launch_grid
from .elementwise import binary, contiguous, scale_by, sum as _sum

__all__ = ["softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "cross_entropy_forward", "cross_entropy_backward", "mse_loss_forward", "mse_loss_backward"]

CE_THREADS = 4 if SIMULATOR else 256


@cuda.jit
def _softmax(x, y, log, outer, c, inner, total):
    """Along the middle axis of x viewed (outer, C, inner): one thread per (outer, inner) line."""
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        base = o * c * inner + i
        m = -math.inf
        for j in range(c):
            m = max(m, x[base + j * inner])
        s = 0.0
        for j in range(c):
            s += math.exp(x[base + j * inner] - m)
        if log:
            lse = m + math.log(s)
            for j in range(c):
                y[base + j * inner] = x[base + j * inner] - lse
        else:
            for j in range(c):
                y[base + j * inner] = math.exp(x[base + j * inner] - m) / s


@cuda.jit
def _softmax_backward(g, y, out, log, c, inner, total):
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        base = o * c * inner + i
        s = 0.0
        for j in range(c):
            if log:
                s += g[base + j * inner]
            else:
                s += g[base + j * inner] * y[base + j * inner]
        for j in range(c):
            k = base + j * inner
            if log:
                out[k] = g[k] - math.exp(y[k]) * s
            else:
                out[k] = y[k] * (g[k] - s)


@cuda.jit
def _cross_entropy(x, target, grad, loss, rows, c, inner, smoothing, scale, per_item):
    """One block: per item (n, d) of logits (N, C, inner): lse, loss, grad = softmax - q;
    loss[0] = scale Σ items (or loss[item] per item when per_item)."""
    buf = cuda.shared.array(CE_THREADS, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for t in range(tid, rows, CE_THREADS):
        n = t // inner
        d = t % inner
        base = n * c * inner + d
        m = -math.inf
        for j in range(c):
            m = max(m, x[base + j * inner])
        s = 0.0
        for j in range(c):
            s += math.exp(x[base + j * inner] - m)
        lse = m + math.log(s)
        tgt = target[t]
        item = 0.0
        if tgt < 0 or tgt >= c:
            item = math.nan
        off = smoothing / c
        for j in range(c):
            logp = x[base + j * inner] - lse
            q = off
            if j == tgt:
                q += 1 - smoothing
            item -= q * logp
            grad[base + j * inner] = math.exp(logp) - q
        if per_item:
            loss[t] = item
        acc += item
    buf[tid] = acc
    cuda.syncthreads()
    step = CE_THREADS // 2
    while step > 0:
        if tid < step:
            buf[tid] += buf[tid + step]
        cuda.syncthreads()
        step //= 2
    if tid == 0 and not per_item:
        loss[0] = buf[0] * scale


def _lines(shape, dim):
    outer = int(np.prod(shape[:dim]))
    inner = int(np.prod(shape[dim + 1:]))
    return outer, shape[dim], inner


def softmax_forward(x, dim):
    x = contiguous(x)
    outer, c, inner = _lines(x.shape, dim)
    y = empty(x.shape, x.dtype)
    launch(_softmax, outer * inner, x.reshape(x.size), y.reshape(y.size), 0, outer, c, inner, outer * inner)
    return y


def log_softmax_forward(x, dim):
    x = contiguous(x)
    outer, c, inner = _lines(x.shape, dim)
    y = empty(x.shape, x.dtype)
    launch(_softmax, outer * inner, x.reshape(x.size), y.reshape(y.size), 1, outer, c, inner, outer * inner)
    return y


def _softmax_grad(grad_y, y, dim, log):
    grad_y = contiguous(grad_y)
    outer, c, inner = _lines(y.shape, dim)
    out = empty(y.shape, y.dtype)
    launch(_softmax_backward, outer * inner, grad_y.reshape(grad_y.size), y.reshape(y.size), out.reshape(out.size),
           log, c, inner, outer * inner)
    return out


def softmax_backward(grad_y, y, dim):
    """grad_x = y ⊙ (grad_y - sum(grad_y ⊙ y))."""
    return _softmax_grad(grad_y, y, dim, 0)


def log_softmax_backward(grad_y, y, dim):
    """grad_x = grad_y - exp(y) sum(grad_y)."""
    return _softmax_grad(grad_y, y, dim, 1)


def cross_entropy_forward(logits, target, reduction, label_smoothing):
    """loss_n = -sum_c q_nc log softmax(logits_n)_c, q = (1 - ε) onehot(target) + ε / C; one launch.

    Returns (loss, saved); ``target`` is an int device array (N, *).
    """
    logits = contiguous(logits)
    n, c = logits.shape[:2]
    inner = int(np.prod(logits.shape[2:]))
    rows = n * inner
    grad = empty(logits.shape, logits.dtype)
    per_item = reduction == "none"
    loss = empty((rows,) if per_item else (1,), logits.dtype)
    scale = 1.0 / rows if reduction == "mean" else 1.0
    launch_grid(_cross_entropy, 1, CE_THREADS, logits.reshape(logits.size), target.reshape(target.size),
                grad.reshape(grad.size), loss, rows, c, inner, float(label_smoothing), scale, int(per_item))
    out = loss.reshape(target.shape) if per_item else loss.reshape(())
    return out, (grad, target.shape, reduction, rows)


def cross_entropy_backward(grad_loss, saved):
    """grad_logits = (softmax(logits) - q) * grad_loss (/ number of items for 'mean')."""
    grad, target_shape, reduction, rows = saved
    if reduction == "none":
        n, c = grad.shape[:2]
        g = grad_loss.reshape((n, 1) + tuple(grad.shape[2:]))
        return binary("mul", grad, g)
    return scale_by(grad, grad_loss, 1.0 / rows if reduction == "mean" else 1.0)


def mse_loss_forward(x, target, reduction):
    """loss = reduce((x - target)²); returns (loss, diff)."""
    diff = binary("sub", x, target)
    if reduction == "none":
        return binary("mul", diff, diff), diff
    sq = binary("mul", diff, diff)
    return _sum(sq, None, scale=1.0 / diff.size if reduction == "mean" else 1.0), diff


def mse_loss_backward(grad_loss, diff, reduction):
    """grad_x = 2 (x - target) * grad_loss (/ n for 'mean')."""
    if reduction == "none":
        return binary("mul", binary("add", diff, diff), grad_loss)
    return scale_by(diff, grad_loss, 2.0 / (diff.size if reduction == "mean" else 1))

