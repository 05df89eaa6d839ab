"""Compile cuda kernels for a real GPU without one: run as a script by
``test_kernels_compile_for_gpu.py`` (outside the simulator, which never compiles anything).

    python tests/cuda/compile_for_gpu.py SIGNATURES.pkl

SIGNATURES.pkl holds ``{(module, kernel, dtype or None): {argument-type tuple, ...}}`` as recorded
from the launches of a simulated run; ``kernel`` names a module-level ``@cuda.jit`` kernel, or with
a dtype the factory function that makes the kernel for that dtype. Each signature is compiled to
PTX for compute capability 9.0 (an H100) by numba-cuda and NVVM, which need no driver. Prints one
JSON object: ``{"compiled": n, "failures": [[module, kernel, signature, error], ...]}``.
"""
import importlib
import json
import os
import pickle
import sys

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"

from numba import cuda  # noqa: E402
import numba.cuda.dispatcher as cuda_dispatcher  # noqa: E402

COMPUTE_CAPABILITY = (9, 0)


class _H100:
    """What a kernel's device functions ask of the current device when they are compiled."""
    compute_capability = COMPUTE_CAPABILITY


# A device function called from a kernel is compiled for the current device's compute capability;
# there is none here, so answer for the GPU the project targets.
cuda_dispatcher.get_current_device = _H100


def main(path):
    with open(path, "rb") as f:
        signatures = pickle.load(f)
    compiled, failures = 0, []
    for (module, name, dtype), sigs in sorted(signatures.items(), key=str):
        target = getattr(importlib.import_module(module), name)
        kernel = target(dtype) if dtype is not None else target
        for sig in sorted(sigs, key=str):
            try:
                cuda.compile_ptx(kernel.py_func, sig, cc=COMPUTE_CAPABILITY)
                compiled += 1
            except Exception as error:  # noqa: BLE001 - every failure is reported, with its message
                message = "\n".join(str(error).strip().splitlines()[:6])
                failures.append([module, name, str(sig), f"{type(error).__name__}: {message}"])
    print(json.dumps({"compiled": compiled, "failures": failures}))


if __name__ == "__main__":
    main(sys.argv[1])
