"""Pooling kernels: compiled (cpu) vs reference over hypothesis-drawn geometries, the reference
backward vs central finite differences, and the reference vs PyTorch (values, argmax indices)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_cases import DTYPES, assert_close, noncontiguous, pool_geometries, rand

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref

BACKENDS = pytest.mark.parametrize("backend", [cpu, ref], ids=["cpu", "reference"])


def _args(g):
    return g["kernel_size"], g["stride"], g["padding"]


def _distinct(rng, shape, dtype):
    """Values without ties (a permutation of 0..size-1, scaled), so that the argmax is unique and
    finite differences never cross a tie."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.5 - 3).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(geometry=pool_geometries(), seed=st.integers(0, 2**31), ties=st.booleans())
def test_max_pool2d_matches_reference(dtype, geometry, seed, ties):
    rng = np.random.default_rng(seed)
    shape = geometry["x_shape"]
    # with ties (small integers) both must keep the first maximum of the scan
    x = rng.integers(-2, 3, shape).astype(dtype) if ties else rand(rng, shape, dtype)
    y, indices = cpu.max_pool2d_forward(x, *_args(geometry))
    y_ref, indices_ref = ref.max_pool2d_forward(x, *_args(geometry))
    assert indices.dtype == np.int64 and y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(indices, indices_ref)
    grad_y = rand(rng, y.shape, dtype)
    assert_close(cpu.max_pool2d_backward(grad_y, indices, shape), ref.max_pool2d_backward(grad_y, indices, shape),
                 dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(geometry=pool_geometries(), seed=st.integers(0, 2**31))
def test_avg_pool2d_matches_reference(dtype, geometry, seed):
    rng = np.random.default_rng(seed)
    shape = geometry["x_shape"]
    x = rand(rng, shape, dtype)
    y = cpu.avg_pool2d_forward(x, *_args(geometry))
    assert_close(y, ref.avg_pool2d_forward(x, *_args(geometry)), dtype)
    grad_y = rand(rng, y.shape, dtype)
    assert_close(cpu.avg_pool2d_backward(grad_y, shape, *_args(geometry)),
                 ref.avg_pool2d_backward(grad_y, shape, *_args(geometry)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,kernel_size,stride,padding", [
    ((4, 16, 28, 28), (2, 2), (2, 2), (0, 0)),      # tfconvnet's pool1, split over OpenMP threads
    ((2, 3, 5, 700), (2, 3), (1, 2), (1, 1)),       # rows wider than the kernel's 256-output blocks
    ((2, 3, 4, 900), (3, 3), (2, 1), (1, 1)),
    ((1, 2, 6, 1000), (2, 4), (1, 3), (0, 2)),
])
@pytest.mark.parametrize("ties", [False, True])
def test_pooling_matches_reference_on_large_planes(dtype, x_shape, kernel_size, stride, padding, ties):
    rng = np.random.default_rng(2)
    x = rng.integers(-3, 4, x_shape).astype(dtype) if ties else rand(rng, x_shape, dtype)
    args = (kernel_size, stride, padding)
    y, indices = cpu.max_pool2d_forward(x, *args)
    y_ref, indices_ref = ref.max_pool2d_forward(x, *args)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(indices, indices_ref)
    grad_y = rand(rng, y.shape, dtype)
    assert_close(cpu.max_pool2d_backward(grad_y, indices, x.shape), ref.max_pool2d_backward(grad_y, indices, x.shape),
                 dtype)
    assert_close(cpu.avg_pool2d_forward(x, *args), ref.avg_pool2d_forward(x, *args), dtype)
    assert_close(cpu.avg_pool2d_backward(grad_y, x.shape, *args), ref.avg_pool2d_backward(grad_y, x.shape, *args),
                 dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape", [(3, 4, 7, 9), (2, 64, 14, 14), (1, 1, 2, 2)])
def test_max_pool2x2_fast_path_keeps_the_reference_order_for_ties_nans_and_infinities(dtype, x_shape):
    # MaxPool2d(2) has its own kernel; odd sizes drop the last row/column, ties keep the first
    # maximum, a NaN wins (the later of two NaNs), -inf everywhere keeps the window's first index
    rng = np.random.default_rng(9)
    x = rng.choice(np.array([-np.inf, -1.0, 0.0, 0.0, 1.0, 2.0, np.nan, np.inf]), x_shape).astype(dtype)
    x.reshape(-1)[:4] = -np.inf
    y, indices = cpu.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    y_ref, indices_ref = ref.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(indices, indices_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_kernels_accept_non_contiguous_inputs(dtype):
    rng = np.random.default_rng(0)
    x = rand(rng, (2, 3, 9, 7), dtype)
    args = ((3, 2), (2, 2), (1, 1))
    y, indices = cpu.max_pool2d_forward(noncontiguous(x), *args)
    y_ref, indices_ref = ref.max_pool2d_forward(x, *args)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(indices, indices_ref)
    grad_y = rand(rng, y.shape, dtype)
    assert_close(cpu.max_pool2d_backward(noncontiguous(grad_y), noncontiguous(indices), x.shape),
                 ref.max_pool2d_backward(grad_y, indices, x.shape), dtype)
    assert_close(cpu.avg_pool2d_forward(noncontiguous(x), *args), ref.avg_pool2d_forward(x, *args), dtype)
    assert_close(cpu.avg_pool2d_backward(noncontiguous(grad_y), x.shape, *args),
                 ref.avg_pool2d_backward(grad_y, x.shape, *args), dtype)


@BACKENDS
def test_max_pool2d_padding_is_minus_infinity_and_nan_wins(backend):
    x = np.full((1, 1, 3, 3), -np.inf, np.float32)
    x[0, 0, 2, 2] = -5.0
    y, indices = backend.max_pool2d_forward(x, (2, 2), (2, 2), (1, 1))
    # window (0, 0) holds only x[0, 0] = -inf: the padding never wins, the first input position does
    assert y[0, 0, 0, 0] == -np.inf and indices[0, 0, 0, 0] == 0
    assert y[0, 0, 1, 1] == -5.0 and indices[0, 0, 1, 1] == 8
    x = np.array([[[[1.0, np.nan, 3.0, 2.0]]]], np.float64)
    y, indices = backend.max_pool2d_forward(x, (1, 4), (1, 1), (0, 0))
    assert np.isnan(y[0, 0, 0, 0]) and indices[0, 0, 0, 0] == 1


@BACKENDS
def test_max_pool2d_backward_accumulates_overlapping_windows(backend):
    x = np.zeros((1, 1, 3, 3), np.float64)
    x[0, 0, 1, 1] = 1.0                                  # the max of all four 2x2 windows
    y, indices = backend.max_pool2d_forward(x, (2, 2), (1, 1), (0, 0))
    assert (indices == 4).all()
    grad_x = backend.max_pool2d_backward(np.ones_like(y), indices, x.shape)
    assert grad_x[0, 0, 1, 1] == 4 and grad_x.sum() == 4


@BACKENDS
def test_pooling_with_an_empty_batch(backend):
    x = np.zeros((0, 2, 4, 4), np.float32)
    y, indices = backend.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    assert y.shape == indices.shape == (0, 2, 2, 2)
    assert backend.max_pool2d_backward(y, indices, x.shape).shape == x.shape
    assert backend.avg_pool2d_backward(backend.avg_pool2d_forward(x, (2, 2), (2, 2), (0, 0)), x.shape,
                                       (2, 2), (2, 2), (0, 0)).shape == x.shape


# -- the reference against finite differences ------------------------------------------------

def _numeric_grad(f, a, eps=1e-6):
    grad = np.zeros_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("kernel_size,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 1)),
                                                        ((3, 3), (2, 1), (1, 0))])
def test_reference_pool_backward_matches_finite_differences(kernel_size, stride, padding):
    rng = np.random.default_rng(1)
    x = _distinct(rng, (2, 2, 6, 5), np.float64)
    args = (kernel_size, stride, padding)
    y, indices = ref.max_pool2d_forward(x, *args)
    r = rand(rng, y.shape, np.float64)
    np.testing.assert_allclose(ref.max_pool2d_backward(r, indices, x.shape),
                               _numeric_grad(lambda: float(np.sum(ref.max_pool2d_forward(x, *args)[0] * r)), x),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ref.avg_pool2d_backward(r, x.shape, *args),
                               _numeric_grad(lambda: float(np.sum(ref.avg_pool2d_forward(x, *args) * r)), x),
                               rtol=1e-6, atol=1e-8)


# -- against PyTorch ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@BACKENDS
@settings(max_examples=20, deadline=None)
@given(geometry=pool_geometries(), seed=st.integers(0, 2**31))
def test_pooling_matches_pytorch(backend, dtype, geometry, seed):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x = _distinct(rng, geometry["x_shape"], dtype)
    kernel_size, stride, padding = _args(geometry)

    tx = torch.tensor(x, requires_grad=True)
    ty, tindices = F.max_pool2d(tx, kernel_size, stride, padding, return_indices=True)
    y, indices = backend.max_pool2d_forward(x, kernel_size, stride, padding)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, tindices.numpy())
    grad_y = rand(rng, y.shape, dtype)
    ty.backward(torch.tensor(grad_y))
    assert_close(backend.max_pool2d_backward(grad_y, indices, x.shape), tx.grad.numpy(), dtype)

    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, kernel_size, stride, padding, count_include_pad=True)
    assert_close(backend.avg_pool2d_forward(x, kernel_size, stride, padding), ty.detach().numpy(), dtype)
    ty.backward(torch.tensor(grad_y))
    assert_close(backend.avg_pool2d_backward(grad_y, x.shape, kernel_size, stride, padding), tx.grad.numpy(), dtype)


@BACKENDS
def test_max_pool2d_nan_and_infinity_match_pytorch(backend):
    torch = pytest.importorskip("torch")
    x = np.array([[[[np.nan, 1.0, -np.inf, 2.0],
                    [3.0, np.nan, -np.inf, -np.inf],
                    [-np.inf, -np.inf, 0.0, np.nan]]]], np.float32)
    y, indices = backend.max_pool2d_forward(x, (2, 2), (1, 1), (1, 1))
    ty, tindices = torch.nn.functional.max_pool2d(torch.tensor(x), 2, 1, 1, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(indices, tindices.numpy())
