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
  the view that way, which is what Numba's gives for it; anything else goes to Numba's ``reshape``.
  The layouts (strides, element counts, a reshape's result) are worked out once per shape and kept
  in tables: a step reshapes some 70 times, to a few dozen layouts that repeat every step;
* ``is_c_contiguous`` answers from the strides when they are C's, without the layout object.
"""
from __future__ import annotations

import functools
import math

from numba.cuda.cudadrv import dummyarray
from numba.cuda.cudadrv.devicearray import DeviceNDArray

from .layout import c_layout, c_strides


_MAX_LAYOUTS = 4096
# (shape, strides, itemsize, requested shape) -> (shape, strides, size) of the C-order reshape of an
# array of that layout, or None where it goes to Numba's (not C-contiguous, no element, another size)
_reshapes = {}
_UNSEEN = object()     # not in _reshapes (whose values may be None)


def _reshaped(shape, strides, itemsize, size, requested):
    """(shape, strides, size) of the C-order reshape to ``requested`` (a shape, possibly with one -1)
    of a C-contiguous array of ``size`` > 0 elements; None when Numba's ``reshape`` must answer (the
    array is not C-contiguous, or ``requested`` does not fit it: Numba raises its error)."""
    if not size or strides != c_strides(shape, itemsize):
        return None
    try:
        new = tuple(map(int, requested))
    except (TypeError, ValueError):
        return None
    elements = math.prod(new)
    if elements < 0 and new.count(-1) == 1 and size % -elements == 0:    # the one extent to work out
        new = tuple([size // -elements if s == -1 else s for s in new])
        elements = size
    if elements != size or (new and min(new) <= 0):
        return None
    return (new, *c_layout(new, itemsize))


def made_c_contiguous(shape, strides, size, dtype, gpu_data):
    """A ``DeviceArray`` of ``shape`` (a tuple of Python ints, all > 0), its C ``strides`` and
    ``size`` elements, of ``dtype`` (a NumPy dtype) on ``gpu_data``: the attributes Numba's
    constructor sets, set as one dict."""
    array = DeviceArray.__new__(DeviceArray)
    array.__dict__ = {"ndim": len(shape), "shape": shape, "strides": strides, "dtype": dtype, "size": size,
                      "alloc_size": size * dtype.itemsize, "gpu_data": gpu_data, "stream": 0}
    return array


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
        return made_c_contiguous(shape, *c_layout(shape, dtype.itemsize), dtype, gpu_data)

    def is_c_contiguous(self):
        return self.strides == c_strides(self.shape, self.dtype.itemsize) or self._dummy.is_c_contig

    def reshape(self, *newshape, **kws):
        if len(newshape) == 1 and isinstance(newshape[0], list):
            # as the tuple: Numba raises NotImplementedError for a list equal to the array's shape
            newshape = (tuple(newshape[0]),)
        if not kws or (len(kws) == 1 and kws.get("order") == "C"):
            requested = newshape[0] if len(newshape) == 1 and isinstance(newshape[0], tuple) else newshape
            dtype = self.dtype
            key = (self.shape, self.strides, dtype.itemsize, requested)
            try:
                made = _reshapes.get(key, _UNSEEN)
                remember = True
            except TypeError:       # an unhashable extent: not remembered (Numba's error follows)
                made, remember = _UNSEEN, False
            if made is _UNSEEN:
                made = _reshaped(self.shape, self.strides, dtype.itemsize, self.size, requested)
                if remember:
                    if len(_reshapes) >= _MAX_LAYOUTS:
                        _reshapes.clear()
                    _reshapes[key] = made
            if made is not None:
                return made_c_contiguous(*made, dtype, self.gpu_data)
        return super().reshape(*newshape, **kws)
