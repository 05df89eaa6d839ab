"""Activations, softmax and dropout."""

from __future__ import annotations

import numbers

import numpy as np

from ..backend import kernels_for
from ..tensor import Tensor
from ._common import _result, _float_tensor, _dim
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
    if p == 1:
        mask = np.zeros_like(x.data)
    else:
        mask = (generator().random(x.shape, dtype=np.float64) >= p).astype(x.dtype)
        mask *= 1 / (1 - p)
    return _result(x.data * mask, "dropout", (x,), lambda g: (g * mask,))
