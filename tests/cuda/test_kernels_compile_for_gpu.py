"""Every cuda kernel compiles for a real GPU with the argument types the backend passes it.

The simulator runs a kernel as Python: it never types or compiles it, so a kernel that Numba
cannot compile in nopython mode (a float64 creeping into a float32 kernel, a tuple where an array
is expected, an unsupported NumPy call) passes every simulated test and fails on the first GPU
launch. Here a simulated run of every op and every zoo model's training step records the
argument types of each launch, and ``compile_for_gpu.py`` compiles each (kernel, types) pair to
PTX for an H100 with numba-cuda's NVVM in a process without the simulator: no driver or GPU needed.
The float32 variants are also checked for float64 instructions in their PTX (a float literal or a
Python float argument silently turns a float32 kernel's arithmetic into float64: half the rate on
an H100, 1/64 on consumer GPUs).
Needs the ``cuda`` extra (numba-cuda with the CUDA 12 compiler wheels), which scripts/test.sh installs.
"""
import importlib
import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from numba import types, typeof

import fastnn
import fastnn.device

if fastnn.device.cuda_unavailable_reason():
    pytest.skip(f"the cuda device is not usable: {fastnn.device.cuda_unavailable_reason()}", allow_module_level=True)
import fastnn.backends.cuda as cu  # noqa: E402
from fastnn.backends.cuda import _core  # noqa: E402
from workload import exercise_every_op  # noqa: E402

if not _core.SIMULATOR:
    pytest.skip("on a GPU every launch compiles its kernel for real", allow_module_level=True)

BACKEND_MODULES = ["autotune", "conv", "elementwise", "linear", "loss", "norm", "optim", "pool", "resample"]
COMPILER = Path(__file__).with_name("compile_for_gpu.py")
_CUDA = "fastnn.backends.cuda."
# The kernels whose float32 variants compute in float64 on purpose: long sums accumulated in float64
# (and the once-per-output arithmetic on those sums), with the most float64 instructions their PTX
# had when that was checked (per-element work stayed float32): more means float64 crept into
# their per-element loops. Every other float32 variant must have no float64 instruction at all.
FLOAT64_ON_PURPOSE = {
    (_CUDA + "elementwise", "_reduce_sum"): 24,           # sum / mean: the shared-memory tree
    (_CUDA + "loss", "_cross_entropy"): 12,               # the mean / sum of the items' losses
    (_CUDA + "loss", "_pointwise_loss"): 22,              # (L1, BCE with logits)
    (_CUDA + "loss", "_nll"): 32,
    (_CUDA + "norm", "_stats"): 110,                      # batch norm: per-channel mean and variance
    (_CUDA + "norm", "_grad_sums"): 68,                   # batch norm backward: Σ g, Σ g x_hat (the fused
    #                                                       ReLU mask doubles the g -> float64 conversions)
    (_CUDA + "norm", "_instance_running_stats"): 67,      # per-plane mean and variance
    (_CUDA + "norm", "_standardize_rows"): 57,            # layer / group / instance norm: per-row statistics
    (_CUDA + "norm", "_standardize_rows_backward"): 44,   # per-row Σ g, Σ g x_hat
}


def _kernels():
    """{id(kernel): (module, name, dtype)} for every kernel of the backend (not device functions)."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    found = {}
    for short in BACKEND_MODULES:
        module = importlib.import_module(f"fastnn.backends.cuda.{short}")
        for name, value in vars(module).items():
            if isinstance(value, FakeCUDAKernel) and not value._device and value.__module__ == module.__name__:
                found[id(value)] = (module.__name__, name, None)
    linear = importlib.import_module("fastnn.backends.cuda.linear")
    # the GEMM is made per dtype, transpose flags, B's kind and tiling by linear._kernel; the backend uses
    # these five variants. A launch in the simulator (with its tilings) stands for the same variant with
    # the GPU's tiling of the same rank, which is what gets compiled
    for simulated, gpu in zip(linear.TILINGS, linear.gpu_tilings("")):
        for dtype in ("float32", "float64"):
            for ta, tb, windowed in ((False, False, False), (False, True, False), (True, False, False),
                                     (False, False, True), (False, True, True)):
                found[id(linear._kernel(dtype, ta, tb, windowed, simulated))] = (
                    linear.__name__, "_kernel", (dtype, ta, tb, windowed, gpu))
    return found


def _numba_type(value):
    """The type Numba's CUDA dispatcher gives an argument (a device array is typed by its layout)."""
    if hasattr(value, "_ary"):
        host = value._ary
        layout = "C" if host.flags.c_contiguous else "F" if host.flags.f_contiguous else "A"
        return types.Array(typeof(host.dtype.type(0)), host.ndim, layout)
    if isinstance(value, tuple):
        return types.BaseTuple.from_types([_numba_type(v) for v in value])
    return typeof(value)


@pytest.fixture(scope="module")
def recorded_signatures():
    """{(module, kernel, dtype): {argument types}} of every launch of ``exercise_every_op``."""
    kernels, recorded = _kernels(), {}
    check = _core._check_args

    def record(kernel, args):
        check(kernel, args)
        recorded.setdefault(kernels[id(kernel)], set()).add(tuple(_numba_type(a) for a in args))

    _core._check_args = record
    try:
        with cu.count_launches(dry_run=True):      # types do not depend on values: skip the slow simulation
            exercise_every_op()
    finally:
        _core._check_args = check
    return kernels, recorded


def test_every_kernel_is_launched_by_the_recorded_run(recorded_signatures):
    kernels, recorded = recorded_signatures
    missed = sorted(set(kernels.values()) - set(recorded))
    assert not missed, f"kernels no op of exercise_every_op launches (extend it): {missed}"


needs_compiler = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None,
    reason="needs the cuda extra (numba-cuda and NVIDIA's compiler wheels): pip install -e '.[cuda]'")


@pytest.fixture(scope="module")
def compiled(recorded_signatures, tmp_path_factory):
    """compile_for_gpu.py's report on every recorded (kernel, signature); see its docstring."""
    _, recorded = recorded_signatures
    path = tmp_path_factory.mktemp("ptx") / "signatures.pkl"
    path.write_bytes(pickle.dumps(recorded))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING"] = "1"
    here = str(Path(fastnn.__file__).resolve().parent.parent)          # the fastnn this test imported
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, str(COMPILER), str(path)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@needs_compiler
def test_every_kernel_compiles_to_ptx_for_the_types_it_is_launched_with(recorded_signatures, compiled):
    _, recorded = recorded_signatures
    assert not compiled["failures"], "\n".join(" ".join(f) for f in compiled["failures"])
    assert compiled["compiled"] == sum(len(s) for s in recorded.values())


@needs_compiler
def test_float32_kernels_compute_in_float32(compiled):
    """No float64 instruction in the PTX of a float32 variant, but in the kernels that accumulate in
    float64 on purpose (FLOAT64_ON_PURPOSE), and there no more than they had."""
    counted = compiled["float64_instructions"]
    most = {}
    for module, name, _, count in counted:
        most[module, name] = max(count, most.get((module, name), 0))
    assert most.get((_CUDA + "elementwise", "_unary")) == 0       # float32 variants were counted,
    assert most.get((_CUDA + "elementwise", "_reduce_sum"), 0) > 0  # and float64 is seen where it is
    offenders = [f"{module.rsplit('.', 1)[-1]}.{name}: {count} float64 instructions for {sig}"
                 for module, name, sig, count in counted if count > FLOAT64_ON_PURPOSE.get((module, name), 0)]
    assert not offenders, "float32 kernels computing in float64:\n" + "\n".join(offenders)


@needs_compiler
def test_the_gemm_keeps_two_blocks_per_multiprocessor_without_spilling(compiled):
    """Every float32 GEMM signature of every GPU tiling assembles (ptxas, sm_90) within its register
    cap and spills nothing: two blocks of NT threads (256 threads and 128 registers, or 128 and 255)
    fit a multiprocessor's 65536 registers."""
    from fastnn.backends.cuda import linear
    if compiled["registers"] is None:
        pytest.skip("no ptxas (the nvidia-cuda-nvcc wheel of the cuda extra)")
    gemms = [r for r in compiled["registers"] if r[:2] == [linear.__name__, "_kernel"]]
    assert gemms and all("float32" in sig for _, _, sig, _, _ in gemms), "the float32 GEMM alone is capped"
    assert len(gemms) >= 5 * len(linear.GPU_TILINGS)
    caps = {tiling.registers for tiling in linear.gpu_tilings("")}
    for module, name, sig, registers, spilled in gemms:
        assert registers <= max(caps) and spilled == 0, (sig, registers, spilled)
    for tiling in linear.gpu_tilings(""):
        assert 2 * tiling.NT * tiling.registers <= 65536

