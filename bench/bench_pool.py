"""Pooling, compiled (cpu) vs reference, on the pooling layers of tfconvnet at batch 64.

    pytest bench/bench_pool.py --benchmark-group-by=param:layer
"""
import numpy as np
import pytest
from conftest import record_gflops

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref

BATCH = 64
LAYERS = {"pool1": (BATCH, 32, 28, 28), "pool2": (BATCH, 64, 14, 14)}   # 2x2, stride 2
ARGS = ((2, 2), (2, 2), (0, 0))
BACKENDS = {"cpu": cpu, "reference": ref}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS)
def test_max_pool2d_forward_backward(benchmark, rng, layer, backend):
    kernels = BACKENDS[backend]
    x = rng.standard_normal(LAYERS[layer]).astype(np.float32)

    def step():
        y, indices = kernels.max_pool2d_forward(x, *ARGS)
        return kernels.max_pool2d_backward(y, indices, x.shape)

    benchmark(step)
    record_gflops(benchmark, 2 * x.size)   # one comparison per input, one add per output


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS)
def test_avg_pool2d_forward_backward(benchmark, rng, layer, backend):
    kernels = BACKENDS[backend]
    x = rng.standard_normal(LAYERS[layer]).astype(np.float32)

    def step():
        y = kernels.avg_pool2d_forward(x, *ARGS)
        return kernels.avg_pool2d_backward(y, x.shape, *ARGS)

    benchmark(step)
    record_gflops(benchmark, 2 * x.size)
