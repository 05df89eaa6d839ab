"""fastnn's packed AVX-512 sgemm (csrc/sgemm.c) against a float64 NumPy product, and the layers
that use it (dense, per-image convolution) against the reference and against the same layers on
BLAS. Skipped where the CPU has no AVX-512 (the layers then run on BLAS, tested elsewhere)."""
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_cases import assert_close, rand

import fastnn
import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref
from fastnn.backends.cpu import _blas, own_sgemm
from fastnn.backends.cpu import conv as cpu_conv

pytestmark = pytest.mark.skipif(not own_sgemm.available(), reason="no AVX-512: the cpu backend uses BLAS only")


def _expected(a, b, out, trans_a, trans_b, alpha, beta, bias, relu):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    c = alpha * ((a64.T if trans_a else a64) @ (b64.T if trans_b else b64)) + beta * out.astype(np.float64)
    if bias is not None:
        c += bias[:, None]
    return np.where(c < 0, 0, c) if relu else c


def _strided(rng, shape, extra):
    """A (rows, cols) float32 view whose rows are ``extra`` elements further apart than cols."""
    wide = rand(rng, (shape[0], shape[1] + extra), np.float32)
    return wide[:, :shape[1]]


@settings(max_examples=300, deadline=None)
@given(m=st.one_of(st.integers(0, 70), st.integers(250, 600)), n=st.integers(0, 90), k=st.integers(0, 600), trans_a=st.booleans(),
       trans_b=st.booleans(), alpha=st.sampled_from([1.0, 0.5, -2.0]), beta=st.sampled_from([0.0, 1.0, 0.25]),
       bias=st.booleans(), relu=st.booleans(), extra=st.integers(0, 3), seed=st.integers(0, 2**31))
def test_own_sgemm_matches_a_float64_product(m, n, k, trans_a, trans_b, alpha, beta, bias, relu, extra, seed):
    """Every edge: rows past a multiple of 8 and past the 256-row blocks, columns past 16 and 32,
    depth past the 256-deep blocks (split evenly), strided rows, beta accumulating, bias and ReLU
    on the last block only."""
    rng = np.random.default_rng(seed)
    a = _strided(rng, (k, m) if trans_a else (m, k), extra)
    b = _strided(rng, (n, k) if trans_b else (k, n), extra)
    out = _strided(rng, (m, n), extra)
    b_vec = rand(rng, (m,), np.float32) if bias else None
    expected = _expected(a, b, out, trans_a, trans_b, alpha, beta, b_vec, relu)
    untouched = out.base[:, n:].copy()
    _blas.own_sgemm(a, b, out, trans_a, trans_b, alpha, beta, b_vec, relu)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * max(1.0, np.sqrt(k)))
    np.testing.assert_array_equal(out.base[:, n:], untouched)     # nothing written past column n
    if relu:
        assert (out >= 0).all()


@pytest.mark.parametrize("trans_b", [False, True])
def test_own_sgemm_cuts_more_than_4096_columns_into_blocks(trans_b):
    rng = np.random.default_rng(1)
    m, n, k = 9, 4096 + 4096 + 45, 70
    a = rand(rng, (m, k), np.float32)
    b = rand(rng, (n, k) if trans_b else (k, n), np.float32)
    out, bias = rand(rng, (m, n), np.float32), rand(rng, (m,), np.float32)
    expected = _expected(a, b, out, False, trans_b, 1.0, 0.5, bias, True)
    _blas.own_sgemm(a, b, out, False, trans_b, 1.0, 0.5, bias, True)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def _resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_packing_buffers_of_exited_threads_are_freed():
    """Each thread that runs the kernel keeps its packing buffer (~4.25 MB here: 4 MB of B panels,
    256 KB of A panels) until it exits."""
    a = np.ones((256, 256), np.float32)
    b = np.ones((256, 4096), np.float32)
    out = np.empty((256, 4096), np.float32)

    def work():
        _blas.own_sgemm(a, b, out)

    def run_threads(count):
        for _ in range(count):
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()

    run_threads(5)
    before = _resident_mib()
    run_threads(40)          # ~170 MB if every thread's buffer outlived it
    assert _resident_mib() - before < 100


def test_own_sgemm_beta_zero_ignores_nan_in_out_and_relu_keeps_nan():
    a = np.ones((9, 70), np.float32)
    b = np.ones((70, 33), np.float32)
    out = np.full((9, 33), np.nan, np.float32)
    _blas.own_sgemm(a, b, out, beta=0.0)
    np.testing.assert_array_equal(out, np.full((9, 33), 70, np.float32))
    a[3, 5] = np.nan
    _blas.own_sgemm(a, b, out, relu=True)
    assert np.isnan(out[3]).all() and not np.isnan(np.delete(out, 3, axis=0)).any()


def test_own_sgemm_rejects_mismatched_shapes():
    a, b = np.ones((4, 5), np.float32), np.ones((6, 7), np.float32)
    with pytest.raises(ValueError, match="own_sgemm: op\\(a\\) is \\(4, 5\\) and op\\(b\\) is \\(6, 7\\)"):
        _blas.own_sgemm(a, b, np.empty((4, 7), np.float32))
    with pytest.raises(ValueError, match="own_sgemm: bias must have shape \\(4,\\)"):
        _blas.own_sgemm(a, np.ones((5, 7), np.float32), np.empty((4, 7), np.float32), bias=np.ones(3, np.float32))


@pytest.fixture(params=[True, False], ids=["own-sgemm", "blas"])
def gemm_kernel(request):
    """The kernel under test, on two threads (restored afterwards) with the products cut in blocks."""
    threads = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    previous = own_sgemm.set_enabled(request.param)
    assert own_sgemm.enabled() == request.param
    if not _blas.get_split():
        pytest.skip("SciPy's BLAS is not under fastnn's thread control here: GEMMs are not cut into blocks")
    yield request.param
    own_sgemm.set_enabled(previous)
    fastnn.set_num_threads(threads)


@pytest.mark.parametrize("n, fan_in, fan_out", [(64, 784, 256), (70, 130, 100), (256, 100, 64), (33, 64, 65)])
def test_dense_layer_on_either_gemm_matches_reference(gemm_kernel, n, fan_in, fan_out):
    """Shapes where fastnn_sgemm_suits holds for at least one block of the forward, grad_x or
    grad_W product (cut over two threads; the other blocks go to BLAS), so the own kernel runs
    when enabled."""
    rng = np.random.default_rng(n + fan_in)
    x, w, b = rand(rng, (n, fan_in), np.float32), rand(rng, (fan_out, fan_in), np.float32), rand(rng, (fan_out,), np.float32)
    assert_close(cpu.linear_relu_forward(x, w, b), ref.linear_relu_forward(x, w, b))
    grad_y = rand(rng, (n, fan_out), np.float32)
    for got, want in zip(cpu.linear_backward(grad_y, x, w, (True, True, True)),
                         ref.linear_backward(grad_y, x, w, (True, True, True))):
        assert_close(got, want)


CONV_SHAPES = [   # x, weight, stride, padding, dilation, groups: GEMMs of at least 32 x 64 x 64 per image
    ((3, 32, 14, 14), (64, 32, 5, 5), (1, 1), (2, 2), (1, 1), 1),     # tfconvnet's conv2
    ((2, 8, 11, 13), (40, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1),      # odd plane (143), k = 72
    ((2, 16, 17, 18), (64, 8, 3, 3), (2, 1), (1, 0), (1, 2), 2),     # groups, stride, dilation
    ((2, 70, 9, 9), (64, 70, 1, 1), (1, 1), (0, 0), (1, 1), 1),      # pointwise: x is the column matrix
    ((2, 128, 9, 9), (128, 64, 3, 3), (1, 1), (1, 1), (1, 1), 2),    # groups on every packed product
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV_SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_per_image_conv_on_either_gemm_matches_reference(gemm_kernel, monkeypatch, x_shape, w_shape, stride,
                                                         padding, dilation, groups, relu):
    monkeypatch.setattr(cpu_conv, "PER_IMAGE_MIN_IMAGES_PER_THREAD", 0)
    monkeypatch.setitem(cpu_conv._winograd, "enabled", False)    # it would take tfconvnet's conv2
    rng = np.random.default_rng(sum(x_shape))
    x, w, b = rand(rng, x_shape, np.float32), rand(rng, w_shape, np.float32), rand(rng, w_shape[:1], np.float32)
    args = (stride, padding, dilation, groups)
    forward = cpu.conv2d_relu_forward if relu else cpu.conv2d_forward
    y, saved = forward(x, w, b, *args)
    assert saved[0] == "images"
    z_ref, saved_ref = ref.conv2d_forward(x, w, b, *args)
    y_ref = ref.relu_forward(z_ref) if relu else z_ref
    assert_close(y, y_ref)
    grad_y = rand(rng, y.shape, np.float32)
    grads = (cpu.conv2d_relu_backward(grad_y, y, saved, (True, True, True)) if relu
             else cpu.conv2d_backward(grad_y, saved, (True, True, True)))
    grads_ref = ref.conv2d_backward(ref.relu_backward(grad_y, y_ref) if relu else grad_y, saved_ref, (True, True, True))
    for got, want in zip(grads, grads_ref):
        assert_close(got, want)


def test_dense_layer_uses_the_own_sgemm_on_one_thread_too():
    """With one thread the product is not cut, and SciPy's BLAS runs one thread: the own kernel
    still takes it (the same bits as calling it directly)."""
    threads = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    try:
        if not _blas.get_split() and not own_sgemm.enabled():
            pytest.skip("fastnn's sgemm is off")
        rng = np.random.default_rng(2)
        x, w = rand(rng, (64, 784), np.float32), rand(rng, (256, 784), np.float32)
        direct = np.empty((64, 256), np.float32)
        _blas.own_sgemm(x, w, direct, trans_b=True)
        np.testing.assert_array_equal(cpu.linear_forward(x, w, None), direct)
    finally:
        fastnn.set_num_threads(threads)


def test_own_sgemm_is_the_default_where_available():
    assert own_sgemm.enabled()
