"""The cuda backend's caching allocator: device memory is reused instead of freed.

Without it every array of a training step is a ``cuMemAlloc``, and Numba frees dead arrays in
batches of ten with ``cuMemFree``, which waits for the GPU to finish everything queued: a step
would stall the host on the device several times, so launches could not run ahead of the GPU.
With it (as PyTorch's allocator does) the first step allocates, and later steps of the same
shapes take their memory from the cache: no allocation, no free, no synchronisation.

- ``BlockCache``: the bookkeeping alone (size classes, free lists, statistics, out-of-memory
  retry), with the allocation passed in, so it is tested without a GPU.
- ``DeviceArrayCache``: a ``BlockCache`` of ``numba.cuda`` byte arrays, lending each block as a
  device array whose memory goes back to the cache when the last array (or view) using it dies.

Every kernel runs on the default stream, so a block given back while a queued kernel still uses
it is safe: whatever reuses it is queued after that kernel. ``FASTNN_CUDA_CACHING_ALLOCATOR=0``
turns the cache off (Numba's allocator is used directly).
"""
from __future__ import annotations

import gc
import os
import threading
import warnings

import numpy as np

from .layout import c_layout

SMALL_GRANULE = 512            # bytes: sizes up to SMALL_LIMIT are rounded up to a multiple of this
SMALL_LIMIT = 1 << 20
LARGE_GRANULE = 128 << 10      # larger sizes: to a multiple of 128 KiB (<= 12.5% waste above 1 MiB)


def size_class(nbytes: int) -> int:
    """The block size that serves a request of ``nbytes`` (> 0) bytes."""
    granule = SMALL_GRANULE if nbytes <= SMALL_LIMIT else LARGE_GRANULE
    return -(-nbytes // granule) * granule


class BlockCache:
    """Free blocks by size class.

    Args:
        allocate: ``allocate(nbytes) -> block``, a fresh block of exactly ``nbytes``.
        is_out_of_memory: ``is_out_of_memory(exception) -> bool``. When an allocation fails for lack
            of memory, the cycle collector runs (arrays only it can free give their blocks back),
            the cached free blocks are dropped (given back to the allocator underneath, which for
            numba.cuda frees its pending blocks when it runs out) and the allocation is tried once more.

    Blocks come back from finalizers, which run in whatever thread drops the last reference: the
    lists are guarded by a re-entrant lock (a finalizer may run inside ``take`` on the same thread).
    With ``caching`` off, blocks that come back are dropped instead of kept.
    """

    def __init__(self, allocate, is_out_of_memory):
        self._allocate = allocate
        self._is_out_of_memory = is_out_of_memory
        self._lock = threading.RLock()
        self._free: dict[int, list] = {}
        self.caching = True
        self.reused = 0            # requests served from the cache
        self.allocated = 0         # requests that allocated a new block
        self.in_use_bytes = 0      # bytes of blocks lent out
        self.cached_bytes = 0      # bytes of free blocks held

    def take(self, nbytes: int):
        """``(block, size)``: a free block of ``size_class(nbytes)`` bytes, or a new one."""
        size = size_class(nbytes)
        block = self._reuse(size)
        if block is not None:
            return block, size
        try:
            block = self._allocate(size)
        except Exception as error:
            if not self._is_out_of_memory(error):
                raise
            gc.collect()                        # arrays only the cycle collector frees give theirs back
            block = self._reuse(size)           # one of them fits
            if block is not None:
                return block, size
            self.empty()
            block = self._allocate(size)
        with self._lock:
            self.allocated += 1
            self.in_use_bytes += size
        return block, size

    def _reuse(self, size):
        """A free block of ``size`` bytes, now lent, or None."""
        with self._lock:
            free = self._free.get(size)
            if not free:
                return None
            self.cached_bytes -= size
            self.reused += 1
            self.in_use_bytes += size
            return free.pop()

    def give_back(self, block, size: int) -> None:
        """Return a block from ``take`` to the cache (or drop it, with caching off)."""
        with self._lock:
            self._keep(block, size)

    def _keep(self, block, size):
        """``give_back``'s bookkeeping (the lock held)."""
        self.in_use_bytes -= size
        if self.caching:
            free = self._free.get(size)
            if free is None:
                free = self._free[size] = []
            free.append(block)
            self.cached_bytes += size

    def forget(self, size: int) -> None:
        """A block from ``take`` that could not be lent (and is dropped)."""
        with self._lock:
            self.in_use_bytes -= size

    def empty(self) -> None:
        """Drop every free block (lent blocks are untouched)."""
        with self._lock:
            dropped, self._free = self._free, {}
            self.cached_bytes = 0
        del dropped       # outside the lock: dropping a block runs numba's finalizers

    def stats(self) -> dict:
        with self._lock:
            return {"in_use_bytes": self.in_use_bytes, "cached_bytes": self.cached_bytes,
                    "reused": self.reused, "allocated": self.allocated}


def _is_out_of_memory(error) -> bool:
    code = getattr(error, "code", None)      # numba's CudaAPIError: the driver's CUresult
    try:
        return code is not None and int(code) == 2     # CUDA_ERROR_OUT_OF_MEMORY
    except (TypeError, ValueError):
        return "OUT_OF_MEMORY" in str(code)


class DeviceArrayCache(BlockCache):
    """Device arrays whose memory comes from a ``BlockCache`` of ``numba.cuda`` byte arrays.

    A lent block is an array on a ``BlockPointer`` (``block_pointer.py``): the array, its reshapes,
    views and slices hold that pointer, and when the last of them dies the block goes back to the
    cache.
    """

    def __init__(self):
        from numba import cuda

        from .block_pointer import BlockPointer
        from .device_array import made_c_contiguous

        super().__init__(lambda nbytes: cuda.device_array(nbytes, np.uint8), _is_out_of_memory)
        self._made, self._pointer_class = made_c_contiguous, BlockPointer
        # id -> every lent block. The cache itself holds the blocks it lends: a lent array that only the
        # cycle collector frees is garbage together with its BlockPointer, and the collector runs weakref
        # callbacks (Numba's finalizers, which free device memory) before __del__ methods, so a block
        # held by its pointer alone would have its memory freed and then come back to the free list
        self._lent = {}

    def device_array(self, shape, dtype):
        """An uninitialised C-contiguous device array of ``shape`` (a tuple of Python ints) and
        ``dtype`` (a NumPy dtype), of size > 0."""
        return self.lend(request(shape, dtype))

    def lend(self, asked):
        """``device_array`` for ``asked``, its ``request(shape, dtype)``."""
        try:
            return self._lend(*self.take(asked[2]), asked)
        except ReferenceError:
            # the context the cached blocks belonged to is gone (cuda.close()): drop them all
            self.empty()
            return self._lend(*self.take(asked[2]), asked)

    def _lend(self, block, size, asked):
        shape, dtype, nbytes, strides, elements = asked
        try:
            memory = block.gpu_data
            # the pointer's size is the array's, not the block's: numba takes an array's byte count from
            # its pointer (numba.cuda's DeviceNDArray) and copies that many bytes to and from the host
            pointer = self._pointer_class(memory.context, memory.device_pointer, nbytes, block, size, self.give_back)
        except BaseException:
            self.forget(size)
            raise
        self._lent[id(block)] = block
        return self._made(shape, strides, elements, dtype, pointer)

    def give_back(self, block, size: int) -> None:
        with self._lock:
            self._lent.pop(id(block), None)
            self._keep(block, size)


_cache = None
_enabled = os.environ.get("FASTNN_CUDA_CACHING_ALLOCATOR", "1") != "0"


_MAX_REQUESTS = 4096
# (shape, dtype) as asked -> ``request``: a step allocates some 30 arrays, of a few dozen layouts that
# repeat every step
_requests = {}


def request(shape, dtype):
    """(shape as a tuple of Python ints, NumPy dtype, bytes, C strides, elements) of an array asked
    for as (shape, dtype); remembered for a tuple shape (another iterable is read once, not kept)."""
    asked = key = None
    if type(shape) is tuple:
        try:
            asked = _requests.get((shape, dtype))
            key = (shape, dtype)
        except TypeError:           # an unhashable extent: worked out, not remembered
            pass
    else:
        shape = tuple(shape)
    if asked is None:
        shape_ints, np_dtype = tuple(map(int, shape)), np.dtype(dtype)
        strides, elements = c_layout(shape_ints, np_dtype.itemsize)
        asked = (shape_ints, np_dtype, elements * np_dtype.itemsize, strides, elements)
        if key is not None:
            if len(_requests) >= _MAX_REQUESTS:
                _requests.clear()
            _requests[key] = asked
    return asked


def cached_device_array(shape, dtype):
    """A device array from the cache, or ``None`` when the cache is off or the array has no element
    (the caller allocates)."""
    global _cache
    asked = request(shape, dtype)
    if not _enabled or asked[2] == 0:
        return None
    try:
        if _cache is None:
            _cache = DeviceArrayCache()
        return _cache.lend(asked)
    except (AttributeError, TypeError, ImportError) as error:
        # numba's pointer or array classes do not fit this use (another numba version): fall back, loudly
        set_enabled(False)
        warnings.warn(f"fastnn: the cuda caching allocator is off ({type(error).__name__}: {error}); "
                      "using numba.cuda's allocator", RuntimeWarning, stacklevel=3)
        return None


def set_enabled(enabled: bool) -> None:
    """Turn the caching allocator on or off (off: arrays come from numba.cuda directly, and blocks
    that lent arrays give back later are freed rather than kept)."""
    global _enabled
    _enabled = bool(enabled)
    if _cache is not None:
        _cache.caching = _enabled
        if not _enabled:
            _cache.empty()


def empty_cache() -> None:
    """Give the cached free blocks back to the driver (arrays in use keep theirs)."""
    if _cache is not None:
        _cache.empty()


def memory_stats() -> dict:
    """``in_use_bytes``, ``cached_bytes``, ``reused`` and ``allocated`` of the caching allocator."""
    if _cache is None:
        return {"in_use_bytes": 0, "cached_bytes": 0, "reused": 0, "allocated": 0}
    return _cache.stats()
