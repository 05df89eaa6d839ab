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
"""
import types

import numba as nb

PARALLEL_MIN_ELEMENTS = 1 << 16


class FusedKernel:
    """Calls ``parallel(*args)`` when ``args[0].size >= PARALLEL_MIN_ELEMENTS``, else ``serial(*args)``."""

    __slots__ = ("parallel", "serial", "__name__")

    def __init__(self, py_func, fastmath=False):
        self.parallel = nb.njit(parallel=True, cache=True, fastmath=fastmath)(py_func)
        twin = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_serial",
                                  py_func.__defaults__, py_func.__closure__)
        twin.__qualname__ = py_func.__qualname__ + "_serial"
        twin.__module__ = py_func.__module__
        self.serial = nb.njit(cache=True, fastmath=fastmath)(twin)   # prange runs as range
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
