"""Activations, softmax and dropout."""

from __future__ import annotations

import builtins  # noqa: F401
import numbers  # noqa: F401

import numpy as np  # noqa: F401

from .. import autograd  # noqa: F401
from ..backend import kernels_for  # noqa: F401
from ..tensor import Tensor, _to_array, as_tensor  # noqa: F401
from ._common import (_axes, _check_ndim, _data, _dim, _float_tensor, _pair, _reduction, _result,  # noqa: F401
                      _same_dtype, _unbroadcast)
from ..random import generator



def _activation(name, input):
    x = _float_tensor(input, name)
    k = kernels_for(x)
    y = getattr(k, name + "_forward")(x.data)
    backward_kernel = getattr(k, name + "_backward")
    return _result(y, name, (x,), lambda g: (backward_kernel(g, y),))


def relu(input) -> Tensor:
    """max(x, 0); backward grad ⊙ 1[x > 0]."""
    return _activation("relu", input)


def sigmoid(input) -> Tensor:
    """1 / (1 + e^-x); backward grad ⊙ y (1 - y)."""
    return _activation("sigmoid", input)


def tanh(input) -> Tensor:
    """tanh x; backward grad ⊙ (1 - y²)."""
    return _activation("tanh", input)


def softmax(input, dim=None) -> Tensor:
    """exp(x_i) / sum_j exp(x_j) along ``dim``."""
    x = _float_tensor(input, "softmax")
    dim = _dim("softmax", x, dim)
    k = kernels_for(x)
    y = k.softmax_forward(x.data, dim)
    return _result(y, "softmax", (x,), lambda g: (k.softmax_backward(g, y, dim),))


def log_softmax(input, dim=None) -> Tensor:
    """x_i - log sum_j exp(x_j) along ``dim`` (numerically stable)."""
    x = _float_tensor(input, "log_softmax")
    dim = _dim("log_softmax", x, dim)
    k = kernels_for(x)
    y = k.log_softmax_forward(x.data, dim)
    return _result(y, "log_softmax", (x,), lambda g: (k.log_softmax_backward(g, y, dim),))


def dropout(input, p=0.5, training=True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (training only)."""
    x = _float_tensor(input, "dropout")
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return x
    k = kernels_for(x)
    # the mask is a hash of (seed, index), the seed drawn from fastnn's generator: the same elements
    # are kept on every backend (backends/reference/dropout.py), and backward regenerates the mask
    # instead of storing it
    seed = int(generator().integers(0, 2**31))
    return _result(k.dropout_forward(x.data, p, seed), "dropout", (x,), lambda g: (k.dropout_backward(g, p, seed),))


def leaky_relu(input, negative_slope=0.01) -> Tensor:
    """x if x > 0 else negative_slope * x; backward grad ⊙ (1 or negative_slope)."""
    x = _float_tensor(input, "leaky_relu")
    if not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"leaky_relu: negative_slope must be a real number, got {negative_slope!r}")
    k = kernels_for(x)
    slope = float(negative_slope)
    y = k.leaky_relu_forward(x.data, slope)
    return _result(y, "leaky_relu", (x,), lambda g: (k.leaky_relu_backward(g, x.data, slope),))


def elu(input, alpha=1.0) -> Tensor:
    """x if x > 0 else alpha (e^x - 1); backward grad ⊙ (1 or y + alpha)."""
    x = _float_tensor(input, "elu")
    if not isinstance(alpha, numbers.Real):
        raise TypeError(f"elu: alpha must be a real number, got {alpha!r}")
    k = kernels_for(x)
    y = k.elu_forward(x.data, float(alpha))
    return _result(y, "elu", (x,), lambda g: (k.elu_backward(g, y, float(alpha)),))
