"""One thread-count setting for every pool fastnn uses: OpenMP, Numba and BLAS.

The default is the number of physical cores available to this process. BLAS libraries loaded
after a call (the compiled backend loads SciPy's OpenBLAS lazily) are limited when they load.
"""
from __future__ import annotations

import os

_num_threads = None
ENVIRONMENT_DEFAULTS = {}   # the variables init_environment set (absent before): {name: value}


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyper-threads counted once)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    siblings = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                siblings.add(f.read().strip())
        except OSError:
            siblings.add(str(cpu))
    return max(1, len(siblings))


def get_num_threads() -> int:
    """The thread count that governs OpenMP, Numba and BLAS."""
    return _num_threads if _num_threads is not None else physical_cores()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every pool (OpenMP kernels, Numba kernels, BLAS).

    Example:
        >>> fastnn.set_num_threads(1)
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n
    apply()


def apply() -> None:
    """Push the current setting into every pool that is loaded now."""
    n = get_num_threads()
    import sys

    openmp = sys.modules.get("fastnn.backends.cpu._openmp")
    if openmp is None:
        try:
            from .backends.cpu import _openmp as openmp
        except ImportError:
            openmp = None
    if openmp is not None:
        openmp.set_num_threads(n)
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    threadpool_limits(limits=n, user_api="blas")
    threadpool_limits(limits=n, user_api="openmp")
    _partition_compiled_gemms(n)


def _partition_compiled_gemms(n: int) -> None:
    """Run the compiled backend's GEMMs on the OpenMP pool: SciPy's OpenBLAS (the one
    ``scipy.linalg.cython_blas`` calls) at one thread, each GEMM cut into ``n`` blocks by
    ``_blas.gemm``. Keeps one pool of ``n`` busy threads at most; where SciPy's BLAS cannot be
    identified, GEMMs stay whole and BLAS keeps its own ``n`` threads."""
    import sys

    blas = sys.modules.get("fastnn.backends.cpu._blas")
    if blas is None:
        return
    from threadpoolctl import ThreadpoolController

    scipy_libs = [c for c in ThreadpoolController().select(user_api="blas").lib_controllers
                  if f"{os.sep}scipy.libs{os.sep}" in c.filepath or f"{os.sep}scipy{os.sep}" in c.filepath]
    for controller in scipy_libs:
        controller.set_num_threads(1)
    blas.set_split(bool(scipy_libs) and n > 1)
    blas.set_blas_single_threaded(bool(scipy_libs))


def _set_default(name, value):
    if name not in os.environ:
        os.environ[name] = value
        ENVIRONMENT_DEFAULTS[name] = value


def init_environment() -> None:
    """Before heavy imports: make pools that read the environment start at the right size.

    Only variables the user has not set are written; ``ENVIRONMENT_DEFAULTS`` records them (the
    benchmark driver removes them again for the PyTorch baseline's processes).
    """
    n = str(get_num_threads())
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        _set_default(var, n)
    # Every parallel loop of the compiled backend (C im2col/col2im/pooling, Numba's omp layer and
    # the GEMMs, which _blas cuts into single-threaded BLAS calls) runs on ONE libgomp pool. Its
    # workers spin briefly between loops, so back-to-back kernels start in ~2 us instead of the
    # ~45 us futex wake-up of a sleeping pool (mlp batch 64: 3.6 -> 0.9 ms per step); after
    # GOMP_SPINCOUNT spins they sleep, and libgomp throttles spinning when oversubscribed.
    _set_default("GOMP_SPINCOUNT", "1000000")
    # NumPy's own OpenBLAS (used by the reference backend and np.matmul) is a second pool: by
    # default its idle workers spin for ~2^28 cycles after each call, taking a core from the
    # pool above; 2^4 cycles makes them yield almost at once.
    _set_default("OPENBLAS_THREAD_TIMEOUT", "4")
