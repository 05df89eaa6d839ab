"""fastnn's packed AVX-512 sgemm (csrc/sgemm.c) against SciPy's OpenBLAS sgemm, one thread, on the
GEMM shapes of the zoo models' training steps (per image for the convolutions, per batch of 64
for the dense layers).

    pytest bench/bench_gemm.py --benchmark-group-by=param:shape --benchmark-columns=median,iqr,rounds

Both run single-threaded, as the compiled layers call them (one block of a product per OpenMP
thread; "half" is one of two threads' blocks). The
shapes below 32 x 64 x 64 are where OpenBLAS's small-matrix kernels win, so the layers keep BLAS
there (``fastnn_sgemm_suits`` in csrc/sgemm.h).
"""
import numpy as np
import pytest
from conftest import record_gflops

import fastnn
from fastnn.backends.cpu import _blas, own_sgemm

pytestmark = pytest.mark.skipif(not own_sgemm.available(), reason="no AVX-512: nothing to compare")

SHAPES = {   # name: (m, n, k, trans_a, trans_b) of C (m x n) = op(A) op(B)
    "tfconvnet conv2 forward": (64, 196, 800, False, False),
    "tfconvnet conv2 grad_W": (64, 800, 196, False, True),
    "tfconvnet conv2 grad_cols": (800, 196, 64, True, False),
    "mlp fc1 forward (half)": (64, 128, 784, False, True),
    "mlp fc1 grad_W (half)": (256, 400, 64, True, False),
    "tfconvnet conv1 forward (BLAS kept)": (32, 784, 25, False, False),
    "lenet5 conv2 forward (BLAS kept)": (16, 100, 150, False, False),
}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    yield
    fastnn.set_num_threads(previous)


def _operands(rng, shape):
    m, n, k, trans_a, trans_b = shape
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b, np.empty((m, n), np.float32)


@pytest.mark.parametrize("kernel", ["own", "openblas"])
@pytest.mark.parametrize("shape", SHAPES)
def test_sgemm(benchmark, rng, shape, kernel):
    m, n, k, trans_a, trans_b = SHAPES[shape]
    a, b, out = _operands(rng, SHAPES[shape])
    if kernel == "own":
        benchmark(lambda: _blas.own_sgemm(a, b, out, trans_a, trans_b))
    else:
        previous = own_sgemm.set_enabled(False)
        try:
            benchmark(lambda: _blas.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b))
        finally:
            own_sgemm.set_enabled(previous)
    record_gflops(benchmark, 2 * m * n * k)
