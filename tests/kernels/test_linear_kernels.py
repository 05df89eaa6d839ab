"""Dense-layer and matmul kernels: compiled (BLAS through cython_blas) vs reference, the reference
backward vs finite differences, and vs PyTorch."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_cases import DTYPES, assert_close, noncontiguous, rand

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref
from fastnn.backends.cpu import _blas, _openmp

ALL = (True, True, True)
dims = st.integers(1, 40)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(n=dims, fan_in=dims, fan_out=dims, bias=st.booleans(), contiguous=st.booleans(), seed=st.integers(0, 2**31))
def test_linear_matches_reference(dtype, n, fan_in, fan_out, bias, contiguous, seed):
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (n, fan_in), dtype), rand(rng, (fan_out, fan_in), dtype)
    b = rand(rng, (fan_out,), dtype) if bias else None
    grad_y = rand(rng, (n, fan_out), dtype)
    view = (lambda a: a) if contiguous else noncontiguous
    y = cpu.linear_forward(view(x), np.asfortranarray(w) if not contiguous else w, b)
    assert_close(y, ref.linear_forward(x, w, b), dtype)
    needs = (True, True, bias)
    for g, g_ref in zip(cpu.linear_backward(view(grad_y), view(x), view(w), needs),
                        ref.linear_backward(grad_y, x, w, needs)):
        if g_ref is None:
            assert g is None
        else:
            assert_close(g, g_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(n=dims, fan_in=dims, fan_out=dims, bias=st.booleans(), needs=st.sampled_from(
    [(True, True, True), (True, False, False), (False, True, False), (False, False, True)]), seed=st.integers(0, 2**31))
def test_linear_relu_matches_the_reference_linear_then_relu(dtype, n, fan_in, fan_out, bias, needs, seed):
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (n, fan_in), dtype), rand(rng, (fan_out, fan_in), dtype)
    b = rand(rng, (fan_out,), dtype) if bias else None
    needs = (needs[0], needs[1], needs[2] and bias)
    y = cpu.linear_relu_forward(noncontiguous(x), w, b)
    y_ref = ref.relu_forward(ref.linear_forward(x, w, b))
    assert_close(y, y_ref, dtype)
    assert (y >= 0).all() and (y == 0).any() == (y_ref == 0).any()
    grad_y = rand(rng, y.shape, dtype)
    for g, g_ref in zip(cpu.linear_relu_backward(noncontiguous(grad_y), y, x, w, needs),
                        ref.linear_backward(ref.relu_backward(grad_y, y_ref), x, w, needs)):
        if g_ref is None:
            assert g is None
        else:
            assert_close(g, g_ref, dtype)


def test_linear_relu_gives_the_same_bits_as_linear_then_relu():
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (64, 300), np.float32), rand(rng, (70, 300), np.float32), rand(rng, (70,), np.float32)
    y = cpu.linear_relu_forward(x, w, b)
    np.testing.assert_array_equal(y, cpu.relu_forward(cpu.linear_forward(x, w, b)))
    grad_y = rand(rng, y.shape, np.float32)
    for fused, plain in zip(cpu.linear_relu_backward(grad_y, y, x, w, ALL),
                            cpu.linear_backward(cpu.relu_backward(grad_y, y), x, w, ALL)):
        np.testing.assert_array_equal(fused, plain)


def test_reference_linear_relu_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((4, 7)), rng.standard_normal(4)
    grad_y = rng.standard_normal((5, 4))
    y = ref.linear_relu_forward(x, w, b)
    grad_x, grad_w, grad_b = ref.linear_relu_backward(grad_y, y, x, w, ALL)
    h = 1e-6

    def loss(x_, w_, b_):
        return float((ref.linear_relu_forward(x_, w_, b_) * grad_y).sum())

    for array, grad in ((x, grad_x), (w, grad_w), (b, grad_b)):
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            saved = array[i]
            array[i] = saved + h
            up = loss(x, w, b)
            array[i] = saved - h
            numeric[i] = (up - loss(x, w, b)) / (2 * h)
            array[i] = saved
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(m=dims, k=dims, n=dims, seed=st.integers(0, 2**31))
def test_matmul_matches_reference(dtype, m, k, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    assert_close(cpu.matmul(a, b), ref.matmul(a, b), dtype)
    assert_close(cpu.matmul(np.asfortranarray(a), b.T.copy().T), ref.matmul(a, b), dtype)


@pytest.mark.parametrize("shape_a,shape_b", [((0, 3), (3, 4)), ((3, 0), (0, 4)), ((3, 4), (4, 0))])
def test_matmul_with_empty_dimensions(shape_a, shape_b):
    a, b = np.ones(shape_a, np.float32), np.ones(shape_b, np.float32)
    np.testing.assert_array_equal(cpu.matmul(a, b), a @ b)


def test_gemm_transposes_and_accumulates():
    rng = np.random.default_rng(0)
    a, b = rand(rng, (5, 3), np.float64), rand(rng, (4, 5), np.float64)
    out = rand(rng, (3, 4), np.float64)
    expected = 2.0 * a.T @ b.T + 0.5 * out
    _blas.gemm(a, b, out, trans_a=True, trans_b=True, alpha=2.0, beta=0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="gemm"):
        _blas.gemm(a, b, out)


def test_kernels_fall_back_to_the_reference_for_other_dtypes():
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    assert cpu.matmul(a, a.T).dtype == np.float16


def test_reference_linear_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, (3, 4), np.float64), rand(rng, (5, 4), np.float64), rand(rng, (5,), np.float64)
    r = rand(rng, (3, 5), np.float64)

    def numeric(a, eps=1e-6):
        grad = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = np.sum(ref.linear_forward(x, w, b) * r)
            a[i] = old - eps
            down = np.sum(ref.linear_forward(x, w, b) * r)
            a[i] = old
            grad[i] = (up - down) / (2 * eps)
        return grad

    for g, a in zip(ref.linear_backward(r, x, w, ALL), (x, w, b)):
        np.testing.assert_allclose(g, numeric(a), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", [cpu, ref], ids=["cpu", "reference"])
def test_linear_matches_pytorch(backend, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, (7, 13), dtype), rand(rng, (6, 13), dtype), rand(rng, (6,), dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    assert_close(backend.linear_forward(x, w, b), ty.detach().numpy(), dtype)
    grad_y = rand(rng, ty.shape, dtype)
    ty.backward(torch.tensor(grad_y))
    for g, t in zip(backend.linear_backward(grad_y, x, w, ALL), (tx, tw, tb)):
        assert_close(g, t.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 300), k=st.integers(1, 200), n=st.integers(1, 300), trans_a=st.booleans(),
       trans_b=st.booleans(), beta=st.sampled_from([0.0, 1.0, 0.5]), seed=st.integers(0, 2**31))
def test_gemm_cut_across_threads_matches_numpy(dtype, m, k, n, trans_a, trans_b, beta, seed):
    """Large products are cut into row or column blocks, one single-threaded BLAS call per
    OpenMP thread (set_split); every block boundary, transpose and beta must give the whole product."""
    _check_gemm_whole_and_cut(np.random.default_rng(seed), dtype, m, k, n, trans_a, trans_b, 0.5, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, n", [(1, 37, 5), (5, 37, 1), (1, 1, 1), (1, 700, 600), (600, 700, 1), (8, 2100, 17),
                                     (8, 2100, 33)],
                         ids=["row", "column", "scalar", "row-cut-across-threads", "column-cut-across-threads",
                              "one-column-last-block-of-17", "one-column-last-block-of-33"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_gemm_with_one_row_or_column_goes_through_gemv_and_matches_numpy(dtype, m, k, n, trans_a, trans_b, beta):
    """A single row or column of C (batch-1 inference of a dense layer) is a matrix-vector product;
    so is the last block of a product cut by columns into 16-wide blocks when one column is left
    (n = 17 and 33, cut into 2 and 4 blocks): that column is strided in C."""
    _check_gemm_whole_and_cut(np.random.default_rng(m * 7 + n), dtype, m, k, n, trans_a, trans_b, 2.0, beta)


def _check_gemm_whole_and_cut(rng, dtype, m, k, n, trans_a, trans_b, alpha, beta):
    """_blas.gemm against NumPy, as one BLAS call and cut across the OpenMP threads (set_split)."""
    a = rand(rng, (k, m) if trans_a else (m, k), dtype)
    b = rand(rng, (n, k) if trans_b else (k, n), dtype)
    c0 = rand(rng, (m, n), dtype)
    expected = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + beta * c0
    previous, threads = _blas.get_split(), _openmp.get_num_threads()
    try:
        for split, cut_into in ((True, 2), (True, 4), (False, 1)):
            _blas.set_split(split)
            _openmp.set_num_threads(cut_into)
            c = c0.copy()
            _blas.gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
            assert_close(c, expected, dtype)
    finally:
        _blas.set_split(previous)
        _openmp.set_num_threads(threads)
