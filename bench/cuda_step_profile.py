"""Where a training step goes on the GPU: per step, the wall time and the host's time to queue it;
per launch (synchronised around it), the host's enqueue time and the kernel's GPU time. The GPU time is taken between two CUDA events queued right around the
kernel behind a kernel that sleeps 2 ms, so the GPU reaches them only after the host has queued
the kernel: the host's enqueue time is not in it. Their sum is the step's floor once the host keeps
ahead of the GPU.

    python bench/cuda_step_profile.py --model tfconvnet --batches 64 256 [--host-profile 30]

Needs a real NVIDIA GPU (the simulator's timings mean nothing). A step whose wall time equals its
enqueue time is host-bound: the GPU waits for Python and Numba's launch path, not the other way.
"""
import argparse
import cProfile
import inspect
import pstats
import statistics
import time


def _sleeper():
    from numba import cuda

    @cuda.jit
    def sleep(microseconds):
        for _ in range(microseconds):
            cuda.nanosleep(1000)
    return sleep


def profile(model_name, batch, steps=20, host_profile=0):
    from numba import cuda
    import fastnn.backends.cuda as cu
    import fastnn
    from fastnn.backends.cuda.report import training_step
    fastnn.manual_seed(0)
    step = training_step(model_name, batch)
    for _ in range(3):                       # compile (or load from the cache), warm the allocator
        step()
    cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    queued = time.perf_counter()
    cuda.synchronize()
    done = time.perf_counter()
    print(f"{model_name} batch {batch}: {1e3 * (done - start) / steps:.2f} ms per step, "
          f"{1e3 * (queued - start) / steps:.2f} ms of it to queue the launches")
    from fastnn.backends.cuda import autotune, linear
    for key, name in autotune.chosen().items():      # timed in the first step (FASTNN_CUDA_AUTOTUNE)
        print(f"  autotuned {key}: {name}")
    tiling_of = {id(kernel): key[4] for key, kernel in linear._KERNELS.items()}

    launches = []

    before, after = cuda.event(), cuda.event()
    sleep = _sleeper()
    sleep[1, 1](10)

    def timed(kernel, grid, args, run):
        cuda.synchronize()
        sleep[1, 1](2000)
        before.record()
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        after.record()
        after.synchronize()
        name = kernel.py_func.__name__
        shape = ""
        if name == "gemm_kernel":
            names = list(inspect.signature(kernel.py_func).parameters)
            shape = "m %d n %d k %d" % tuple(args[names.index(x)] for x in "mnk")
            tiling = tiling_of.get(id(kernel))
            shape += f" tiles {tiling.BM}x{tiling.BN}" if tiling else ""
        launches.append((name, f"{shape} grid {grid}", (t1 - t0) * 1e6, 1e3 * cuda.event_elapsed_time(before, after)))

    with cu.observe_launches(timed):
        step()
    if host_profile:
        cuda.synchronize()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            step()
        profiler.disable()
        cuda.synchronize()
        print(f"  host profile of {steps} steps (cProfile, by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(host_profile)
    print(f"  one step launch by launch: {len(launches)} launches, enqueue {sum(x[2] for x in launches) / 1e3:.2f} ms "
          f"(median {statistics.median(x[2] for x in launches):.0f} us), GPU {sum(x[3] for x in launches) / 1e3:.2f} ms")
    for name, what, enqueue, gpu in launches:
        print(f"  {name:28s} {what:42s} enqueue {enqueue:7.1f} us   GPU {gpu:8.1f} us")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tfconvnet")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--host-profile", type=int, default=0, metavar="ROWS",
                        help="also print where the host's time goes (cProfile's top ROWS functions)")
    args = parser.parse_args(argv)
    from numba import config
    if config.ENABLE_CUDASIM:
        parser.error("needs a real GPU: unset NUMBA_ENABLE_CUDASIM")
    for batch in args.batches:
        profile(args.model, batch, host_profile=args.host_profile)


if __name__ == "__main__":
    main()
