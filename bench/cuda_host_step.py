"""Host time of a steady-state training step on the cuda backend, measured without a GPU: fastnn's
Python (autograd, allocation from the caching allocator, views, argument set-up) with Numba's real
device-array classes on fake device memory, kernels counted but not run (``count_launches(dry_run=
True)``) and host-device copies skipped. What it leaves out is Numba's launch marshalling and the
driver, which ``bench/cuda_step_profile.py`` measures on a GPU.

    python bench/cuda_host_step.py --model tfconvnet --batches 64 256 [--profile]

It stubs a few of numba.cuda's driver-facing calls (context, copies), so it is a development tool for
numba-cuda's current classes, not a test.
"""
import argparse
import contextlib
import cProfile
import ctypes
import os
import pstats
import subprocess
import sys
import time

os.environ.pop("NUMBA_ENABLE_CUDASIM", None)   # Numba's real device arrays



def _without_a_driver():
    """Real DeviceNDArrays on fake memory: no context, no copies, 132 multiprocessors."""
    import fastnn.device
    from numba.cuda.cudadrv import devices, driver
    from numba.cuda.cudadrv.devicearray import DeviceNDArray
    from numba.cuda.cudadrv.driver import MemoryPointer

    from fastnn.backends.cuda import _core, elementwise, linear, memory

    class Block:
        def __init__(self, address, size):
            nvidia = getattr(driver, "USE_NV_BINDING", True)
            pointer = driver.binding.CUdeviceptr(address) if nvidia else ctypes.c_void_p(address)
            self.gpu_data = MemoryPointer(None, pointer, size)

    addresses = iter(range(1 << 20, 1 << 46, 1 << 22))
    cache = memory.DeviceArrayCache()
    cache._allocate = lambda size: Block(next(addresses), size)
    memory._cache = cache
    fastnn.device.cuda_unavailable_reason = lambda: None
    DeviceNDArray.copy_to_device = lambda self, ary, stream=0: None
    devices._runtime.ensure_context = lambda: contextlib.nullcontext()     # slicing asks for one
    for module in (_core, elementwise, linear):
        module.context_key = lambda: 0
    _core._multiprocessors = 132
    return _core


def measure(model_name, batch, steps=50, profile=False):
    core = _without_a_driver()
    from fastnn.backends.cuda.report import training_step
    with core.count_launches(dry_run=True) as launches:
        step = training_step(model_name, batch)
        for _ in range(3):
            step()
        before = launches()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = (time.perf_counter() - start) / steps
        print(f"{model_name} batch {batch}: {1e3 * seconds:.2f} ms of host time per step without the launches "
              f"({(launches() - before) // steps} launches)")
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(steps):
                step()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tfconvnet")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if len(args.batches) == 1:
        measure(args.model, args.batches[0], profile=args.profile)
        return
    for batch in args.batches:      # one process each: the stubs and the allocator start afresh
        subprocess.run([sys.executable, __file__, "--model", args.model, "--batches", str(batch)]
                       + (["--profile"] if args.profile else []), check=True)


if __name__ == "__main__":
    main()
