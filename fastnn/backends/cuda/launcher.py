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
Once an overload is compiled, ``launch_direct`` launches it without Numba's dispatcher when the
arguments' Numba types are exactly the overload's (checked by straight-line code written per
overload, ``_direct_params``): the overload Numba would pick. Anything else (new types, which Numba
compiles; bad arguments, which Numba refuses) goes through Numba's dispatcher.

The first launch of each overload builds the parameters both ways and keeps the fast launch only if
they pass the same bytes (``same_params``: the same values packed the same way, compared as packed
by ``cuda.core`` where its ``ParamHolder`` can be read), so a Numba version that marshals differently
keeps Numba's own launch; so does an overload whose first fast (or first direct) launch raises where
Numba's launch of the same call goes through (if Numba's raises too, the error is the kernel's: it is
raised and the fast launch stays). No kernel is launched twice: a launch that raises launched nothing. Arguments the plan does not cover (host arrays, objects exposing
``__cuda_array_interface__``) go through Numba's launch. ``FASTNN_CUDA_FAST_LAUNCH=0`` keeps Numba's
launch for every kernel (to compare the two).
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import inspect
import numbers
import os
import struct
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
        from numba.cuda.cudadrv.driver import _to_core_stream
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


def type_arrays(args) -> None:
    """Give each device array among ``args`` (and inside tuples) that Numba has not typed yet the type
    Numba's dispatcher would compute for it, from a table keyed by everything that type depends on
    (dtype, shape, strides). ``DeviceNDArray._numba_type_`` builds a new ``types.Array`` per array
    object, about 7 us; a training step passes kernels some 70 new arrays (activations, gradients,
    views), of a few dozen distinct layouts that repeat every step."""
    for a in args:
        if type(a) in _ARRAY_CLASSES:
            _type_array(a)
        elif type(a) is tuple:
            type_arrays(a)


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


def forget_context() -> None:
    """Forget the context and stream remembered for this thread (looked up again on next use)."""
    _thread.__dict__.pop("context", None)
    _thread.__dict__.pop("stream", None)


def _name(overload):
    """A compiled overload's kernel name (one loaded from Numba's disk cache has no ``py_func``)."""
    return getattr(getattr(overload, "py_func", None), "__name__", None) or overload.entry_name


class _DirectLaunchFailed(Exception):
    """A direct launch that failed before anything was launched (its cause is the error)."""


def default_stream():
    """The default stream as Numba's dispatcher hands it to an overload's ``launch`` (its
    ``_to_core_stream(0)``, a ``cuda.core`` stream, which ``cuda.core``'s launch requires: it
    refuses a plain 0), made once per thread and context."""
    context = current_context()
    made = getattr(_thread, "stream", None)
    if made is None or made[0] is not context:
        made = _thread.stream = (context, _to_core_stream(0))
    return made[1]


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
        out.append(_seen_integer(seen, ctype, value) if c is None else c)
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


def _int64(value, out):
    out.append(int(value))


def _float64(value, out):
    out.append(float(value))


def converter(numba_type):
    """The function appending one argument's kernel parameters to a list, or None for a type it
    does not cover (Numba's launch handles those). An int64 or float64 scalar is passed as a Python
    int or float, which ``cuda.core``'s launch packs as the same 8 bytes as Numba's c_int64 or
    c_double (``same_params``) in a fifteenth of the time (0.3 us a ctypes value on this host): Numba
    itself passes an array's sizes, shape and strides (int64 parameters) as Python ints."""
    if isinstance(numba_type, _types.Array):
        return _array
    if isinstance(numba_type, _types.Boolean):
        return _as_is
    if numba_type == _types.int64:
        return _int64
    if isinstance(numba_type, _types.Integer):
        return _integer(getattr(ctypes, f"c_{numba_type}"))
    if numba_type == _types.float32:
        return _scalar(ctypes.c_float)
    if numba_type == _types.float64:
        return _float64
    if isinstance(numba_type, _types.BaseTuple):
        parts = [converter(t) for t in numba_type]
        return None if None in parts else _tuple(parts)
    return None


def _packed_as(value):
    """(how ``cuda.core``'s launch packs ``value``, the value): a Python int as a 64-bit integer, like
    a c_int64, a Python float as a double, like a c_double (both 8 bytes); any other ctypes scalar
    as its own type."""
    kind = type(value)
    if kind is int or kind is ctypes.c_int64:
        return "int64", int(value if kind is int else value.value)
    if kind is float or kind is ctypes.c_double:        # as bytes: a NaN equals itself
        return "float64", struct.pack("<d", value if kind is float else value.value)
    if isinstance(value, ctypes._SimpleCData):
        return kind, bytes(value)
    return kind, value


def param_holder():
    """``cuda.core``'s packing of a launch's parameters (``ParamHolder``), or None where this
    cuda.core keeps it elsewhere."""
    for module in ("cuda.core._kernel_arg_handler", "cuda.core.experimental._kernel_arg_handler"):
        try:
            return importlib.import_module(module).ParamHolder
        except (ImportError, AttributeError):
            continue
    return None


_ParamHolder = param_holder() if unavailable_reason is None else None


def _packed_bytes(params, sizes):
    """The bytes ``cuda.core`` packs for each of ``params`` (the first ``sizes[i]`` of its slot),
    or None where its ``ParamHolder`` cannot be read."""
    holder = _ParamHolder(params) if _ParamHolder is not None else None
    address = getattr(holder, "ptr", None)
    if not isinstance(address, int) or not address:
        return None
    slots = (ctypes.c_void_p * len(params)).from_address(address)
    return [ctypes.string_at(slot, size) for slot, size in zip(slots, sizes)]


def same_params(a, b) -> bool:
    """Whether two kernel-parameter lists pass the same bytes: equal values packed the same way
    (``_packed_as``: an int and a c_int64 of the same value are the same 8 bytes, an int and a
    c_int32 are not), and, where ``cuda.core``'s packing can be read, the same bytes packed (each
    slot as long as ``b``'s parameter: a ctypes scalar's size, 1 for a bool, else 8)."""
    if len(a) != len(b) or not all(_packed_as(x) == _packed_as(y) for x, y in zip(a, b)):
        return False
    sizes = [ctypes.sizeof(y) if isinstance(y, ctypes._SimpleCData) else 1 if type(y) is bool else 8 for y in b]
    try:
        packed_a, packed_b = _packed_bytes(a, sizes), _packed_bytes(b, sizes)
    except (TypeError, ValueError):     # parameters this cuda.core does not pack: its launch will say
        return True
    return packed_a == packed_b


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
        self.direct = _direct_params(overload.argument_types)   # None: only through Numba's dispatcher
        self.direct_launched = False    # a direct launch (launch_direct) went through

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
        return self.launch_params(params, args, griddim, blockdim, stream, sharedmem)

    def launch_params(self, params, args, griddim, blockdim, stream=None, sharedmem=0, direct=False):
        """Launch with the kernel parameters ``params`` of ``args`` (grid and block as 3-tuples) on
        ``stream``, a ``cuda.core`` stream as Numba's dispatcher gives its overloads' ``launch`` (None:
        the default stream, made as Numba makes it). ``direct``: called by ``launch_direct``, whose
        first launch of this overload raises _DirectLaunchFailed where the launch itself fails."""
        if stream is None:
            stream = default_stream()
        if not self.checked:
            self.checked = True
            if not same_params(params, numba_params(self.overload, args, stream)):
                self.disabled = True
                warnings.warn(f"fastnn: the kernel parameters of {_name(self.overload)} differ from "
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
        if self.launched and (not direct or self.direct_launched):
            try:
                _numba_dispatcher.launch(stream, config, kernel, *params)
            except Exception:       # noqa: BLE001 - nothing was launched (a launch that is queued returns)
                # the thread's remembered context may no longer be current on it (a `with cuda.gpus[i]`
                # that pushed it has popped it): forget it, and let Numba's launch (which makes its
                # context current) run it, or raise the kernel's own error
                forget_context()
                self.context = None
                return self.numba_launch(args, griddim, blockdim, _to_core_stream(0), sharedmem)
            return
        try:
            _numba_dispatcher.launch(stream, config, kernel, *params)
        except Exception as error:  # noqa: BLE001 - whatever it is, Numba's own launch decides below
            if direct:
                raise _DirectLaunchFailed(error) from error      # nothing launched: launch_direct decides
            failed = error
        else:
            self.launched = True
            self.direct_launched = self.direct_launched or direct
            return
        # the overload's first fast launch failed: Numba's launch runs it. If that raises too, the error
        # is the kernel's own (a bad configuration, too many resources, an earlier kernel's fault) and
        # the fast launch stays; if it goes through, the fast launch is at fault (a cuda.core that
        # takes its arguments differently) and the overload keeps Numba's launch
        result = self.numba_launch(args, griddim, blockdim, stream, sharedmem)
        self.disabled = True
        warnings.warn(f"fastnn: the fast launch of {_name(self.overload)} failed ({type(failed).__name__}: {failed}) where "
                      "Numba's launch did not; it keeps Numba's launch", RuntimeWarning, stacklevel=2)
        return result


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _direct_params(argument_types):
    """A function giving, for arguments whose Numba types are exactly ``argument_types`` (what
    Numba's dispatcher would type them as: a Python int is int64, a Python float float64, a NumPy
    scalar its own type, a device array its ``_numba_type_``), the same kernel parameters as
    ``FastLaunch.params``, and raising _NotPlanned for any other arguments. Written out per overload
    as straight-line Python (a loop over converters costs a call per argument). None when an
    argument type has no such check (that overload is launched through Numba's dispatcher only)."""
    import numpy as np
    import sys
    names = {"NP": _NotPlanned, "ARRAYS": _ARRAY_CLASSES, "type_of": _type_of,
             "launcher": sys.modules[__name__], "PARAMS": _PARAMS, "LO": _INT64[0], "HI": _INT64[1],
             "seen_integer": _seen_integer}
    body, out = [], []

    def array(value, expected, tag):
        names[f"T{tag}"] = expected
        body.extend([f"    if type({value}) not in ARRAYS: raise NP",
                     f"    d = {value}.__dict__",
                     "    t = d.get('_numba_type_')",
                     f"    if t is None: t = type_of({value})",
                     f"    if t is not T{tag}: raise NP",
                     f"    p{tag} = d.get(PARAMS)",
                     f"    if p{tag} is None: p{tag} = launcher.array_params({value})"])
        out.append(f"*p{tag}")

    for i, t in enumerate(argument_types):
        v = f"a{i}"
        if isinstance(t, _types.Array):
            array(v, t, i)
        elif isinstance(t, _types.BaseTuple) and len(t) and all(isinstance(e, _types.Array) for e in t):
            body.append(f"    if type({v}) is not tuple or len({v}) != {len(t)}: raise NP")
            for j, e in enumerate(t):
                array(f"{v}[{j}]", e, f"{i}_{j}")
        elif isinstance(t, _types.Boolean):
            body.append(f"    if type({v}) is not bool: raise NP")
            out.append(v)
        elif t == _types.int64:         # a Python int (as cuda.core packs it: see converter) or np.int64
            body.extend([f"    if type({v}) is not int:",
                         f"        if type({v}) is not np.int64: raise NP",
                         f"        {v} = int({v})",
                         f"    elif not LO <= {v} <= HI: raise NP"])
            out.append(v)
        elif isinstance(t, _types.Integer):
            names[f"C{i}"], names[f"S{i}"], names[f"N{i}"] = getattr(ctypes, f"c_{t}"), {}, getattr(np, str(t))
            body.append(f"    if type({v}) is not N{i}: raise NP")
            body.append(f"    c{i} = S{i}.get({v})")
            body.append(f"    if c{i} is None: c{i} = seen_integer(S{i}, C{i}, {v})")
            out.append(f"c{i}")
        elif t == _types.float64:       # a Python float or np.float64, passed as a Python float
            body.extend([f"    if type({v}) is not float:",
                         f"        if type({v}) is not np.float64: raise NP",
                         f"        {v} = float({v})"])
            out.append(v)
        elif t == _types.float32:
            body.append(f"    if type({v}) is not np.float32: raise NP")
            out.append(f"c_float({v})")
        else:
            return None
    names.update(np=np, c_float=ctypes.c_float)
    n = len(argument_types)
    unpack = f"    {''.join(f'a{i}, ' for i in range(n))}= args" if n else ""
    source = "\n".join(["def direct(args):", f"    if len(args) != {n}: raise NP", unpack, *body,
                        f"    return [{', '.join(out)}]"])
    exec(compile(source, "<fastnn launcher: direct parameters>", "exec"), names)
    return names["direct"]


def _type_of(array):
    _type_array(array)
    return array.__dict__["_numba_type_"]


def _seen_integer(seen, ctype, value):
    """``ctype(value)``, now remembered in ``seen`` (cleared when full)."""
    if len(seen) >= _MAX_CONFIGS:
        seen.clear()
    c = seen[value] = ctype(value)
    return c


_dims = {}


def _dims3(dims):
    """A grid or block (an int, or a tuple of 1 to 3 ints) as Numba's launch passes it on: 3 ints,
    remembered per value given; None for anything else (Numba's dispatcher says what is wrong)."""
    kind = type(dims)
    if kind is int or (kind is tuple and all(type(d) is int for d in dims)):   # (2 and 2.0 are one key)
        found = _dims.get(dims)
        if found is not None:
            return found
    parts = tuple(dims) if kind in (tuple, list) else (dims,)
    if not 1 <= len(parts) <= 3 or not all(isinstance(d, numbers.Integral) for d in parts):
        return None
    found = tuple(int(d) for d in parts) + (1,) * (3 - len(parts))
    if kind is int or kind is tuple:
        if len(_dims) >= _MAX_CONFIGS:
            _dims.clear()
        _dims[dims] = found
    return found


def launch_direct(dispatcher, args, griddim, blockdim) -> bool:
    """Launch ``dispatcher`` on ``args`` without Numba's dispatcher when one of its compiled overloads
    takes exactly their types (the overload Numba's dispatcher would pick: it looks for the exact
    types first): the launch of that overload's FastLaunch, with the parameters ``params`` would
    build. False (nothing launched) otherwise: the caller goes through Numba's dispatcher, which
    types, compiles or raises."""
    fasts = _direct.get(dispatcher)
    if not fasts or dispatcher._launch_config_sensitive:
        return False
    grid, block = _dims3(griddim), _dims3(blockdim)
    if grid is None or block is None:
        return False
    for fast in fasts:
        try:
            params = fast.direct(args)
        except _NotPlanned:
            continue
        if fast.disabled:
            return False
        try:
            fast.launch_params(params, args, grid, block, None, 0, True)
        except _DirectLaunchFailed as failed:
            # the overload's first direct launch failed, and nothing was launched. Numba's own launch runs
            # it (it looks up the context and the kernel's handle itself): if that raises too, the error
            # is the kernel's own (raised; the direct launch stays), else the direct launch is at fault
            # and the overload goes through Numba's dispatcher from now on
            error = failed.__cause__
            fast.numba_launch(args, grid, block, _to_core_stream(0), 0)
            fast.direct = None
            _direct[dispatcher] = [f for f in fasts if f is not fast]
            warnings.warn(f"fastnn: the direct launch of {_name(fast.overload)} failed ({type(error).__name__}: "
                          f"{error}) where Numba's launch did not; it goes through Numba's dispatcher",
                          RuntimeWarning, stacklevel=2)
        return True
    return False


_direct = {}            # dispatcher -> the FastLaunch of each overload launchable directly
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
    if getattr(dispatcher, "_launch_config_sensitive", None) is False and not getattr(dispatcher, "extensions", None):
        _direct[dispatcher] = [o.launch for o in overloads.values()
                               if isinstance(o.launch, FastLaunch) and o.launch.direct is not None]
