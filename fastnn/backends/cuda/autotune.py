"""Choosing among equivalent ways of running an op by timing them on the GPU, once per shape.

A GEMM can be launched with several tilings (``linear.TILINGS``), and a convolution's grad_x is
either one windows GEMM or a GEMM and col2im. Which is fastest depends on the GPU and on the shape,
and a count of instructions cannot tell (latency, occupancy and the waves of blocks decide). The
first time a shape is met, ``fastest(key, candidates)`` runs each candidate once (compiling it and
tuning what it launches in turn), then times each ``REPEATS`` times with CUDA events, interleaved,
and keeps the name of the one with the smallest median for that key for the rest of the process, as
PyTorch's ``cudnn.benchmark`` and Triton's autotuner do. The candidates must be interchangeable:
each computes the same result into fresh or overwritten outputs, so running one several times is
harmless. Launches made while tuning are not counted (``launch_count()`` reports a step's own).

Off, so the first candidate (the heuristic choice) is taken without running anything:

* with ``FASTNN_CUDA_AUTOTUNE=0`` (for bitwise run-to-run reproducibility: another tiling splits k
  differently, which changes the rounding of float sums);
* in Numba's simulator, under a dry run (``count_launches(dry_run=True)``) and under ``host_only``,
  where nothing runs to be timed.
"""
from __future__ import annotations

import os
import sys

from numba import cuda

from . import _core

REPEATS = 3
HOST_SLACK_US = 2000    # > the host's time to queue a candidate's launches (34-66 us on a slow 2-core host)
ENABLED = os.environ.get("FASTNN_CUDA_AUTOTUNE", "1") != "0"

_CHOSEN = {}
_HOST_ONLY = f"{__package__}.host_only"


def off_for_the_process() -> bool:
    """Whether nothing will be timed in this process (the setting, the simulator, ``host_only``):
    callers may then remember their heuristic choices."""
    host_only = sys.modules.get(_HOST_ONLY)       # (imported only by what installs it)
    return not ENABLED or _core.SIMULATOR or (host_only is not None and host_only._installed)


def enabled() -> bool:
    """Whether ``fastest`` times its candidates now (not off for the process, and not a dry run)."""
    return not _core._dry_run and not off_for_the_process()


@_core.kernel
def _gpu_sleep(microseconds):
    """Keeps one GPU thread busy for about ``microseconds``."""
    for _ in range(microseconds):
        cuda.nanosleep(1000)


def keep_gpu_busy(microseconds):
    """Queue ``_gpu_sleep``: launches queued after it start when it ends."""
    _core.launch_grid(_gpu_sleep, (1,), (1,), microseconds)


def _elapsed_ms(run):
    """GPU milliseconds of ``run()``'s launches (the host waits for them). The GPU is kept busy for
    HOST_SLACK_US first, so that it does not sit idle, inside the timing, while the host queues the
    launches (tens of microseconds of Python per GEMM: more than a small GEMM's run)."""
    start, stop = cuda.event(timing=True), cuda.event(timing=True)
    keep_gpu_busy(HOST_SLACK_US)
    start.record()
    run()
    stop.record()
    stop.synchronize()
    return cuda.event_elapsed_time(start, stop)


def _median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def fastest(key, candidates):
    """The name of the fastest of ``candidates`` ({name: function running the op}, the heuristic
    choice first) for ``key`` (a hashable description of the op and its shapes): timed the first
    time the key is met, remembered for the rest of the process (which runs on one GPU model)."""
    names = list(candidates)
    if len(names) == 1:
        return names[0]
    chosen = _CHOSEN.get(key)
    if chosen is not None and chosen in candidates:
        return chosen
    if not enabled():
        return names[0]
    counted = _core._launches
    try:
        for name in names:              # compiles (and tunes what it launches) outside the timing
            candidates[name]()
        times = {name: [] for name in names}
        for _ in range(REPEATS):        # interleaved: a drift in the GPU's clocks hits every candidate
            for name in names:
                times[name].append(_elapsed_ms(candidates[name]))
    finally:
        _core._launches = counted
    chosen = _CHOSEN[key] = min(names, key=lambda name: _median(times[name]))
    return chosen


def choose(memo, kind, key, candidates, value):
    """``value(name)`` of the candidate for ``key`` among ``candidates`` ({name: function running the
    op}, the heuristic choice first), remembered in ``memo[key]`` once it is final: the only
    candidate, the fastest (``fastest``, under the key (kind, *key)), or the heuristic one when
    autotuning is off for the process. In a dry run the heuristic one is taken but not remembered
    (a later launch may time them)."""
    names = list(candidates)
    if len(names) > 1 and not enabled():
        if not off_for_the_process():
            return value(names[0])
        name = names[0]
    else:
        name = fastest((kind, *key), candidates)
    chosen = memo[key] = value(name)
    return chosen


def chosen():
    """{key: name} of every choice made so far in this process (for reports)."""
    return dict(_CHOSEN)
