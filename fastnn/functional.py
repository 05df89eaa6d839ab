"""Every differentiable op of fastnn: validate arguments, run the backend kernel, record backward.

Import as ``import fastnn.functional as F``. Names and semantics follow ``torch.nn.functional``.
Validation lives here, in Python, before any kernel touches memory: kernels trust their inputs.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from . import autograd
from .autograd import Node
from .backend import kernels_for
from .random import generator
from .tensor import Tensor, _to_array, as_tensor

__all__ = [
    "conv2d", "linear", "max_pool2d", "avg_pool2d", "relu", "sigmoid", "tanh", "softmax",
    "log_softmax", "dropout", "batch_norm", "cross_entropy", "mse_loss", "flatten", "reshape",
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "exp", "log", "abs", "sum", "mean",
    "transpose", "permute", "getitem", "cat", "stack", "cast",
]


# ----------------------------------------------------------------------------- helpers
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
        x = Tensor(x.data.astype(np.float32))
    return x


def _check_ndim(x, ndims, op, name, layout):
    if x.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{op}: {name} must be {want} {layout}, got shape {tuple(x.shape)}")


def _same_dtype(op, x, other, name):
    if other is not None and other.dtype != x.dtype:
        raise TypeError(f"{op}: {name} has dtype {other.dtype} but input has dtype {x.dtype}; "
                        "cast one of them (e.g. .float() or .double())")


def _pair(value, op, name, minimum):
    """Normalise an int or a pair of ints to a (h, w) tuple of ints >= ``minimum``."""
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) for v in value):
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


# ----------------------------------------------------------------------------- convolution
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
    op = "conv2d"
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
        raise ValueError(f"{op}: input has {c} channels but weight expects {cg * groups} "
                         f"(weight shape {tuple(w.shape)}, groups={groups})")
    if b is not None and tuple(b.shape) != (o,):
        raise ValueError(f"{op}: bias must have shape ({o},), got {tuple(b.shape)}")
    eff_h, eff_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if eff_h > h + 2 * padding[0] or eff_w > wd + 2 * padding[1] or kh == 0 or kw == 0:
        raise ValueError(f"{op}: kernel size ({kh}, {kw}) (dilated ({eff_h}, {eff_w})) is larger than the "
                         f"padded input ({h + 2 * padding[0]}, {wd + 2 * padding[1]}); "
                         f"input shape {tuple(x.shape)}, padding {padding}")
    k = kernels_for(x, w, b)
    y, saved = k.conv2d_forward(x.data, w.data, None if b is None else b.data, stride, padding, dilation, int(groups))

    def backward(grad_y):
        needs = (x.requires_grad, w.requires_grad, b is not None and b.requires_grad)
        return k.conv2d_backward(grad_y, saved, needs)

    return _result(y, op, (x, w, b), backward)


def linear(input, weight, bias=None) -> Tensor:
    """y = x W^T + b  (the dense layer y = f(Wx + b) without f).

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features,),
    output (*, out_features).
    """
    op = "linear"
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
        raise ValueError(f"{op}: input has {x.shape[-1]} features (shape {tuple(x.shape)}) but weight "
                         f"expects {in_f} (weight shape {tuple(w.shape)})")
    if b is not None and tuple(b.shape) != (out_f,):
        raise ValueError(f"{op}: bias must have shape ({out_f},), got {tuple(b.shape)}")
    lead = x.shape[:-1]
    x2 = x.data.reshape(-1, in_f)
    k = kernels_for(x, w, b)
    y = k.linear_forward(x2, w.data, None if b is None else b.data)

    def backward(grad_y):
        needs = (x.requires_grad, w.requires_grad, b is not None and b.requires_grad)
        gx, gw, gb = k.linear_backward(grad_y.reshape(-1, out_f), x2, w.data, needs)
        return (None if gx is None else gx.reshape(x.shape)), gw, gb

    return _result(y.reshape(lead + (out_f,)), op, (x, w, b), backward)


# ----------------------------------------------------------------------------- pooling
def _pool_args(op, x, kernel_size, stride, padding):
    _check_ndim(x, (4,), op, "input", "(N, C, H, W)")
    ks = _pair(kernel_size, op, "kernel_size", 1)
    st = ks if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _pair(stride, op, "stride", 1)
    pad = _pair(padding, op, "padding", 0)
    if pad[0] * 2 > ks[0] or pad[1] * 2 > ks[1]:
        raise ValueError(f"{op}: padding {pad} must be at most half of kernel_size {ks}")
    h, w = x.shape[2:]
    if ks[0] > h + 2 * pad[0] or ks[1] > w + 2 * pad[1]:
        raise ValueError(f"{op}: kernel_size {ks} is larger than the padded input "
                         f"({h + 2 * pad[0]}, {w + 2 * pad[1]}); input shape {tuple(x.shape)}")
    return ks, st, pad


def max_pool2d(input, kernel_size, stride=None, padding=0, return_indices=False):
    """Max over each kernel window; ``indices`` are flat positions in the input's H*W plane.

    Shape: input (N, C, H, W) -> output (N, C, Ho, Wo), Ho = (H + 2 pad - kH) // stride + 1.
    With ``return_indices=True`` returns (output, indices) with int64 indices for ``max_unpool2d``.
    """
    op = "max_pool2d"
    x = _float_tensor(input, op)
    ks, st, pad = _pool_args(op, x, kernel_size, stride, padding)
    k = kernels_for(x)
    y, indices = k.max_pool2d_forward(x.data, ks, st, pad)
    shape = x.shape
    out = _result(y, op, (x,), lambda g: (k.max_pool2d_backward(g, indices, shape),))
    return (out, Tensor(indices)) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0) -> Tensor:
    """Mean over each kernel window (padding counted as zeros, like PyTorch's default)."""
    op = "avg_pool2d"
    x = _float_tensor(input, op)
    ks, st, pad = _pool_args(op, x, kernel_size, stride, padding)
    k = kernels_for(x)
    y = k.avg_pool2d_forward(x.data, ks, st, pad)
    shape = x.shape
    return _result(y, op, (x,), lambda g: (k.avg_pool2d_backward(g, shape, ks, st, pad),))


# ----------------------------------------------------------------------------- activations
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


def _dim(op, x, dim):
    if dim is None:
        raise TypeError(f"{op}: dim must be given explicitly (an int in [-{x.ndim}, {x.ndim - 1}])")
    if not isinstance(dim, (numbers.Integral, np.integer)) or not -x.ndim <= dim < builtins.max(x.ndim, 1):
        raise IndexError(f"{op}: dim {dim!r} is out of range for a {x.ndim}-D input")
    return int(dim) % builtins.max(x.ndim, 1)


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


# ----------------------------------------------------------------------------- normalisation
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over every axis but channels (axis 1).

    Training uses batch statistics and updates ``running_mean``/``running_var`` in place
    (unbiased variance, ``momentum`` weighting, like PyTorch); eval uses the running statistics.
    Shape: input (N, C) or (N, C, L) or (N, C, H, W); statistics and affine parameters (C,).
    """
    op = "batch_norm"
    x = _float_tensor(input, op)
    _check_ndim(x, (2, 3, 4, 5), op, "input", "(N, C, *)")
    c = x.shape[1]
    arrays = {}
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is None:
            arrays[name] = None
            continue
        t = value if isinstance(value, Tensor) else as_tensor(value, name=f"{op}: {name}")
        if tuple(t.shape) != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},) for an input with {c} channels, "
                             f"got {tuple(t.shape)}")
        arrays[name] = t
    if not training and (arrays["running_mean"] is None or arrays["running_var"] is None):
        raise ValueError(f"{op}: running_mean and running_var are required when training=False")
    if training and x.size // c <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input shape "
                         f"{tuple(x.shape)}")
    w, b = arrays["weight"], arrays["bias"]
    _same_dtype(op, x, w, "weight")
    k = kernels_for(x)
    rm, rv = arrays["running_mean"], arrays["running_var"]
    y, saved = k.batch_norm_forward(x.data, None if w is None else w.data, None if b is None else b.data,
                                    None if rm is None else rm.data, None if rv is None else rv.data,
                                    bool(training), float(momentum), float(eps))

    def backward(grad_y):
        gx, gw, gb = k.batch_norm_backward(grad_y, saved, (x.requires_grad,))
        return gx, (gw if w is not None else None), (gb if b is not None else None)

    return _result(y, op, (x, w, b), backward)


# ----------------------------------------------------------------------------- losses
def _reduction(op, reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(input, target, reduction="mean", label_smoothing=0.0) -> Tensor:
    """Softmax cross-entropy with integer class targets and optional label smoothing.

    Shape: input (N, C) or (N, C, d1, ...) logits; target (N,) or (N, d1, ...) int64 in [0, C).
    """
    op = "cross_entropy"
    x = _float_tensor(input, op)
    _reduction(op, reduction)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C) or (N, C, d1, ...) logits, got shape {tuple(x.shape)}")
    t = _to_array(_data(target), name=f"{op}: target")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices (int64), got dtype {t.dtype}; "
                        "for probabilities use a one-hot target with mse_loss or binary_cross_entropy_with_logits")
    expected = (x.shape[0],) + tuple(x.shape[2:])
    if tuple(t.shape) != expected:
        raise ValueError(f"{op}: target must have shape {expected} for input of shape {tuple(x.shape)}, "
                         f"got {tuple(t.shape)}")
    c = x.shape[1]
    if t.size and (t.min() < 0 or t.max() >= c):
        bad = t.min() if t.min() < 0 else t.max()
        raise IndexError(f"{op}: target value {int(bad)} is out of range for {c} classes (expected 0..{c - 1})")
    if not isinstance(label_smoothing, numbers.Real) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    k = kernels_for(x)
    loss, saved = k.cross_entropy_forward(x.data, t.astype(np.int64, copy=False), reduction, float(label_smoothing))
    return _result(loss, op, (x,), lambda g: (k.cross_entropy_backward(g, saved),))


def mse_loss(input, target, reduction="mean") -> Tensor:
    """mean((input - target)²) (or sum / none)."""
    op = "mse_loss"
    x = _float_tensor(input, op)
    t = _float_tensor(target, op, "target")
    _reduction(op, reduction)
    if x.shape != t.shape:
        raise ValueError(f"{op}: input shape {tuple(x.shape)} and target shape {tuple(t.shape)} must match")
    k = kernels_for(x, t)
    loss, diff = k.mse_loss_forward(x.data, t.data.astype(x.dtype, copy=False), reduction)

    def backward(g):
        gx = k.mse_loss_backward(g if reduction != "none" else g, diff, reduction)
        return gx, (-gx if t.requires_grad else None)

    return _result(loss, op, (x, t), backward)


# ----------------------------------------------------------------------------- tensor arithmetic
def _binary_operands(op, a, b):
    ta = a if isinstance(a, Tensor) else as_tensor(a, name=f"{op}: operand")
    tb = b if isinstance(b, Tensor) else as_tensor(b, name=f"{op}: operand")
    try:
        np.broadcast_shapes(ta.shape, tb.shape)
    except ValueError:
        raise ValueError(f"{op}: operands with shapes {tuple(ta.shape)} and {tuple(tb.shape)} "
                         "cannot be broadcast together") from None
    # Python scalars take the tensor's dtype (NumPy's weak scalars); arrays promote normally
    da = ta.data if isinstance(a, (Tensor, np.ndarray)) else ta.data.astype(tb.dtype) if tb.dtype.kind == "f" else ta.data
    db = tb.data if isinstance(b, (Tensor, np.ndarray)) else tb.data.astype(ta.dtype) if ta.dtype.kind == "f" else tb.data
    return ta, tb, da, db


def _cast_grad(g, t):
    return g if g.dtype == t.dtype else g.astype(t.dtype)


def add(a, b) -> Tensor:
    ta, tb, da, db = _binary_operands("add", a, b)
    return _result(da + db, "add", (ta, tb),
                   lambda g: (_cast_grad(_unbroadcast(g, ta.shape), ta), _cast_grad(_unbroadcast(g, tb.shape), tb)))


def sub(a, b) -> Tensor:
    ta, tb, da, db = _binary_operands("sub", a, b)
    return _result(da - db, "sub", (ta, tb),
                   lambda g: (_cast_grad(_unbroadcast(g, ta.shape), ta), _cast_grad(_unbroadcast(-g, tb.shape), tb)))


def mul(a, b) -> Tensor:
    ta, tb, da, db = _binary_operands("mul", a, b)
    return _result(da * db, "mul", (ta, tb),
                   lambda g: (_cast_grad(_unbroadcast(g * db, ta.shape), ta) if ta.requires_grad else None,
                              _cast_grad(_unbroadcast(g * da, tb.shape), tb) if tb.requires_grad else None))


def div(a, b) -> Tensor:
    ta, tb, da, db = _binary_operands("div", a, b)
    if da.dtype.kind != "f" and db.dtype.kind != "f":
        da = da.astype(np.float32)
    y = da / db
    return _result(y, "div", (ta, tb),
                   lambda g: (_cast_grad(_unbroadcast(g / db, ta.shape), ta) if ta.requires_grad else None,
                              _cast_grad(_unbroadcast(-g * y / db, tb.shape), tb) if tb.requires_grad else None))


def neg(a) -> Tensor:
    ta = as_tensor(a)
    return _result(-ta.data, "neg", (ta,), lambda g: (-g,))


def pow(a, exponent) -> Tensor:
    """a ** exponent for a scalar exponent."""
    ta = _float_tensor(a, "pow")
    if not isinstance(exponent, numbers.Real):
        raise TypeError(f"pow: exponent must be a real scalar, got {type(exponent).__name__}")
    y = ta.data ** exponent
    return _result(y, "pow", (ta,), lambda g: (g * exponent * ta.data ** (exponent - 1),))


def exp(a) -> Tensor:
    ta = _float_tensor(a, "exp")
    y = np.exp(ta.data)
    return _result(y, "exp", (ta,), lambda g: (g * y,))


def log(a) -> Tensor:
    ta = _float_tensor(a, "log")
    return _result(np.log(ta.data), "log", (ta,), lambda g: (g / ta.data,))


def abs(a) -> Tensor:
    ta = _float_tensor(a, "abs")
    return _result(np.abs(ta.data), "abs", (ta,), lambda g: (g * np.sign(ta.data),))


def cast(a, dtype) -> Tensor:
    ta = as_tensor(a)
    dtype = np.dtype(dtype)
    if ta.dtype == dtype:
        return ta
    src = ta.dtype
    return _result(ta.data.astype(dtype), "cast", (ta,), lambda g: (g.astype(src),))


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's ``@`` semantics; 2-D @ 2-D runs the backend's BLAS kernel."""
    ta = _float_tensor(a, "matmul", "input")
    tb = _float_tensor(b, "matmul", "other")
    if ta.ndim == 0 or tb.ndim == 0:
        raise ValueError("matmul: both operands must have at least 1 dimension")
    k_a = ta.shape[-1]
    k_b = tb.shape[-2] if tb.ndim > 1 else tb.shape[0]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {tuple(ta.shape)} and {tuple(tb.shape)} are not aligned "
                         f"({k_a} != {k_b})")
    if ta.dtype != tb.dtype:
        dtype = np.promote_types(ta.dtype, tb.dtype)
        ta, tb = cast(ta, dtype), cast(tb, dtype)
    if ta.ndim == 2 and tb.ndim == 2:
        k = kernels_for(ta, tb)
        y = k.matmul(ta.data, tb.data)
        return _result(y, "matmul", (ta, tb),
                       lambda g: (k.matmul(g, np.ascontiguousarray(tb.data.T)) if ta.requires_grad else None,
                                  k.matmul(np.ascontiguousarray(ta.data.T), g) if tb.requires_grad else None))
    da, db = ta.data, tb.data
    y = np.matmul(da, db)

    def backward(g):
        a2 = da[None, :] if da.ndim == 1 else da
        b2 = db[:, None] if db.ndim == 1 else db
        g2 = g
        if da.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if db.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = _unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(da.shape) if ta.requires_grad else None
        gb = _unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(db.shape) if tb.requires_grad else None
        return ga, gb

    return _result(y, "matmul", (ta, tb), backward)


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


def sum(input, dim=None, keepdim=False) -> Tensor:
    x = as_tensor(input)
    axes = _axes("sum", x, dim)
    y = np.asarray(x.data.sum(axis=axes, keepdims=keepdim))

    def backward(g):
        if axes is not None and not keepdim:
            g = np.expand_dims(g, axes)
        return (np.broadcast_to(g, x.shape).astype(x.dtype),)

    return _result(y, "sum", (x,), backward)


def mean(input, dim=None, keepdim=False) -> Tensor:
    x = _float_tensor(input, "mean")
    axes = _axes("mean", x, dim)
    y = np.asarray(x.data.mean(axis=axes, keepdims=keepdim), dtype=x.dtype)
    count = x.data.size if axes is None else int(np.prod([x.shape[a] for a in axes]))

    def backward(g):
        if axes is not None and not keepdim:
            g = np.expand_dims(g, axes)
        return (np.broadcast_to(g / count, x.shape).astype(x.dtype),)

    return _result(y, "mean", (x,), backward)


def reshape(input, shape) -> Tensor:
    x = as_tensor(input)
    try:
        y = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                         f"({x.data.size} elements) into {tuple(shape)}") from None
    return _result(y, "reshape", (x,), lambda g: (g.reshape(x.shape),))


def flatten(input, start_dim=0, end_dim=-1) -> Tensor:
    x = as_tensor(input)
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = _axes("flatten", x, (start_dim, end_dim))
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:s] + (-1,) + x.shape[e + 1:]
    if x.data.size == 0:
        shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return reshape(x, shape)


def transpose(input, dim0, dim1) -> Tensor:
    x = as_tensor(input)
    d0, d1 = _axes("transpose", x, (dim0, dim1))
    return _result(np.swapaxes(x.data, d0, d1), "transpose", (x,), lambda g: (np.swapaxes(g, d0, d1),))


def permute(input, dims) -> Tensor:
    x = as_tensor(input)
    dims = _axes("permute", x, tuple(dims))
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} is not a permutation of the {x.ndim} axes")
    inverse = tuple(np.argsort(dims))
    return _result(np.transpose(x.data, dims), "permute", (x,), lambda g: (np.transpose(g, inverse),))


def getitem(input, index) -> Tensor:
    """``x[index]`` with NumPy indexing; backward scatters (adds) into the indexed positions."""
    x = as_tensor(input)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    try:
        y = x.data[index]
    except IndexError as exc:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape {tuple(x.shape)} ({exc})") from None

    def backward(g):
        grad = np.zeros_like(x.data)
        np.add.at(grad, index, g)
        return (grad,)

    return _result(np.array(y, copy=False) if np.isscalar(y) else y, "getitem", (x,), backward)


def cat(tensors, dim=0) -> Tensor:
    """Concatenate tensors of equal shape except along ``dim``."""
    ts = [as_tensor(t, name="cat: tensors") for t in tensors]
    if not ts:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    axis = _axes("cat", ts[0], dim)[0]
    try:
        y = np.concatenate([t.data for t in ts], axis=axis)
    except ValueError as exc:
        raise ValueError(f"cat: shapes {[tuple(t.shape) for t in ts]} do not match outside dim {dim} ({exc})") from None
    bounds = np.cumsum([t.shape[axis] for t in ts])[:-1]
    return _result(y, "cat", tuple(ts), lambda g: tuple(np.split(g, bounds, axis=axis)))


def stack(tensors, dim=0) -> Tensor:
    """Stack tensors of identical shape along a new axis ``dim``."""
    ts = [as_tensor(t, name="stack: tensors") for t in tensors]
    if not ts:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    shapes = {tuple(t.shape) for t in ts}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    axis = int(dim) % (ts[0].ndim + 1)
    y = np.stack([t.data for t in ts], axis=axis)
    return _result(y, "stack", tuple(ts),
                   lambda g: tuple(np.take(g, i, axis=axis) for i in range(len(ts))))
