"""The dense layer and the matrix product.

    forward    y      = x W^T + b          x (N, in), W (out, in), b (out,)
    backward   grad_x = grad_y W
               grad_W = grad_y^T x
               grad_b = Σ_n grad_y

    linear_relu: y = max(x W^T + b, 0); its backward is linear's at grad_y ⊙ 1[y > 0]
"""
import numpy as np

from .activation import relu_backward, relu_forward

__all__ = ["linear_forward", "linear_backward", "linear_relu_forward", "linear_relu_backward", "matmul"]


def linear_forward(x, weight, bias):
    """y = x W^T + b."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y


def linear_backward(grad_y, x, weight, needs_input_grad):
    """(grad_x, grad_W, grad_b) = (grad_y W, grad_y^T x, Σ_n grad_y); None where not needed."""
    grad_x = grad_y @ weight if needs_input_grad[0] else None
    grad_w = grad_y.T @ x if needs_input_grad[1] else None
    grad_b = grad_y.sum(axis=0) if needs_input_grad[2] else None
    return grad_x, grad_w, grad_b


def linear_relu_forward(x, weight, bias):
    """y = max(x W^T + b, 0): the dense layer, then the ReLU."""
    return relu_forward(linear_forward(x, weight, bias))


def linear_relu_backward(grad_y, y, x, weight, needs_input_grad):
    """linear_backward at grad_y ⊙ 1[y > 0], y the output of linear_relu_forward."""
    return linear_backward(relu_backward(grad_y, y), x, weight, needs_input_grad)


def matmul(a, b):
    """a @ b for a (M, K), b (K, N)."""
    return np.matmul(a, b)
