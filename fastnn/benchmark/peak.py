"""This machine's sgemm peak, measured with the BLAS that fastnn's kernels call (SciPy's)."""
import time

import numpy as np


def sgemm_peak_gflops(threads, size=1024, min_time=2.0):
    """Best GFLOP/s of square float32 GEMMs through ``scipy.linalg.blas.sgemm`` (the library
    behind ``scipy.linalg.cython_blas``), limited to ``threads`` threads, over ``min_time``
    seconds: a peak is what the machine can do, and on a shared machine the median of a short
    window can catch a slow minute (we saw it read 105 and 189 GFLOP/s an hour apart)."""
    from scipy.linalg import blas
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.random((size, size), dtype=np.float32))
    b = np.asfortranarray(rng.random((size, size), dtype=np.float32))
    with threadpool_limits(limits=threads, user_api="blas"):
        blas.sgemm(1.0, a, b)
        times = []
        end = time.perf_counter() + min_time
        while time.perf_counter() < end or len(times) < 5:
            t0 = time.perf_counter()
            blas.sgemm(1.0, a, b)
            times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / float(np.min(times)) / 1e9
