"""Element-wise kernels, reductions, copies and the array helpers that tensor ops use on the device.

Binary ops and copies run on 4-D strided views (``view4``): broadcasting is a 0 stride, a
transpose or a slice is a permuted or offset view, so one kernel serves them all without
intermediate copies. Reductions run one block per output element with a shared-memory tree.

Precision: a kernel computes in its arrays' dtype. Numba types a float literal, and an int mixed
with a float32, as float64, so the kernels write their constants as ``y.dtype.type(1)`` (a float32
constant for float32 arrays) and the wrappers pass scalar arguments in the array's dtype
(``x.dtype.type(alpha)``). Only the reduction accumulates in float64, on purpose (its shared buffer).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ._core import SIMULATOR, as_strided, context_key, copy_device_to_device, empty, kernel, launch, launch_grid, pad4, to_device, view4
from ..reference.dropout import hash_bits, hash_seed, keep_scale, keep_threshold

__all__ = ["contiguous", "broadcast_to", "copy_into", "astype", "copy", "full", "zeros", "zeros_like", "unit_seed", "is_unit_seed", "binary", "unary",
           "scalar_op", "unary_grad", "scale_by", "sum", "unbroadcast", "permute", "getitem", "index_add",
           "concatenate", "split", "accumulate_", "relu_forward", "relu_backward", "sigmoid_forward",
           "sigmoid_backward", "tanh_forward", "tanh_backward", "leaky_relu_forward", "leaky_relu_backward",
           "elu_forward", "elu_backward", "dropout_forward", "dropout_backward", "dropout_mask", "count_correct"]

ADD, SUB, MUL, DIV = 0, 1, 2, 3
NEG, EXP, LOG, ABS, SIGN, POW, SCALE, RELU, SIGMOID, TANH, LEAKY, ELU, FILL, DIV_BY, RSUB, RDIV, SHIFT = range(17)
G_RELU, G_SIGMOID, G_TANH, G_LEAKY, G_ELU, G_MUL, G_POW, G_DIV, G_SIGN = range(9)
REDUCE_THREADS = 4 if SIMULATOR else 128


# -- kernels -------------------------------------------------------------------------------------

@kernel
def _copy4(src, dst, n):
    s1, s2, s3 = dst.shape[1], dst.shape[2], dst.shape[3]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        i3 = i % s3
        r = i // s3
        i2 = r % s2
        r //= s2
        i1 = r % s1
        i0 = r // s1
        dst[i0, i1, i2, i3] = src[i0, i1, i2, i3]


@kernel
def _binary4(op, a, b, out, n):
    s1, s2, s3 = out.shape[1], out.shape[2], out.shape[3]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        i3 = i % s3
        r = i // s3
        i2 = r % s2
        r //= s2
        i1 = r % s1
        i0 = r // s1
        u = a[i0, i1, i2, i3]
        v = b[i0, i1, i2, i3]
        if op == ADD:
            out[i0, i1, i2, i3] = u + v
        elif op == SUB:
            out[i0, i1, i2, i3] = u - v
        elif op == MUL:
            out[i0, i1, i2, i3] = u * v
        else:
            out[i0, i1, i2, i3] = u / v


@kernel
def _unary(op, x, y, alpha, n):
    zero, one = y.dtype.type(0), y.dtype.type(1)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = x[i]
        if op == NEG:
            r = -v
        elif op == EXP:
            r = math.exp(v)
        elif op == LOG:
            r = math.log(v)
        elif op == ABS:
            r = abs(v)
        elif op == SIGN:
            r = one if v > zero else (-one if v < zero else zero)
        elif op == POW:
            r = v ** alpha
        elif op == SCALE:
            r = v * alpha
        elif op == RELU:
            r = zero if v < zero else v     # NaN propagates, like np.maximum (the reference)
        elif op == SIGMOID:
            if v >= zero:
                r = one / (one + math.exp(-v))
            else:
                e = math.exp(v)
                r = e / (one + e)
        elif op == TANH:
            r = math.tanh(v)
        elif op == LEAKY:
            r = v if v > zero else v * alpha
        elif op == ELU:
            r = v if v > zero else alpha * (math.exp(v) - one)
        elif op == FILL:
            r = alpha
        elif op == DIV_BY:
            r = v / alpha
        elif op == RSUB:
            r = alpha - v
        elif op == RDIV:
            r = alpha / v
        else:
            r = v + alpha
        y[i] = r


@kernel
def _unary_grad(op, g, s, out, alpha, n):
    """out = g ⊙ f'(.) with f' written in terms of the saved array s (y or x)."""
    zero, one = out.dtype.type(0), out.dtype.type(1)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = g[i]
        w = s[i]
        if op == G_RELU:
            r = v if w > zero else zero
        elif op == G_SIGMOID:
            r = v * w * (one - w)
        elif op == G_TANH:
            r = v * (one - w * w)
        elif op == G_LEAKY:
            r = v if w > zero else v * alpha
        elif op == G_ELU:
            r = v if w > zero else v * (w + alpha)
        elif op == G_MUL:
            r = v * w
        elif op == G_POW:
            r = v * alpha * w ** (alpha - one)
        elif op == G_DIV:
            r = v / w
        else:
            r = v * (one if w > zero else (-one if w < zero else zero))
        out[i] = r


@kernel
def _scale_by(x, s, factor, out, n):
    """out = x * s[0] * factor: a gradient times an upstream scalar that stays on the device."""
    k = out.dtype.type(s[0] * factor)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[i] * k


@kernel
def _reduce_sum(src, out, m_count, r_count, scale):
    """out[m] = scale * Σ_r src.flat[m r_count + r]: one block per output, shared-memory tree. The sum
    and ``scale`` (a Python float) are float64 on purpose: a long sum in float32 loses digits."""
    buf = cuda.shared.array(REDUCE_THREADS, float64)
    s1, s2, s3 = src.shape[1], src.shape[2], src.shape[3]
    tid = cuda.threadIdx.x
    for m in range(cuda.blockIdx.x, m_count, cuda.gridDim.x):
        acc = 0.0
        for r in range(tid, r_count, REDUCE_THREADS):
            f = m * r_count + r
            i3 = f % s3
            f //= s3
            i2 = f % s2
            f //= s2
            i1 = f % s1
            i0 = f // s1
            acc += src[i0, i1, i2, i3]
        buf[tid] = acc
        cuda.syncthreads()
        step = REDUCE_THREADS // 2
        while step > 0:
            if tid < step:
                buf[tid] += buf[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            out[m] = buf[0] * scale
        cuda.syncthreads()


# the mask's hash, written once in the reference (backends/reference/dropout.py) and compiled for the device
_hash_bits_device = cuda.jit(device=True)(hash_bits)


@kernel
def _dropout(x, out, seed, threshold, scale, n):
    """out = x * 1[u >= p] * scale with u = hash(seed, i) / 2³²: the mask is recomputed, never stored.
    u >= p is tested exactly in integers, as hash >= threshold = ceil(p 2³²)."""
    zero = out.dtype.type(0)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[i] * scale if _hash_bits_device(seed, i) >= threshold else zero


@kernel
def _count_correct(logits, target, counter, n, c):
    """counter[0] += #{rows whose argmax (first maximum) equals the target}."""
    for row in range(cuda.grid(1), n, cuda.gridsize(1)):
        best = 0
        for j in range(1, c):
            if logits[row, j] > logits[row, best]:
                best = j
        if best == target[row]:
            cuda.atomic.add(counter, 0, 1)


# -- helpers used by tensor ops and the other kernel files ---------------------------------------

def contiguous(a):
    """``a`` itself when C-contiguous, else a contiguous copy (one launch)."""
    if a.is_c_contiguous():
        return a
    return copy(a)


def copy(a, dtype=None):
    out = empty(a.shape, a.dtype if dtype is None else dtype)
    shape4 = pad4(a.shape)
    launch(_copy4, int(np.prod(shape4)), view4(a), view4(out), int(np.prod(shape4)))
    return out


def copy_into(dst_view, src):
    """dst_view[...] = src (broadcast), for strided destination views."""
    shape4 = pad4(dst_view.shape)
    n = int(np.prod(shape4))
    launch(_copy4, n, view4(src, shape4), view4(dst_view), n)


def broadcast_to(a, shape, dtype=None):
    """A contiguous copy of ``a`` broadcast to ``shape`` (optionally cast to ``dtype``)."""
    out = empty(shape, a.dtype if dtype is None else dtype)
    copy_into(out, a)
    return out


def astype(a, dtype):
    dtype = np.dtype(dtype)
    return a if a.dtype == dtype else copy(a, dtype)


def full(shape, value, dtype):
    out = empty(shape, dtype)
    flat = out.reshape(out.size) if out.size else out
    launch(_unary, out.size, FILL, flat, flat, out.dtype.type(value), out.size)
    return out


def zeros(shape, dtype):
    return full(shape, 0.0, dtype)


def zeros_like(a):
    return full(a.shape, 0.0, a.dtype)


_ONES = {}


def unit_seed(shape, dtype):
    """A new array of ones for ``Tensor.backward()``'s implicit gradient, copied device to device
    from a cached one (no kernel launch; the cache is filled by a host copy, so a dry run cannot
    leave garbage in it), and marked: a loss whose backward would multiply by it skips that."""
    shape, dtype = tuple(shape), np.dtype(dtype)
    key = (shape, dtype, context_key())
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = to_device(np.ones(shape, dtype))
    seed = empty(shape, dtype)
    copy_device_to_device(seed, ones)
    seed.unit_seed = True
    return seed


def is_unit_seed(a) -> bool:
    """Whether ``a`` is an untouched ``unit_seed`` array (all ones)."""
    return getattr(a, "unit_seed", False) is True


def _flat(a):
    return contiguous(a).reshape(a.size)


def binary(op, a, b, out=None):
    """Element-wise a (op) b with NumPy broadcasting (up to 4-D); op: 'add', 'sub', 'mul', 'div'."""
    code = {"add": ADD, "sub": SUB, "mul": MUL, "div": DIV}[op]
    shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
    if out is None:
        dtype = np.result_type(a.dtype, b.dtype)
        if op == "div" and dtype.kind != "f":
            dtype = np.dtype(np.float32)
        out = empty(shape, dtype)
    shape4 = pad4(shape)
    n = int(np.prod(shape4))
    launch(_binary4, n, code, view4(a, shape4), view4(b, shape4), view4(out), n)
    return out


def accumulate_(target, g):
    """target += g in place (gradient accumulation)."""
    binary("add", target, g, out=target)


_UNARY = {"neg": NEG, "exp": EXP, "log": LOG, "abs": ABS, "sign": SIGN, "pow": POW, "scale": SCALE,
          "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "leaky_relu": LEAKY, "elu": ELU, "shift": SHIFT}
_GRAD = {"relu": G_RELU, "sigmoid": G_SIGMOID, "tanh": G_TANH, "leaky_relu": G_LEAKY, "elu": G_ELU,
         "mul": G_MUL, "pow": G_POW, "div": G_DIV, "sign": G_SIGN}


def unary(op, x, alpha=0.0):
    """f(x) element-wise, flattened (callers reshape); alpha in x's dtype."""
    return _unary_code(_UNARY[op], x, alpha)


def _unary_code(code, x, alpha):
    """One launch of ``_unary`` with op ``code`` over x flattened; alpha passed in x's dtype."""
    x = _flat(x) if x.size else x
    y = empty(x.shape, x.dtype)
    launch(_unary, x.size, code, x, y, x.dtype.type(alpha), x.size)
    return y


_SCALAR = {"add": SHIFT, "sub": SHIFT, "rsub": RSUB, "mul": SCALE, "div": DIV_BY, "rdiv": RDIV}


def scalar_op(op, x, scalar):
    """x + s, x - s, s - x ("rsub"), x * s, x / s or s / x ("rdiv") for a Python number s, in one
    launch of the unary kernel: the scalar travels as a kernel argument in x's dtype (no host to
    device copy, which would wait for the device), so the arithmetic is x's, as NumPy's with a
    Python scalar. x is a floating-point array; the result has its shape and dtype."""
    return _unary_code(_SCALAR[op], x, -scalar if op == "sub" else scalar).reshape(x.shape)


def unary_grad(op, g, s, alpha=0.0):
    shape = g.shape
    g, s = _flat(g), _flat(s)
    out = empty(g.shape, g.dtype)
    launch(_unary_grad, g.size, _GRAD[op], g, s, out, out.dtype.type(alpha), g.size)
    return out.reshape(shape)


def scale_by(x, scalar, factor=1.0):
    """x * scalar[0] * factor, with ``scalar`` a 1-element device array (an upstream gradient)."""
    shape = x.shape
    x = _flat(x)
    out = empty(x.shape, x.dtype)
    launch(_scale_by, x.size, x, scalar.reshape(1), out.dtype.type(factor), out, x.size)
    return out.reshape(shape)


def sum(a, axes=None, keepdims=False, scale=1.0, dtype=None):
    """Σ over ``axes`` (all when None) times ``scale``: one launch, one block per output element."""
    nd = len(a.shape)
    axes = tuple(range(nd)) if axes is None else tuple(sorted(ax % max(nd, 1) for ax in axes))
    kept = [d for d in range(nd) if d not in axes]
    order = kept + list(axes)
    shape = [a.shape[d] for d in order]
    strides = [a.strides[d] for d in order]
    src = view4(as_strided(a, shape, strides)) if nd else view4(a)
    m = int(np.prod([a.shape[d] for d in kept])) if kept else 1
    r = int(np.prod([a.shape[d] for d in axes])) if axes else 1
    out_dtype = np.dtype(dtype or a.dtype)
    out = empty((m,), out_dtype)
    blocks = min(m, 65535) if not SIMULATOR else min(m, 4)
    launch_grid(_reduce_sum, blocks, REDUCE_THREADS, src, out, m, r, float(scale))
    if keepdims:
        shape_out = tuple(1 if d in axes else a.shape[d] for d in range(nd))
    else:
        shape_out = tuple(a.shape[d] for d in kept)
    return out.reshape(shape_out) if shape_out else out.reshape(())


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape`` (the reverse of broadcasting)."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    extra = len(grad.shape) - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape)
                                       if n == 1 and grad.shape[i + extra] != 1)
    reduced = sum(grad, axes) if axes else grad
    return reduced.reshape(shape) if shape else reduced.reshape(())


def permute(a, dims):
    """A contiguous copy of ``a`` with its axes permuted (transpose is the 2-axis case)."""
    view = as_strided(a, [a.shape[d] for d in dims], [a.strides[d] for d in dims])
    return copy(view)


def getitem(a, index):
    """a[index] for basic indexing (ints, slices, Ellipsis, None); a contiguous copy."""
    _check_basic(index)
    view = a[index]
    if not hasattr(view, "shape") or not getattr(view, "__cuda_ndarray__", False):
        raise NotImplementedError("getitem on cuda: indexing a single element returns a host value; "
                                  "use t[i:i+1] or .item()")
    return copy(view)


def _check_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        if not (item is None or item is Ellipsis or isinstance(item, (int, slice, np.integer))):
            raise NotImplementedError(f"getitem on cuda: only basic indexing (ints, slices, ..., None) has a "
                                      f"cuda kernel, got {type(item).__name__}")


def index_add(shape, dtype, index, g):
    """zeros(shape)[index] += g: the backward of getitem for basic indexing."""
    out = zeros(shape, dtype)
    copy_into(out[index], g)
    return out


def concatenate(arrays, axis):
    shape = list(arrays[0].shape)
    shape[axis] = builtins_sum(a.shape[axis] for a in arrays)
    out = empty(shape, np.result_type(*[a.dtype for a in arrays]))
    start = 0
    for a in arrays:
        index = (slice(None),) * axis + (slice(start, start + a.shape[axis]),)
        copy_into(out[index], a)
        start += a.shape[axis]
    return out


def split(g, sizes, axis):
    parts, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        parts.append(copy(g[index]))
        start += size
    return parts


def builtins_sum(values):  # ``sum`` is this module's reduction
    total = 0
    for v in values:
        total += v
    return total


# -- activations (reference names and contracts) --------------------------------------------------

def relu_forward(x):
    return unary("relu", x).reshape(x.shape)


def relu_backward(grad_y, y):
    return unary_grad("relu", grad_y, y)


def sigmoid_forward(x):
    return unary("sigmoid", x).reshape(x.shape)


def sigmoid_backward(grad_y, y):
    return unary_grad("sigmoid", grad_y, y)


def tanh_forward(x):
    return unary("tanh", x).reshape(x.shape)


def tanh_backward(grad_y, y):
    return unary_grad("tanh", grad_y, y)


def leaky_relu_forward(x, negative_slope):
    return unary("leaky_relu", x, negative_slope).reshape(x.shape)


def leaky_relu_backward(grad_y, x, negative_slope):
    return unary_grad("leaky_relu", grad_y, x, negative_slope)


def elu_forward(x, alpha):
    return unary("elu", x, alpha).reshape(x.shape)


def elu_backward(grad_y, y, alpha):
    return unary_grad("elu", grad_y, y, alpha)


def dropout_mask(p, dtype):
    """(threshold, scale) of a dropout with probability p < 1 on arrays of ``dtype``: element i is
    kept, times scale = 1 / (1 - p) in that dtype, where hash(seed, i) >= threshold = ceil(p 2³²)
    (``reference/dropout.py``, whose elements these kernels keep)."""
    return keep_threshold(p), keep_scale(p, dtype)


def dropout_forward(x, p, seed):
    """y = x ⊙ mask / (1 - p), mask_i = 1[hash(seed, i) >= p]; returns y (the mask is not stored)."""
    shape = x.shape
    x = _flat(x)
    out = empty(x.shape, x.dtype)
    launch(_dropout, x.size, x, out, hash_seed(seed), *dropout_mask(p, x.dtype), x.size)
    return out.reshape(shape)


def dropout_backward(grad_y, p, seed):
    """grad_x = grad_y ⊙ mask / (1 - p), the same mask regenerated from ``seed``."""
    return dropout_forward(grad_y, p, seed)


def count_correct(logits, target, counter):
    """counter[0] += number of rows of (N, C) ``logits`` whose argmax is ``target``."""
    n, c = logits.shape
    launch(_count_correct, n, contiguous(logits), target, counter, n, c)
