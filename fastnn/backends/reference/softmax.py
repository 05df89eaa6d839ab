"""Softmax and log-softmax along one axis.

softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x)
"""
import numpy as np

__all__ = ["softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward"]


def softmax_forward(x, dim):
    shifted = x - x.max(axis=dim, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=dim, keepdims=True)


def softmax_backward(grad_y, y, dim):
    """grad_x = y ⊙ (grad_y - sum(grad_y ⊙ y))  (the Jacobian-vector product of softmax)."""
    return y * (grad_y - (grad_y * y).sum(axis=dim, keepdims=True))


def log_softmax_forward(x, dim):
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_y, y, dim):
    """grad_x = grad_y - softmax(x) * sum(grad_y), with softmax(x) = exp(y)."""
    return grad_y - np.exp(y) * grad_y.sum(axis=dim, keepdims=True)
