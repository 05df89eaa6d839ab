"""Batch norm in two passes per direction (Numba, parallel over channels).

Mirrors ``reference/norm.py``. The input is viewed as (N, C, L) with L = prod of spatial dims.
Forward: pass 1 mean and variance per channel, pass 2 x_hat and y. Backward: pass 1
sum(g) and sum(g x_hat) per channel, pass 2 grad_x = invstd/n (n g - sum g - x_hat sum(g x_hat)).
The sums are float64 and may be reassociated (``fastmath={"reassoc"}``), so that they vectorise.
"""

import math

import numba as nb
import numpy as np

from ._numba import cached_njit, fused_kernel

__all__ = ["batch_norm_forward", "batch_norm_backward", "batch_norm_relu_forward", "batch_norm_relu_backward",
           "standardize_rows_forward", "standardize_rows_backward"]


@fused_kernel(fastmath={"reassoc"})
def _batch_stats(x, mean, var):
    n, c, length = x.shape
    count = n * length
    for ch in nb.prange(c):
        s = 0.0
        for i in range(n):
            for k in range(length):
                s += x[i, ch, k]
        m = s / count
        sq = 0.0
        for i in range(n):
            for k in range(length):
                d = x[i, ch, k] - m
                sq += d * d
        mean[ch] = m
        var[ch] = sq / count


@fused_kernel
def _normalise(x, mean, invstd, weight, bias, relu, x_hat, y):
    n, c, length = x.shape
    for ch in nb.prange(c):
        m = mean[ch]
        s = invstd[ch]
        w = weight[ch]
        b = bias[ch]
        for i in range(n):
            for k in range(length):
                h = (x[i, ch, k] - m) * s
                x_hat[i, ch, k] = h
                v = h * w + b
                if relu:
                    v = 0 if v < 0 else v   # relu_forward of activation: NaN stays
                y[i, ch, k] = v


@cached_njit(inline="always")
def _upstream(grad_y, relu_y, masked, i, ch, k):
    """grad_y[i, ch, k], through the mask 1[relu_y > 0] of a fused ReLU when ``masked``
    (relu_backward of activation); relu_y is not read otherwise."""
    g = grad_y[i, ch, k]
    if masked:
        g = g if relu_y[i, ch, k] > 0 else 0
    return g


@fused_kernel(fastmath={"reassoc"})
def _backward(grad_y, x_hat, invstd, weight, training, masked, relu_y, grad_x, grad_weight, grad_bias):
    """With ``masked``, grad_y first goes through the mask of a forward with the ReLU fused (_upstream)."""
    n, c, length = grad_y.shape
    count = n * length
    for ch in nb.prange(c):
        sg = 0.0
        sgh = 0.0
        for i in range(n):
            for k in range(length):
                g = _upstream(grad_y, relu_y, masked, i, ch, k)
                sg += g
                sgh += g * x_hat[i, ch, k]
        grad_bias[ch] = sg
        grad_weight[ch] = sgh
        w = weight[ch]
        s = invstd[ch]
        if training:
            a = w * s / count
            for i in range(n):
                for k in range(length):
                    g = _upstream(grad_y, relu_y, masked, i, ch, k)
                    grad_x[i, ch, k] = a * (count * g - sg - x_hat[i, ch, k] * sgh)
        else:
            for i in range(n):
                for k in range(length):
                    g = _upstream(grad_y, relu_y, masked, i, ch, k)
                    grad_x[i, ch, k] = g * w * s


def _as_ncl(a):
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Returns (y, saved); updates running statistics in place when training (unbiased var)."""
    return _batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False)


def batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """max(batch_norm(x), 0), the ReLU applied by the normalising pass (nn.Sequential fuses a
    BatchNorm with the ReLU after it)."""
    return _batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, relu=True)


def _batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, relu):
    c = x.shape[1]
    x3 = _as_ncl(x)
    if training:
        mean = np.empty(c, np.float64)
        var = np.empty(c, np.float64)
        _batch_stats(x3, mean, var)
        if running_mean is not None:
            n = x3.shape[0] * x3.shape[2]
            running_mean *= 1 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += (momentum * var * (n / max(n - 1, 1))).astype(running_var.dtype)
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    invstd = (1 / np.sqrt(var + eps)).astype(x.dtype)
    w = np.ones(c, x.dtype) if weight is None else weight
    b = np.zeros(c, x.dtype) if bias is None else bias
    x_hat = np.empty_like(x3)
    y = np.empty_like(x3)
    _normalise(x3, mean.astype(x.dtype), invstd, w, b, relu, x_hat, y)
    return y.reshape(x.shape), (x_hat, invstd, w, bool(training), x.shape)


def batch_norm_backward(grad_y, saved, needs_input_grad):
    """(grad_x, grad_weight, grad_bias) in one kernel: channel sums, then grad_x."""
    return _batch_norm_backward(grad_y, None, saved)


def batch_norm_relu_backward(grad_y, y, saved, needs_input_grad):
    """batch_norm_backward at grad_y ⊙ 1[y > 0], the mask applied where the kernel reads grad_y."""
    return _batch_norm_backward(grad_y, y, saved)


def _batch_norm_backward(grad_y, relu_y, saved):
    x_hat, invstd, w, training, shape = saved
    c = x_hat.shape[1]
    grad_y = _as_ncl(grad_y.astype(x_hat.dtype, copy=False))
    grad_x = np.empty_like(x_hat)
    grad_weight = np.empty(c, x_hat.dtype)
    grad_bias = np.empty(c, x_hat.dtype)
    masked = relu_y is not None
    _backward(grad_y, x_hat, invstd, w, training, masked, _as_ncl(relu_y) if masked else grad_y,
              grad_x, grad_weight, grad_bias)
    return grad_x.reshape(shape), grad_weight, grad_bias


@fused_kernel(fastmath={"reassoc"})
def _standardize_rows(x, eps, x_hat, invstd):
    m, k = x.shape
    for r in nb.prange(m):
        s = 0.0
        for j in range(k):
            s += x[r, j]
        mean = s / k
        sq = 0.0
        for j in range(k):
            d = x[r, j] - mean
            sq += d * d
        inv = 1.0 / math.sqrt(sq / k + eps)
        invstd[r, 0] = inv
        for j in range(k):
            x_hat[r, j] = (x[r, j] - mean) * inv


@fused_kernel(fastmath={"reassoc"})
def _standardize_rows_backward(g, x_hat, invstd, grad_x):
    m, k = g.shape
    for r in nb.prange(m):
        sg = 0.0
        sgh = 0.0
        for j in range(k):
            sg += g[r, j]
            sgh += g[r, j] * x_hat[r, j]
        a = invstd[r, 0] / k
        for j in range(k):
            grad_x[r, j] = a * (k * g[r, j] - sg - x_hat[r, j] * sgh)


def standardize_rows_forward(x, eps):
    """Per row of (M, K): x_hat = (x - mean) / sqrt(var + eps). Returns (x_hat, invstd (M, 1))."""
    x = np.ascontiguousarray(x)
    x_hat = np.empty_like(x)
    invstd = np.empty((x.shape[0], 1), x.dtype)
    _standardize_rows(x, eps, x_hat, invstd)
    return x_hat, invstd


def standardize_rows_backward(grad_x_hat, x_hat, invstd):
    """grad_x = invstd / K (K g - sum g - x_hat sum(g x_hat)) per row."""
    grad_x = np.empty_like(x_hat)
    _standardize_rows_backward(np.ascontiguousarray(grad_x_hat, dtype=x_hat.dtype), x_hat, invstd, grad_x)
    return grad_x
