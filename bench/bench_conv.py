"""Convolution, compiled (cpu, in each schedule) vs reference, on the conv layers of tfconvnet and
LeNet-5 at batch 64.

    pytest bench/bench_conv.py --benchmark-group-by=param:layer --benchmark-columns=median,iqr,rounds

``cpu`` is what the backend picks for a batch of 64 (fastnn/backends/cpu/conv.py): Winograd for
tfconvnet's conv2, direct for LeNet's two layers, per image for tfconvnet's conv1. ``cpu-im2col``
is the per-image im2col schedule with Winograd and the direct kernels off (what those layers ran
before), ``cpu-batched`` the whole-batch GEMM schedule that
small batches get (the measurement behind ``PER_IMAGE_MIN_IMAGES_PER_THREAD``), ``cpu-blas`` the
per-image schedule with its GEMMs on SciPy's OpenBLAS instead of fastnn's AVX-512 sgemm
(``own_sgemm``; the same where the CPU has no AVX-512).

GFLOP/s count the direct convolution's work, whatever the schedule does: forward one GEMM of
2 N O Ho Wo (C/G) kH kW flops, backward two (grad weight, grad input). Winograd does 2.8x fewer
multiply-adds, so its figure can pass the machine's peak.
``test_sgemm_baseline`` times the forward GEMM's shape alone (NumPy's float32 matmul, and the
cython_blas sgemm the compiled kernels call): the yardstick for the compiled forward.
"""
import numpy as np
import pytest
from conftest import record_gflops

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref
from fastnn.backends.cpu import conv as cpu_conv
from fastnn.backends.cpu import own_sgemm

BATCH = 64
LAYERS = {  # 5x5 kernels, stride 1; tfconvnet "same" padding, LeNet-5's conv2 none
    "conv1": dict(x=(BATCH, 1, 28, 28), weight=(32, 1, 5, 5), padding=(2, 2)),
    "conv2": dict(x=(BATCH, 32, 14, 14), weight=(64, 32, 5, 5), padding=(2, 2)),
    "lenet-conv1": dict(x=(BATCH, 1, 28, 28), weight=(6, 1, 5, 5), padding=(2, 2)),
    "lenet-conv2": dict(x=(BATCH, 6, 14, 14), weight=(16, 6, 5, 5), padding=(0, 0)),
}
BACKENDS = {"cpu": cpu, "cpu-im2col": cpu, "cpu-blas": cpu, "cpu-batched": cpu, "reference": ref}


def _args(layer):
    return (1, 1), LAYERS[layer]["padding"], (1, 1), 1   # stride, padding, dilation, groups


@pytest.fixture(autouse=True)
def _schedule(request, monkeypatch):
    """cpu-batched: the batched schedule for every batch size; cpu-blas: BLAS for every GEMM; all
    but cpu: no Winograd or direct kernels."""
    backend = request.node.callspec.params.get("backend")
    if backend == "cpu-batched":
        monkeypatch.setattr(cpu_conv, "PER_IMAGE_MIN_IMAGES_PER_THREAD", 10**9)
    if backend != "cpu":
        monkeypatch.setitem(cpu_conv._direct, "enabled", False)
        monkeypatch.setitem(cpu_conv._winograd, "enabled", False)
    previous = own_sgemm.set_enabled(backend != "cpu-blas")
    yield
    own_sgemm.set_enabled(previous)


def _gemm_flops(layer):
    n, _, h, w = LAYERS[layer]["x"]
    o, cg, kh, kw = LAYERS[layer]["weight"]
    ph, pw = LAYERS[layer]["padding"]
    return 2 * n * o * (h + 2 * ph - kh + 1) * (w + 2 * pw - kw + 1) * cg * kh * kw


def _inputs(rng, layer):
    x = rng.standard_normal(LAYERS[layer]["x"]).astype(np.float32)
    w = (rng.standard_normal(LAYERS[layer]["weight"]) * 0.1).astype(np.float32)
    b = np.zeros(w.shape[0], np.float32)
    return x, w, b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS)
def test_conv2d_forward(benchmark, rng, layer, backend):
    x, w, b = _inputs(rng, layer)
    benchmark(lambda: BACKENDS[backend].conv2d_forward(x, w, b, *_args(layer))[0])
    record_gflops(benchmark, _gemm_flops(layer))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS)
def test_conv2d_backward(benchmark, rng, layer, backend):
    kernels = BACKENDS[backend]
    x, w, b = _inputs(rng, layer)
    y, saved = kernels.conv2d_forward(x, w, b, *_args(layer))
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    benchmark(lambda: kernels.conv2d_backward(grad_y, saved, (True, True, True)))
    record_gflops(benchmark, 2 * _gemm_flops(layer))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS)
def test_conv2d_forward_backward(benchmark, rng, layer, backend):
    kernels = BACKENDS[backend]
    x, w, b = _inputs(rng, layer)
    y, _ = kernels.conv2d_forward(x, w, b, *_args(layer))
    grad_y = rng.standard_normal(y.shape).astype(np.float32)

    def step():
        _, saved = kernels.conv2d_forward(x, w, b, *_args(layer))
        return kernels.conv2d_backward(grad_y, saved, (True, True, True))

    benchmark(step)
    record_gflops(benchmark, 3 * _gemm_flops(layer))


@pytest.mark.parametrize("blas", ["numpy", "cython_blas"])
@pytest.mark.parametrize("layer", LAYERS)
def test_sgemm_baseline(benchmark, rng, layer, blas):
    """The forward GEMM alone: NumPy's matmul (its own OpenBLAS) and fastnn's cython_blas wrapper
    (SciPy's OpenBLAS, the library the compiled kernels call)."""
    n, _, h, w = LAYERS[layer]["x"]
    o, cg, kh, kw = LAYERS[layer]["weight"]
    ph, pw = LAYERS[layer]["padding"]
    pixels = n * (h + 2 * ph - kh + 1) * (w + 2 * pw - kw + 1)
    a = rng.standard_normal((o, cg * kh * kw)).astype(np.float32)
    b = rng.standard_normal((cg * kh * kw, pixels)).astype(np.float32)
    out = np.empty((o, pixels), np.float32)
    if blas == "numpy":
        benchmark(lambda: np.matmul(a, b, out=out))
    else:
        from fastnn.backends.cpu import _blas
        benchmark(lambda: _blas.gemm(a, b, out))
    record_gflops(benchmark, _gemm_flops(layer))
