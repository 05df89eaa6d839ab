"""Element-wise activations and their backward as a Hadamard product.

Backpropagation through an activation f applied to z_l:
    delta_l = (W_{l+1}^T delta_{l+1}) ⊙ f'(z_l)
The upstream term (W^T delta) arrives as ``grad_y``; each ``*_backward`` returns grad_y ⊙ f'(z),
with f'(z) written in terms of the saved output y where that is cheaper.
"""
import numpy as np

__all__ = ["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
           "tanh_forward", "tanh_backward", "leaky_relu_forward", "leaky_relu_backward",
           "elu_forward", "elu_backward"]


def relu_forward(x):
    """y = max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(grad_y, y):
    """grad_x = grad_y ⊙ 1[y > 0]."""
    return grad_y * (y > 0)


def sigmoid_forward(x):
    """y = 1 / (1 + exp(-x)), computed without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(grad_y, y):
    """grad_x = grad_y ⊙ y (1 - y)."""
    return grad_y * y * (1 - y)


def tanh_forward(x):
    """y = tanh(x)."""
    return np.tanh(x)


def tanh_backward(grad_y, y):
    """grad_x = grad_y ⊙ (1 - y²)."""
    return grad_y * (1 - y * y)


def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope * x."""
    return np.where(x > 0, x, x * negative_slope).astype(x.dtype, copy=False)


def leaky_relu_backward(grad_y, x, negative_slope):
    """grad_x = grad_y ⊙ (1 if x > 0 else negative_slope)."""
    return np.where(x > 0, grad_y, grad_y * negative_slope).astype(grad_y.dtype, copy=False)


def elu_forward(x, alpha):
    """y = x if x > 0 else alpha (e^x - 1)."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def elu_backward(grad_y, y, alpha):
    """grad_x = grad_y ⊙ (1 if y > 0 else y + alpha)  (for x <= 0, f'(x) = alpha e^x = y + alpha)."""
    return np.where(y > 0, grad_y, grad_y * (y + alpha)).astype(grad_y.dtype, copy=False)
