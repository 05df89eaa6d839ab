"""Tensor arithmetic with broadcasting, reductions, shape ops, cat and stack."""

from __future__ import annotations

import builtins  # noqa: F401
import numbers  # noqa: F401
import sys

import numpy as np  # noqa: F401

from .. import autograd  # noqa: F401
from .. import device as _device
from ..backend import kernels_for  # noqa: F401
from ..tensor import Tensor, _to_array, as_tensor  # noqa: F401
from ._common import (_axes, _check_ndim, _data, _dim, _float_tensor, _pair, _reduction, _result,  # noqa: F401
                      _same_dtype, _unbroadcast)



def _weak_scalar(value, other):
    """A Python number meeting a floating tensor: it takes the tensor's dtype (NumPy's weak
    scalars), so 0.1 stays 0.1 in a float64 expression."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(other, Tensor)
            and other.dtype.kind == "f")


def _binary_operands(op, a, b):
    # weak Python scalars take the other operand's dtype; arrays and tensors promote normally
    ta = (Tensor(np.asarray(a, dtype=b.dtype)) if _weak_scalar(a, b)
          else a if isinstance(a, Tensor) else as_tensor(a, name=f"{op}: operand"))
    tb = (Tensor(np.asarray(b, dtype=a.dtype)) if _weak_scalar(b, a)
          else b if isinstance(b, Tensor) else as_tensor(b, name=f"{op}: operand"))
    try:
        np.broadcast_shapes(ta.shape, tb.shape)
    except ValueError:
        raise ValueError(
            f"{op}: operands with shapes {tuple(ta.shape)} and {tuple(tb.shape)} cannot be broadcast together"
        ) from None
    da = ta.data if isinstance(a, (Tensor, np.ndarray)) or tb.dtype.kind != "f" else ta.data.astype(tb.dtype)
    db = tb.data if isinstance(b, (Tensor, np.ndarray)) or ta.dtype.kind != "f" else tb.data.astype(ta.dtype)
    return ta, tb, da, db


def _cast_grad(g, t):
    return g if g.dtype == t.dtype else g.astype(t.dtype)


def add(a, b) -> Tensor:
    if _device.cuda_in_use and _on_cuda(a, b):
        return _cuda_binary("add", a, b)
    ta, tb, da, db = _binary_operands("add", a, b)
    return _result(
        da + db,
        "add",
        (ta, tb),
        lambda g: (_cast_grad(_unbroadcast(g, ta.shape), ta), _cast_grad(_unbroadcast(g, tb.shape), tb)),
    )


def sub(a, b) -> Tensor:
    if _device.cuda_in_use and _on_cuda(a, b):
        return _cuda_binary("sub", a, b)
    ta, tb, da, db = _binary_operands("sub", a, b)
    return _result(
        da - db,
        "sub",
        (ta, tb),
        lambda g: (_cast_grad(_unbroadcast(g, ta.shape), ta), _cast_grad(_unbroadcast(-g, tb.shape), tb)),
    )


def mul(a, b) -> Tensor:
    if _device.cuda_in_use and _on_cuda(a, b):
        return _cuda_binary("mul", a, b)
    ta, tb, da, db = _binary_operands("mul", a, b)
    return _result(
        da * db,
        "mul",
        (ta, tb),
        lambda g: (
            _cast_grad(_unbroadcast(g * db, ta.shape), ta) if ta.requires_grad else None,
            _cast_grad(_unbroadcast(g * da, tb.shape), tb) if tb.requires_grad else None,
        ),
    )


def div(a, b) -> Tensor:
    if _device.cuda_in_use and _on_cuda(a, b):
        return _cuda_binary("div", a, b)
    ta, tb, da, db = _binary_operands("div", a, b)
    if da.dtype.kind != "f" and db.dtype.kind != "f":
        da = da.astype(np.float32)
    y = da / db
    return _result(
        y,
        "div",
        (ta, tb),
        lambda g: (
            _cast_grad(_unbroadcast(g / db, ta.shape), ta) if ta.requires_grad else None,
            _cast_grad(_unbroadcast(-g * y / db, tb.shape), tb) if tb.requires_grad else None,
        ),
    )


def neg(a) -> Tensor:
    ta = as_tensor(a)
    if _device.cuda_in_use and _on_cuda(ta):
        return _cuda_unary("neg", ta)
    return _result(-ta.data, "neg", (ta,), lambda g: (-g,))


def pow(a, exponent) -> Tensor:
    """a ** exponent for a scalar exponent."""
    ta = _float_tensor(a, "pow")
    if not isinstance(exponent, numbers.Real):
        raise TypeError(f"pow: exponent must be a real scalar, got {type(exponent).__name__}")
    if _device.cuda_in_use and _on_cuda(ta):
        return _cuda_unary("pow", ta, exponent)
    y = ta.data**exponent
    return _result(y, "pow", (ta,), lambda g: (g * exponent * ta.data ** (exponent - 1),))


def exp(a) -> Tensor:
    ta = _float_tensor(a, "exp")
    if _device.cuda_in_use and _on_cuda(ta):
        return _cuda_unary("exp", ta)
    y = np.exp(ta.data)
    return _result(y, "exp", (ta,), lambda g: (g * y,))


def log(a) -> Tensor:
    ta = _float_tensor(a, "log")
    if _device.cuda_in_use and _on_cuda(ta):
        return _cuda_unary("log", ta)
    return _result(np.log(ta.data), "log", (ta,), lambda g: (g / ta.data,))


def abs(a) -> Tensor:
    ta = _float_tensor(a, "abs")
    if _device.cuda_in_use and _on_cuda(ta):
        return _cuda_unary("abs", ta)
    return _result(np.abs(ta.data), "abs", (ta,), lambda g: (g * np.sign(ta.data),))


def cast(a, dtype) -> Tensor:
    ta = as_tensor(a)
    dtype = np.dtype(dtype)
    if ta.dtype == dtype:
        return ta
    src = ta.dtype
    if _device.cuda_in_use and _on_cuda(ta):
        k = _device.cuda_kernels()
        return _result(k.astype(ta.data, dtype), "cast", (ta,), lambda g: (k.astype(g, src),))
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
        raise ValueError(f"matmul: shapes {tuple(ta.shape)} and {tuple(tb.shape)} are not aligned ({k_a} != {k_b})")
    if ta.dtype != tb.dtype:
        dtype = np.promote_types(ta.dtype, tb.dtype)
        ta, tb = cast(ta, dtype), cast(tb, dtype)
    if ta.ndim == 2 and tb.ndim == 2:
        k = kernels_for(ta, tb)
        if k.NAME == "cuda":
            return _result(k.matmul(ta.data, tb.data), "matmul", (ta, tb), lambda g: (
                k.matmul(g, k.permute(tb.data, (1, 0))) if ta.requires_grad else None,
                k.matmul(k.permute(ta.data, (1, 0)), g) if tb.requires_grad else None))
        y = k.matmul(ta.data, tb.data)
        return _result(
            y,
            "matmul",
            (ta, tb),
            lambda g: (
                k.matmul(g, np.ascontiguousarray(tb.data.T)) if ta.requires_grad else None,
                k.matmul(np.ascontiguousarray(ta.data.T), g) if tb.requires_grad else None,
            ),
        )
    if _device.cuda_in_use and _on_cuda(ta, tb):
        raise NotImplementedError(f"matmul: no kernel for the 'cuda' device for shapes {tuple(ta.shape)} @ "
                                  f"{tuple(tb.shape)} (only 2-D @ 2-D)")
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
        ga = (
            _unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(da.shape)
            if ta.requires_grad
            else None
        )
        gb = (
            _unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(db.shape)
            if tb.requires_grad
            else None
        )
        return ga, gb

    return _result(y, "matmul", (ta, tb), backward)


def sum(input, dim=None, keepdim=False) -> Tensor:
    x = as_tensor(input)
    axes = _axes("sum", x, dim)
    if _device.cuda_in_use and _on_cuda(x):
        return _cuda_sum("sum", x, axes, keepdim, 1)
    y = np.asarray(x.data.sum(axis=axes, keepdims=keepdim))

    def backward(g):
        if axes is not None and not keepdim:
            g = np.expand_dims(g, axes)
        return (np.broadcast_to(g, x.shape).astype(x.dtype),)

    return _result(y, "sum", (x,), backward)


def mean(input, dim=None, keepdim=False) -> Tensor:
    x = _float_tensor(input, "mean")
    axes = _axes("mean", x, dim)
    if _device.cuda_in_use and _on_cuda(x):
        count = x.data.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
        return _cuda_sum("mean", x, axes, keepdim, count)
    y = np.asarray(x.data.mean(axis=axes, keepdims=keepdim), dtype=x.dtype)
    count = x.data.size if axes is None else int(np.prod([x.shape[a] for a in axes]))

    def backward(g):
        if axes is not None and not keepdim:
            g = np.expand_dims(g, axes)
        return (np.broadcast_to(g / count, x.shape).astype(x.dtype),)

    return _result(y, "mean", (x,), backward)


def reshape(input, shape) -> Tensor:
    x = as_tensor(input)
    if _device.cuda_in_use and _on_cuda(x):
        return _cuda_reshape(x, shape)
    try:
        y = x.data.reshape(shape)
    except ValueError:
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} ({x.data.size} elements) into {tuple(shape)}"
        ) from None
    return _result(y, "reshape", (x,), lambda g: (g.reshape(x.shape),))


def flatten(input, start_dim=0, end_dim=-1) -> Tensor:
    x = as_tensor(input)
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = _axes("flatten", x, (start_dim, end_dim))
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:s] + (-1,) + x.shape[e + 1 :]
    if x.data.size == 0:
        shape = x.shape[:s] + (int(np.prod(x.shape[s : e + 1])),) + x.shape[e + 1 :]
    return reshape(x, shape)


def transpose(input, dim0, dim1) -> Tensor:
    x = as_tensor(input)
    d0, d1 = _axes("transpose", x, (dim0, dim1))
    if _device.cuda_in_use and _on_cuda(x):
        dims = list(range(x.ndim))
        dims[d0], dims[d1] = d1, d0
        return permute(x, dims)
    return _result(np.swapaxes(x.data, d0, d1), "transpose", (x,), lambda g: (np.swapaxes(g, d0, d1),))


def permute(input, dims) -> Tensor:
    x = as_tensor(input)
    dims = _axes("permute", x, tuple(dims))
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} is not a permutation of the {x.ndim} axes")
    inverse = tuple(np.argsort(dims))
    if _device.cuda_in_use and _on_cuda(x):
        k = _device.cuda_kernels()
        inverse = tuple(int(i) for i in inverse)
        return _result(k.permute(x.data, dims), "permute", (x,), lambda g: (k.permute(g, inverse),))
    return _result(np.transpose(x.data, dims), "permute", (x,), lambda g: (np.transpose(g, inverse),))


def getitem(input, index) -> Tensor:
    """``x[index]`` with NumPy indexing; backward scatters (adds) into the indexed positions."""
    x = as_tensor(input)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if _device.cuda_in_use and _on_cuda(x):
        k = _device.cuda_kernels()
        y = k.getitem(x.data, index)
        return _result(y, "getitem", (x,), lambda g: (k.index_add(x.shape, x.dtype, index, g),))
    try:
        y = x.data[index]
    except IndexError as exc:
        raise IndexError(
            f"getitem: index {index!r} is invalid for a tensor of shape {tuple(x.shape)} ({exc})"
        ) from None

    def backward(g):
        grad = np.zeros_like(x.data)
        np.add.at(grad, index, g)
        return (grad,)

    return _result(np.asarray(y), "getitem", (x,), backward)


def cat(tensors, dim=0) -> Tensor:
    """Concatenate tensors of equal shape except along ``dim``."""
    ts = [as_tensor(t, name="cat: tensors") for t in tensors]
    if not ts:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    axis = _axes("cat", ts[0], dim)[0]
    if _device.cuda_in_use and _on_cuda(*ts):
        return _cuda_cat(ts, axis, None)
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
    if _device.cuda_in_use and _on_cuda(*ts):
        return _cuda_cat(ts, axis, ts[0].shape)
    y = np.stack([t.data for t in ts], axis=axis)
    return _result(y, "stack", tuple(ts), lambda g: tuple(np.take(g, i, axis=axis) for i in range(len(ts))))



# -- the cuda device -------------------------------------------------------------------------------
# The same ops on device arrays: each maps to one or two kernels of backends.cuda. Reached only
# after something has been moved to the cuda device (``device.cuda_in_use``).

def to_device(x, device) -> Tensor:
    """``x`` copied to ``device`` ("cpu" or "cuda"); the gradient flows back to ``x``'s device."""
    x = as_tensor(x)
    source = x.device
    return _result(_device.move(x.data, device), "to", (x,), lambda g: (_device.move(g, source),))


def _on_cuda(*values) -> bool:
    """True when an operand is a cuda tensor; raises when cuda and cpu tensors are mixed."""
    devices = {v.device for v in values if isinstance(v, Tensor)}
    if "cuda" not in devices:
        return False
    if "cpu" in devices:
        op = sys._getframe(1).f_code.co_name.lstrip("_")
        raise RuntimeError(f"{op}: expected all tensors on the same device, got tensors on cpu and cuda; "
                           "move them with .to('cuda') or .to('cpu')")
    return True


def _cuda_operand(value):
    """A cuda Tensor for an operand: cuda tensors as they are; NumPy arrays, and numbers that meet
    no floating tensor (those go to ``scalar_op`` by value), are copied to the device (host to device
    only)."""
    if isinstance(value, Tensor):
        return value
    return Tensor(_device.cuda_kernels().to_device(_to_array(value, name="operand")))


def _is_scalar_number(value) -> bool:
    """A Python or NumPy number (not a bool): with a floating tensor it takes the tensor's dtype,
    as ``_binary_operands`` gives it on the CPU."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _cuda_binary_with_scalar(op, t, scalar, scalar_first) -> Tensor:
    """t (op) scalar or scalar (op) t for a floating-point cuda tensor: one launch each way, the
    scalar passed to the kernel by value (copying it to the device would wait for the device)."""
    k = _device.cuda_kernels()
    kind = {"add": "add", "mul": "mul", "sub": "rsub" if scalar_first else "sub",
            "div": "rdiv" if scalar_first else "div"}[op]
    y = k.scalar_op(kind, t.data, scalar)

    def backward(g):
        if kind in ("add", "sub"):
            return (g,)
        if kind == "rsub":
            return (k.unary("neg", g).reshape(g.shape),)
        if kind in ("mul", "div"):
            return (k.scalar_op(kind, g, scalar),)
        return (k.unary("neg", k.binary("div", k.binary("mul", g, y), t.data)).reshape(g.shape),)  # s / t

    return _result(y, op, (t,), backward)


def _cuda_binary(op, a, b) -> Tensor:
    k = _device.cuda_kernels()
    for tensor, scalar, scalar_first in ((a, b, False), (b, a, True)):
        if isinstance(tensor, Tensor) and _is_scalar_number(scalar) and tensor.dtype.kind == "f":
            return _cuda_binary_with_scalar(op, tensor, scalar, scalar_first)
    ta = _cuda_operand(a)
    tb = _cuda_operand(b)
    try:
        np.broadcast_shapes(ta.shape, tb.shape)
    except ValueError:
        raise ValueError(
            f"{op}: operands with shapes {tuple(ta.shape)} and {tuple(tb.shape)} cannot be broadcast together"
        ) from None
    da, db = ta.data, tb.data
    y = k.binary(op, da, db)

    def cast(g, t):
        g = k.unbroadcast(g, t.shape)
        return g if g.dtype == t.dtype else k.astype(g, t.dtype)

    def backward(g):
        ga = gb = None
        if op == "add":
            ga, gb = g, g
        elif op == "sub":
            ga, gb = g, (k.unary("neg", g).reshape(g.shape) if tb.requires_grad else None)
        elif op == "mul":
            ga = k.binary("mul", g, db) if ta.requires_grad else None
            gb = k.binary("mul", g, da) if tb.requires_grad else None
        else:
            ga = k.binary("div", g, db) if ta.requires_grad else None
            gb = k.unary("neg", k.binary("div", k.binary("mul", g, y), db)).reshape(g.shape) \
                if tb.requires_grad else None
        return (None if ga is None or not ta.requires_grad else cast(ga, ta),
                None if gb is None or not tb.requires_grad else cast(gb, tb))

    return _result(y, op, (ta, tb), backward)


def _cuda_unary(op, x, alpha=0.0) -> Tensor:
    k = _device.cuda_kernels()
    y = k.unary(op, x.data, alpha).reshape(x.shape)
    grads = {"neg": lambda g: k.unary("neg", g).reshape(g.shape),
             "pow": lambda g: k.unary_grad("pow", g, x.data, alpha),
             "exp": lambda g: k.unary_grad("mul", g, y),
             "log": lambda g: k.unary_grad("div", g, x.data),
             "abs": lambda g: k.unary_grad("sign", g, x.data)}
    return _result(y, op, (x,), lambda g: (grads[op](g),))


def _cuda_sum(op, x, axes, keepdim, count) -> Tensor:
    k = _device.cuda_kernels()
    y = k.sum(x.data, axes, keepdim, scale=1.0 / count)

    def backward(g):
        if axes is not None and not keepdim:
            g = g.reshape(tuple(1 if d in axes else n for d, n in enumerate(x.shape)))
        elif axes is None:
            g = g.reshape((1,) * x.ndim)
        if count != 1:
            g = k.unary("scale", g, 1.0 / count).reshape(g.shape)
        return (k.broadcast_to(g, x.shape, x.dtype),)

    return _result(y, op, (x,), backward)


def _cuda_reshape(x, shape) -> Tensor:
    k = _device.cuda_kernels()
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    try:
        y = k.contiguous(x.data).reshape(shape)
    except (ValueError, NotImplementedError):
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} ({x.data.size} elements) into {shape}"
        ) from None
    return _result(y, "reshape", (x,), lambda g: (k.contiguous(g).reshape(x.shape),))


def _cuda_cat(ts, axis, stack_shape) -> Tensor:
    k = _device.cuda_kernels()
    if stack_shape is not None:   # stack = cat of views with a new axis of length 1
        new_shape = tuple(stack_shape[:axis]) + (1,) + tuple(stack_shape[axis:])
        arrays = [k.contiguous(t.data).reshape(new_shape) for t in ts]
    else:
        arrays = [t.data for t in ts]
        for t in ts[1:]:
            if t.ndim != ts[0].ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, ts[0].shape)) if i != axis):
                raise ValueError(f"cat: shapes {[tuple(t.shape) for t in ts]} do not match outside dim {axis}")
    y = k.concatenate(arrays, axis)
    sizes = [a.shape[axis] for a in arrays]

    def backward(g):
        parts = k.split(g, sizes, axis)
        if stack_shape is not None:
            parts = [p.reshape(tuple(stack_shape)) for p in parts]
        return tuple(parts)

    return _result(y, "stack" if stack_shape is not None else "cat", tuple(ts), backward)
