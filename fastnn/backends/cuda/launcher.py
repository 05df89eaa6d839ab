"""A faster host side for launching fastnn's compiled kernels: the same kernel parameters as Numba's
launch, built from a plan made once per compiled kernel.

Numba flattens an array argument into 5 + 2*ndim kernel parameters (meminfo, parent, size,
itemsize, data pointer, shape, strides) and a scalar into one ctypes value. Its ``_Kernel.launch``
does that per argument on every launch through ``wrap_arg(...).to_device(...)``: about 5-10 us of
Python per array (a GEMM has 10 or more arrays; the fused optimiser step 30), more than the driver
takes to queue the kernel. Here, each compiled overload (one per argument types) gets a ``launch``
that

* converts each argument with a converter chosen once from its Numba type;
* keeps an array's parameters on the array object (a device array's shape, strides and memory
  never change; Numba keeps its own view of them the same way);
* reuses the ``LaunchConfig`` of a (grid, block, shared memory) it has seen;

then calls the function Numba's launch calls (``cuda.core``'s ``launch``) with the same arguments.
Numba still types the arguments, picks or compiles the overload and handles streams: only the
marshalling is replaced.

The first launch of each overload builds the parameters both ways and keeps the fast launch only if
they are identical (same values, same ctypes types), so a Numba version that marshals differently
keeps Numba's own launch; so does an overload whose first fast launch raises where Numba's launch
of the same call goes through (if Numba's raises too, the error is the kernel's: it is raised and
the fast launch stays). Arguments the plan does not cover (host arrays, objects exposing
``__cuda_array_interface__``) go through Numba's launch. ``FASTNN_CUDA_FAST_LAUNCH=0`` keeps Numba's
launch for every kernel (to compare the two).
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import inspect
import os
import threading
import warnings

from numba import config as _config

unavailable_reason = None
if _config.ENABLE_CUDASIM:
    unavailable_reason = "Numba's CUDA simulator runs kernels in Python: there are no kernel parameters"
else:
    try:
        from numba.cuda import dispatcher as _numba_dispatcher
        from numba.cuda import types as _types
        from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceNDArray

        from .device_array import DeviceArray as _DeviceArray
        _ARRAY_CLASSES = (_DeviceNDArray, _DeviceArray)   # the same fields, so the same parameters and type
        _LaunchConfig = _numba_dispatcher.LaunchConfig
        _CONFIG_COOPERATIVE = ("is_cooperative" if _numba_dispatcher.CUDA_CORE_GE_1_0
                               else "cooperative_launch")
        _ = (_numba_dispatcher.launch, _numba_dispatcher._Kernel.launch, _numba_dispatcher._Kernel._prepare_args)
        _NUMBA_TYPE = inspect.getattr_static(_DeviceNDArray, "_numba_type_")
        if not isinstance(_NUMBA_TYPE, functools.cached_property):
            raise AttributeError("DeviceNDArray._numba_type_ is not a cached property")
    except (ImportError, AttributeError) as error:     # another numba-cuda: Numba's launch throughout
        unavailable_reason = f"numba-cuda's launch internals differ from the ones this was checked against ({error})"
if os.environ.get("FASTNN_CUDA_FAST_LAUNCH", "1") == "0":
    unavailable_reason = "turned off by FASTNN_CUDA_FAST_LAUNCH=0"

_PARAMS = "_fastnn_kernel_params"     # the key of an array's kernel parameters in its __dict__
_MAX_CONFIGS = 4096
_MAX_TYPES = 4096
_types_by_layout = {}


class TypedTuple(tuple):
    """A tuple of device arrays that carries the Numba type Numba computes for it (``type_arrays``
    makes them; Numba's ``typeof`` answers with ``_numba_type_``, registered below). Numba types a
    plain tuple element by element in Python on every launch: 20 us for 8 arrays, and the fused
    optimiser step passes three such tuples."""


def _register_typed_tuple():
    """Teach the typeof that numba-cuda's dispatcher calls to answer a TypedTuple's type from the
    tuple itself; None (tuples stay plain) where that typeof is not the one this was written for."""
    def _typeof_typed_tuple(value, context):
        return value._numba_type_

    try:
        typeof = _numba_dispatcher.typeof
        module = importlib.import_module(typeof.__module__)
        purpose = module.Purpose.argument
        module.typeof_impl.register(TypedTuple)(_typeof_typed_tuple)
    except (AttributeError, ImportError, TypeError):
        return None
    return lambda value: typeof(value, purpose)


_typeof_argument = _register_typed_tuple() if unavailable_reason is None else None


_tuple_types = {}


def _type_array(a) -> None:
    d = a.__dict__
    if "_numba_type_" not in d:
        key = (a.dtype, a.shape, a.strides)
        t = _types_by_layout.get(key)
        if t is None:
            if len(_types_by_layout) >= _MAX_TYPES:
                _types_by_layout.clear()
            t = _types_by_layout[key] = _NUMBA_TYPE.func(a)
        d["_numba_type_"] = t


def type_arrays(args):
    """``args`` with each device array among them (and inside tuples) that Numba has not typed yet
    given the type Numba's dispatcher would compute for it, from a table keyed by everything that
    type depends on (dtype, shape, strides), and each tuple of device arrays made a ``TypedTuple``
    of the type Numba gives that tuple (keyed by its arrays' types). ``DeviceNDArray._numba_type_``
    builds a new ``types.Array`` per array object, about 7 us; a training step passes kernels some 70
    new arrays (activations, gradients, views), of a few dozen distinct layouts that repeat every step."""
    typed = None
    for i, a in enumerate(args):
        if type(a) in _ARRAY_CLASSES:
            _type_array(a)
        elif type(a) is tuple and a:
            if _typeof_argument is None or not all(type(x) in _ARRAY_CLASSES for x in a):
                type_arrays(a)
                continue
            for x in a:
                _type_array(x)
            key = tuple(x.__dict__["_numba_type_"] for x in a)
            t = _tuple_types.get(key)
            if t is None:
                if len(_tuple_types) >= _MAX_TYPES:
                    _tuple_types.clear()
                t = _tuple_types[key] = _typeof_argument(a)     # what Numba's dispatcher gives the plain tuple
            a = TypedTuple(a)
            a._numba_type_ = t
            if typed is None:
                typed = list(args)
            typed[i] = a
    return args if typed is None else tuple(typed)


def array_params(array):
    """The kernel parameters Numba passes for the device array ``array``: (meminfo, parent, size,
    itemsize, data pointer, *shape, *strides in bytes), computed once per array object."""
    try:
        return array.__dict__[_PARAMS]
    except KeyError:
        # the values of the array's _strided_memory_view_shim, which Numba's marshalling reads, without
        # building the shim (its contiguity flags cost microseconds, and marshalling does not need them)
        params = (0, 0, array.size, array.dtype.itemsize, array.device_ctypes_pointer.value,
                  *array.shape, *array.strides)
        array.__dict__[_PARAMS] = params
        return params


_thread = threading.local()


def current_context():
    """Numba's current CUDA context (``cuda.current_context()``), remembered per thread while it is
    its device's primary context. Numba's own lookup asks the driver for the active context and
    device and takes a lock each time, about 7 us on an H200's host; a training step asked 27 times
    (once per launch for the kernel's handle, and for the caches of device arrays). After
    ``cuda.close()`` the device has no primary context, or a new one, and the next call looks again.
    (One GPU per process, like the rest of the cuda backend: a ``cuda.select_device`` of another
    GPU after fastnn's first kernel is not followed.)"""
    context = getattr(_thread, "context", None)
    if context is None or context.device.primary_context is not context:
        from numba import cuda
        context = _thread.context = cuda.current_context()
    return context


class _NotPlanned(Exception):
    """An argument this module does not marshal: the launch goes through Numba's."""


def _array(value, out):
    if type(value) not in _ARRAY_CLASSES:
        raise _NotPlanned
    out.extend(array_params(value))


def _scalar(ctype):
    def convert(value, out):
        out.append(ctype(value))
    return convert


def _integer(ctype):
    """An integer scalar's converter, keeping one ctypes value per integer it has seen (a kernel's
    integer arguments, sizes and strides, repeat every step: a lookup is half a construction)."""
    seen = {}

    def convert(value, out):
        c = seen.get(value)
        if c is None:
            if len(seen) >= _MAX_CONFIGS:
                seen.clear()
            c = seen[value] = ctype(value)
        out.append(c)
    return convert


def _as_is(value, out):
    out.append(value)


def _tuple(converters):
    def convert(value, out):
        if len(value) != len(converters):
            raise _NotPlanned
        for c, v in zip(converters, value):
            c(v, out)
    return convert


def converter(numba_type):
    """The function appending one argument's kernel parameters to a list, or None for a type it
    does not cover (Numba's launch handles those)."""
    if isinstance(numba_type, _types.Array):
        return _array
    if isinstance(numba_type, _types.Boolean):
        return _as_is
    if isinstance(numba_type, _types.Integer):
        return _integer(getattr(ctypes, f"c_{numba_type}"))
    if numba_type == _types.float32:
        return _scalar(ctypes.c_float)
    if numba_type == _types.float64:
        return _scalar(ctypes.c_double)
    if isinstance(numba_type, _types.BaseTuple):
        parts = [converter(t) for t in numba_type]
        return None if None in parts else _tuple(parts)
    return None


def same_params(a, b) -> bool:
    """Whether two kernel-parameter lists pass the same bytes: equal values, and the same ctypes
    type where a value is a ctypes scalar (an int and a c_int32 of the same value differ)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if type(x) is not type(y):
            return False
        if isinstance(x, ctypes._SimpleCData):
            x, y = x.value, y.value
        if x != y:
            return False
    return True


def numba_params(overload, args, stream=0):
    """The parameter list Numba's own launch builds for ``args`` (``_Kernel._prepare_args``)."""
    params, writeback = [], []
    for t, v in zip(overload.argument_types, args):
        overload._prepare_args(t, v, stream, writeback, params)
    return params


class FastLaunch:
    """``_Kernel.launch`` for one compiled overload, with Numba's signature."""

    def __init__(self, overload):
        self.overload = overload
        self.numba_launch = overload.launch             # the bound method of Numba's class
        self.converters = [converter(t) for t in overload.argument_types]
        self.cooperative = bool(getattr(overload, "cooperative", False))
        self.configs = {}
        self.context = self.kernel = None     # the context the kernel's handle was looked up in, and it
        self.checked = False
        self.disabled = False       # its parameters differed from Numba's, or its first launch
        #                             failed: Numba's launch only
        self.launched = False       # a fast launch went through

    def plannable(self) -> bool:
        o = self.overload
        return None not in self.converters and not getattr(o, "debug", False) and not getattr(o, "extensions", None)

    def params(self, args):
        out = []
        for c, v in zip(self.converters, args):
            c(v, out)
        return out

    def __call__(self, args, griddim, blockdim, stream=0, sharedmem=0):
        if self.disabled:
            return self.numba_launch(args, griddim, blockdim, stream, sharedmem)
        try:
            params = self.params(args)
        except _NotPlanned:
            return self.numba_launch(args, griddim, blockdim, stream, sharedmem)
        if not self.checked:
            self.checked = True
            if not same_params(params, numba_params(self.overload, args, stream)):
                self.disabled = True
                name = getattr(self.overload.py_func, "__name__", self.overload.entry_name)
                warnings.warn(f"fastnn: the kernel parameters of {name} differ from "
                              "Numba's; it keeps Numba's launch", RuntimeWarning, stacklevel=2)
                return self.numba_launch(args, griddim, blockdim, stream, sharedmem)
        key = (griddim, blockdim, sharedmem)
        config = self.configs.get(key)
        if config is None:
            if len(self.configs) >= _MAX_CONFIGS:
                self.configs.clear()
            config = self.configs[key] = _LaunchConfig(grid=griddim, block=blockdim, shmem_size=sharedmem,
                                                       **{_CONFIG_COOPERATIVE: self.cooperative})
        context = current_context()
        if context is not self.context:
            self.kernel, self.context = self.overload._codelibrary.get_cufunc().kernel, context
        kernel = self.kernel
        if self.launched:
            _numba_dispatcher.launch(stream, config, kernel, *params)
            return
        try:
            _numba_dispatcher.launch(stream, config, kernel, *params)
        except Exception as error:  # noqa: BLE001 - whatever it is, Numba's own launch decides below
            failed = error
        else:
            self.launched = True
            return
        # the overload's first fast launch failed: Numba's launch runs it. If that raises too, the error
        # is the kernel's own (a bad configuration, too many resources, an earlier kernel's fault) and
        # the fast launch stays; if it goes through, the fast launch is at fault (a cuda.core that
        # takes its arguments differently) and the overload keeps Numba's launch
        result = self.numba_launch(args, griddim, blockdim, stream, sharedmem)
        self.disabled = True
        name = getattr(self.overload.py_func, "__name__", self.overload.entry_name)
        warnings.warn(f"fastnn: the fast launch of {name} failed ({type(failed).__name__}: {failed}) where "
                      "Numba's launch did not; it keeps Numba's launch", RuntimeWarning, stacklevel=2)
        return result


_accelerated = {}       # dispatcher -> overloads seen


def accelerate(dispatcher) -> None:
    """Give every compiled overload of ``dispatcher`` a :class:`FastLaunch` (once each; a no-op when
    this numba-cuda's internals are not the ones it was checked against)."""
    if unavailable_reason is not None:
        return
    overloads = dispatcher.overloads
    if _accelerated.get(dispatcher) == len(overloads):
        return
    for overload in list(overloads.values()):
        if not isinstance(getattr(overload, "launch", None), FastLaunch):
            fast = FastLaunch(overload)
            if fast.plannable():
                overload.launch = fast
    _accelerated[dispatcher] = len(overloads)
