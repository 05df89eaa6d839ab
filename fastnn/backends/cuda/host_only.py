"""The cuda backend's host side on a machine without a GPU, for measurements and tests that run in
a process of their own (``bench/cuda_host_step.py``, ``tests/cuda/test_fast_launch.py``).

``install()`` patches numba-cuda for the rest of the process (it cannot be undone) so that

* device arrays are Numba's real ``DeviceNDArray`` on fake memory: the caching allocator hands out
  blocks at made-up addresses, copies to the device do nothing and copies to the host read zeros;
* the current device is an H100 as far as compilation asks (compute capability 9.0, 132
  multiprocessors): kernels are compiled by Numba's dispatcher and NVVM exactly as on a GPU, but
  never loaded;
* a launch goes through Numba's dispatcher and argument marshalling (or fastnn's ``launcher``) down
  to the call of ``cuda.core``'s ``launch``, which packs the parameters as the real one does
  (``cuda.core``'s ``ParamHolder``, host work that costs 0.3 us a ctypes value) and records what it
  was given in ``launches`` (the last ``RECORDED`` calls: kernel, launch configuration and kernel
  parameters; ``launched()`` counts them all).

Kernels never run, so device values are garbage: use it for the host side only (what a step
launches and how long the host takes to queue it), never for results.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import os

from . import launcher

RECORDED = 1000
launches: collections.deque = collections.deque(maxlen=RECORDED)
_launched = 0

COMPUTE_CAPABILITY = (9, 0)
MULTIPROCESSORS = 132


class _Device:
    id = 0
    compute_capability = COMPUTE_CAPABILITY
    MULTIPROCESSOR_COUNT = MULTIPROCESSORS


class _Context:
    device = _Device()


class _Module:
    initialized = True


class _Function:
    """What a compiled kernel's ``get_cufunc()`` gives: its ``kernel`` is what gets launched."""
    module = _Module()

    def __init__(self, name):
        self.name = name
        self.kernel = name


class Block:
    """A fake allocation of ``size`` bytes at ``address``: what ``numba.cuda.device_array(n, uint8)``
    is to the caching allocator (its ``gpu_data``, a pointer of the binding Numba uses: ctypes or
    NVIDIA's). Needs no driver and no ``install()``."""

    def __init__(self, address, size):
        from numba.cuda.cudadrv import driver
        from numba.cuda.cudadrv.driver import MemoryPointer
        nvidia = getattr(driver, "USE_NV_BINDING", True)
        pointer = driver.binding.CUdeviceptr(address) if nvidia else ctypes.c_void_p(address)
        self.gpu_data = MemoryPointer(None, pointer, size)


_installed = False


def _zeros_on_the_host(array, ary=None, stream=0):
    """A copy to the host reads zeros (device values are never computed)."""
    import numpy as np
    if ary is None:
        return np.zeros(array.shape, array.dtype)
    ary[...] = 0
    return ary


def launched() -> int:
    """Calls of ``cuda.core``'s launch since ``install()``."""
    return _launched


_pack = launcher.param_holder()       # cuda.core's packing of kernel parameters (no driver needed)


_stream_classes = ()      # what cuda.core's launch takes as its stream, and as its configuration
_config_class = None      # (set by install)


def _record(stream, config, kernel, *params):
    """The fake ``cuda.core`` launch. It refuses what the real one refuses before reaching the driver
    (a stream that is not a ``cuda.core`` stream: Numba converts its 0 with ``_to_core_stream``; a
    configuration that is not a ``LaunchConfig``; a kernel that ``get_cufunc`` did not give), packs
    the parameters as the real one packs them (its cost is host time), then records the launch."""
    global _launched
    if not isinstance(stream, _stream_classes):
        raise TypeError(f"Stream or GraphBuilder expected, got {type(stream).__name__}")
    if not isinstance(config, _config_class):
        raise TypeError(f"LaunchConfig expected, got {type(config).__name__}")
    if not isinstance(kernel, str):         # host_only's _Function.kernel: the entry name
        raise TypeError(f"a kernel from get_cufunc() expected, got {type(kernel).__name__}")
    if _pack is not None:
        _pack(params)
    _launched += 1
    launches.append((kernel, config, params))


def install() -> None:
    """Patch numba-cuda and fastnn's cuda backend as the module docstring says (once per process)."""
    global _installed
    if _installed:
        return
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") != "0":
        raise RuntimeError("host_only needs Numba's real CUDA classes: run without NUMBA_ENABLE_CUDASIM=1")
    global _stream_classes, _config_class
    import numba.cuda.api as api
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda
    from numba.cuda.cudadrv import driver
    _stream_classes, _config_class = (type(driver._to_core_stream(0)),), dispatcher.LaunchConfig
    from numba.cuda import codegen
    from numba.cuda.cudadrv import devices
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    import fastnn.device
    from . import memory

    device, context = _Device(), _Context()
    context.device.primary_context = context        # what launcher.current_context checks
    api.get_current_device = dispatcher.get_current_device = cuda.get_current_device = lambda: device
    devices.get_context = cuda.current_context = lambda *args: context
    devices._runtime.ensure_context = lambda: contextlib.nullcontext()     # slicing asks for one
    functions = {}

    def get_cufunc(library):
        name = library._entry_name
        return functions.setdefault(name, _Function(name))
    codegen.CUDACodeLibrary.get_cufunc = get_cufunc
    dispatcher.launch = _record

    addresses = iter(range(1 << 20, 1 << 46, 1 << 22))
    cache = memory.DeviceArrayCache()
    cache._allocate = lambda size: Block(next(addresses), size)
    memory._cache = cache
    DeviceNDArray.copy_to_device = lambda self, ary, stream=0: None
    DeviceNDArray.copy_to_host = _zeros_on_the_host
    fastnn.device.cuda_unavailable_reason = lambda: None
    _installed = True
