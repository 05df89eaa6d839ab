"""The kernel dispatcher: which backend runs each op.

Layers and autograd never choose kernels themselves; ``functional`` asks ``kernels_for(...)``
for the backend of its inputs and calls the kernel by name (see docs/architecture.md).
"""
from __future__ import annotations

import importlib
import sys

from . import device as _device

BACKENDS = ("cpu", "reference")
_modules: dict = {}
_current = "cpu"


def _load(name: str):
    module = _modules.get(name)
    if module is None:
        if name == "cpu":
            try:
                module = importlib.import_module("fastnn.backends.cpu")
            except ImportError as exc:
                raise ImportError(
                    "fastnn's compiled 'cpu' backend could not be imported "
                    f"({exc}); build it with `pip install .` (or `pip install -e .` in a checkout), "
                    "or use fastnn.use_backend('reference')") from exc
            from . import threads
            threads.apply()  # govern the BLAS that the extensions just loaded
            from .backends.cpu import _malloc
            _malloc.keep_freed_memory()  # recycle the step's large buffers instead of re-faulting them
        else:
            module = importlib.import_module(f"fastnn.backends.{name}")
        _modules[name] = module
    return module


class use_backend:
    """Select the backend of every op: ``"cpu"`` (default, compiled) or ``"reference"`` (NumPy).

    Works as a global setter (``fastnn.use_backend("reference")``) and as a context manager that
    restores the previous backend on exit, even on an exception.
    """

    def __init__(self, name: str):
        global _current
        if name not in BACKENDS:
            raise ValueError(f"use_backend: unknown backend {name!r}; expected one of {BACKENDS}"
                             " (the 'cuda' device is reached with .to('cuda'))")
        _load(name)
        self._previous = _current
        _current = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _current
        _current = self._previous
        return False


def get_backend() -> str:
    """Name of the backend that runs CPU ops now."""
    return _current


def available_backends() -> list:
    names = []
    for name in BACKENDS:
        try:
            _load(name)
            names.append(name)
        except ImportError:
            pass
    return names


def kernels_for(*tensors):
    """The backend module that must run an op on ``tensors`` (all on the same device).

    CPU tensors get the backend chosen by ``use_backend``; cuda tensors get ``backends.cuda``.
    Until something has been moved to the cuda device, this is one flag test and a dict lookup.
    """
    if _device.cuda_in_use:
        return _device_kernels(tensors)
    return _load(_current)


def _device_kernels(tensors):
    devices = [t.device for t in tensors if t is not None]
    if "cuda" not in devices:
        return _load(_current)
    if "cpu" in devices:
        op = sys._getframe(2).f_code.co_name.lstrip("_")
        raise RuntimeError(f"{op}: expected all tensors on the same device, got tensors on cpu and cuda "
                           f"(devices of the arguments: {devices}); move them with .to('cuda') or .to('cpu')")
    from .backends import cuda
    return cuda
