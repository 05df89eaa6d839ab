"""The OpenMP thread count that the C core's parallel loops use (fastnn.threads sets it)."""
cimport openmp


def set_num_threads(int n):
    """Use ``n`` threads in the next OpenMP parallel regions started from this thread."""
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    openmp.omp_set_num_threads(n)


def get_num_threads():
    """Threads the next OpenMP parallel region will use (omp_get_max_threads)."""
    return openmp.omp_get_max_threads()


def max_threads():
    """Processors available to OpenMP in this process (omp_get_num_procs)."""
    return openmp.omp_get_num_procs()
