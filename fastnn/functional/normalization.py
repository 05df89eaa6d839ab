"""Normalisation."""

from __future__ import annotations

import builtins  # noqa: F401
import numbers  # noqa: F401

import numpy as np  # noqa: F401

from .. import autograd  # noqa: F401
from .. import device as _device
from ..backend import kernels_for  # noqa: F401
from ..tensor import Tensor, _to_array, as_tensor  # noqa: F401
from ._common import (_axes, _check_ndim, _data, _dim, _float_tensor, _host_only, _pair, _reduction,  # noqa: F401
                      _result, _same_dtype, _unbroadcast)



def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over every axis but channels (axis 1).

    Training uses batch statistics and updates ``running_mean``/``running_var`` in place
    (unbiased variance, ``momentum`` weighting, like PyTorch); eval uses the running statistics.
    Shape: input (N, C) or (N, C, L) or (N, C, H, W); statistics and affine parameters (C,).
    """
    return _batch_norm("batch_norm", input, running_mean, running_var, weight, bias, training, momentum, eps,
                       relu=False)


def batch_norm_relu(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
) -> Tensor:
    """relu(batch_norm(...)) as one op, for a BatchNorm followed by a ReLU (``nn.Sequential`` fuses
    the pair; not part of PyTorch's API): the same values and gradients as the two ops; the cpu
    backend applies the ReLU in the normalising pass and its mask inside the backward."""
    return _batch_norm("batch_norm_relu", input, running_mean, running_var, weight, bias, training, momentum,
                       eps, relu=True)


def _batch_norm(op, input, running_mean, running_var, weight, bias, training, momentum, eps, relu):
    """batch_norm, or batch_norm_relu when ``relu``; ``op`` names it in errors and in the graph."""
    x = _float_tensor(input, op)
    _check_ndim(x, (2, 3, 4, 5), op, "input", "(N, C, *)")
    c = x.shape[1]
    arrays = {}
    for name, value in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if value is None:
            arrays[name] = None
            continue
        t = value if isinstance(value, Tensor) else as_tensor(value, name=f"{op}: {name}")
        if tuple(t.shape) != (c,):
            raise ValueError(
                f"{op}: {name} must have shape ({c},) for an input with {c} channels, got {tuple(t.shape)}"
            )
        arrays[name] = t
    if not training and (arrays["running_mean"] is None or arrays["running_var"] is None):
        raise ValueError(f"{op}: running_mean and running_var are required when training=False")
    if training and x.data.size // c <= 1:
        raise ValueError(
            f"{op}: expected more than 1 value per channel when training, got input shape {tuple(x.shape)}"
        )
    w, b = arrays["weight"], arrays["bias"]
    _same_dtype(op, x, w, "weight")
    k = kernels_for(x)
    rm, rv = arrays["running_mean"], arrays["running_var"]
    y, saved = (k.batch_norm_relu_forward if relu else k.batch_norm_forward)(
        x.data,
        None if w is None else w.data,
        None if b is None else b.data,
        None if rm is None else rm.data,
        None if rv is None else rv.data,
        bool(training),
        float(momentum),
        float(eps),
    )

    def backward(grad_y):
        if relu:
            gx, gw, gb = k.batch_norm_relu_backward(grad_y, y, saved, (x.requires_grad,))
        else:
            gx, gw, gb = k.batch_norm_backward(grad_y, saved, (x.requires_grad,))
        return gx, (gw if w is not None else None), (gb if b is not None else None)

    return _result(y, op, (x, w, b), backward)


def _contiguous(k, a):
    """a as a C-contiguous array on its own device."""
    return k.contiguous(a) if _device.is_device_array(a) else np.ascontiguousarray(a)


def _standardize_rows(op, x, rows_shape, eps):
    """Differentiable (x - mean) / sqrt(var + eps) over the last axis of x viewed as ``rows_shape``
    (on the cpu or the cuda device)."""
    k = kernels_for(x)
    x2 = _contiguous(k, x.data).reshape(rows_shape)
    x_hat, invstd = k.standardize_rows_forward(x2, float(eps))

    def backward(g):
        return (k.standardize_rows_backward(_contiguous(k, g).reshape(rows_shape), x_hat, invstd)
                .reshape(x.shape),)

    return _result(x_hat.reshape(x.shape), op, (x,), backward)


def _affine(y, weight, bias, shape):
    if weight is not None:
        y = y * (weight.reshape(shape) if isinstance(weight, Tensor) else as_tensor(weight).reshape(shape))
    if bias is not None:
        y = y + (bias.reshape(shape) if isinstance(bias, Tensor) else as_tensor(bias).reshape(shape))
    return y


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims, then y * weight + bias (elementwise).

    Shape: input (*, *normalized_shape); weight, bias ``normalized_shape``.
    """
    op = "layer_norm"
    x = _float_tensor(input, op)
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
    if not shape or tuple(x.shape[-len(shape):]) != shape or x.ndim < len(shape):
        raise ValueError(f"{op}: input shape {tuple(x.shape)} does not end with normalized_shape {shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {shape}, got {tuple(p.shape)}")
    features = int(np.prod(shape))
    y = _standardize_rows(op, x, (-1, features), eps)
    return _affine(y, weight, bias, shape)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Normalise each of ``num_groups`` channel groups per sample, then per-channel affine.

    Shape: input (N, C, *), C divisible by num_groups; weight, bias (C,).
    """
    op = "group_norm"
    x = _float_tensor(input, op)
    _check_ndim(x, (2, 3, 4, 5), op, "input", "(N, C, *)")
    c = x.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1 or c % num_groups:
        raise ValueError(f"{op}: num_groups must be a positive int dividing the {c} channels, got {num_groups!r}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},), got {tuple(p.shape)}")
    y = _standardize_rows(op, x, (x.shape[0] * num_groups, -1), eps)
    return _affine(y, weight, bias, (1, c) + (1,) * (x.ndim - 2))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5) -> Tensor:
    """Normalise each (sample, channel) plane over its spatial dims, then per-channel affine.

    Shape: input (N, C, H, W) (or (N, C, L)); weight, bias (C,). Running statistics are used only when
    ``use_input_stats`` is False (InstanceNorm with track_running_stats in eval mode).
    """
    op = "instance_norm"
    x = _float_tensor(input, op)
    _check_ndim(x, (3, 4, 5), op, "input", "(N, C, *spatial)")
    n, c = x.shape[:2]
    if use_input_stats:
        if running_mean is not None and running_var is not None:
            # the running statistics follow the mean over the batch of per-instance statistics
            for t, name in ((running_mean, "running_mean"), (running_var, "running_var")):
                dtype = np.dtype(t.dtype) if hasattr(t, "dtype") else None
                if dtype is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
                    # updated in place: a conversion would update a copy and lose the statistics
                    raise ValueError(f"{op}: {name} must be a float32 or float64 array or tensor, got "
                                     f"{dtype or type(t).__name__}")
            rm, rv = (t if isinstance(t, Tensor) else as_tensor(t, name=f"{op}: {name}")
                      for t, name in ((running_mean, "running_mean"), (running_var, "running_var")))
            for t, name in ((rm, "running_mean"), (rv, "running_var")):
                if tuple(t.shape) != (c,):
                    raise ValueError(f"{op}: {name} must have shape ({c},) for an input with {c} channels, "
                                     f"got {tuple(t.shape)}")
            kernels_for(x, rm, rv).instance_norm_running_stats_(x.data, rm.data, rv.data, float(momentum))
        y = _standardize_rows(op, x, (n * c, -1), eps)
        return _affine(y, weight, bias, (1, c) + (1,) * (x.ndim - 2))
    from .normalization import batch_norm
    return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)
