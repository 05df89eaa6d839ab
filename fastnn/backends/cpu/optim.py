"""Fused, in-place optimiser updates (one pass per parameter), mirroring ``reference/optim.py``."""
import math

import numba as nb
import numpy as np

from ._numba import fused_kernel

__all__ = ["sgd_step", "adam_step", "rmsprop_step"]


@fused_kernel
def _sgd(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    for i in nb.prange(param.size):
        d = grad[i] + weight_decay * param[i]
        if momentum != 0:
            b = d if first else momentum * buf[i] + (1 - dampening) * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        param[i] -= lr * d


@fused_kernel
def _adam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, decoupled,
          step_size, bias_correction2_sqrt):
    for i in nb.prange(param.size):
        p = param[i]
        g = grad[i]
        if weight_decay != 0:
            if decoupled:
                p = p * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * p
        m = exp_avg[i] + (1 - beta1) * (g - exp_avg[i])
        v = beta2 * exp_avg_sq[i] + (1 - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = p - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


def _flat(a, name):
    if not a.flags.c_contiguous:
        raise ValueError(f"optimizer: {name} must be C-contiguous for an in-place update")
    return a.reshape(-1)


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov):
    """See reference.sgd_step; updates ``param`` in place and returns the momentum buffer."""
    first = momentum_buffer is None
    if momentum and first:
        momentum_buffer = np.empty_like(param)
    buf = momentum_buffer if momentum else param  # unused when momentum == 0
    _sgd(_flat(param, "param"), np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1),
         _flat(buf, "momentum_buffer"), lr, momentum, dampening, weight_decay, bool(nesterov), first)
    return momentum_buffer


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """See reference.adam_step; updates param, exp_avg, exp_avg_sq in place."""
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    _adam(_flat(param, "param"), np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1),
          _flat(exp_avg, "exp_avg"), _flat(exp_avg_sq, "exp_avg_sq"), lr, beta1, beta2, eps,
          weight_decay, bool(decoupled), step_size, bias_correction2_sqrt)


@fused_kernel
def _rmsprop(param, grad, square_avg, buf, grad_avg, lr, alpha, eps, weight_decay, momentum, centered):
    for i in nb.prange(param.size):
        g = grad[i] + weight_decay * param[i]
        v = alpha * square_avg[i] + (1 - alpha) * g * g
        square_avg[i] = v
        if centered:
            ga = grad_avg[i] + (1 - alpha) * (g - grad_avg[i])
            grad_avg[i] = ga
            denom = math.sqrt(v - ga * ga) + eps
        else:
            denom = math.sqrt(v) + eps
        if momentum > 0:
            b = momentum * buf[i] + g / denom
            buf[i] = b
            param[i] -= lr * b
        else:
            param[i] -= lr * g / denom


def rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg, lr, alpha, eps, weight_decay, momentum,
                 centered):
    """See reference.rmsprop_step; one fused in-place pass."""
    buf = momentum_buffer if momentum_buffer is not None else square_avg
    gavg = grad_avg if grad_avg is not None else square_avg
    _rmsprop(_flat(param, "param"), np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1),
             _flat(square_avg, "square_avg"), buf.reshape(-1), gavg.reshape(-1), lr, alpha, eps, weight_decay,
             momentum, bool(centered))
