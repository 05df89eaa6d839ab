"""Shared machinery of the cuda backend: launch configuration, the launch counter, allocation,
views, and the contiguity / argument checks.

Every kernel launch goes through :func:`launch` (1-D, grid-stride) or :func:`launch_grid`, which
count launches (``launch_count()``) and, under the simulator, check that every array argument is
a device array (a host array handed to a kernel would be copied to the GPU and back silently).
"""
from __future__ import annotations

import contextlib

import numpy as np
from numba import config, cuda

from . import launcher
from .memory import cached_device_array

SIMULATOR = bool(config.ENABLE_CUDASIM)
# The simulator runs each GPU thread as a Python thread: launch few threads there, and let the
# grid-stride loops of the kernels cover the elements. On a GPU: 256-thread blocks.
THREADS = 4 if SIMULATOR else 256
MAX_BLOCKS = 1 if SIMULATOR else 8192

_launches = 0
_dry_run = False

if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _DeviceArray
    # a real DeviceNDArray's shape is a plain tuple (negative indices work); the simulator's
    # FakeShape refuses them, which only kernels need: make host-side code see the real thing
    _DeviceArray.shape = property(lambda self: tuple(self._ary.shape))
else:
    from .device_array import DeviceArray as _DeviceArray


def kernel(function=None, *, max_registers=None):
    """``@cuda.jit`` for every kernel of the backend: compiled on its first launch for the argument
    types it gets (float32 for training; float64 where a user asks for it), and cached on disk
    (``cache=True``, in ``__pycache__`` or Numba's cache directory), so a new process loads the
    compiled kernels instead of compiling them again. Types are not pinned by explicit signatures:
    the fused optimiser kernels take a tuple of as many arrays as the group has parameters.

    ``@kernel(max_registers=n)``: registers per thread capped at n when the PTX is assembled (the
    simulator has no registers and takes no such option)."""
    if function is None:
        return lambda f: kernel(f, max_registers=max_registers)
    if max_registers is None or SIMULATOR:
        return cuda.jit(cache=True)(function)
    return cuda.jit(cache=True, max_registers=max_registers)(function)


@cuda.jit(device=True)
def unravel4(t, d1, d2, d3):
    """(i0, i1, i2, i3) of the C-order flat index t over a (_, d1, d2, d3) array."""
    i3 = t % d3
    r = t // d3
    i2 = r % d2
    r //= d2
    return r // d1, r % d1, i2, i3


@cuda.jit(device=True)
def pixel_strides():
    """(x0, x_step, y0, y_step) of a thread of a ``pixel_launch`` launch: its first pixel of the plane
    and the stride along them (x), its first row or channel and the stride along them (y). Images go
    along z (blockIdx.z, gridDim.z)."""
    return (cuda.grid(1), cuda.gridsize(1), cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y,
            cuda.gridDim.y * cuda.blockDim.y)


@cuda.jit(device=True)
def plane_position(q, width):
    """(row, column) of the flat index q of a plane ``width`` wide: one division."""
    row = q // width
    return row, q - row * width


@cuda.jit(device=True)
def windows_holding(i, pad, kernel, stride, out):
    """[lo, hi]: the outputs of a stride/kernel window along one axis whose window holds input i."""
    return max(0, (i + pad - kernel) // stride + 1), min(out - 1, (i + pad) // stride)


def launch_count() -> int:
    """Kernel launches since the process started (or the last ``reset_launch_count``)."""
    return _launches


def reset_launch_count() -> None:
    global _launches
    _launches = 0


@contextlib.contextmanager
def count_launches(dry_run=False):
    """Count the kernel launches inside the block: ``with count_launches() as n: ...; n()``.

    With ``dry_run=True`` kernels are counted but not run (values are garbage): the count of a
    training step does not depend on the values, so large shapes can be counted in the simulator.
    """
    global _launches, _dry_run
    start, previous = _launches, _dry_run
    _dry_run = bool(dry_run)
    try:
        yield lambda: _launches - start
    finally:
        _dry_run = previous


_observer = None
_FAST_LAUNCH = launcher.unavailable_reason is None


@contextlib.contextmanager
def observe_launches(observer):
    """Inside the block, every kernel that runs goes through ``observer(kernel, grid, args, run)``,
    which must call ``run()`` once to launch it (``bench/cuda_step_profile.py`` times each launch
    this way). Dry-run and empty launches are not observed (they run nothing)."""
    global _observer
    previous, _observer = _observer, observer
    try:
        yield
    finally:
        _observer = previous


def _run(kernel, grid, block, args):
    if _observer is None:
        _launch(kernel, grid, block, args)
    else:
        _observer(kernel, grid, args, lambda: _launch(kernel, grid, block, args))


def _launch(kernel, grid, block, args):
    if not _FAST_LAUNCH:
        kernel[grid, block](*args)
    elif not launcher.launch_direct(kernel, args, grid, block):
        launcher.type_arrays(args)
        kernel[grid, block](*args)      # Numba's dispatcher: types, compiles
        launcher.accelerate(kernel)     # the overloads compiled so far marshal their arguments faster


def _check_args(kernel, args):
    for a in args:
        if isinstance(a, np.ndarray):
            raise TypeError(f"cuda kernel {kernel.__name__ if hasattr(kernel, '__name__') else kernel}: "
                            f"a host ndarray {a.shape} was passed (would be copied silently)")


def launch(kernel, n, *args):
    """Run a grid-stride 1-D kernel over ``n`` items."""
    global _launches
    _launches += 1
    if SIMULATOR:
        _check_args(kernel, args)
    if _dry_run or n == 0:
        return
    _run(kernel, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS), THREADS, args)


def launch_grid(kernel, grid, block, *args):
    """Run a kernel with an explicit grid and block (nothing to run when the grid is empty: a GPU
    refuses a launch with a zero grid extent, which the simulator accepts)."""
    global _launches
    _launches += 1
    if SIMULATOR:
        _check_args(kernel, args)
    if _dry_run or 0 in (grid if isinstance(grid, tuple) else (grid,)):
        return
    _run(kernel, grid, block, args)


_multiprocessors = None


def multiprocessors() -> int:
    """Streaming multiprocessors of the current GPU (4 under the simulator, so that its small tests
    take the paths a GPU takes for work that would leave multiprocessors idle)."""
    global _multiprocessors
    if _multiprocessors is None:
        _multiprocessors = 4 if SIMULATOR else int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    return _multiprocessors


# threads a multiprocessor holds at once (H100, H200): the batch is sliced along gridDim.z until the
# grid has about two such waves of threads with work
RESIDENT_THREADS = 2048
MAX_GRID_YZ = 65535


def pixel_launch(pixels, rows, images):
    """(grid, block) for the kernels that give each thread a pixel of a plane and a row (a channel, or
    an im2col row) and let it walk the images of the batch (im2col, col2im, pooling).

    A block is bx x by threads: bx covers the plane's pixels in whole warps (fewer than THREADS for a
    small plane), by rows share the block (a 7x7 plane: 64 x 4 threads, not 49 of 256). The grid
    covers pixels x rows, then cuts the batch into gz slices until about two waves of RESIDENT_THREADS
    per multiprocessor have work. Under the simulator: one block of THREADS (Python) threads."""
    if SIMULATOR:
        return (1, 1, 1), (THREADS, 1)
    bx = min(THREADS, 32 * max(1, -(-pixels // 32)))
    by = max(1, min(THREADS // bx, rows))
    gx = min(MAX_BLOCKS, -(-pixels // bx))
    gy = min(MAX_GRID_YZ, max(1, -(-rows // by)))
    working = gx * bx * gy * by
    gz = min(MAX_GRID_YZ, max(images, 1), max(1, -(-2 * RESIDENT_THREADS * multiprocessors() // max(working, 1))))
    return (gx, gy, gz), (bx, by)


# -- allocation and views ------------------------------------------------------------------------

def empty(shape, dtype):
    """An uninitialised C-contiguous device array, from the caching allocator (``memory.py``)."""
    if type(shape) is not tuple:    # (an iterable is read once, here)
        shape = tuple(shape)
    if SIMULATOR:  # poison fresh memory, so that a kernel reading what nobody wrote fails every time
        shape, dtype = tuple(map(int, shape)), np.dtype(dtype)
        return cuda.to_device(np.full(shape, np.nan if dtype.kind == "f" else np.iinfo(dtype).min, dtype))
    array = cached_device_array(shape, dtype)
    return array if array is not None else cuda.device_array(tuple(map(int, shape)), np.dtype(dtype))


def to_device(host):
    """A device copy of the host array ``host`` (0-d arrays stay 0-d)."""
    host = np.asarray(host)
    host = host if host.flags.c_contiguous else np.copy(host, order="C")
    if not SIMULATOR:
        array = cached_device_array(host.shape, host.dtype)
        if array is not None:
            array.copy_to_device(host)
            return array
    return cuda.to_device(host)


def context_key() -> int:
    """Identifies the current CUDA context, for caches of device arrays (ones, placeholders,
    resampling matrices): after ``cuda.close()`` a new context must not read the old one's memory."""
    return 0 if SIMULATOR else id(launcher.current_context())


def copy_device_to_device(dst, src):
    """dst[...] = src for two C-contiguous device arrays of the same shape and dtype: a memcpy, not
    a kernel launch (the simulator's own copy cannot take its strict arrays: copied on the host)."""
    if SIMULATOR:
        dst._ary[...] = src._ary
    else:
        dst.copy_to_device(src)


def to_host(array):
    return array.copy_to_host()


def is_contiguous(a) -> bool:
    return a.is_c_contiguous()


def as_strided(a, shape, strides):
    """A view of ``a``'s memory with the given shape and byte strides (0 strides broadcast)."""
    shape, strides = tuple(int(s) for s in shape), tuple(int(s) for s in strides)
    if SIMULATOR:
        return _DeviceArray(np.lib.stride_tricks.as_strided(a._ary, shape, strides))
    return _DeviceArray(shape, strides, a.dtype, gpu_data=a.gpu_data)


def flat_view(a, extent):
    """A 1-D view of ``extent`` elements of ``a``'s memory from its first element (made directly:
    the GEMM makes two or three a launch)."""
    if SIMULATOR:
        return as_strided(a, (extent,), (a.dtype.itemsize,))
    return _DeviceArray.c_contiguous((int(extent),), a.dtype, a.gpu_data)


def pointer(a) -> int:
    """Device address of ``a``'s first element (aliasing checks)."""
    if SIMULATOR:
        return a._ary.__array_interface__["data"][0]
    return a.__cuda_array_interface__["data"][0]


def array_interface(a) -> dict:
    """``__cuda_array_interface__`` of ``a`` (synthesised from the host buffer under the simulator)."""
    if SIMULATOR:
        host = a._ary.__array_interface__
        return {"shape": tuple(a.shape), "strides": None if a.is_c_contiguous() else tuple(a.strides),
                "typestr": host["typestr"], "data": (host["data"][0], False), "version": 3}
    return a.__cuda_array_interface__


def from_interface(obj):
    """Wrap an object exposing ``__cuda_array_interface__`` (CuPy, PyTorch) without a copy."""
    if SIMULATOR and getattr(obj, "__cuda_ndarray__", False):
        return obj
    return cuda.as_cuda_array(obj)


def view4(a, shape4=None):
    """``a`` as a 4-D strided view (leading axes of length 1), optionally broadcast to ``shape4``."""
    nd = len(a.shape)
    if nd > 4:
        raise NotImplementedError(f"cuda: element-wise ops support up to 4 dimensions, got shape {tuple(a.shape)}")
    shape = (1,) * (4 - nd) + tuple(a.shape)
    strides = (0,) * (4 - nd) + tuple(a.strides)
    if shape4 is not None:
        strides = tuple(0 if s == 1 and t != 1 else st for s, t, st in zip(shape, shape4, strides))
        shape = tuple(shape4)
    return as_strided(a, shape, strides)


def pad4(shape):
    shape = tuple(shape)
    if len(shape) > 4:
        raise NotImplementedError(f"cuda: element-wise ops support up to 4 dimensions, got shape {shape}")
    return (1,) * (4 - len(shape)) + shape
