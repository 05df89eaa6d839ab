"""fastnn's launcher passes every kernel exactly the parameters Numba's own launch would.

The launcher (``fastnn/backends/cuda/launcher.py``) replaces Numba's per-launch argument
marshalling, which only a real GPU launch exercises: the simulator runs kernels in Python. So
``check_fast_launch.py`` runs in a process with Numba's real classes on fake device memory
(``fastnn.backends.cuda.host_only``; no driver or GPU needed), compiles the kernels for an H100 and
compares, launch by launch, what reaches ``cuda.core``'s launch with what ``_Kernel._prepare_args``
builds. Needs the ``cuda`` extra (numba-cuda and NVIDIA's compiler wheels).
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None,
    reason="needs the cuda extra (numba-cuda and NVIDIA's compiler wheels): pip install -e '.[cuda]'")

CHECK = Path(__file__).with_name("check_fast_launch.py")


def _check(name):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "FASTNN_CUDA_FAST_LAUNCH")}
    here = str(Path(fastnn.__file__).resolve().parent.parent)          # the fastnn this test imported
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, str(CHECK), name], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_every_launch_of_every_kernel_gets_numbas_parameters_and_types():
    found = _check("every_op")
    assert found["mismatches"] == [] and found["disabled"] == []
    assert found["type_mismatches"] == [] and found["typed"] > 5000
    assert found["typed_tuples"] > 10        # the fused optimisers' tuples of arrays, launched directly
    # every overload's first launch compiles it through Numba's launch; after that all are fast
    assert found["second_run_fast"] == found["second_run_launches"] > 2000
    assert found["second_run_direct"] == found["second_run_launches"]     # none through Numba's dispatcher
    assert found["first_run_fast"] > 0.9 * found["second_run_launches"]
    assert found["launched"] == 2 * found["second_run_launches"]     # each launch reached cuda.core's once
    assert found["kernels"] >= 70


def test_every_kind_of_argument_is_marshalled_as_numba_does():
    """0-d to 4-d arrays, a broadcast and a strided view, an empty array, int32 / int64 / uint8 /
    float32 / float64 / bool scalars and a tuple of arrays, with two sets of values launched directly
    (launcher.launch_direct) and a third through Numba's dispatcher."""
    assert _check("argument_kinds") == {"fast": 3, "direct": 2, "mismatches": [], "typed": 3 * 10,
                                        "typed_tuples": 2, "type_mismatches": []}


def test_unplanned_arguments_differing_parameters_and_a_failing_launch_fall_back_to_numbas_launch():
    found = _check("fallbacks")
    assert found["other_class"] == {"numba_launches": 1, "same_params": True}
    wrong = found["wrong"]
    assert wrong["disabled"] is True and wrong["launched_numbas_params"] == [True, True]
    assert len(wrong["warnings"]) == 1 and "keeps Numba's launch" in wrong["warnings"][0]
    # a first fast launch that raises: run by Numba's launch instead, and so are the next ones
    failed = found["failed"]
    assert failed["disabled"] is True and failed["launched"] == 2
    assert len(failed["warnings"]) == 2 and "direct launch of _failing failed (TypeError" in failed["warnings"][0]
    assert "fast launch of _failing failed (TypeError" in failed["warnings"][1]      # then through the dispatcher
    # an error of the kernel's own, which Numba's launch raises too: raised, no warning, the fast launch stays
    kernel_error = found["kernel_error"]
    assert kernel_error == {"raised": "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "disabled": False,
                            "launched_fast_after": True, "warnings": []}
    # a first direct launch that raises where Numba's dispatcher's goes through (as the H200 refused a
    # stream of 0): launched once each time, by the dispatcher from then on
    direct_failed = found["direct_failed"]
    assert direct_failed["launched"] == 3 and direct_failed["direct"] == 0
    assert len(direct_failed["warnings"]) == 1 and "direct launch of _direct_refused failed" in direct_failed["warnings"][0]
    assert direct_failed["strict"] == {"launched": 1, "raised": "RuntimeWarning"}    # -W error: never launched twice
    # a steady launch that fails (its thread's remembered context no longer current): run once by Numba's
    # launch, the context looked up again
    assert found["steady_failure"] == {"launched": 2, "failures": 1, "forgotten": True, "looked_up_again": True}


def test_every_launch_reaches_cuda_core_with_a_cuda_core_stream():
    """cuda.core's launch refuses a plain 0 for the default stream (what Numba's dispatcher converts
    with _to_core_stream): host_only's launch refuses it the same way, so the every-op run above would
    fail on it; here the direct launch's default stream is checked to be that conversion's."""
    assert _check("default_stream") == {"numbas_conversion": True, "made_once": True}


def test_a_kernels_handle_is_looked_up_once_per_context_and_thread():
    """Numba's context lookup costs about 7 us on a GPU's host: the launcher remembers the context
    per thread (launcher.current_context) and each kernel's handle per context."""
    assert _check("contexts") == {
        "same_context": {"handle_lookups": 0, "context_lookups": 0},
        "after_close": {"handle_lookups": 1, "context_lookups": 1, "new_key": True, "kernel_context": True},
        "other_thread": {"handle_lookups": 1, "context_lookups": 2}}     # the same context there


def test_the_backends_arrays_reshape_as_numbas_do():
    """DeviceArray.reshape's shortcut for C views gives Numba's shape, strides and pointer, and
    anything else Numba's result or exception (``check_fast_launch.py reshape``)."""
    found = _check("reshape")
    assert found["differ"] == [] and found["compared"] > 500 and found["stays_a_device_array"]


def test_grids_and_blocks_are_passed_on_as_three_ints_as_numba_does():
    from fastnn.backends.cuda import launcher
    assert launcher._dims3(5) == (5, 1, 1) and launcher._dims3((2, 3)) == (2, 3, 1)
    assert launcher._dims3([4, 1, 2]) == (4, 1, 2) and launcher._dims3(np.int64(7)) == (7, 1, 1)
    for bad in ((1, 2, 3, 4), (), 2.0, (1, None), "8", (2.0, 1)):
        assert launcher._dims3(bad) is None       # left to Numba's dispatcher, which raises
    assert launcher._dims3(2) == (2, 1, 1) and launcher._dims3(2.0) is None     # 2 and 2.0: one dict key


def test_a_kernel_loaded_from_numbas_disk_cache_is_named_by_its_entry_name():
    from fastnn.backends.cuda import launcher

    class Cached:           # what _Kernel._rebuild gives: no py_func
        entry_name = "_Z6kernel"
    assert launcher._name(Cached()) == "_Z6kernel"


def test_an_int_or_float_parameter_is_the_same_as_numbas_ctypes_64_bit_value_and_nothing_else():
    import ctypes

    from fastnn.backends.cuda import launcher
    nan = float("nan")
    assert launcher.same_params([nan], [ctypes.c_double(nan)])                        # compared as bytes
    assert launcher.same_params([ctypes.c_float(nan)], [ctypes.c_float(nan)])
    assert launcher.same_params([5, -2, 2.5, True, ctypes.c_float(1.5)],
                                [ctypes.c_int64(5), ctypes.c_int64(-2), ctypes.c_double(2.5), True, ctypes.c_float(1.5)])
    for ours, numbas in (([5], [ctypes.c_int32(5)]), ([2.5], [ctypes.c_float(2.5)]), ([1], [ctypes.c_double(1.0)]),
                         ([6], [ctypes.c_int64(5)]), ([1], [True]), ([5], [ctypes.c_int64(5), 1])):
        assert not launcher.same_params(ours, numbas), (ours, numbas)
