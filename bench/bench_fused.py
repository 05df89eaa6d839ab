"""Fused element-wise kernels (Numba, cpu backend) vs the NumPy reference, on tfconvnet/bnconvnet
shapes at batch 64: the Hadamard-product activation backward, softmax + cross-entropy,
batch norm forward + backward, and the SGD / Adam parameter updates.

    pytest bench/bench_fused.py --benchmark-group-by=func,param:backend --benchmark-columns=median,ops
"""
import numpy as np
import pytest
from conftest import record_gflops

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref

BATCH = 64
BACKENDS = {"cpu": cpu, "reference": ref}


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_forward_backward_conv1_activations(benchmark, rng, backend):
    kernels = BACKENDS[backend]
    z = rng.standard_normal((BATCH, 32, 28, 28)).astype(np.float32)
    grad_y = rng.standard_normal(z.shape).astype(np.float32)

    def step():
        y = kernels.relu_forward(z)
        return kernels.relu_backward(grad_y, y)   # delta = grad_y ⊙ f'(z), one pass

    benchmark(step)
    record_gflops(benchmark, 2 * z.size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_forward_backward(benchmark, rng, backend):
    kernels = BACKENDS[backend]
    logits = rng.standard_normal((256, 10)).astype(np.float32)
    target = rng.integers(0, 10, 256)

    def step():
        loss, saved = kernels.cross_entropy_forward(logits, target, "mean", 0.0)
        return kernels.cross_entropy_backward(np.float32(1.0), saved)

    benchmark(step)
    record_gflops(benchmark, 6 * logits.size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_norm_training_forward_backward_conv2(benchmark, rng, backend):
    kernels = BACKENDS[backend]
    x = rng.standard_normal((BATCH, 64, 14, 14)).astype(np.float32)
    weight, bias = np.ones(64, np.float32), np.zeros(64, np.float32)
    running_mean, running_var = np.zeros(64, np.float32), np.ones(64, np.float32)
    grad_y = rng.standard_normal(x.shape).astype(np.float32)

    def step():
        y, saved = kernels.batch_norm_forward(x, weight, bias, running_mean, running_var, True, 0.1, 1e-5)
        return kernels.batch_norm_backward(grad_y, saved, (True, True, True))

    benchmark(step)
    record_gflops(benchmark, 10 * x.size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sgd_momentum_step_dense1_weight(benchmark, rng, backend):
    kernels = BACKENDS[backend]
    param = rng.standard_normal((1024, 3136)).astype(np.float32)
    grad = rng.standard_normal(param.shape).astype(np.float32)
    buffer = kernels.sgd_step(param, grad, None, 0.01, 0.9, 0.0, 5e-4, False)

    benchmark(lambda: kernels.sgd_step(param, grad, buffer, 0.01, 0.9, 0.0, 5e-4, False))
    record_gflops(benchmark, 5 * param.size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adam_step_dense1_weight(benchmark, rng, backend):
    kernels = BACKENDS[backend]
    param = rng.standard_normal((1024, 3136)).astype(np.float32)
    grad = rng.standard_normal(param.shape).astype(np.float32)
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)

    benchmark(lambda: kernels.adam_step(param, grad, exp_avg, exp_avg_sq, 10, 1e-3, 0.9, 0.999, 1e-8, 0.0, False))
    record_gflops(benchmark, 12 * param.size)
