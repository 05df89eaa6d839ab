"""Which GEMM the cpu backend's float32 products run on: fastnn's packed AVX-512 sgemm
(``csrc/sgemm.c``) where the CPU has AVX-512 and the shape suits it, else SciPy's BLAS.

Both compute the same product; the switch is for benchmarks (``bench/bench_gemm.py``) and tests.
It governs the dense layers (``_blas``) and the per-image convolution (``_conv``) together.
"""
from . import _blas, _conv

__all__ = ["available", "enabled", "set_enabled"]


def available():
    """True if this CPU and build run fastnn's sgemm."""
    return _conv.own_sgemm_available()


def enabled():
    """True if float32 GEMMs of a suitable shape use fastnn's sgemm now."""
    return _conv.own_sgemm_enabled() and _blas.own_sgemm_enabled()


def set_enabled(on):
    """Use fastnn's sgemm (where available) or BLAS; returns the previous setting. Call it between
    training steps, not while a kernel runs."""
    previous = enabled()
    _conv.set_own_sgemm(bool(on))
    _blas.set_own_sgemm(bool(on))
    return previous
