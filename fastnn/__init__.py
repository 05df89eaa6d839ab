"""fastnn: train convolutional networks fast on the CPU, with PyTorch's names and semantics.

Example:
    >>> import fastnn
    >>> from fastnn import nn, optim
    >>> model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    >>> opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
"""
from . import threads as _threads

_threads.init_environment()

from . import autograd, functional, nn, optim  # noqa: E402
from .autograd import is_grad_enabled, no_grad  # noqa: E402
from .backend import available_backends, get_backend, use_backend  # noqa: E402
from .functional import cat, stack  # noqa: E402
from .random import manual_seed  # noqa: E402
from .tensor import Tensor, tensor  # noqa: E402
from .threads import get_num_threads, set_num_threads  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # data, train, models, save/load import lazily (they pull in optional heavier modules)
    import importlib

    if name in ("data", "train", "models", "serialization"):
        return importlib.import_module(f"fastnn.{name}")
    if name in ("save", "load"):
        return getattr(importlib.import_module("fastnn.serialization"), name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "manual_seed", "cat", "stack", "use_backend",
           "get_backend", "available_backends", "set_num_threads", "get_num_threads", "functional", "nn",
           "optim", "autograd", "save", "load", "__version__"]
