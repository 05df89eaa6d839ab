"""Optimiser updates on the device, fused in place.

Same update rules as ``reference/optim.py`` (PyTorch's). ``sgd_step_foreach`` updates every
parameter of a group in one launch (the parameters, gradients and buffers are passed as tuples of
device arrays; grid row j updates tensor j), like PyTorch's foreach optimisers.

Precision: the updates compute in the parameters' dtype. The wrappers compute the scalar
coefficients (1 - dampening, 1 - β, ...) as Python floats, as the reference does, and pass every
scalar argument in the parameter's dtype (``_typed``): a Python float would be a float64 argument,
and float64 arithmetic on every element.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ._core import SIMULATOR, THREADS, empty, kernel, launch, launch_grid
from .elementwise import contiguous

__all__ = ["sgd_step", "sgd_step_foreach", "adam_step", "rmsprop_step"]


@cuda.jit(device=True)
def _sgd_update(param, grad, buf, i, lr, momentum, undamped, weight_decay, nesterov, first):
    """The SGD rule for element i, shared by the per-parameter and the foreach kernel;
    undamped = 1 - dampening."""
    d = grad[i] + weight_decay * param[i]
    if momentum != 0:
        if first:
            b = d
        else:
            b = momentum * buf[i] + undamped * d
        buf[i] = b
        if nesterov:
            d = d + momentum * b
        else:
            d = b
    param[i] -= lr * d


@kernel
def _sgd(param, grad, buf, lr, momentum, undamped, weight_decay, nesterov, first, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        _sgd_update(param, grad, buf, i, lr, momentum, undamped, weight_decay, nesterov, first)


@kernel
def _sgd_foreach(params, grads, bufs, lr, momentum, undamped, weight_decay, nesterov, first):
    step = cuda.gridDim.x * cuda.blockDim.x
    for j in range(cuda.blockIdx.y, len(params), cuda.gridDim.y):
        param = params[j]
        grad = grads[j]
        buf = bufs[j]
        for i in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, param.size, step):
            _sgd_update(param, grad, buf, i, lr, momentum, undamped, weight_decay, nesterov, first)


@kernel
def _adam(param, grad, exp_avg, exp_avg_sq, decay, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
          decoupled, step_size, bias_correction2_sqrt, n):
    """Adam, or AdamW (decoupled) with decay = 1 - lr weight_decay; step_size = lr / (1 - β1^t)."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i]
        p = param[i]
        if weight_decay != 0:
            if decoupled:
                p = p * decay
            else:
                g = g + weight_decay * p
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = p - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


@kernel
def _rmsprop(param, grad, square_avg, buf, grad_avg, lr, alpha, one_minus_alpha, eps, weight_decay, momentum,
             centered, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        v = square_avg[i] * alpha + one_minus_alpha * g * g
        square_avg[i] = v
        if centered:
            a = grad_avg[i] + one_minus_alpha * (g - grad_avg[i])
            grad_avg[i] = a
            denom = math.sqrt(v - a * a) + eps
        else:
            denom = math.sqrt(v) + eps
        if momentum > 0:
            b = buf[i] * momentum + g / denom
            buf[i] = b
            param[i] -= lr * b
        else:
            param[i] -= lr * g / denom


def _flat(a):
    """``a`` as a 1-D array (itself when it is one). The view is kept on the array: parameters and
    optimiser buffers are flattened again at every step, and an array's shape and memory never change."""
    if a.ndim == 1:
        return a
    flat = a.__dict__.get("_fastnn_flat")
    if flat is None:
        flat = a.__dict__["_fastnn_flat"] = a.reshape(a.size)
    return flat


def _typed(param, *values):
    """The scalar arguments in param's dtype (float32 kernel arguments for float32 parameters)."""
    return tuple(param.dtype.type(v) for v in values)


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov):
    """SGD in place (see reference); returns the momentum buffer (None when momentum == 0)."""
    grad = contiguous(grad)
    first = momentum_buffer is None
    if momentum and first:
        momentum_buffer = empty(param.shape, param.dtype)
    buf = momentum_buffer if momentum else param
    scalars = _typed(param, lr, momentum, 1 - dampening, weight_decay)
    launch(_sgd, param.size, _flat(param), _flat(grad), _flat(buf), *scalars, int(bool(nesterov)), int(first),
           param.size)
    return momentum_buffer if momentum else None


def sgd_step_foreach(params, grads, momentum_buffers, lr, momentum, dampening, weight_decay, nesterov):
    """``sgd_step`` for lists of parameters (same dtype) in one launch; returns the list of buffers.

    ``momentum_buffers``: a list of buffers, or None on the first step (they are allocated here).
    """
    first = momentum_buffers is None
    flat_params = tuple(_flat(p) for p in params)
    flat_grads = tuple(_flat(contiguous(g)) for g in grads)
    if momentum and first:
        momentum_buffers = [empty(p.shape, p.dtype) for p in params]
    flat_bufs = tuple(_flat(b) for b in momentum_buffers) if momentum else flat_params
    largest = max(p.size for p in params)
    blocks = 1 if SIMULATOR else min(1024, (largest + 255) // 256)
    threads = THREADS
    launch_grid(_sgd_foreach, (blocks, len(params)), threads, flat_params, flat_grads, flat_bufs,
                *_typed(params[0], lr, momentum, 1 - dampening, weight_decay), int(bool(nesterov)), int(first))
    return momentum_buffers if momentum else None


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam / AdamW in place, step counted from 1 (see reference)."""
    grad = contiguous(grad)
    scalars = _typed(param, 1 - lr * weight_decay, 1 - beta1, beta2, 1 - beta2, eps, weight_decay)
    step_size = lr / (1 - beta1 ** step)
    bias_correction = _typed(param, step_size, math.sqrt(1 - beta2 ** step))
    launch(_adam, param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq), *scalars,
           int(bool(decoupled)), *bias_correction, param.size)


def rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg, lr, alpha, eps, weight_decay, momentum,
                 centered):
    """RMSprop in place, one launch (see reference): square_avg (and grad_avg when centered, the
    momentum buffer when momentum > 0) are device arrays of the parameter's shape, updated in place."""
    for name, a in (("square_avg", square_avg), ("momentum_buffer", momentum_buffer), ("grad_avg", grad_avg)):
        if isinstance(a, np.ndarray):   # a host state array would be copied to the device and back silently
            raise TypeError(f"rmsprop_step on cuda: {name} is a host array; allocate the optimiser state on "
                            "the device (e.g. with zeros_like)")
    grad = contiguous(grad)
    has_momentum = momentum > 0
    buf = momentum_buffer if has_momentum else param
    avg = grad_avg if centered else param
    launch(_rmsprop, param.size, _flat(param), _flat(grad), _flat(square_avg), _flat(buf), _flat(avg),
           *_typed(param, lr, alpha, 1 - alpha, eps, weight_decay, momentum), int(bool(centered)), param.size)
