"""The cuda backend's device-array class on a GPU: Numba's ``DeviceNDArray``, made faster.

Every array the backend makes (the caching allocator's, ``_core.as_strided``'s views, reshapes and
the GEMM's flat views) is a ``DeviceArray``, which is a ``DeviceNDArray`` to everything else (Numba's
typing and marshalling, ``__cuda_array_interface__``, users). A tfconvnet training step makes some
120 arrays, and Numba's constructor builds a layout object (``_dummy``) for each, which is most of
its cost; Numba's ``reshape`` also reshapes that object first to learn whether a view is possible.
Here:

* ``DeviceArray.c_contiguous`` makes a C-contiguous array of a shape of positive Python ints with
  the attributes Numba's constructor sets, and the layout object only when something asks for it
  (Numba's indexing, ``flags``, its own ``reshape``);
* ``reshape`` in C order of a C-contiguous array to a shape with as many elements (one -1 at most) makes
  the view that way, which is what Numba's gives for it; anything else goes to Numba's ``reshape``;
* ``is_c_contiguous`` answers from the strides when they are C's, without the layout object.
"""
from __future__ import annotations

import functools
import math

from numba.cuda.cudadrv import dummyarray
from numba.cuda.cudadrv.devicearray import DeviceNDArray


@functools.lru_cache(maxsize=4096)
def c_strides(shape: tuple, itemsize: int) -> tuple:
    """Byte strides of a C-contiguous array of ``shape`` (a length-0 or -1 extent counts as 1, as
    NumPy and Numba count it)."""
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= max(int(extent), 1)
    return tuple(reversed(strides))


class DeviceArray(DeviceNDArray):
    """``DeviceNDArray`` with a cheaper constructor for C-contiguous arrays and ``reshape``."""

    @functools.cached_property
    def _dummy(self):
        """Numba's layout object, made on first use for arrays made by ``c_contiguous`` (Numba's
        constructor sets it as an instance attribute, which takes precedence)."""
        return dummyarray.Array.from_desc(0, self.shape, self.strides, self.dtype.itemsize)

    @classmethod
    def c_contiguous(cls, shape: tuple, dtype, gpu_data):
        """``DeviceArray(shape, c_strides(shape, itemsize), dtype, gpu_data=gpu_data)`` for a tuple
        of Python ints, all > 0, and a NumPy dtype: the same attributes, set directly."""
        array = cls.__new__(cls)
        array.ndim = len(shape)
        array.shape = shape
        array.strides = c_strides(shape, dtype.itemsize)
        array.dtype = dtype
        array.size = size = math.prod(shape)
        array.alloc_size = size * dtype.itemsize
        array.gpu_data = gpu_data
        array.stream = 0
        return array

    def is_c_contiguous(self):
        return self.strides == c_strides(self.shape, self.dtype.itemsize) or self._dummy.is_c_contig

    def reshape(self, *newshape, **kws):
        shape = newshape[0] if len(newshape) == 1 and isinstance(newshape[0], (tuple, list)) else newshape
        size = self.size
        if (not kws or (len(kws) == 1 and kws.get("order") == "C")) and size \
                and self.strides == c_strides(self.shape, self.dtype.itemsize):
            shape = tuple(map(int, shape))
            elements = math.prod(shape)
            if elements < 0 and shape.count(-1) == 1 and size % -elements == 0:    # the one extent to work out
                shape = tuple([size // -elements if s == -1 else s for s in shape])
                elements = size
            if elements == size and (not shape or min(shape) > 0):
                return DeviceArray.c_contiguous(shape, self.dtype, self.gpu_data)
        return super().reshape(*newshape, **kws)
