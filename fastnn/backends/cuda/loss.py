"""Softmax, log-softmax, the fused softmax + cross-entropy, and the MSE loss on the device.

Same math as ``reference/softmax.py`` and ``reference/loss.py``. Cross-entropy is one launch
forward (per-row log-sum-exp, the row's loss, its gradient (softmax - q, divided by the items for a
mean), and the block's reduction to the mean, all in one kernel) and, backward, the saved gradient
itself for ``backward()``'s implicit upstream gradient (no launch), else one launch multiplying it by
the upstream scalar. Targets outside [0, C) cannot be checked on the host without a device round
trip: their rows produce a NaN loss instead (so ``fit`` stops on it).

L1, NLL and BCE-with-logits: one launch forward (the per-item loss fused with the reduction: one
block reduces to the mean or sum; 'none' runs a grid-stride launch over the items) and one launch
backward (the gradient times the upstream gradient, per item or the scalar, in the same pass).
An NLL target outside [0, C) gives its item a NaN loss and gradient, as cross-entropy does.

Precision: a kernel computes in its arrays' dtype. Numba types a float literal, and an int mixed
with a float32, as float64, so the kernels write their constants as ``x.dtype.type(1)`` (a float32
constant for float32 arrays) and the wrappers pass scalar arguments in the array's dtype. Only the
mean / sum over the items accumulates in float64, on purpose (``acc``, the shared buffer, ``scale``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ._core import SIMULATOR, empty, kernel, launch, launch_grid
from .elementwise import binary, broadcast_to, contiguous, is_unit_seed, scale_by, sum as _sum

__all__ = ["softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "cross_entropy_forward", "cross_entropy_backward", "mse_loss_forward", "mse_loss_backward",
           "l1_loss_forward", "l1_loss_backward", "nll_loss_forward", "nll_loss_backward",
           "bce_with_logits_forward", "bce_with_logits_backward"]

CE_THREADS = 4 if SIMULATOR else 256


# Each kernel module keeps its own copy of this block reduction: Numba's CUDA simulator swaps the
# `cuda` global of the module it is running, so a device function that calls cuda.syncthreads()
# from another module races with that swap (AttributeError under NUMBA_ENABLE_CUDASIM).
@cuda.jit(device=True)
def _block_sum(buf, tid, value):
    """Σ value over the threads of the block, returned to every thread; buf is a shared array with
    one slot per thread (its length, a power of two, is the block size)."""
    buf[tid] = value
    cuda.syncthreads()
    step = buf.shape[0] // 2
    while step > 0:
        if tid < step:
            buf[tid] += buf[tid + step]
        cuda.syncthreads()
        step //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _sum_into_first(buf, acc, scale, loss):
    """loss[0] = scale Σ acc over the (single) block: the mean or sum of a loss's items."""
    total = _block_sum(buf, cuda.threadIdx.x, acc)
    if cuda.threadIdx.x == 0:
        loss[0] = total * scale


@kernel
def _softmax(x, y, log, outer, c, inner, total):
    """Along the middle axis of x viewed (outer, C, inner): one thread per (outer, inner) line."""
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        base = o * c * inner + i
        m = x.dtype.type(-math.inf)
        for j in range(c):
            m = max(m, x[base + j * inner])
        s = x.dtype.type(0)
        for j in range(c):
            s += math.exp(x[base + j * inner] - m)
        if log:
            lse = m + math.log(s)
            for j in range(c):
                y[base + j * inner] = x[base + j * inner] - lse
        else:
            for j in range(c):
                y[base + j * inner] = math.exp(x[base + j * inner] - m) / s


@kernel
def _softmax_backward(g, y, out, log, c, inner, total):
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        base = o * c * inner + i
        s = g.dtype.type(0)
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


@kernel
def _cross_entropy(x, target, grad, loss, rows, c, inner, off, on, scale, per_item, grad_scale):
    """One block: per item (n, d) of logits (N, C, inner): lse, loss, grad = (softmax - q) grad_scale
    with q = on (j == target) or off (label smoothing: off = ε / C, on = 1 - ε + ε / C);
    loss[0] = scale Σ items (or loss[item] per item when per_item). grad_scale is 1 / items for a
    mean: the gradient for an upstream gradient of 1."""
    buf = cuda.shared.array(CE_THREADS, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for t in range(tid, rows, CE_THREADS):
        n = t // inner
        d = t % inner
        base = n * c * inner + d
        m = x.dtype.type(-math.inf)
        for j in range(c):
            m = max(m, x[base + j * inner])
        s = x.dtype.type(0)
        for j in range(c):
            s += math.exp(x[base + j * inner] - m)
        lse = m + math.log(s)
        tgt = target[t]
        item = x.dtype.type(0)
        if tgt < 0 or tgt >= c:
            item = x.dtype.type(math.nan)
        for j in range(c):
            logp = x[base + j * inner] - lse
            q = on if j == tgt else off
            item -= q * logp
            grad[base + j * inner] = (math.exp(logp) - q) * grad_scale
        if per_item:
            loss[t] = item
        else:
            acc += item
    if not per_item:
        _sum_into_first(buf, acc, scale, loss)


@cuda.jit(device=True)
def _softplus(z, zero):
    """log(1 + exp(z)), stable for large |z|; ``zero`` is 0 in z's type."""
    return (z if z > zero else zero) + math.log1p(math.exp(-abs(z)))


L1, BCE = 0, 1


@kernel
def _pointwise_loss(kind, x, t, w, has_w, diff, loss, scale, per_item, n):
    """Per item i: L1 (diff[i] = x - t, |diff|) or BCE with logits (weight w[i]). per_item: loss[i];
    else (one block) loss[0] = scale Σ items."""
    buf = cuda.shared.array(CE_THREADS, float64)
    zero, one = x.dtype.type(0), x.dtype.type(1)
    acc = 0.0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if kind == L1:
            d = x[i] - t[i]
            diff[i] = d
            item = abs(d)
        else:
            v = x[i]
            ti = t[i]
            wi = w[i] if has_w else one
            item = wi * ti * _softplus(-v, zero) + (one - ti) * _softplus(v, zero)
        if per_item:
            loss[i] = item
        else:
            acc += item
    if not per_item:
        _sum_into_first(buf, acc, scale, loss)


@kernel
def _l1_backward(diff, g, factor, per_item, out, n):
    """out = sign(diff) * (g[i] per item, else g[0]) * factor."""
    zero, one = out.dtype.type(0), out.dtype.type(1)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = diff[i]
        s = one if d > zero else (-one if d < zero else zero)
        gi = g[i] if per_item else g[0]
        out[i] = s * gi * factor


@kernel
def _bce_backward(x, t, w, has_w, g, factor, per_item, grad_x, grad_t, n):
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = x[i]
        ti = t[i]
        wi = w[i] if has_w else one
        e = math.exp(-abs(v))
        sig = one / (one + e) if v >= zero else e / (one + e)
        s = (g[i] if per_item else g[0]) * factor
        grad_x[i] = (sig * (wi * ti + one - ti) - wi * ti) * s
        grad_t[i] = (wi * _softplus(-v, zero) - _softplus(v, zero)) * s


@kernel
def _nll(logp, target, loss, scale, per_item, c, inner, rows):
    """loss_item = -logp[n, target, d] (NaN for a target outside [0, C)); reduced as _pointwise_loss."""
    buf = cuda.shared.array(CE_THREADS, float64)
    acc = 0.0
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        tgt = target[r]
        if tgt < 0 or tgt >= c:
            item = logp.dtype.type(math.nan)
        else:
            item = -logp[((r // inner) * c + tgt) * inner + r % inner]
        if per_item:
            loss[r] = item
        else:
            acc += item
    if not per_item:
        _sum_into_first(buf, acc, scale, loss)


@kernel
def _nll_backward(g, target, factor, per_item, grad, c, inner, total):
    """grad[n, j, d] = -g (per item, or g[0]) * factor where j == target[n, d], else 0."""
    for k in range(cuda.grid(1), total, cuda.gridsize(1)):
        d = k % inner
        r = k // inner
        j = r % c
        item = (r // c) * inner + d
        tgt = target[item]
        if tgt < 0 or tgt >= c:
            grad[k] = grad.dtype.type(math.nan)
        elif j == tgt:
            grad[k] = -(g[item] if per_item else g[0]) * factor
        else:
            grad[k] = grad.dtype.type(0)


def _reduce_launch(kernel, n, per_item, *args):
    """'none': a grid-stride launch over the n items; 'mean' / 'sum': one block that also reduces."""
    if per_item:
        launch(kernel, n, *args)
    else:
        launch_grid(kernel, 1, CE_THREADS, *args)


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
    off = label_smoothing / c
    typed = logits.dtype.type
    launch_grid(_cross_entropy, 1, CE_THREADS, logits.reshape(logits.size), target.reshape(target.size),
                grad.reshape(grad.size), loss, rows, c, inner, typed(off), typed(1 - label_smoothing + off), scale,
                int(per_item), typed(scale))
    out = loss.reshape(target.shape) if per_item else loss.reshape(())
    return out, (grad, target.shape, reduction, rows)


def cross_entropy_backward(grad_loss, saved):
    """grad_logits = (softmax(logits) - q) * grad_loss, the 1 / items of a mean already applied by
    the forward; for backward()'s implicit gradient (exactly 1, ``unit_seed``) no launch at all."""
    grad, target_shape, reduction, rows = saved
    if reduction == "none":
        n, c = grad.shape[:2]
        g = grad_loss.reshape((n, 1) + tuple(grad.shape[2:]))
        return binary("mul", grad, g)
    if is_unit_seed(grad_loss):
        return grad
    return scale_by(grad, grad_loss)


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



def _flat(a):
    a = contiguous(a)
    return a.reshape(a.size)


def _loss_out(shape, dtype, reduction):
    per_item = reduction == "none"
    n = int(np.prod(shape))
    loss = empty((n,) if per_item else (1,), dtype)
    return loss, per_item, (1.0 / n if reduction == "mean" else 1.0)


def _finish(loss, shape, per_item):
    return loss.reshape(shape) if per_item else loss.reshape(())


def l1_loss_forward(x, target, reduction):
    """loss = reduce(|x - target|); returns (loss, diff); one launch."""
    n = x.size
    diff = empty(x.shape, x.dtype)
    loss, per_item, scale = _loss_out(x.shape, x.dtype, reduction)
    fx = _flat(x)
    _reduce_launch(_pointwise_loss, n, per_item, L1, fx, _flat(target), fx, 0, diff.reshape(n), loss, scale,
                   int(per_item), n)
    return _finish(loss, x.shape, per_item), diff


def l1_loss_backward(grad_loss, diff, reduction):
    """grad_x = sign(x - target) * grad_loss (/ n for 'mean'); one launch."""
    n = diff.size
    per_item = reduction == "none"
    out = empty(diff.shape, diff.dtype)
    factor = diff.dtype.type(1.0 / n if reduction == "mean" else 1.0)
    launch(_l1_backward, n, diff.reshape(n), _flat(grad_loss), factor, int(per_item), out.reshape(n), n)
    return out


def _pos_weight(pos_weight, x, fx):
    """pos_weight broadcast to x's shape and flattened (one copy launch); x itself as an unread
    placeholder when None."""
    if pos_weight is None:
        return fx, 0
    return broadcast_to(pos_weight, x.shape, x.dtype).reshape(x.size), 1


def bce_with_logits_forward(x, target, reduction, pos_weight=None):
    """loss = reduce(w_p t softplus(-x) + (1 - t) softplus(x)); one launch (plus one broadcasting
    copy of pos_weight when it is given)."""
    n = x.size
    loss, per_item, scale = _loss_out(x.shape, x.dtype, reduction)
    fx = _flat(x)
    w, has_w = _pos_weight(pos_weight, x, fx)
    _reduce_launch(_pointwise_loss, n, per_item, BCE, fx, _flat(target), w, has_w, fx, loss, scale, int(per_item), n)
    return _finish(loss, x.shape, per_item)


def bce_with_logits_backward(grad_loss, x, target, reduction, pos_weight=None):
    """(grad_x, grad_target); see the reference for the formulas. One launch."""
    n = x.size
    per_item = reduction == "none"
    fx = _flat(x)
    w, has_w = _pos_weight(pos_weight, x, fx)
    grad_x = empty(x.shape, x.dtype)
    grad_t = empty(x.shape, x.dtype)
    factor = x.dtype.type(1.0 / n if reduction == "mean" else 1.0)
    launch(_bce_backward, n, fx, _flat(target), w, has_w, _flat(grad_loss), factor, int(per_item), grad_x.reshape(n),
           grad_t.reshape(n), n)
    return grad_x, grad_t


def nll_loss_forward(log_probs, target, reduction):
    """loss_item = -log_probs[n, target_n, ...]; ``target`` an int device array (N, *). One launch."""
    log_probs = contiguous(log_probs)
    n, c = log_probs.shape[:2]
    inner = int(np.prod(log_probs.shape[2:]))
    rows = n * inner
    loss, per_item, scale = _loss_out((rows,), log_probs.dtype, reduction)
    _reduce_launch(_nll, rows, per_item, log_probs.reshape(log_probs.size), _flat(target), loss, scale,
                   int(per_item), c, inner, rows)
    return _finish(loss, target.shape, per_item)


def nll_loss_backward(grad_loss, log_probs_shape, dtype, target, reduction):
    """grad[n, target_n] = -grad_loss (/ number of items for 'mean'), zero elsewhere; one launch
    over the gradient (no separate zero fill)."""
    shape = tuple(log_probs_shape)
    n, c = shape[:2]
    inner = int(np.prod(shape[2:]))
    total = n * c * inner
    grad = empty(shape, dtype)
    per_item = reduction == "none"
    factor = grad.dtype.type(1.0 / (n * inner) if reduction == "mean" else 1.0)
    launch(_nll_backward, total, _flat(grad_loss), _flat(target), factor, int(per_item), grad.reshape(total), c, inner,
           total)
    return grad
