"""``Tensor``: an array plus the autograd bookkeeping. Its maths lives in ``functional``."""
from __future__ import annotations

import numbers

import numpy as np

from . import autograd
from . import device as _device

DEFAULT_DTYPE = np.float32
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _to_array(data, dtype=None, name="data") -> np.ndarray:
    """Convert ``data`` to an ndarray with no copy when it already has the right dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        array = data
    elif _device.is_device_array(data) or hasattr(data, "__cuda_array_interface__"):
        return _device_array(data, dtype, name)
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


def _device_array(data, dtype, name):
    """A cuda device array from a numba device array or any ``__cuda_array_interface__`` object (no copy)."""
    k = _device.cuda_kernels()
    array = data if _device.is_device_array(data) else k.from_interface(data)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric data (bool, int or float), got dtype {array.dtype}")
    if dtype is not None and np.dtype(dtype) != array.dtype:
        array = k.astype(array, dtype)
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
    device = property(lambda self: _device.device_of(self.data) if _device.cuda_in_use else "cpu")
    is_leaf = property(lambda self: self._node is None)

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The host array (shares memory on the CPU, like ``torch.Tensor.numpy``; a copy from cuda)."""
        if _device.is_device_array(self.data):
            return self.data.copy_to_host()
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        on_cuda = _device.is_device_array(self.data)
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        where = ", device='cuda'" if on_cuda else ""
        return f"tensor({body}{where}{grad})"

    def __array__(self, dtype=None, copy=None):
        if _device.is_device_array(self.data):
            raise TypeError("a cuda tensor cannot be converted to a NumPy array implicitly; "
                            "use .numpy() or .cpu() to copy it to the host")
        return self.data if dtype is None else self.data.astype(dtype)

    @property
    def __cuda_array_interface__(self):
        """The CUDA Array Interface of a cuda tensor's device array (CuPy, PyTorch read it without a copy)."""
        if not _device.is_device_array(self.data):
            raise AttributeError("__cuda_array_interface__: only cuda tensors have one (this tensor is on cpu)")
        from .backends import cuda
        return cuda.array_interface(self.data)

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
            if _device.cuda_in_use and _device.is_device_array(self.data):
                grad = _device.cuda_kernels().unit_seed(self.data.shape, self.data.dtype)
            else:
                grad = np.ones_like(self.data)
        else:
            grad = _to_array(grad, self.data.dtype, "grad")
            if _device.cuda_in_use and self.device != _device.device_of(grad):
                grad = _device.move(grad, self.device)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape} but the tensor has shape {self.shape}")
        autograd.run_backward(self, grad)

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        self.requires_grad = bool(flag)
        return self

    def to(self, device) -> "Tensor":
        """This tensor on ``device`` ("cpu" or "cuda"), or cast to a dtype; ``self`` when already there.

        The copy is recorded by autograd (gradients flow back to the source device).
        Raises RuntimeError saying why when "cuda" is asked for on a machine without a usable GPU.
        """
        if isinstance(device, np.dtype) or (isinstance(device, type) and device in (np.float32, np.float64)):
            return self.type(device)
        target = _device.normalize(device)
        if target == self.device:
            return self
        from .functional.tensor_ops import to_device
        return to_device(self, target)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def type(self, dtype) -> "Tensor":
        from . import functional as F
        return F.cast(self, dtype)

    def float(self):
        return self.type(np.float32)

    def double(self):
        return self.type(np.float64)

    def long(self):
        if _device.is_device_array(self.data):
            return Tensor(_device.cuda_kernels().astype(self.data, np.int64))
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

    def _host_only(self, op):
        if _device.is_device_array(self.data):
            raise NotImplementedError(f"{op}: no kernel for the 'cuda' device yet; use .cpu() first")

    def argmax(self, dim=None, keepdim=False):
        self._host_only("argmax")
        result = np.argmax(self.data, axis=dim)
        if keepdim and dim is not None:
            result = np.expand_dims(result, dim)
        return Tensor(np.asarray(result, dtype=np.int64))

    def max(self, dim=None, keepdim=False):
        self._host_only("max")
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
        self._host_only(op.__name__)
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
        return bool(self.numpy())


def tensor(data, requires_grad: bool = False, dtype=None, device: str = "cpu") -> Tensor:
    """Create a tensor from array-like ``data`` (always a copy, like ``torch.tensor``).

    Floating-point data defaults to float32; float64 arrays keep their dtype.
    """
    target = _device.normalize(device, "tensor")
    array = _to_array(data, dtype)
    shared = array is data or (isinstance(data, Tensor) and array is data.data)
    if _device.is_device_array(array):
        if target == "cpu":
            array = array.copy_to_host()
        elif shared:
            array = _device.cuda_kernels().copy(array)
    elif target == "cuda":
        array = _device.move(array, target)   # a fresh device copy
    elif shared:
        array = array.copy()
    return Tensor(array, requires_grad=requires_grad)


def as_tensor(data, name: str = "input") -> Tensor:
    """A ``Tensor`` view of ``data`` (no copy for ndarrays of a supported dtype)."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, numbers.Number) and not isinstance(data, bool):
        return Tensor(np.asarray(data, dtype=DEFAULT_DTYPE))
    return Tensor(_to_array(data, name=name))
