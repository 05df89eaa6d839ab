"""Compile cuda kernels for a real GPU without one: run as a script by
``test_kernels_compile_for_gpu.py`` (outside the simulator, which never compiles anything).

    python tests/cuda/compile_for_gpu.py SIGNATURES.pkl

SIGNATURES.pkl holds ``{(module, kernel, factory arguments or None): {argument-type tuple, ...}}`` as recorded
from the launches of a simulated run; ``kernel`` names a module-level ``@cuda.jit`` kernel, or
with factory arguments (a dtype, or a tuple) the function that makes the kernel for them. Each signature is compiled to
PTX for compute capability 9.0 (an H100) by numba-cuda and NVVM, which need no driver. Prints one
JSON object: ``{"compiled": n, "failures": [[module, kernel, signature, error], ...],
"float64_instructions": [[module, kernel, signature, count], ...], "registers": [[module, kernel,
signature, registers, spilled bytes], ...] or null}``: float64_instructions for every float32 signature
(each array argument float32 or an integer): how many float64 instructions its PTX has; registers for
every kernel declared with ``max_registers``: what ``ptxas -v`` (from NVIDIA's nvcc wheel; null
without it) reports when it assembles the PTX for sm_90 under that cap, as the driver would.
"""
import importlib
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"

from numba import cuda, types  # noqa: E402
import numba.cuda.dispatcher as cuda_dispatcher  # noqa: E402

COMPUTE_CAPABILITY = (9, 0)


class _H100:
    """What a kernel's device functions ask of the current device when they are compiled."""
    compute_capability = COMPUTE_CAPABILITY


# A device function called from a kernel is compiled for the current device's compute capability;
# there is none here, so answer for the GPU the project targets.
cuda_dispatcher.get_current_device = _H100

# A float64 instruction: arithmetic, a comparison or a conversion whose opcode names the .f64 type
# (add.f64, fma.rn.f64, setp.lt.f64, cvt.f64.f32, ...), optionally predicated (@%p1, @!%p1). Only the
# opcode is matched: %f64 is just the name of a float32 register.
FLOAT64_INSTRUCTION = re.compile(r"^\s*(?:@!?%p\d+\s+)?"
                                 r"(?:add|sub|mul|fma|div|sqrt|rcp|ex2|lg2|min|max|neg|abs|setp|cvt)(?:\.\w+)*\.f64\b")


def _arrays(sig):
    for t in sig:
        if isinstance(t, types.BaseTuple):
            yield from _arrays(t)
        elif isinstance(t, types.Array):
            yield t


def is_float32(sig):
    """Every array argument (also inside tuples) is float32 or an integer."""
    return all(a.dtype == types.float32 or isinstance(a.dtype, types.Integer) for a in _arrays(sig))


def float64_instructions(ptx):
    return sum(1 for line in ptx.splitlines() if FLOAT64_INSTRUCTION.match(line))


def ptxas_path():
    """NVIDIA's PTX assembler from the nvidia-cuda-nvcc wheel, or None."""
    spec = importlib.util.find_spec("nvidia.cuda_nvcc")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "ptxas"
        if candidate.is_file():
            return candidate
    return None


PTXAS_INFO = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads.*?Used (\d+) registers", re.S)


def assembled_registers(ptxas, ptx, max_registers):
    """(registers per thread, bytes spilled) of ``ptx`` assembled for sm_90 under the cap."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        run = subprocess.run([str(ptxas), "-v", "--gpu-name", f"sm_{COMPUTE_CAPABILITY[0]}{COMPUTE_CAPABILITY[1]}",
                              "--maxrregcount", str(max_registers), str(source), "-o", str(Path(folder) / "k.cubin")],
                             capture_output=True, text=True, check=True)
    stores, loads, registers = PTXAS_INFO.search(run.stderr).groups()
    return int(registers), int(stores) + int(loads)


def main(path):
    with open(path, "rb") as f:
        signatures = pickle.load(f)
    compiled, failures, float64 = 0, [], []
    ptxas = ptxas_path()
    registers = [] if ptxas else None
    for (module, name, dtype), sigs in sorted(signatures.items(), key=str):
        target = getattr(importlib.import_module(module), name)
        kernel = target(*dtype) if isinstance(dtype, tuple) else target(dtype) if dtype is not None else target
        for sig in sorted(sigs, key=str):
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=COMPUTE_CAPABILITY)
                compiled += 1
            except Exception as error:  # noqa: BLE001 - every failure is reported, with its message
                message = "\n".join(str(error).strip().splitlines()[:6])
                failures.append([module, name, str(sig), f"{type(error).__name__}: {message}"])
                continue
            if is_float32(sig):
                float64.append([module, name, str(sig), float64_instructions(ptx)])
            cap = kernel.targetoptions.get("max_registers")
            if cap and ptxas:
                registers.append([module, name, str(sig), *assembled_registers(ptxas, ptx, cap)])
    print(json.dumps({"compiled": compiled, "failures": failures, "float64_instructions": float64,
                      "registers": registers}))


if __name__ == "__main__":
    main(sys.argv[1])
