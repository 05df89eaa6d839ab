"""Optimiser updates, in place, with PyTorch's exact update rules."""
import math

__all__ = ["sgd_step", "adam_step"]


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
