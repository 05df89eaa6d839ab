"""Shared setup of the kernel benchmarks (run with ``pytest bench/``; never part of ``pytest``).

Each benchmark records ``gflops`` (useful floating-point work / median time) in extra_info.
"""
import numpy as np
import pytest

import fastnn

fastnn.use_backend("cpu")   # loads the compiled backend the way users get it: thread settings applied


def record_gflops(benchmark, flops):
    """Store the GFLOP/s of the median run (nothing when benchmarking is disabled)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["gflops"] = round(flops / stats.stats.median / 1e9, 2)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
