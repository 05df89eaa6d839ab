"""Host time of a steady-state training step on the cuda backend, measured without a GPU, with
fastnn's launcher against Numba's own launch in the same run.

Everything the host does runs: fastnn's Python (autograd, the caching allocator, views, argument
set-up) and each launch through fastnn's launcher (or Numba's dispatcher and argument marshalling)
down to ``cuda.core``'s packing of the kernel parameters, with Numba's real classes on fake device
memory and kernels compiled for an H100 but never run (``fastnn/backends/cuda/host_only.py``). What
it leaves out is the driver's launch and Numba's context lookups (7.45 us each on the H200's host;
fastnn's launcher makes one per thread and context), which ``bench/cuda_step_profile.py`` measures
on a GPU.

    python bench/cuda_host_step.py --model tfconvnet --batches 64 256 [--rounds 3] [--profile]
    python bench/cuda_host_step.py --baseline de40cea [--rounds 3]     (that revision against this checkout)

Each (batch, launch) is timed in a process of its own (``FASTNN_CUDA_FAST_LAUNCH=1`` is fastnn's
launcher, ``0`` Numba's), alternating for ``--rounds`` rounds; a process times 8 blocks of 20 steps
and keeps the fastest block (on a shared 2-core machine other processes only ever add time); the
report gives the median over rounds of the ms per step of each, their ratio, and the step with the
kernels counted but not launched (fastnn's own Python: autograd, allocation, views). The first run
compiles the kernels (about a minute; cached after).
"""
import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import time

os.environ.pop("NUMBA_ENABLE_CUDASIM", None)   # Numba's real classes


def _fastest_block(step, steps, blocks):
    """Seconds per step of the fastest of ``blocks`` blocks of ``steps`` steps: the host's own cost,
    without the time other processes on a shared machine take from it (which only adds)."""
    fastest = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        fastest = min(fastest, (time.perf_counter() - start) / steps)
    return fastest


def measure(model_name, batch, steps=20, blocks=8, profile=False):
    import fastnn.backends.cuda.host_only as host_only
    host_only.install()
    from fastnn.backends.cuda import count_launches
    from fastnn.backends.cuda.report import training_step
    step = training_step(model_name, batch)
    for _ in range(3):
        step()
    with count_launches() as launches:
        seconds = _fastest_block(step, steps, blocks)
        per_step = launches() // (steps * blocks)
    with count_launches(dry_run=True):          # fastnn's own Python: kernels counted, not launched
        own = _fastest_block(step, steps, blocks)
    print(f"{1e3 * seconds:.4f} {per_step} {1e3 * own:.4f}")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            step()
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("ROWS", "20")))


def _one(model, batch, fast, profile, tree=None):
    env = dict(os.environ, FASTNN_CUDA_FAST_LAUNCH="1" if fast else "0")
    if tree is not None:        # the package of another revision (see _baseline_tree)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, __file__, "--model", model, "--batches", str(batch), "--one"]
                         + (["--profile"] if profile else []), env=env, check=True, stdout=subprocess.PIPE, text=True)
    ms, launches, own = run.stdout.split()[-3:]
    return float(ms), int(launches), float(own)


def _baseline_tree(revision, folder):
    """``folder`` holding the fastnn package of git ``revision`` (with this checkout's compiled cpu
    extensions, which the cuda backend does not use but ``import fastnn`` loads, and this checkout's
    ``host_only.py``: both sides are measured by the same harness, whose fake launch packs the
    parameters as ``cuda.core`` does since 2026-11-28)."""
    import glob
    import shutil
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "archive", revision, "fastnn"], cwd=root, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    for built in glob.glob(os.path.join(root, "fastnn", "backends", "cpu", "*.so")):
        shutil.copy(built, os.path.join(folder, "fastnn", "backends", "cpu"))
    shutil.copy(os.path.join(root, "fastnn", "backends", "cuda", "host_only.py"),
                os.path.join(folder, "fastnn", "backends", "cuda"))
    return folder


def _compare(args):
    """--baseline: fastnn's launcher at ``args.baseline`` against this checkout, alternating."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        tree = _baseline_tree(args.baseline, folder)
        for batch in args.batches:
            times = {"baseline": [], "now": []}
            own = {"baseline": [], "now": []}
            for _ in range(args.rounds):
                for name, where in (("baseline", tree), ("now", None)):
                    ms, launches, own_ms = _one(args.model, batch, True, False, where)
                    times[name].append(ms)
                    own[name].append(own_ms)
            base, now = statistics.median(times["baseline"]), statistics.median(times["now"])
            print(f"{args.model} batch {batch}: host ms per step with fastnn's launcher, median of {args.rounds}: "
                  f"{args.baseline} {base:.2f}, now {now:.2f} ({base / now:.2f}x less); fastnn's own Python "
                  f"{statistics.median(own['baseline']):.2f} -> {statistics.median(own['now']):.2f}; {launches} launches")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tfconvnet")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile of fastnn's launcher's steps (stderr)")
    parser.add_argument("--baseline", metavar="REV", help="instead: fastnn's launcher at git revision REV "
                        "(its whole package) against this checkout, alternating, in the same run")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        measure(args.model, args.batches[0], profile=args.profile)
        return
    if args.baseline:
        _compare(args)
        return
    for batch in args.batches:
        times, own = {True: [], False: []}, []
        for _ in range(args.rounds):
            for fast in (False, True):
                ms, launches, own_ms = _one(args.model, batch, fast, args.profile and fast)
                times[fast].append(ms)
                own.append(own_ms)
        numba_ms, fast_ms = statistics.median(times[False]), statistics.median(times[True])
        print(f"{args.model} batch {batch}: {launches} launches; host ms per step, median of {args.rounds}: "
              f"Numba's launch {numba_ms:.2f}, fastnn's launcher {fast_ms:.2f} ({numba_ms / fast_ms:.1f}x less); "
              f"fastnn's own Python (launches skipped) {statistics.median(own):.2f}")


if __name__ == "__main__":
    main()
