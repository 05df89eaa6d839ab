"""Check fastnn's launcher (``fastnn/backends/cuda/launcher.py``) against Numba's own marshalling,
without a GPU: run as a script by ``test_fast_launch.py``, with Numba's real classes on fake device
memory (``fastnn.backends.cuda.host_only``), kernels compiled for an H100 and never run.

    python tests/cuda/check_fast_launch.py CHECK

Prints one JSON object, the CHECK's findings:

every_op
    ``workload.exercise_every_op()`` twice: every launch that reaches the fast launch is checked
    against ``_Kernel._prepare_args`` (Numba's launch) on the same arguments, its launch
    configuration against the grid and block the dispatcher was given, and the Numba type of each
    array argument against the one Numba computes.
argument_kinds
    A kernel taking every kind of argument the backend passes (arrays of 0 to 4 dimensions, views
    with zero and negative-free non-contiguous strides, an empty array, integer, float and boolean
    scalars, a tuple of arrays), launched directly with two sets of values, then with a third
    through Numba's dispatcher.
fallbacks
    Arguments the plan does not cover go through Numba's launch, an overload whose parameters
    differ from Numba's is switched back to Numba's launch with a warning, and one whose first
    direct launch fails where Numba's dispatcher's goes through is launched by the dispatcher from
    then on, with a warning.
default_stream
    The direct launch's default stream: Numba's ``_to_core_stream(0)`` (what cuda.core's launch
    takes), made once per thread and context.
contexts
    The kernel's handle is looked up (``get_cufunc``, which asks Numba for the current context) once
    per context: again after ``cuda.close()`` (its device then has another primary context), and
    once on another thread; ``_core.context_key`` follows the same context.
reshape
    ``DeviceArray.reshape`` (the backend's arrays) against Numba's ``DeviceNDArray.reshape`` on C,
    strided, broadcast and empty arrays, to shapes with and without -1, in C and F order: the same
    shape, strides and pointer, or the same exception.
"""
import json
import os
import sys
import warnings

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
os.environ.pop("FASTNN_CUDA_FAST_LAUNCH", None)

import fastnn.backends.cuda.host_only as host_only  # noqa: E402

host_only.install()

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402
from numba.cuda.typing.typeof import typeof  # noqa: E402
from numba.cuda.cudadrv.devicearray import DeviceNDArray  # noqa: E402

import fastnn.backends.cuda as cu  # noqa: E402
from fastnn.backends.cuda import _core, launcher  # noqa: E402


def _config_fields(config):
    return tuple(getattr(config, name) for name in ("grid", "block", "shmem_size"))


def _arrays(args):
    for a in args:
        if isinstance(a, tuple):
            yield from _arrays(a)
        elif isinstance(a, DeviceNDArray):
            yield a


class Checked:
    """Wraps every FastLaunch's launch (through Numba's dispatcher or ``launcher.launch_direct``): the
    parameters and configuration that reach cuda.core's launch are compared with what Numba's launch
    would have built for the same call, and the Numba type of each array argument (given by
    ``launcher.type_arrays`` or the direct launch) with the one Numba computes for it."""

    def __init__(self):
        self.fast, self.mismatches, self.names = 0, [], set()
        self.typed, self.type_mismatches, self.typed_tuples = 0, [], 0
        original = launcher.FastLaunch.launch_params
        self.direct = self.direct_typed = 0

        def call(fast, params, args, griddim, blockdim, stream=None, sharedmem=0, direct=False):
            before = host_only.launched()
            self.direct += direct
            original(fast, params, args, griddim, blockdim, stream, sharedmem, direct)
            assert host_only.launched() == before + 1, "one call of cuda.core's launch per launch"
            kernel, config, params = host_only.launches[-1]
            expected = launcher.numba_params(fast.overload, args, stream)
            wanted = _config_fields(launcher._LaunchConfig(grid=griddim, block=blockdim, shmem_size=sharedmem))
            self.fast += 1
            self.names.add(fast.overload.entry_name)
            if not launcher.same_params(list(params), expected) or _config_fields(config) != wanted:
                self.mismatches.append(f"{fast.overload.entry_name}: {len(params)} vs {len(expected)} parameters")
            for a in _arrays(args):
                given, own = a.__dict__.get("_numba_type_"), launcher._NUMBA_TYPE.func(a)
                self.typed += 1
                if given != own:
                    self.type_mismatches.append(f"{a.shape} {a.strides} {a.dtype}: {given} vs Numba's {own}")
            if direct:      # the overload launched is the one of the arguments' exact Numba types
                self.typed_tuples += sum(isinstance(a, tuple) for a in args)
                self.direct_typed += 1
                owns = tuple(typeof(tuple(a) if isinstance(a, tuple) else a) for a in args)
                if owns != tuple(fast.overload.argument_types):
                    self.type_mismatches.append(f"{fast.overload.entry_name} launched directly for {owns}")

        launcher.FastLaunch.launch_params = call


def every_op():
    import workload
    checked = Checked()
    workload.exercise_every_op()         # compiles; each overload's first launch is Numba's
    first_fast, first_direct = checked.fast, checked.direct
    with cu.count_launches() as launches:
        workload.exercise_every_op()     # every overload has been launched once: all fast
        counted = launches()
    launched = host_only.launched()
    disabled = sorted(o.entry_name for k in launcher._accelerated for o in k.overloads.values()
                      if isinstance(o.launch, launcher.FastLaunch) and o.launch.disabled)
    return {"first_run_fast": first_fast, "second_run_fast": checked.fast - first_fast,
            "second_run_direct": checked.direct - first_direct,
            "second_run_launches": counted, "launched": launched, "kernels": len(checked.names),
            "mismatches": checked.mismatches, "disabled": disabled, "typed": checked.typed,
            "typed_tuples": checked.typed_tuples, "type_mismatches": checked.type_mismatches}


@cuda.jit
def _every_kind(scalar0d, vector, matrix, volume, batch, broadcast, strided, nothing,
                i32, i64, u8, f32, f64, flag, arrays):
    pass


def _arguments(rng):
    base = _core.empty((3, 4, 5, 6), np.float32)
    return (_core.empty((), np.float64), _core.empty((7,), np.int64), _core.empty((2, 3), np.float32),
            _core.empty((2, 3, 4), np.uint8), base,
            _core.as_strided(base, (3, 4, 5, 6), (0, 120, 24, 4)),            # broadcast along axis 0
            _core.as_strided(base, (3, 2, 5), (480, 240, 8)),                  # every other plane and column
            cuda.device_array((0, 3), np.float32),                             # empty: a null pointer
            np.int32(rng.integers(-9, 9)), int(rng.integers(1 << 40)), np.uint8(rng.integers(255)),
            np.float32(rng.standard_normal()), float(rng.standard_normal()), bool(rng.integers(2)),
            (_core.empty((5,), np.float32), _core.empty((6,), np.float32)))


def argument_kinds():
    rng = np.random.default_rng(0)
    checked = Checked()
    for _ in range(3):                   # the first launch compiles and is Numba's, then direct launches
        _core.launch_grid(_every_kind, (2, 1, 1), (32, 1, 1), *_arguments(rng))
    direct = launcher._direct.pop(_every_kind)
    _core.launch_grid(_every_kind, (2, 1, 1), (32, 1, 1), *_arguments(rng))    # through Numba's dispatcher
    launcher._direct[_every_kind] = direct
    return {"fast": checked.fast, "direct": checked.direct, "mismatches": checked.mismatches, "typed": checked.typed,
            "typed_tuples": checked.typed_tuples, "type_mismatches": checked.type_mismatches}


class _OtherArray(DeviceNDArray):
    """A device array of a class the plan does not take (Numba's launch marshals it)."""


def fallbacks():
    a = _core.empty((4, 4), np.float32)
    b = _OtherArray(a.shape, a.strides, a.dtype, gpu_data=a.gpu_data)
    for _ in range(2):
        _core.launch_grid(_pair, 1, 32, a, a)         # compiles, then the fast launch
    fast = next(iter(_pair.overloads.values())).launch
    numba_launches = []
    numba_launch = fast.numba_launch
    fast.numba_launch = lambda *call: (numba_launches.append(call), numba_launch(*call))[1]
    _core.launch_grid(_pair, 1, 32, a, b)             # an array the plan does not take: Numba's launch
    other_class = {"numba_launches": len(numba_launches),
                   "same_params": launcher.same_params(list(host_only.launches[-1][2]),
                                                       launcher.numba_params(fast.overload, (a, b)))}

    # a launcher whose array parameters were wrong: caught on the overload's first fast launch
    _core.launch_grid(_single, 1, 32, _core.empty((3,), np.float32))       # compiles (Numba's launch)
    right = launcher.array_params
    launcher.array_params = lambda array: right(array)[:-1] + (right(array)[-1] + 4,)
    launched = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                c = _core.empty((3,), np.float32)
                _core.launch_grid(_single, 1, 32, c)
                launched.append(launcher.same_params(list(host_only.launches[-1][2]),
                                                     launcher.numba_params(_single_overload(), (c,))))
    finally:
        launcher.array_params = right
    wrong = {"disabled": _single_overload().launch.disabled, "warnings": [str(w.message) for w in caught],
             "launched_numbas_params": launched}

    # a cuda.core launch that refuses the fast launch's call: that overload goes back to Numba's launch
    _core.launch_grid(_failing, 1, 32, a)                # compiles (Numba's launch)
    recorded = launcher._numba_dispatcher.launch
    failing_overload = next(iter(_failing.overloads.values()))

    def refuse_the_fast_launch(stream, config, kernel, *params):
        if sys._getframe(1).f_code is launcher.FastLaunch.launch_params.__code__:
            raise TypeError("launch() got arguments it does not take")
        return recorded(stream, config, kernel, *params)

    launched, caught = _launches_through(refuse_the_fast_launch, _failing, 2, a)
    failed = {"disabled": failing_overload.launch.disabled, "launched": launched, "warnings": caught}

    # an error of the kernel's own (both launches raise it): raised, and the fast launch stays
    _core.launch_grid(_refused, 1, 32, a)                # compiles (Numba's launch)
    refused_overload = next(iter(_refused.overloads.values()))

    def out_of_resources(stream, config, kernel, *params):
        raise RuntimeError("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES")

    launcher._numba_dispatcher.launch = out_of_resources
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                _core.launch_grid(_refused, 1, 32, a)
                raised = None
            except RuntimeError as error:
                raised = str(error)
    finally:
        launcher._numba_dispatcher.launch = recorded
    _core.launch_grid(_refused, 1, 32, a)
    kernel_error = {"raised": raised, "disabled": refused_overload.launch.disabled,
                    "launched_fast_after": refused_overload.launch.launched, "warnings": [str(w.message) for w in caught]}
    # a direct launch that fails where Numba's dispatcher's goes through: launched once, by the dispatcher,
    # and that overload goes through the dispatcher from then on
    _core.launch_grid(_direct_refused, 1, 32, a)         # compiles (Numba's launch)

    def refuse_direct(stream, config, kernel, *params):  # cuda.core's launch, refusing the direct launch's call
        if sys._getframe(1).f_locals.get("direct"):
            raise TypeError("Stream or GraphBuilder expected, got int")
        return recorded(stream, config, kernel, *params)

    launched, caught = _launches_through(refuse_direct, _direct_refused, 3, a)
    direct_failed = {"launched": launched, "warnings": caught, "direct": len(launcher._direct.get(_direct_refused, []))}

    # the same with warnings as errors: launched once (by Numba's launch), then the warning raised
    _core.launch_grid(_direct_refused_strict, 1, 32, a)  # compiles (Numba's launch)
    launcher._numba_dispatcher.launch = refuse_direct
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            before = host_only.launched()
            try:
                _core.launch_grid(_direct_refused_strict, 1, 32, a)
                raised = None
            except RuntimeWarning as warning:
                raised = type(warning).__name__
            direct_failed["strict"] = {"launched": host_only.launched() - before, "raised": raised}
    finally:
        launcher._numba_dispatcher.launch = recorded

    # a steady launch that fails (the thread's context no longer current on it): the remembered context is
    # forgotten and Numba's launch runs it, once
    for _ in range(3):
        _core.launch_grid(_steady, 1, 32, a)             # compiles, then direct launches
    failures = []

    def fail_once(stream, config, kernel, *params):
        if not failures and sys._getframe(1).f_code is launcher.FastLaunch.launch_params.__code__:
            failures.append(1)
            raise RuntimeError("CUDA_ERROR_INVALID_CONTEXT")
        return recorded(stream, config, kernel, *params)

    launcher._numba_dispatcher.launch = fail_once
    try:
        before = host_only.launched()
        _core.launch_grid(_steady, 1, 32, a)
        forgotten = "context" not in launcher._thread.__dict__
        _core.launch_grid(_steady, 1, 32, a)
        steady = {"launched": host_only.launched() - before, "failures": len(failures), "forgotten": forgotten,
                  "looked_up_again": "context" in launcher._thread.__dict__}
    finally:
        launcher._numba_dispatcher.launch = recorded
    return {"other_class": other_class, "wrong": wrong, "failed": failed, "kernel_error": kernel_error,
            "direct_failed": direct_failed, "steady_failure": steady}


def contexts():
    import threading

    from numba.cuda import codegen
    looked_up, asked = [], []
    real_get_cufunc, real_current_context = codegen.CUDACodeLibrary.get_cufunc, cuda.current_context
    codegen.CUDACodeLibrary.get_cufunc = lambda library: (looked_up.append(1), real_get_cufunc(library))[1]
    cuda.current_context = lambda *args: (asked.append(1), real_current_context())[1]
    a = _core.empty((4,), np.float32)
    for _ in range(2):
        _core.launch_grid(_context_probe, 1, 32, a)       # compiles (Numba's launch), then the first fast one
    looked_up.clear(), asked.clear()
    found = {}
    for _ in range(3):
        _core.launch_grid(_context_probe, 1, 32, a)
    key = _core.context_key()
    found["same_context"] = {"handle_lookups": len(looked_up), "context_lookups": len(asked)}
    old = real_current_context()
    new = host_only._Context()                             # cuda.close(): the device's primary context changes
    new.device = type(old.device)()
    new.device.primary_context = new
    old.device.primary_context = None
    real_current_context = lambda *args: new              # noqa: E731
    for _ in range(2):
        _core.launch_grid(_context_probe, 1, 32, a)
    found["after_close"] = {"handle_lookups": len(looked_up), "context_lookups": len(asked),
                            "new_key": _core.context_key() != key, "kernel_context": _probe_launch().context is new}
    thread = threading.Thread(target=lambda: [_core.launch_grid(_context_probe, 1, 32, a) for _ in range(2)])
    thread.start()
    thread.join()
    found["other_thread"] = {"handle_lookups": len(looked_up), "context_lookups": len(asked)}
    codegen.CUDACodeLibrary.get_cufunc = real_get_cufunc
    return found


def default_stream():
    from numba.cuda.cudadrv import driver
    stream = launcher.default_stream()
    return {"numbas_conversion": type(stream) is type(driver._to_core_stream(0)),
            "made_once": stream is launcher.default_stream()}


def _probe_launch():
    return next(iter(_context_probe.overloads.values())).launch


@cuda.jit
def _context_probe(x):
    pass


def _launches_through(fake_launch, kernel, times, a):
    """(launches that reached cuda.core's launch, warnings): ``kernel`` launched ``times`` times on
    ``a`` with ``fake_launch`` standing in for cuda.core's launch (it calls the real one or raises)."""
    real = launcher._numba_dispatcher.launch
    launcher._numba_dispatcher.launch = fake_launch
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            before = host_only.launched()
            for _ in range(times):
                _core.launch_grid(kernel, 1, 32, a)
            return host_only.launched() - before, [str(w.message) for w in caught]
    finally:
        launcher._numba_dispatcher.launch = real


def _single_overload():
    return next(iter(_single.overloads.values()))


@cuda.jit
def _pair(x, y):
    pass


@cuda.jit
def _single(x):
    pass


@cuda.jit
def _failing(x):
    pass


@cuda.jit
def _refused(x):
    pass


@cuda.jit
def _direct_refused(x):
    pass


@cuda.jit
def _direct_refused_strict(x):
    pass


@cuda.jit
def _steady(x):
    pass


def _outcome(reshape):
    try:
        r = reshape()
    except Exception as error:          # noqa: BLE001 -- the outcome compared is the exception's type
        return type(error).__name__
    return _fields(r)


def _fields(r):
    """What an array is to Numba and to users: every attribute Numba's constructor sets, its layout
    flags, its Numba type and its ``__cuda_array_interface__``."""
    return (r.shape, r.strides, r.dtype.str, r.device_ctypes_pointer.value, r.size, r.ndim, r.alloc_size, r.stream,
            sorted(r.flags.items()), r.is_c_contiguous(), r.is_f_contiguous(), str(r._numba_type_),
            sorted(r.__cuda_array_interface__.items()))


def reshape():
    from fastnn.backends.cuda.device_array import DeviceArray, c_strides
    base = _core.empty((2, 3, 4), np.float32)
    views = {"c": ((2, 3, 4), None), "row": ((24,), None), "scalar": ((), None), "ones": ((1, 24, 1), None),
             "strided": ((2, 3, 2), (48, 16, 8)), "broadcast": ((5, 3, 4), (0, 16, 4)),
             "transposed": ((4, 3, 2), (4, 16, 48)), "empty": ((0, 4), (16, 4))}
    targets = [(24,), (4, 6), (2, 12), (6, -1), (-1,), (1, 24), (24, 1), (2, 3, 4), (1, 1, 24), (), (1,), (3, 2, 2),
               (5, 12), (0, 4), (4, 0), (8,), (2, 2), (-1, 4), (2, -1, 4), (-1, -1), (-1, 5), (0, -1), (-1, 0), (1, -1, 1),
               (-2, -12), (-1, 24, 1)]
    compared, differ = 0, []
    for name, (shape, strides) in views.items():
        strides = c_strides(shape, 4) if strides is None else strides
        ours = DeviceArray(shape, strides, np.float32, gpu_data=base.gpu_data)
        numbas = DeviceNDArray(shape, strides, np.float32, gpu_data=base.gpu_data)
        for target in targets:
            for kws in ({}, {"order": "C"}, {"order": "F"}):
                # a list too (the shortcut remembers layouts by the request, and a list is no key): it
                # reshapes as the tuple does, and is compared with Numba's answer for the tuple (Numba
                # raises NotImplementedError for a list equal to the array's shape)
                for form in ("tuple", "args", "list"):
                    call = {"tuple": lambda a: a.reshape(target, **kws), "args": lambda a: a.reshape(*target, **kws),
                            "list": lambda a: a.reshape(list(target), **kws)}[form]
                    a = _outcome(lambda: call(ours))
                    b = _outcome(lambda: numbas.reshape(target, **kws) if form == "list" else call(numbas))
                    compared += 1
                    if a != b:
                        differ.append(f"{name} -> {target} {kws} {form}: {a} vs Numba's {b}")
    fast = type(base.reshape(4, 6)) is DeviceArray and type(base.reshape(24)) is DeviceArray
    # the allocator's and the flat views' constructor against Numba's
    for shape in [(), (1,), (24,), (4, 6), (2, 3, 4), (1, 1, 24), (5, 1), (2, 1, 3, 1)]:
        for dtype in (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.uint8)):
            ours = DeviceArray.c_contiguous(shape, dtype, base.gpu_data)
            numbas = DeviceNDArray(shape, c_strides(shape, dtype.itemsize), dtype, gpu_data=base.gpu_data)
            attributes = sorted(vars(ours)), sorted(set(vars(numbas)) - {"_dummy"})   # before _fields reads any
            a, b = _fields(ours), _fields(numbas)
            compared += 1
            if a != b or attributes[0] != attributes[1]:
                differ.append(f"c_contiguous {shape} {dtype}: {attributes[0]} {a} vs Numba's {attributes[1]} {b}")
    return {"compared": compared, "differ": differ, "stays_a_device_array": fast}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    check = {"every_op": every_op, "argument_kinds": argument_kinds, "fallbacks": fallbacks,
             "contexts": contexts, "default_stream": default_stream, "reshape": reshape}[sys.argv[1]]
    print(json.dumps(check(), default=str))
