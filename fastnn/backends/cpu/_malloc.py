"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

A training step allocates and frees the same multi-megabyte activations and gradients every
step. glibc serves blocks above its mmap threshold with fresh ``mmap`` s and trims freed heap
memory back to the kernel, so each step faults every page of those arrays in again (the kernel
zeroes each one): lenet5 at batch 256 spends ~30% of its step doing that. Raising both
thresholds makes malloc recycle the blocks, as a caching allocator would. The resident memory
then stays at its peak instead of shrinking between steps; the peak itself does not change.

Skipped when ``FASTNN_MALLOC_TUNING=0`` or when the user set glibc's own ``MALLOC_MMAP_THRESHOLD_``
/ ``MALLOC_TRIM_THRESHOLD_``; a no-op on other C libraries.
"""
import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30
applied = False


def keep_freed_memory() -> bool:
    """Apply the thresholds once; True when they are in effect."""
    global applied
    if applied:
        return True
    if os.environ.get("FASTNN_MALLOC_TUNING", "1") == "0" or any(
            name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    applied = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
    return applied
