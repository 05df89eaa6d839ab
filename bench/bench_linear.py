"""Dense layers, compiled (BLAS through cython_blas) vs reference (NumPy @), on tfconvnet's
dense layers at batch 64: 3136 -> 1024 and 1024 -> 10.

    pytest bench/bench_linear.py --benchmark-group-by=param:layer
"""
import numpy as np
import pytest
from conftest import record_gflops

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref

BATCH = 64
LAYERS = {"dense1": (64 * 7 * 7, 1024), "dense2": (1024, 10)}
BACKENDS = {"cpu": cpu, "reference": ref}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS)
def test_linear_forward_backward(benchmark, rng, layer, backend):
    kernels = BACKENDS[backend]
    fan_in, fan_out = LAYERS[layer]
    x = rng.standard_normal((BATCH, fan_in)).astype(np.float32)
    w = (rng.standard_normal((fan_out, fan_in)) * 0.01).astype(np.float32)
    b = np.zeros(fan_out, np.float32)
    grad_y = rng.standard_normal((BATCH, fan_out)).astype(np.float32)

    def step():
        kernels.linear_forward(x, w, b)
        return kernels.linear_backward(grad_y, x, w, (True, True, True))

    benchmark(step)
    record_gflops(benchmark, 3 * 2 * BATCH * fan_in * fan_out)
