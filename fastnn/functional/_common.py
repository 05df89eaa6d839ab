"""Argument validation and graph-recording helpers shared by every functional op."""

from __future__ import annotations

import builtins
import numbers

import numpy as np

from .. import autograd
from .. import device as _device
from ..autograd import Node
from ..tensor import Tensor, as_tensor


def _result(data, name, inputs, backward) -> Tensor:
    """Wrap ``data`` in a Tensor, recording ``backward`` when any input requires grad."""
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out._node = None
    out.requires_grad = False
    if autograd.needs_grad(*inputs):
        out.requires_grad = True
        out._node = Node(name, inputs, backward)
    return out


def _float_tensor(x, op, name="input") -> Tensor:
    """``x`` as a floating-point Tensor (ints are promoted to float32, like a torch float op)."""
    if not isinstance(x, Tensor):
        x = as_tensor(x, name=f"{op}: {name}")
    if x.dtype.kind != "f":
        x = Tensor(_device.cuda_kernels().astype(x.data, np.float32) if _device.is_device_array(x.data)
                   else x.data.astype(np.float32))
    return x


def _host_only(op, *tensors):
    """Raise NotImplementedError for an op whose NumPy work has no cuda kernel yet (instead of
    copying device arrays to the host behind the caller's back)."""
    if _device.cuda_in_use and any(isinstance(t, Tensor) and t.device == "cuda" for t in tensors):
        raise NotImplementedError(f"{op}: no kernel for the 'cuda' device yet; move the tensors to 'cpu' "
                                  "with .to('cpu') for this op")


def _check_ndim(x, ndims, op, name, layout):
    if x.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{op}: {name} must be {want} {layout}, got shape {tuple(x.shape)}")


def _same_dtype(op, x, other, name):
    if other is not None and other.dtype != x.dtype:
        raise TypeError(
            f"{op}: {name} has dtype {other.dtype} but input has dtype {x.dtype}; "
            "cast one of them (e.g. .float() or .double())"
        )


def _pair(value, op, name, minimum):
    """Normalise an int or a pair of ints to a (h, w) tuple of ints >= ``minimum``."""
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if builtins.min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return pair


def _unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape`` (the reverse of NumPy broadcasting)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    reduced = grad.sum(axis=axes, keepdims=True) if axes else grad
    return reduced.reshape(shape)


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _dim(op, x, dim):
    if dim is None:
        raise TypeError(f"{op}: dim must be given explicitly (an int in [-{x.ndim}, {x.ndim - 1}])")
    if not isinstance(dim, (numbers.Integral, np.integer)) or not -x.ndim <= dim < builtins.max(x.ndim, 1):
        raise IndexError(f"{op}: dim {dim!r} is out of range for a {x.ndim}-D input")
    return int(dim) % builtins.max(x.ndim, 1)


def _axes(op, x, dim):
    if dim is None:
        return None
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    out = []
    for d in dims:
        if not isinstance(d, (numbers.Integral, np.integer)) or not -x.ndim <= d < builtins.max(x.ndim, 1):
            raise IndexError(f"{op}: dim {d!r} is out of range for a {x.ndim}-D tensor")
        out.append(int(d) % builtins.max(x.ndim, 1))
    return tuple(out)


def _reduction(op, reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
