"""Compiled dense layer and matrix product: row-major GEMMs through SciPy's BLAS (``_blas.gemm``).

Mirrors ``reference/linear.py``: y = x W^T + b; grad_x = grad_y W, grad_W = grad_y^T x,
grad_b = Σ_n grad_y. The transposes are BLAS flags, never copies; the bias is the GEMM's
initial C (beta = 1). ``linear_relu`` applies the ReLU in place on the GEMM's output (one pass, no
new array) and its mask to grad_y before the backward GEMMs.
"""
import numpy as np

from ..reference import linear as _reference
from . import _blas
from .activation import relu_backward, relu_inplace

__all__ = ["linear_forward", "linear_backward", "linear_relu_forward", "linear_relu_backward", "matmul"]

_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _compiled(*arrays):
    dtype = np.dtype(arrays[0].dtype)
    return dtype in _COMPILED_DTYPES and all(np.dtype(a.dtype) == dtype for a in arrays)


def linear_forward(x, weight, bias):
    """y = x W^T + b."""
    if not _compiled(x, weight, *(() if bias is None else (bias,))):
        return _reference.linear_forward(x, weight, bias)
    x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
    y = np.empty((x.shape[0], weight.shape[0]), x.dtype)
    if bias is not None:
        y[...] = bias
    _blas.gemm(x, weight, y, trans_b=True, beta=0.0 if bias is None else 1.0)
    return y


def linear_backward(grad_y, x, weight, needs_input_grad):
    """(grad_x, grad_W, grad_b) = (grad_y W, grad_y^T x, Σ_n grad_y); None where not needed."""
    if not _compiled(grad_y, x, weight):
        return _reference.linear_backward(grad_y, x, weight, needs_input_grad)
    grad_y = np.ascontiguousarray(grad_y)
    grad_x = grad_w = grad_b = None
    if needs_input_grad[0]:
        weight = np.ascontiguousarray(weight)
        grad_x = np.empty((grad_y.shape[0], weight.shape[1]), grad_y.dtype)
        _blas.gemm(grad_y, weight, grad_x)
    if needs_input_grad[1]:
        x = np.ascontiguousarray(x)
        grad_w = np.empty((grad_y.shape[1], x.shape[1]), grad_y.dtype)
        _blas.gemm(grad_y, x, grad_w, trans_a=True)
    if needs_input_grad[2]:
        grad_b = grad_y.sum(axis=0)
    return grad_x, grad_w, grad_b


def linear_relu_forward(x, weight, bias):
    """y = max(x W^T + b, 0)."""
    if not _compiled(x, weight, *(() if bias is None else (bias,))):
        return _reference.linear_relu_forward(x, weight, bias)
    return relu_inplace(linear_forward(x, weight, bias))


def linear_relu_backward(grad_y, y, x, weight, needs_input_grad):
    """linear_backward at grad_y ⊙ 1[y > 0], y the output of linear_relu_forward."""
    if not _compiled(grad_y, y, x, weight):
        return _reference.linear_relu_backward(grad_y, y, x, weight, needs_input_grad)
    return linear_backward(relu_backward(grad_y, y), x, weight, needs_input_grad)


def matmul(a, b):
    """a @ b for a (M, K), b (K, N)."""
    if not _compiled(a, b):
        return _reference.matmul(a, b)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    _blas.gemm(a, b, out)
    return out
