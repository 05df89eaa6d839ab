"""The cuda backend's device-array class on a GPU: Numba's ``DeviceNDArray`` with a cheaper
``reshape``.

Every array the backend makes (the caching allocator's, ``_core.as_strided``'s views) is a
``DeviceArray``, which is a ``DeviceNDArray`` to everything else (Numba's typing and marshalling,
``__cuda_array_interface__``, users). Numba's ``reshape`` reshapes a dummy array first to learn
whether a view is possible, about as long again as making the new array object; a tfconvnet training
step reshapes some 60 arrays. Here a C-contiguous array reshaped in C order to a shape with as many
elements (no -1) is made directly with C strides, which is what Numba's gives for it; anything else
goes to Numba's ``reshape``.
"""
from __future__ import annotations

import functools
import math

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
    """``DeviceNDArray`` whose ``reshape`` skips Numba's dummy array when the view is plainly C."""

    def reshape(self, *newshape, **kws):
        shape = newshape[0] if len(newshape) == 1 and isinstance(newshape[0], (tuple, list)) else newshape
        if kws.get("order", "C") == "C" and len(kws) <= 1 and self.size:
            shape = tuple(int(s) for s in shape)
            itemsize = self.dtype.itemsize
            if (min(shape, default=1) > 0 and math.prod(shape) == self.size
                    and self.strides == c_strides(self.shape, itemsize)):
                return DeviceArray(shape, c_strides(shape, itemsize), self.dtype, gpu_data=self.gpu_data)
        return super().reshape(*newshape, **kws)
