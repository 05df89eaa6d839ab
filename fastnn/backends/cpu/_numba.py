"""Numba kernels with a serial twin: ``@fused_kernel`` compiles a ``prange`` loop twice.

Starting a parallel region costs ~2 us with spinning workers and ~45 us when they sleep, and on a
shared machine a region waits for every thread of the team to be scheduled; below
``PARALLEL_MIN_ELEMENTS`` elements (measured here: a memory-bound element-wise pass over 64 Ki
float32 takes ~10 us on one core) the serial twin runs on the calling thread instead. The choice
is made from the size of the kernel's first argument, which every kernel takes to be its
largest array.

Both twins are cached on disk (``cache=True``). Numba keys its cache by the function's qualified
name and bytecode, not by the ``parallel`` flag, so the serial twin is compiled from a copy of the
function renamed ``<name>_serial``.

The cache lives in the user's cache folder (``cached_njit``), not next to the installed sources:
Numba's files in ``site-packages/fastnn`` outlive ``pip uninstall``, and the folder left behind
then shadows a later editable install (``import fastnn`` finds an empty namespace package), which
is what running the README's two commands in turn did.
"""
import contextlib
import os
import types

import numba as nb
from numba.core import config as _numba_config

PARALLEL_MIN_ELEMENTS = 1 << 16


def cache_dir():
    """Where fastnn's Numba kernels are cached: ``$NUMBA_CACHE_DIR`` when the user set one, else
    ``fastnn/numba`` in ``$XDG_CACHE_HOME`` (default ``~/.cache``). Numba falls back to its own
    places when that folder cannot be created."""
    if _numba_config.CACHE_DIR:
        return _numba_config.CACHE_DIR
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastnn", "numba")


@contextlib.contextmanager
def _caching_in(folder):
    """Numba reads config.CACHE_DIR when a ``cache=True`` function is decorated: set it for
    fastnn's own kernels only, and give the user's setting back."""
    previous = _numba_config.CACHE_DIR
    _numba_config.CACHE_DIR = folder
    try:
        yield
    finally:
        _numba_config.CACHE_DIR = previous


def cached_njit(py_func=None, **options):
    """``numba.njit(cache=True, **options)`` with the cache in ``cache_dir()``."""
    if py_func is None:
        return lambda func: cached_njit(func, **options)
    with _caching_in(cache_dir()):
        return nb.njit(cache=True, **options)(py_func)


class FusedKernel:
    """Calls ``parallel(*args)`` when ``args[0].size >= PARALLEL_MIN_ELEMENTS``, else ``serial(*args)``."""

    __slots__ = ("parallel", "serial", "__name__")

    def __init__(self, py_func, fastmath=False):
        self.parallel = cached_njit(py_func, parallel=True, fastmath=fastmath)
        twin = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_serial",
                                  py_func.__defaults__, py_func.__closure__)
        twin.__qualname__ = py_func.__qualname__ + "_serial"
        twin.__module__ = py_func.__module__
        self.serial = cached_njit(twin, fastmath=fastmath)   # prange runs as range
        self.__name__ = py_func.__name__

    def __call__(self, *args):
        if args[0].size >= PARALLEL_MIN_ELEMENTS:
            return self.parallel(*args)
        return self.serial(*args)


def fused_kernel(py_func=None, *, fastmath=False):
    """Decorator: a Numba ``prange`` kernel with a serial twin for small inputs (see module doc).

    ``@fused_kernel(fastmath={"reassoc"})`` lets LLVM reorder the additions of a reduction, so
    that a running sum is split over vector lanes instead of waiting on one add at a time (4x
    on the batch-norm sums); NaN and infinity keep their meaning."""
    if py_func is None:
        return lambda func: FusedKernel(func, fastmath)
    return FusedKernel(py_func, fastmath)
