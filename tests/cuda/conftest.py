"""Setup of the cuda tests: Numba's CUDA simulator unless ``NUMBA_ENABLE_CUDASIM=0`` (a real GPU).

Under the simulator the fake device array is made as strict as a real ``DeviceNDArray``: no
arithmetic, no comparisons and no attributes that a real device array lacks (the simulator would
otherwise fall through to NumPy and hide host-side code that breaks on a GPU), and no implicit
conversion to a host array (that would be a silent device-to-host copy on a GPU).
"""
import os
import sys

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # before numba.cuda is first imported

import pytest  # noqa: E402
from numba import config  # noqa: E402

import fastnn.device  # noqa: E402

SIMULATOR = bool(config.ENABLE_CUDASIM)
# the public attributes of numba.cuda's DeviceNDArray (numba 0.6x), which the simulator's array may show
_ALLOWED = {"dtype", "size", "ndim", "strides", "nbytes", "flags", "squeeze", "alloc_size", "gpu_data", "stream",
            "split", "view", "bind", "getitem", "setitem", "as_cuda_arg", "device_ctypes_pointer"}


def _strict_simulator():
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    def refuse(self, *args):
        raise TypeError("a device array has no host-side arithmetic or comparisons (use a kernel)")

    for name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__sub__", "__mul__",
                 "__floordiv__", "__truediv__", "__mod__", "__pow__"):
        setattr(FakeCUDAArray, name, refuse)
    FakeCUDAArray.__hash__ = object.__hash__

    def getattr_(self, name):
        if name in _ALLOWED:
            return getattr(self._ary, name)
        raise AttributeError(f"a real DeviceNDArray has no attribute {name!r} (the simulator would have "
                             "fallen through to NumPy here)")

    FakeCUDAArray.__getattr__ = getattr_

    # The simulator's shared-memory allocation is a check-then-set on a dict: two threads of a block
    # can each create their own "shared" array when they interleave there (likely with the short
    # switch interval set below), and a block reduction then sums the wrong buffer. Serialise it.
    import threading
    import traceback

    import numpy as np
    from numba.core import types
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    from numba.np import numpy_support
    allocate, lock = FakeCUDAShared.array, threading.Lock()

    def shared_array(self, shape, dtype):
        if shape == 0:
            return allocate(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]   # one array per source line, as numba's
        with lock:
            array = self._allocations.get(caller)
            if array is None:
                array = self._allocations[caller] = np.empty(shape, dtype)
        return array

    FakeCUDAShared.array = shared_array


if SIMULATOR:
    _strict_simulator()


@pytest.fixture(scope="package", autouse=True)
def _cuda_session():
    """The simulator busy-polls its Python threads at every syncthreads(): a short GIL switch
    interval keeps that fast. Afterwards fastnn's 'cuda used' flag is cleared again, so that the
    CPU tests that follow run the CPU-only dispatch path."""
    interval = sys.getswitchinterval()
    if SIMULATOR:
        sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        fastnn.device.cuda_in_use = False


@pytest.fixture
def no_gpu(monkeypatch):
    """Pretend that this machine has no usable GPU (the reason the availability check reports)."""
    monkeypatch.setattr(fastnn.device, "_unavailable", "no CUDA driver was found (simulated for the test)")
    monkeypatch.setattr(fastnn.device, "cuda_in_use", False)


@pytest.fixture(autouse=True)
def heuristic_choices(monkeypatch):
    """Every test starts with no remembered GEMM tiling or convolution path, and with autotuning off
    on a GPU too: a test launches what it asserts on (``tests/cuda/test_autotune.py`` turns it on)."""
    if not fastnn.device.cuda_unavailable_reason():
        from fastnn.backends.cuda import autotune, conv, linear
        monkeypatch.setattr(autotune, "ENABLED", False)
        monkeypatch.setattr(autotune, "_CHOSEN", {})
        monkeypatch.setattr(linear, "_TILING_OF", {})
        monkeypatch.setattr(conv, "_INPUT_GRADIENT_WAY", {})


@pytest.fixture
def gpu_tilings(monkeypatch):
    """The GPU's GEMM tilings (``linear.GPU_TILINGS``) in use, in the simulator too (the choice of
    tiling, the split of k and the windows tables' slack follow them)."""
    from fastnn.backends.cuda import linear
    tilings = tuple(linear.make_tiling(*t) for t in linear.GPU_TILINGS)
    monkeypatch.setattr(linear, "TILINGS", tilings)
    monkeypatch.setattr(linear, "_TILING_OF", {})
    return tilings


@pytest.fixture
def simulator_tilings(monkeypatch):
    """The simulator's small GEMM tilings (``linear.SIMULATOR_TILINGS``) in use, on a GPU too: for
    tests whose shapes are sized so that several tilings fit them, or a windows table falls short."""
    from fastnn.backends.cuda import linear
    tilings = tuple(linear.make_tiling(*t) for t in linear.SIMULATOR_TILINGS)
    monkeypatch.setattr(linear, "TILINGS", tilings)
    monkeypatch.setattr(linear, "_TILING_OF", {})
    return tilings
