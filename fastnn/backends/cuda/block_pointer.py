"""The pointer through which the caching allocator (``memory.py``) lends a block as a device array.

Numba wraps each of its own allocations in an ``AutoFreePointer`` (kept alive by the context) and
gives every array an ``OwnedPointer`` to it: a weak proxy, a reference count of its own and a
``weakref.finalize`` on each, whose finalizers free the memory when the count drops to zero. Made
and dropped about 35 times a training step, that was most of an allocation's host cost.

``BlockPointer`` is Numba's ``MemoryPointer`` (what every Numba function that takes device memory
accepts: marshalling, copies, ``__cuda_array_interface__``, slicing), and Python's own reference
count is the count: every array made from the block holds this object (reshapes and
``_core.as_strided`` views share it as their ``gpu_data``; Numba's slices hold it as their view's
``owner``), and when the last one dies ``__del__`` gives the block back to the cache.
"""
from __future__ import annotations

from numba.cuda.cudadrv.driver import MemoryPointer


class BlockPointer(MemoryPointer):
    """``nbytes`` bytes at the start of ``block`` (a device allocation the cache owns), at
    ``address`` in ``context``. When this pointer dies, ``give_back(block, size)`` runs once.

    ``nbytes`` is the array's byte count, not the block's ``size`` (Numba copies a pointer's size to
    and from the host). The pointer holds ``block``, so the allocation outlives every array on it.
    """

    def __init__(self, context, address, nbytes, block, size, give_back):
        super().__init__(context, address, nbytes)     # no finalizer: __del__ below is the release
        self._block, self._block_size, self._give_back = block, size, give_back

    def __del__(self):
        give_back = getattr(self, "_give_back", None)      # None: given back, or never fully made
        if give_back is not None:
            self._give_back = None
            give_back(self._block, self._block_size)

    def __copy__(self):
        raise TypeError("a BlockPointer lends its block once: it cannot be copied (copy the array instead)")

    def __deepcopy__(self, memo):
        raise TypeError("a BlockPointer lends its block once: it cannot be copied (copy the array instead)")
