"""``Tensor``: an array plus the autograd bookkeeping. Its maths lives in ``functional``."""
from __future__ import annotations

import numbers

import numpy as np

from . import autograd

DEFAULT_DTYPE = np.float32
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _to_array(data, dtype=None, name="data") -> np.ndarray:
    """Convert ``data`` to an ndarray with no copy when it already has the right dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        array = data
    else:
        try:
            array = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name}: cannot convert {type(data).__name__} to a numeric array ({exc})") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric data (bool, int or float), got dtype {array.dtype}"
                        f" from {type(data).__name__}")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    elif array.dtype.kind == "f" and array.dtype not in _FLOAT_DTYPES:
        array = array.astype(DEFAULT_DTYPE)
    elif array.dtype == np.float64 and not isinstance(data, np.ndarray):
        array = array.astype(DEFAULT_DTYPE)  # Python floats become float32, like torch.tensor
    return array


class Tensor:
    """An n-dimensional array that can record the ops applied to it for ``backward``.

    Attributes:
        data: the underlying ``np.ndarray``.
        requires_grad: whether ops on it are recorded and ``.grad`` is filled by ``backward``.
        grad: a ``Tensor`` of the same shape, or ``None``.
    Example:
        >>> x = fastnn.tensor([[1.0, 2.0]], requires_grad=True)
        >>> (x * x).sum().backward(); x.grad.numpy()
        array([[2., 4.]], dtype=float32)
    """

    __slots__ = ("data", "requires_grad", "grad", "_node", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad: only floating-point tensors can require grad, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None

    # -- attributes -------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: "cpu")
    is_leaf = property(lambda self: self._node is None)

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The host array (shares memory on the CPU, like ``torch.Tensor.numpy``)."""
        if self.requires_grad and autograd.is_grad_enabled() and self._node is not None:
            pass  # PyTorch refuses; returning the value is harmless here since arrays are immutable to autograd
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.data.tolist()

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}{grad})"

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    # -- autograd ---------------------------------------------------------------------------
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        Args:
            grad: the gradient of some scalar with respect to ``self``; may be omitted only when
                ``self`` has one element.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: tensor does not require grad and has no grad_fn")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs, "
                                   f"got shape {self.shape}; pass grad=")
            grad = np.ones_like(self.data)
        else:
            grad = _to_array(grad, self.data.dtype, "grad")
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape} but the tensor has shape {self.shape}")
        autograd.run_backward(self, grad)

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        self.requires_grad = bool(flag)
        return self

    def to(self, device) -> "Tensor":
        if device in ("cpu", None):
            return self
        if isinstance(device, np.dtype) or device in (np.float32, np.float64):
            return self.type(device)
        raise ValueError(f"to: unknown device {device!r}; expected 'cpu' (CUDA support comes with the cuda backend)")

    def type(self, dtype) -> "Tensor":
        from . import functional as F
        return F.cast(self, dtype)

    def float(self):
        return self.type(np.float32)

    def double(self):
        return self.type(np.float64)

    def long(self):
        return Tensor(self.data.astype(np.int64))

    # -- maths (delegated to functional) ----------------------------------------------------
    def reshape(self, *shape):
        from . import functional as F
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return F.reshape(self, shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        from . import functional as F
        return F.flatten(self, start_dim, end_dim)

    def sum(self, dim=None, keepdim=False):
        from . import functional as F
        return F.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        from . import functional as F
        return F.mean(self, dim, keepdim)

    def exp(self):
        from . import functional as F
        return F.exp(self)

    def log(self):
        from . import functional as F
        return F.log(self)

    def abs(self):
        from . import functional as F
        return F.abs(self)

    def sqrt(self):
        return self ** 0.5

    def transpose(self, dim0, dim1):
        from . import functional as F
        return F.transpose(self, dim0, dim1)

    def permute(self, *dims):
        from . import functional as F
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return F.permute(self, dims)

    @property
    def T(self):
        return self.permute(tuple(range(self.ndim - 1, -1, -1)))

    def t(self):
        return self.transpose(0, 1)

    def relu(self):
        from . import functional as F
        return F.relu(self)

    def sigmoid(self):
        from . import functional as F
        return F.sigmoid(self)

    def tanh(self):
        from . import functional as F
        return F.tanh(self)

    def softmax(self, dim):
        from . import functional as F
        return F.softmax(self, dim)

    def argmax(self, dim=None, keepdim=False):
        result = np.argmax(self.data, axis=dim)
        if keepdim and dim is not None:
            result = np.expand_dims(result, dim)
        return Tensor(np.asarray(result, dtype=np.int64))

    def max(self, dim=None, keepdim=False):
        return Tensor(np.max(self.data, axis=dim, keepdims=keepdim))

    def __getitem__(self, index):
        from . import functional as F
        return F.getitem(self, index)

    def __add__(self, other):
        from . import functional as F
        return F.add(self, other)

    def __radd__(self, other):
        from . import functional as F
        return F.add(other, self)

    def __sub__(self, other):
        from . import functional as F
        return F.sub(self, other)

    def __rsub__(self, other):
        from . import functional as F
        return F.sub(other, self)

    def __mul__(self, other):
        from . import functional as F
        return F.mul(self, other)

    def __rmul__(self, other):
        from . import functional as F
        return F.mul(other, self)

    def __truediv__(self, other):
        from . import functional as F
        return F.div(self, other)

    def __rtruediv__(self, other):
        from . import functional as F
        return F.div(other, self)

    def __matmul__(self, other):
        from . import functional as F
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        from . import functional as F
        return F.matmul(other, self)

    def __pow__(self, exponent):
        from . import functional as F
        return F.pow(self, exponent)

    def __neg__(self):
        from . import functional as F
        return F.neg(self)

    # comparisons give untracked bool tensors (no gradient through a comparison)
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    __hash__ = object.__hash__

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"bool: the truth value of a tensor with shape {self.shape} is ambiguous")
        return bool(self.data)


def tensor(data, requires_grad: bool = False, dtype=None, device: str = "cpu") -> Tensor:
    """Create a tensor from array-like ``data`` (always a copy, like ``torch.tensor``).

    Floating-point data defaults to float32; float64 arrays keep their dtype.
    """
    array = _to_array(data, dtype)
    result = Tensor(array.copy() if array is data or (isinstance(data, Tensor) and array is data.data) else array,
                    requires_grad=requires_grad)
    return result.to(device)


def as_tensor(data, name: str = "input") -> Tensor:
    """A ``Tensor`` view of ``data`` (no copy for ndarrays of a supported dtype)."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, numbers.Number) and not isinstance(data, bool):
        return Tensor(np.asarray(data, dtype=DEFAULT_DTYPE))
    return Tensor(_to_array(data, name=name))
