"""The cuda backend's caching allocator (``backends/cuda/memory.py``): blocks are reused by size
class, given back when the last array or view using them dies, and an out-of-memory allocation
empties the cache and retries. The bookkeeping is tested with fake blocks; the lending of blocks
as device arrays with Numba's own pointer classes, in a process without the simulator (no GPU
is touched: the fake blocks hold made-up addresses that nothing dereferences)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastnn
from fastnn.backends.cuda import memory


class OutOfMemory(Exception):
    code = 2       # CUDA_ERROR_OUT_OF_MEMORY, as numba's CudaAPIError carries it


def make_cache(fail_when=lambda size, live: False):
    blocks = []

    def allocate(size):
        if fail_when(size, blocks):
            raise OutOfMemory("out of memory")
        blocks.append(object())
        return blocks[-1]
    return memory.BlockCache(allocate, memory._is_out_of_memory), blocks


@pytest.mark.parametrize("nbytes, size", [(1, 512), (512, 512), (513, 1024), (1 << 20, 1 << 20),
                                          ((1 << 20) + 1, (1 << 20) + (128 << 10)), (3 << 20, 3 << 20)])
def test_requests_are_rounded_up_to_their_size_class(nbytes, size):
    assert memory.size_class(nbytes) == size


def test_a_request_is_worked_out_as_python_ints_and_remembered_only_for_a_tuple_shape():
    import numpy as np
    memory._requests.clear()
    expected = ((2, 3), np.dtype(np.float32), 24, (12, 4), 6)
    assert memory.request((2, 3), np.float32) == expected
    assert memory.request((np.int64(2), 3), "float32") == expected          # equal keys: the same answer
    assert memory.request([2, 3], np.float32) == expected
    assert memory.request((d for d in (2, 3)), np.float32) == expected      # an iterable, read once
    assert memory.request((0, 3), np.float64)[2:] == (0, (24, 8), 0)
    assert all(type(shape) is tuple for shape, _ in memory._requests)       # no list or generator kept
    assert type(memory.request((np.int64(4),), np.int8)[0][0]) is int


def test_a_block_given_back_serves_the_next_request_of_its_size_class():
    cache, blocks = make_cache()
    block, size = cache.take(1000)
    assert size == 1024 and cache.stats() == {"in_use_bytes": 1024, "cached_bytes": 0, "reused": 0, "allocated": 1}
    cache.give_back(block, size)
    assert cache.stats()["cached_bytes"] == 1024 and cache.stats()["in_use_bytes"] == 0
    again, _ = cache.take(600)                     # 600 bytes: the same 1024-byte class
    assert again is block and len(blocks) == 1 and cache.reused == 1
    other, other_size = cache.take(100)            # another class: a new block
    assert other is not block and other_size == 512 and len(blocks) == 2


def test_a_second_out_of_memory_after_emptying_the_cache_propagates():
    cache, blocks = make_cache(fail_when=lambda size, live: size > 4096)
    small, size = cache.take(100)
    cache.give_back(small, size)
    with pytest.raises(OutOfMemory):
        cache.take(10_000)
    assert cache.cached_bytes == 0 and cache.in_use_bytes == 0   # emptied before the retry


def test_out_of_memory_is_retried_once_after_a_garbage_collection(monkeypatch):
    calls, collections = [], []
    monkeypatch.setattr(memory.gc, "collect", lambda: collections.append(1))

    def allocate(size):
        calls.append(size)
        raise OutOfMemory()
    cache = memory.BlockCache(allocate, memory._is_out_of_memory)
    with pytest.raises(OutOfMemory):
        cache.take(10)
    assert calls == [512, 512] and collections == [1] and cache.in_use_bytes == 0 and cache.allocated == 0


def test_a_block_the_garbage_collection_gives_back_serves_the_request(monkeypatch):
    """Out of memory, and an array in a reference cycle holds a block of the right class: the
    collection gives it back, and it is lent instead of emptying the cache."""
    cache, blocks = make_cache(fail_when=lambda size, live: True)
    cycle_block, spare = object(), object()
    cache._free[1024] = [spare]
    cache.cached_bytes = 1024
    monkeypatch.setattr(memory.gc, "collect", lambda: cache.give_back(cycle_block, 512))
    cache.in_use_bytes = 512                     # the cycle's block was lent before
    block, size = cache.take(100)
    assert block is cycle_block and size == 512
    assert cache.cached_bytes == 1024 and cache._free[1024] == [spare]    # nothing else dropped


def test_with_caching_off_blocks_given_back_are_dropped():
    cache, blocks = make_cache()
    kept, size = cache.take(100)
    lent, _ = cache.take(100)
    cache.give_back(kept, size)
    cache.caching = False
    cache.empty()
    cache.give_back(lent, size)           # an array that outlived the switch
    assert cache.stats() == {"in_use_bytes": 0, "cached_bytes": 0, "reused": 0, "allocated": 2}
    assert cache.take(100)[0] not in (kept, lent)


def test_a_retry_after_emptying_the_cache_succeeds_when_memory_was_freed():
    freed = []

    def allocate(size):
        if size > 4096 and not freed:
            raise OutOfMemory()
        return object()
    cache = memory.BlockCache(allocate, memory._is_out_of_memory)
    block, size = cache.take(100)
    cache.give_back(block, size)
    empty = cache.empty
    cache.empty = lambda: (freed.append(True), empty())
    big, big_size = cache.take(10_000)
    assert freed and big_size == 10_240 and cache.cached_bytes == 0 and cache.in_use_bytes == 10_240


def test_other_allocation_errors_propagate_and_keep_the_cache():
    cache = memory.BlockCache(lambda size: (_ for _ in ()).throw(ValueError("bad")), memory._is_out_of_memory)
    cache._free[512] = [object()]
    cache.cached_bytes = 512
    with pytest.raises(ValueError):
        cache.take(4096)
    assert cache.cached_bytes == 512


@pytest.mark.parametrize("error, oom", [(OutOfMemory(), True), (ValueError(), False),
                                        (type("E", (Exception,), {"code": 1})(), False)])
def test_out_of_memory_is_recognised_by_the_driver_error_code(error, oom):
    assert memory._is_out_of_memory(error) is oom


LIFECYCLE = textwrap.dedent('''
    import numpy as np
    from numba.cuda.cudadrv.devicearray import DeviceNDArray
    from fastnn.backends.cuda import memory
    from fastnn.backends.cuda.host_only import Block   # a fake block at an address (no driver)

    addresses = iter(range(1 << 20, 1 << 30, 1 << 20))
    cache = memory.DeviceArrayCache()
    cache._allocate = lambda size: Block(next(addresses), size)

    a = cache.device_array((4, 8), np.float32)
    first = a.device_ctypes_pointer.value
    assert a.shape == (4, 8) and a.strides == (32, 4) and a.dtype == np.float32 and a.is_c_contiguous()
    # copies to and from the host move the array's bytes, not the block's (numba reads the size
    # off the pointer: a 512-byte count would read past a 128-byte host buffer)
    assert a.alloc_size == 128 and a.gpu_data._cuda_memsize_ == 128
    assert cache.stats()["in_use_bytes"] == 512
    # a view sharing the pointer (as _core.as_strided makes them) and a slice's pointer (as numba's
    # __getitem__ makes it, which itself needs a context)
    flat = DeviceNDArray((32,), (4,), np.float32, gpu_data=a.gpu_data)
    tail = DeviceNDArray((24,), (4,), np.float32, gpu_data=flat.gpu_data.view(32))
    del flat
    assert tail.device_ctypes_pointer.value == first + 32
    del a
    assert cache.stats()["in_use_bytes"] == 512, "the block was given back while a view used it"
    del tail
    assert cache.stats() == {"in_use_bytes": 0, "cached_bytes": 512, "reused": 0, "allocated": 1}
    b = cache.device_array((100,), np.int32)        # 400 bytes: the same 512-byte block again
    assert b.device_ctypes_pointer.value == first and cache.stats()["reused"] == 1
    c = cache.device_array((3, 5, 7), np.float64)   # another class: another block
    assert c.device_ctypes_pointer.value != first and c.strides == (280, 56, 8)
    del b, c
    assert cache.stats()["in_use_bytes"] == 0
    # an array only the cycle collector frees gives its block back once, when collected, and the
    # block's memory is still allocated: blocks made as Numba's memory manager makes them (an
    # AutoFreePointer the context keeps, the block array holding only its .own(), a finalizer that
    # frees the memory when the last owner dies). The collector runs such finalizers before __del__
    import gc
    from numba.cuda.cudadrv import driver
    from numba.cuda.cudadrv.driver import AutoFreePointer
    allocations, freed = {}, []

    def numba_block(size):
        address = next(addresses)
        def free():
            allocations.pop(address, None)
            freed.append(address)
        pointer = AutoFreePointer(None, driver.binding.CUdeviceptr(address), size, finalizer=free)
        allocations[address] = pointer
        return DeviceNDArray((size,), (1,), np.uint8, gpu_data=pointer.own())
    numba = memory.DeviceArrayCache()
    numba._allocate = numba_block
    class Holder:
        pass
    holder = Holder()
    holder.me, holder.array = holder, numba.device_array((10,), np.float32)
    address = holder.array.__cuda_array_interface__["data"][0]
    del holder
    gc.collect()
    assert not freed, "the memory of a cached block was freed"
    assert numba.stats() == {"in_use_bytes": 0, "cached_bytes": 512, "reused": 0, "allocated": 1}
    again = numba.device_array((100,), np.int32)
    assert again.device_ctypes_pointer.value == address and numba.stats()["reused"] == 1 and not freed
    del again
    # a pointer lends its block once: copying it would give the block back twice
    import copy
    lent = numba.device_array((4,), np.float32)
    for copier in (copy.copy, copy.deepcopy):
        try:
            copier(lent.gpu_data)
        except TypeError:
            pass
        else:
            raise AssertionError(f"{copier.__name__} of a BlockPointer went through")

    class DeadBlock:           # a cached block of a context that cuda.close() destroyed
        @property
        def gpu_data(self):
            raise ReferenceError("weakly-referenced object no longer exists")
    stale = memory.DeviceArrayCache()
    stale._allocate = lambda size: Block(next(addresses), size)
    stale._free, stale.cached_bytes = {512: [DeadBlock()]}, 512
    d = stale.device_array((10,), np.float32)       # the stale block is dropped, a fresh one lent
    assert d.device_ctypes_pointer.value and stale.stats()["in_use_bytes"] == 512
    assert stale.stats()["cached_bytes"] == 0 and stale.stats()["allocated"] == 1
    print("ok")
''')


def test_lent_arrays_give_their_block_back_when_the_last_view_dies():
    """Numba's real pointer and device-array classes (outside the simulator; no driver call)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    here = str(Path(fastnn.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", LIFECYCLE], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
