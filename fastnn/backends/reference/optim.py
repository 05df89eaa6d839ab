"""Optimiser updates, in place, with PyTorch's exact update rules."""
import math

import numpy as np

__all__ = ["sgd_step", "adam_step", "rmsprop_step"]


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov):
    """SGD: d = g + wd p; b = μ b + (1 - τ) d (b = d on the first step); d = d + μ b (nesterov) or b;
    p -= lr d. Returns the momentum buffer (None when momentum == 0)."""
    d = grad + weight_decay * param if weight_decay else grad
    if momentum:
        if momentum_buffer is None:
            momentum_buffer = d.copy()
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * d
        d = d + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * d
    return momentum_buffer


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam (decoupled=False) / AdamW (decoupled=True), step counted from 1:
    m = β1 m + (1 - β1) g; v = β2 v + (1 - β2) g²;
    p -= lr / (1 - β1^t) * m / (sqrt(v) / sqrt(1 - β2^t) + eps)."""
    if weight_decay:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    exp_avg += (1 - beta1) * (grad - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    step_size = lr / (1 - beta1 ** step)
    denom = (exp_avg_sq ** 0.5) / math.sqrt(1 - beta2 ** step) + eps
    param -= step_size * exp_avg / denom


def rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg, lr, alpha, eps, weight_decay, momentum,
                 centered):
    """RMSprop (PyTorch): v = α v + (1 - α) g²; denom = sqrt(v - ḡ²) (centered) or sqrt(v), + eps;
    with momentum: b = μ b + g / denom, p -= lr b; else p -= lr g / denom."""
    if weight_decay:
        grad = grad + weight_decay * param
    square_avg *= alpha
    square_avg += (1 - alpha) * grad * grad
    if centered:
        grad_avg += (1 - alpha) * (grad - grad_avg)
        denom = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        denom = np.sqrt(square_avg) + eps
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += grad / denom
        param -= lr * momentum_buffer
    else:
        param -= lr * grad / denom
