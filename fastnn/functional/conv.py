"""Convolution and the dense layer: im2col + GEMM through the backend."""

from __future__ import annotations

import builtins  # noqa: F401
import numbers  # noqa: F401

import numpy as np  # noqa: F401

from .. import autograd  # noqa: F401
from ..backend import kernels_for  # noqa: F401
from ..tensor import Tensor, _to_array, as_tensor  # noqa: F401
from ._common import (_axes, _check_ndim, _data, _dim, _float_tensor, _pair, _reduction, _result,  # noqa: F401
                      _same_dtype, _unbroadcast)



def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D cross-correlation by im2col + GEMM: y = W · im2col(x) + b.

    Args:
        input: (N, C, H, W). weight: (O, C // groups, kH, kW). bias: (O,) or None.
        stride, padding, dilation: int or (h, w). groups: int dividing C and O.
    Shape:
        output (N, O, Ho, Wo), Ho = (H + 2 pad_h - dil_h (kH - 1) - 1) // stride_h + 1.
    Example:
        >>> F.conv2d(np.ones((1, 1, 5, 5), np.float32), np.ones((2, 1, 3, 3), np.float32)).shape
        (1, 2, 3, 3)
    """
    x, w, b, stride, padding, dilation, groups = _conv2d_arguments(
        "conv2d", input, weight, bias, stride, padding, dilation, groups)
    k = kernels_for(x, w, b)
    y, saved = k.conv2d_forward(x.data, w.data, None if b is None else b.data, stride, padding, dilation, groups)

    def backward(grad_y):
        needs = (x.requires_grad, w.requires_grad, b is not None and b.requires_grad)
        return k.conv2d_backward(grad_y, saved, needs)

    return _result(y, "conv2d", (x, w, b), backward)


def conv2d_relu(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """relu(conv2d(...)) as one op, for a Conv2d followed by a ReLU (``nn.Sequential`` fuses
    the pair; not part of PyTorch's API): the same values and gradients as the two ops. The cpu
    backend applies the ReLU while the convolution's output is in cache and its mask inside the
    convolution's backward; the reference states it as the two kernels in turn."""
    x, w, b, stride, padding, dilation, groups = _conv2d_arguments(
        "conv2d", input, weight, bias, stride, padding, dilation, groups)
    k = kernels_for(x, w, b)
    y, saved = k.conv2d_relu_forward(x.data, w.data, None if b is None else b.data, stride, padding, dilation,
                                     groups)

    def backward(grad_y):
        needs = (x.requires_grad, w.requires_grad, b is not None and b.requires_grad)
        return k.conv2d_relu_backward(grad_y, y, saved, needs)

    return _result(y, "conv2d_relu", (x, w, b), backward)


def _conv2d_arguments(op, input, weight, bias, stride, padding, dilation, groups):
    """The checked arguments of conv2d: (x, w, b, stride, padding, dilation, groups) with Tensors,
    (h, w) pairs and an int; a ValueError naming the argument otherwise."""
    x = _float_tensor(input, op)
    w = _float_tensor(weight, op, "weight")
    b = None if bias is None else _float_tensor(bias, op, "bias")
    _check_ndim(x, (4,), op, "input", "(N, C, H, W)")
    _check_ndim(w, (4,), op, "weight", "(out_channels, in_channels // groups, kH, kW)")
    _same_dtype(op, x, w, "weight")
    _same_dtype(op, x, b, "bias")
    stride = _pair(stride, op, "stride", 1)
    padding = _pair(padding, op, "padding", 0)
    dilation = _pair(dilation, op, "dilation", 1)
    if isinstance(groups, bool) or not isinstance(groups, (numbers.Integral, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if c % groups or o % groups:
        raise ValueError(f"{op}: groups={groups} must divide in_channels={c} and out_channels={o}")
    if cg * groups != c:
        raise ValueError(
            f"{op}: input has {c} channels but weight expects {cg * groups} "
            f"(weight shape {tuple(w.shape)}, groups={groups})"
        )
    if b is not None and tuple(b.shape) != (o,):
        raise ValueError(f"{op}: bias must have shape ({o},), got {tuple(b.shape)}")
    eff_h, eff_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if eff_h > h + 2 * padding[0] or eff_w > wd + 2 * padding[1] or kh == 0 or kw == 0:
        raise ValueError(
            f"{op}: kernel size ({kh}, {kw}) (dilated ({eff_h}, {eff_w})) is larger than the "
            f"padded input ({h + 2 * padding[0]}, {wd + 2 * padding[1]}); "
            f"input shape {tuple(x.shape)}, padding {padding}"
        )
    return x, w, b, stride, padding, dilation, int(groups)


def linear(input, weight, bias=None) -> Tensor:
    """y = x W^T + b  (the dense layer y = f(Wx + b) without f).

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features,),
    output (*, out_features).
    """
    return _linear(input, weight, bias, relu=False)


def linear_relu(input, weight, bias=None) -> Tensor:
    """relu(linear(...)) as one op, for a Linear followed by a ReLU (``nn.Sequential`` fuses the
    pair; not part of PyTorch's API): the same values and gradients as the two ops, with one
    autograd node and no separate activation pass over memory. Errors name ``linear``, the op the
    user called (through nn.Linear)."""
    return _linear(input, weight, bias, relu=True)


def linear_relu_dropout(input, weight, bias=None, p=0.5, training=True) -> Tensor:
    """dropout(relu(linear(...)), p, training), for a Linear, ReLU, Dropout run by ``nn.Sequential``
    (not part of PyTorch's API): the same values, gradients and random draws as the three ops.
    Where the backend has the fused kernels (cuda: the dropout mask in the GEMM's epilogue, its
    backward in the mask the backward GEMMs read grad_y through) it is one autograd node and one
    launch; elsewhere, and when dropout does nothing (eval, p = 0) or everything (p = 1), it is
    linear_relu then dropout."""
    if training and isinstance(p, numbers.Real) and 0 < p < 1:
        return _linear(input, weight, bias, relu=True, dropout_p=p)
    from .activation import dropout
    return dropout(linear_relu(input, weight, bias), p, training)


def _linear(input, weight, bias, relu, dropout_p=None):
    """linear, or linear_relu when ``relu`` (kernels ``linear_relu_*``, whose backward also takes y),
    or with ``dropout_p`` (0 < p < 1, training) linear_relu_dropout."""
    x, w, b = _linear_arguments("linear", input, weight, bias)
    out_f, in_f = w.shape
    lead = x.shape[:-1]
    x2 = x.data.reshape(-1, in_f)
    k = kernels_for(x, w, b)
    bias_data = None if b is None else b.data
    if dropout_p is not None:
        if not hasattr(k, "linear_relu_dropout_forward"):
            from .activation import dropout
            return dropout(_linear(x, w, b, relu=True), dropout_p, True)
        from ..random import generator
        seed = int(generator().integers(0, 2**31))    # F.dropout's draw, at the same point of the sequence
        y = k.linear_relu_dropout_forward(x2, w.data, bias_data, dropout_p, seed)
        op = "linear_relu_dropout"

        def kernel_backward(grad_y, needs):
            return k.linear_relu_dropout_backward(grad_y, y, x2, w.data, needs, dropout_p)
    elif relu:
        y = k.linear_relu_forward(x2, w.data, bias_data)
        op = "linear_relu"

        def kernel_backward(grad_y, needs):
            return k.linear_relu_backward(grad_y, y, x2, w.data, needs)
    else:
        y = k.linear_forward(x2, w.data, bias_data)
        op = "linear"

        def kernel_backward(grad_y, needs):
            return k.linear_backward(grad_y, x2, w.data, needs)

    def backward(grad_y):
        needs = (x.requires_grad, w.requires_grad, b is not None and b.requires_grad)
        gx, gw, gb = kernel_backward(grad_y.reshape(-1, out_f), needs)
        return (None if gx is None else gx.reshape(x.shape)), gw, gb

    return _result(y.reshape(lead + (out_f,)), op, (x, w, b), backward)


def _linear_arguments(op, input, weight, bias):
    """The checked arguments of linear as Tensors (x, w, b); a ValueError naming the argument otherwise."""
    x = _float_tensor(input, op)
    w = _float_tensor(weight, op, "weight")
    b = None if bias is None else _float_tensor(bias, op, "bias")
    if x.ndim < 1:
        raise ValueError(f"{op}: input must have at least 1 dimension (*, in_features), got a scalar")
    _check_ndim(w, (2,), op, "weight", "(out_features, in_features)")
    _same_dtype(op, x, w, "weight")
    _same_dtype(op, x, b, "bias")
    out_f, in_f = w.shape
    if x.shape[-1] != in_f:
        raise ValueError(
            f"{op}: input has {x.shape[-1]} features (shape {tuple(x.shape)}) but weight "
            f"expects {in_f} (weight shape {tuple(w.shape)})"
        )
    if b is not None and tuple(b.shape) != (out_f,):
        raise ValueError(f"{op}: bias must have shape ({out_f},), got {tuple(b.shape)}")
    return x, w, b
