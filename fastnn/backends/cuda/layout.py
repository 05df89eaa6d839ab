"""The layout of a C-contiguous array, with no dependency (the allocator works it out in Numba's
simulator too, where Numba's device-array class is another)."""
from __future__ import annotations

import functools
import math


@functools.lru_cache(maxsize=4096)
def c_strides(shape: tuple, itemsize: int) -> tuple:
    """Byte strides of a C-contiguous array of ``shape`` (a length-0 or -1 extent counts as 1, as
    NumPy and Numba count it)."""
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= max(int(extent), 1)
    return tuple(reversed(strides))


@functools.lru_cache(maxsize=4096)
def c_layout(shape: tuple, itemsize: int) -> tuple:
    """(C strides, elements) of a C-contiguous array of ``shape`` (a tuple of ints): what the
    allocator's requests and ``DeviceArray``'s arrays and reshapes take, worked out once per shape."""
    return c_strides(shape, itemsize), math.prod(shape)
