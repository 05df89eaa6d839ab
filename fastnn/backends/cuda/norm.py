"""Batch normalisation on the device (same math as ``reference/norm.py``).

Forward (training): one block per channel computes the mean and the biased variance (two passes
over the channel, in shared memory), writes invstd and updates the running statistics; a second
launch writes x_hat and y = x_hat * weight + bias. Backward: one block per channel sums g and
g x_hat (= grad_bias, grad_weight), a second launch writes grad_x. A fused BatchNorm + ReLU applies
the ReLU in the normalising launch and its mask (y > 0) as the backward launches read g.

Row standardisation (the core of LayerNorm, GroupNorm and InstanceNorm): one launch each way, one
block per row of the (M, K) array: the block reduces the row's statistics (forward: mean, then the
biased variance; backward: Σg and Σ g x_hat) and then writes the row.

Precision: the statistics are float64 on purpose (the per-channel / per-row sums, and the
once-per-channel arithmetic on them, with eps and momentum passed as Python floats); every
per-element operation is in the arrays' dtype. Numba types a float literal, and an int mixed with a
float32, as float64, so the kernels write their constants as ``grad_x.dtype.type(1)`` and cast the
statistics to the dtype (``x.dtype.type(mu)``) before a per-element loop uses them.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ._core import SIMULATOR, empty, kernel, launch, launch_grid
from .elementwise import REDUCE_THREADS, contiguous

__all__ = ["batch_norm_forward", "batch_norm_backward", "batch_norm_relu_forward", "batch_norm_relu_backward",
           "standardize_rows_forward", "standardize_rows_backward", "instance_norm_running_stats_"]


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
def _segment_stats(x, base, length, buf, tid):
    """(mean, Σ (x - mean)²) of x[base:base + length], two passes, reduced over the block."""
    acc = 0.0
    for j in range(tid, length, REDUCE_THREADS):
        acc += x[base + j]
    mu = _block_sum(buf, tid, acc) / length
    acc = 0.0
    for j in range(tid, length, REDUCE_THREADS):
        d = x[base + j] - mu
        acc += d * d
    return mu, _block_sum(buf, tid, acc)


@kernel
def _stats(x, mean, invstd, running_mean, running_var, has_running, momentum, eps, n_img, c, hw):
    buf = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    count = n_img * hw
    for ch in range(cuda.blockIdx.x, c, cuda.gridDim.x):
        acc = 0.0
        for r in range(tid, count, REDUCE_THREADS):
            acc += x[((r // hw) * c + ch) * hw + r % hw]
        mu = _block_sum(buf, tid, acc) / count
        acc = 0.0
        for r in range(tid, count, REDUCE_THREADS):
            d = x[((r // hw) * c + ch) * hw + r % hw] - mu
            acc += d * d
        var = _block_sum(buf, tid, acc) / count
        if tid == 0:
            mean[ch] = mu
            invstd[ch] = 1 / math.sqrt(var + eps)
            if has_running:
                running_mean[ch] = running_mean[ch] * (1 - momentum) + momentum * mu
                unbiased = var * count / max(count - 1, 1)
                running_var[ch] = running_var[ch] * (1 - momentum) + momentum * unbiased


@kernel
def _normalize(x, mean, invstd, weight, bias, has_affine, has_bias, relu, x_hat, y, c, hw, total):
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        ch = (t // hw) % c
        v = (x[t] - mean[ch]) * invstd[ch]
        x_hat[t] = v
        if has_affine:
            v = v * weight[ch]
        if has_bias:
            v = v + bias[ch]
        if relu != 0 and v < 0:     # the fused BatchNorm + ReLU (relu_forward: NaN stays)
            v = 0
        y[t] = v


@kernel
def _instance_running_stats(x, running_mean, running_var, momentum, n_img, c, hw):
    """One block per channel: the batch mean of each plane's mean and unbiased variance (two
    passes over the plane), folded into the running statistics."""
    buf = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    for ch in range(cuda.blockIdx.x, c, cuda.gridDim.x):
        mean_sum = 0.0
        var_sum = 0.0
        for s in range(n_img):
            mu, squares = _segment_stats(x, (s * c + ch) * hw, hw, buf, tid)
            mean_sum += mu
            var_sum += squares / max(hw - 1, 1)
        if tid == 0:
            running_mean[ch] = running_mean[ch] * (1 - momentum) + momentum * (mean_sum / n_img)
            running_var[ch] = running_var[ch] * (1 - momentum) + momentum * (var_sum / n_img)


@cuda.jit(device=True)
def _masked(g, y, relu, k):
    """g[k], or 0 where a fused ReLU's output y[k] is not > 0 (``relu``): relu_backward's mask."""
    v = g[k]
    if relu != 0 and not y[k] > g.dtype.type(0):
        v = g.dtype.type(0)
    return v


@kernel
def _grad_sums(g, y, relu, x_hat, grad_bias, grad_weight, n_img, c, hw):
    """Per channel: Σg and Σ g x_hat (g read through the fused ReLU's mask with ``relu``)."""
    buf = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    count = n_img * hw
    for ch in range(cuda.blockIdx.x, c, cuda.gridDim.x):
        acc_g = 0.0
        acc_gx = 0.0
        for r in range(tid, count, REDUCE_THREADS):
            k = ((r // hw) * c + ch) * hw + r % hw
            gk = _masked(g, y, relu, k)
            acc_g += gk
            acc_gx += gk * x_hat[k]
        sg = _block_sum(buf, tid, acc_g)
        sgx = _block_sum(buf, tid, acc_gx)
        if tid == 0:
            grad_bias[ch] = sg
            grad_weight[ch] = sgx


@kernel
def _grad_x(g, y, relu, x_hat, invstd, weight, has_affine, grad_bias, grad_weight, training, grad_x, c, hw, count,
            total):
    """grad_x = invstd w / n (n g - Σg - x_hat Σ(g x_hat)) (training) or g w invstd (eval), n = count;
    g read through the fused ReLU's mask with ``relu``."""
    one, n = grad_x.dtype.type(1), grad_x.dtype.type(count)
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        ch = (t // hw) % c
        w = weight[ch] if has_affine else one
        gt = _masked(g, y, relu, t)
        if training:
            grad_x[t] = invstd[ch] * w / n * (n * gt - grad_bias[ch] - x_hat[t] * grad_weight[ch])
        else:
            grad_x[t] = gt * w * invstd[ch]


@kernel
def _standardize_rows(x, x_hat, invstd, eps, m, k):
    buf = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    for row in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        base = row * k
        mu, squares = _segment_stats(x, base, k, buf, tid)
        mean = x.dtype.type(mu)
        inv = x.dtype.type(1 / math.sqrt(squares / k + eps))
        for j in range(tid, k, REDUCE_THREADS):
            x_hat[base + j] = (x[base + j] - mean) * inv
        if tid == 0:
            invstd[row] = inv


@kernel
def _standardize_rows_backward(g, x_hat, invstd, grad_x, m, k):
    """grad_x = invstd / K (K g - Σg - x_hat Σ(g x_hat)) along each row."""
    buf = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    kf = grad_x.dtype.type(k)
    for row in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        base = row * k
        acc_g = 0.0
        acc_gx = 0.0
        for j in range(tid, k, REDUCE_THREADS):
            acc_g += g[base + j]
            acc_gx += g[base + j] * x_hat[base + j]
        sg = grad_x.dtype.type(_block_sum(buf, tid, acc_g))
        sgx = grad_x.dtype.type(_block_sum(buf, tid, acc_gx))
        scale = invstd[row] / kf
        for j in range(tid, k, REDUCE_THREADS):
            grad_x[base + j] = scale * (kf * g[base + j] - sg - x_hat[base + j] * sgx)


def _blocks(c):
    return min(c, 4) if SIMULATOR else min(c, 65535)


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False):
    """Returns (y, saved); updates running_mean/running_var in place when training; y = max(y, 0)
    with ``relu`` (in the normalising launch)."""
    x = contiguous(x)
    n, c = x.shape[:2]
    hw = int(np.prod(x.shape[2:]))
    flat = x.reshape(x.size)
    if training:
        mean = empty((c,), x.dtype)
        invstd = empty((c,), x.dtype)
        has_running = running_mean is not None
        rm = running_mean if has_running else mean
        rv = running_var if has_running else invstd
        launch_grid(_stats, _blocks(c), REDUCE_THREADS, flat, mean, invstd, rm, rv, int(has_running),
                    float(momentum), float(eps), n, c, hw)
    else:
        from .elementwise import unary
        mean = running_mean
        invstd = unary("pow", unary("shift", running_var, eps), -0.5)
    x_hat = empty(x.shape, x.dtype)
    y = empty(x.shape, x.dtype)
    launch(_normalize, x.size, flat, mean, invstd, mean if weight is None else weight, mean if bias is None else bias,
           int(weight is not None), int(bias is not None), int(bool(relu)), x_hat.reshape(x.size), y.reshape(x.size),
           c, hw, x.size)
    return y, (x_hat, invstd, weight, training)


def batch_norm_backward(grad_y, saved, needs_input_grad, relu_output=None):
    """(grad_x, grad_weight, grad_bias); see ``reference/norm.py`` for the formula. With
    ``relu_output`` y: the same at grad_y ⊙ 1[y > 0], the mask applied as both launches read grad_y."""
    x_hat, invstd, weight, training = saved
    grad_y = contiguous(grad_y)
    n, c = x_hat.shape[:2]
    hw = int(np.prod(x_hat.shape[2:]))
    g = grad_y.reshape(grad_y.size)
    y = g if relu_output is None else contiguous(relu_output).reshape(g.size)
    relu = int(relu_output is not None)
    xh = x_hat.reshape(x_hat.size)
    grad_bias = empty((c,), grad_y.dtype)
    grad_weight = empty((c,), grad_y.dtype)
    launch_grid(_grad_sums, _blocks(c), REDUCE_THREADS, g, y, relu, xh, grad_bias, grad_weight, n, c, hw)
    grad_x = None
    if needs_input_grad[0]:
        grad_x = empty(x_hat.shape, grad_y.dtype)
        # the sums above are of grad_y; with an affine weight, Σ g w = w Σ g per channel
        launch(_grad_x, grad_y.size, g, y, relu, xh, invstd, invstd if weight is None else weight,
               int(weight is not None), grad_bias, grad_weight, int(training), grad_x.reshape(grad_x.size), c, hw,
               n * hw, grad_y.size)
    return grad_x, grad_weight, grad_bias


def batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """max(batch_norm(x), 0) (nn.Sequential's fused BatchNorm + ReLU): the ReLU in the normalising launch."""
    return batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, relu=True)


def batch_norm_relu_backward(grad_y, y, saved, needs_input_grad):
    """batch_norm_backward at grad_y ⊙ 1[y > 0] (no relu_backward launch: both launches read
    grad_y through the mask)."""
    return batch_norm_backward(grad_y, saved, needs_input_grad, relu_output=y)


def standardize_rows_forward(x, eps):
    """Per row of a 2-D (M, K) array: x_hat = (x - mean) / sqrt(var + eps) (biased variance), one launch.

    Returns (x_hat, invstd) with invstd of shape (M, 1), like the reference.
    """
    x = contiguous(x)
    m, k = x.shape
    x_hat = empty((m, k), x.dtype)
    invstd = empty((m, 1), x.dtype)
    if m:
        launch_grid(_standardize_rows, _blocks(m), REDUCE_THREADS, x.reshape(x.size), x_hat.reshape(x.size),
                    invstd.reshape(m), float(eps), m, k)
    return x_hat, invstd


def standardize_rows_backward(grad_x_hat, x_hat, invstd):
    """grad_x = invstd / K (K g - Σg - x_hat Σ(g x_hat)), sums along each row; one launch."""
    g = contiguous(grad_x_hat)
    m, k = x_hat.shape
    grad_x = empty((m, k), g.dtype)
    if m:
        launch_grid(_standardize_rows_backward, _blocks(m), REDUCE_THREADS, g.reshape(g.size),
                    x_hat.reshape(x_hat.size), invstd.reshape(m), grad_x.reshape(grad_x.size), m, k)
    return grad_x


def instance_norm_running_stats_(x, running_mean, running_var, momentum):
    """InstanceNorm's running statistics (C,), updated in place from x (N, C, *spatial); one launch."""
    x = contiguous(x)
    n, c = x.shape[:2]
    hw = int(np.prod(x.shape[2:]))
    if n and c and hw:
        launch_grid(_instance_running_stats, _blocks(c), REDUCE_THREADS, x.reshape(x.size), running_mean, running_var,
                    float(momentum), n, c, hw)
