"""Tensor basics and autograd semantics, pinned to PyTorch's behaviour."""
import numpy as np
import pytest

import fastnn
import fastnn.functional as F

from helpers import assert_close


# ---------------------------------------------------------------------------------------------
# construction and attributes
# ---------------------------------------------------------------------------------------------
def test_tensor_from_python_floats_defaults_to_float32_without_grad():
    t = fastnn.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert isinstance(t, fastnn.Tensor)
    assert t.shape == (2, 3)
    assert t.ndim == 2
    assert t.dtype == np.float32
    assert t.device == "cpu"
    assert t.requires_grad is False
    assert t.grad is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tensor_keeps_the_dtype_of_float_numpy_arrays(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    assert fastnn.tensor(a).dtype == dtype
    assert fastnn.tensor(a, requires_grad=True).dtype == dtype


def test_tensor_dtype_argument_converts():
    assert fastnn.tensor([1, 2, 3], dtype=np.float64).dtype == np.float64
    assert fastnn.tensor(np.ones(3, np.float64), dtype=np.float32).dtype == np.float32


def test_tensor_from_integer_data_is_int64_like_torch():
    t = fastnn.tensor([1, 2, 3])
    assert t.dtype == np.int64
    assert t.requires_grad is False


def test_tensor_copies_its_data_like_torch_tensor():
    a = np.ones((2, 2), np.float32)
    t = fastnn.tensor(a)
    a[0, 0] = 5.0
    assert t.numpy()[0, 0] == 1.0


def test_numpy_returns_an_ndarray_with_the_values():
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    out = fastnn.tensor(a).numpy()
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, a)


def test_item_returns_a_python_number_of_a_one_element_tensor():
    v = fastnn.tensor([[2.5]]).item()
    assert isinstance(v, float) and v == 2.5
    s = fastnn.tensor(np.arange(6.0)).sum().item()
    assert isinstance(s, float) and s == 15.0


def test_item_on_a_multi_element_tensor_raises():
    with pytest.raises((ValueError, RuntimeError), match="item|element"):
        fastnn.tensor([1.0, 2.0]).item()


@pytest.mark.parametrize("shape_arg", [((6, 4),), (6, 4), ((-1, 4),), (2, -1, 2)])
def test_reshape_accepts_a_tuple_or_varargs_with_minus_one(shape_arg):
    x = fastnn.tensor(np.arange(24.0).reshape(2, 3, 4))
    y = x.reshape(*shape_arg)
    expected = np.arange(24.0).reshape(*shape_arg)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y.numpy(), expected)


def test_indexing_returns_tensors_with_numpy_semantics():
    a = np.arange(60.0, dtype=np.float32).reshape(3, 4, 5)
    t = fastnn.tensor(a)
    for index in [1, -1, (0, 2), (slice(None), 1), (Ellipsis, 3), (slice(None, None, 2),), (None, 0),
                  np.array([2, 0]), a[:, 0, 0] > 10]:
        out = t[index]
        assert isinstance(out, fastnn.Tensor)
        np.testing.assert_array_equal(out.numpy(), a[index])


def test_arithmetic_values_match_numpy_with_broadcasting():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 1, 4)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32) + 3
    ta, tb = fastnn.tensor(a), fastnn.tensor(b)
    for got, want in [(ta + tb, a + b), (ta - tb, a - b), (ta * tb, a * b), (ta / tb, a / b), (-ta, -a),
                      (ta @ np.ones((4, 2), np.float32), a @ np.ones((4, 2), np.float32))]:
        assert got.shape == want.shape
        assert got.dtype == np.float32
        assert_close(got.numpy(), want, np.float32)


def test_float64_tensors_stay_float64_through_every_op():
    rng = np.random.default_rng(2)
    x = fastnn.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = fastnn.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    y = F.max_pool2d(F.relu(y), 2)
    y = F.avg_pool2d(F.tanh(y) + F.sigmoid(y), 1)
    y = F.linear(y.reshape(2, -1), fastnn.tensor(rng.standard_normal((5, 36))))
    loss = F.cross_entropy(F.log_softmax(y, 1), np.array([0, 4])) + F.mse_loss(F.softmax(y, 1), np.zeros((2, 5)))
    assert y.dtype == np.float64 and loss.dtype == np.float64
    loss.backward()
    assert x.grad.dtype == np.float64 and w.grad.dtype == np.float64


def test_cat_and_stack_values_and_shapes():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(6.0, 12.0).reshape(2, 3)
    np.testing.assert_array_equal(fastnn.cat([fastnn.tensor(a), fastnn.tensor(b)], dim=1).numpy(),
                                  np.concatenate([a, b], 1))
    np.testing.assert_array_equal(fastnn.stack([fastnn.tensor(a), b], dim=0).numpy(), np.stack([a, b], 0))
    assert fastnn.cat([a, b]).shape == (4, 3)  # default dim=0, numpy inputs accepted
    assert fastnn.stack([a, b], dim=-1).shape == (2, 3, 2)


def test_manual_seed_makes_random_initialisation_reproducible():
    fastnn.manual_seed(7)
    w1 = fastnn.nn.Linear(8, 4).weight.numpy().copy()
    fastnn.manual_seed(7)
    w2 = fastnn.nn.Linear(8, 4).weight.numpy().copy()
    fastnn.manual_seed(8)
    w3 = fastnn.nn.Linear(8, 4).weight.numpy().copy()
    np.testing.assert_array_equal(w1, w2)
    assert not np.array_equal(w1, w3)


# ---------------------------------------------------------------------------------------------
# autograd
# ---------------------------------------------------------------------------------------------
def test_requires_grad_propagates_to_results_of_ops():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    c = fastnn.tensor([3.0, 4.0])
    assert (x * c).requires_grad
    assert (c + x).requires_grad
    assert F.relu(x).requires_grad
    assert x[0].requires_grad
    assert not (c * 2).requires_grad
    assert not F.relu(c).requires_grad


def test_grad_is_a_tensor_of_the_same_shape_and_dtype():
    x = fastnn.tensor(np.ones((2, 3)), requires_grad=True)
    (x * 3.0).sum().backward()
    assert isinstance(x.grad, fastnn.Tensor)
    assert x.grad.shape == (2, 3) and x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 3.0))


def test_gradients_accumulate_over_two_backward_calls():
    x = fastnn.tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -4.0, 6.0])
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, -1.0, 9.0])


def test_accumulated_grad_does_not_alias_the_first_backward_result():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    x.sum().backward()
    first = x.grad
    first_values = first.numpy().copy()
    x.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first_values)
    # a second, independent leaf whose grad came from the same upstream array must not be touched
    a = fastnn.tensor([1.0, 2.0], requires_grad=True)
    b = fastnn.tensor([1.0, 2.0], requires_grad=True)
    (a + b).sum().backward()
    a.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2.0, 2.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])


def test_a_tensor_used_twice_gets_the_sum_of_both_gradients():
    x = fastnn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 5.0, 7.0])
    y = fastnn.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    (y @ y).sum().backward()  # d/dy sum(y y) = 1 y^T + y^T 1
    ones = np.ones((2, 2))
    yv = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(y.grad.numpy(), ones @ yv.T + yv.T @ ones)


def test_diamond_graph_accumulates_through_both_paths():
    x = fastnn.tensor([0.5, -1.0], requires_grad=True)
    h = x * 2.0
    out = (F.relu(h) + F.tanh(h) * h).sum()
    out.backward()
    hv = np.array([1.0, -2.0])
    expected = 2.0 * ((hv > 0) + (1 - np.tanh(hv) ** 2) * hv + np.tanh(hv))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("a_shape,b_shape", [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((4,), (2, 3, 4)),
                                             ((2, 1, 4), (3, 1)), ((3, 4), ()), ((1, 1), (3, 4))])
def test_broadcast_gradients_reduce_to_each_operand_shape(a_shape, b_shape):
    rng = np.random.default_rng(3)
    av, bv = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    a = fastnn.tensor(av, requires_grad=True)
    b = fastnn.tensor(bv, requires_grad=True)
    (a * b).sum().backward()
    out_shape = np.broadcast_shapes(a_shape, b_shape)
    assert a.grad.shape == a_shape and b.grad.shape == b_shape
    np.testing.assert_allclose(a.grad.numpy(), _reduce(np.broadcast_to(bv, out_shape), a_shape))
    np.testing.assert_allclose(b.grad.numpy(), _reduce(np.broadcast_to(av, out_shape), b_shape))


def _reduce(g, shape):
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    return g.sum(axis=tuple(i for i, s in enumerate(shape) if s == 1), keepdims=True).reshape(shape)


def test_backward_with_an_explicit_grad_on_a_non_scalar():
    x = fastnn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    y.backward(np.array([1.0, 0.5, -1.0], np.float32))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, -6.0])
    z = fastnn.tensor([1.0, 2.0], requires_grad=True)
    (z * 2.0).backward(fastnn.tensor([1.0, 1.0]))
    np.testing.assert_allclose(z.grad.numpy(), [2.0, 2.0])


def test_backward_on_a_non_scalar_without_grad_raises():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad|scalar"):
        (x * 2.0).backward()


def test_backward_on_a_tensor_that_does_not_require_grad_raises():
    with pytest.raises(RuntimeError, match="grad"):
        fastnn.tensor([1.0]).sum().backward()


def test_detach_stops_gradient_flow_and_shares_values():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 3.0).detach()
    assert d.requires_grad is False
    np.testing.assert_array_equal(d.numpy(), [3.0, 6.0])
    (x * d).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 6.0])  # d is a constant


def test_no_grad_stops_recording_and_restores_grad_mode():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    with fastnn.no_grad():
        y = x * 2.0
        z = F.relu(F.linear(x.reshape(1, 2), np.ones((3, 2), np.float32)))
    assert not y.requires_grad and not z.requires_grad
    assert fastnn.is_grad_enabled()
    assert (x * 2.0).requires_grad


def test_no_grad_restores_grad_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with fastnn.no_grad():
            1 / 0
    assert fastnn.is_grad_enabled()
    assert (fastnn.tensor([1.0], requires_grad=True) * 2.0).requires_grad


def test_no_grad_works_as_a_decorator():
    @fastnn.no_grad()
    def f(t):
        return t * 2.0

    assert not f(fastnn.tensor([1.0], requires_grad=True)).requires_grad


def test_gradient_of_unused_leaf_stays_none():
    x = fastnn.tensor([1.0], requires_grad=True)
    y = fastnn.tensor([2.0], requires_grad=True)
    (x * 2.0).sum().backward()
    assert y.grad is None


def test_indexing_gradient_scatters_and_accumulates_repeated_indices():
    x = fastnn.tensor(np.arange(4.0), requires_grad=True)
    x[np.array([0, 0, 3, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 0.0, 1.0])


def test_cat_and_stack_route_gradients_back_to_each_input():
    a = fastnn.tensor(np.ones((2, 2)), requires_grad=True)
    b = fastnn.tensor(np.ones((1, 2)), requires_grad=True)
    w = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    (fastnn.cat([a, b], dim=0) * w).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), w[:2])
    np.testing.assert_array_equal(b.grad.numpy(), w[2:])
    c = fastnn.tensor(np.ones(3), requires_grad=True)
    d = fastnn.tensor(np.ones(3), requires_grad=True)
    (fastnn.stack([c, d], dim=1) * np.array([[1.0, 2.0]])).sum().backward()
    np.testing.assert_array_equal(c.grad.numpy(), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(d.grad.numpy(), [2.0, 2.0, 2.0])


def test_sum_and_mean_gradients():
    x = fastnn.tensor(np.zeros((2, 5)), requires_grad=True)
    x.mean().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 5), 0.1))
    y = fastnn.tensor(np.zeros((2, 5)), requires_grad=True)
    (y.sum() * 2.0).backward()
    np.testing.assert_allclose(y.grad.numpy(), np.full((2, 5), 2.0))


def test_unary_minus_and_division_gradients():
    x = fastnn.tensor([2.0, 4.0], requires_grad=True)
    (-x / 2.0 + 1.0 / x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-0.5 - 0.25, -0.5 - 1 / 16])


def test_gradients_flow_into_numpy_backed_float64_leaves_only():
    """numpy operands are constants: mixing them in does not break backward."""
    x = fastnn.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * np.array([3.0, 4.0]) + np.array([1.0, 1.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_long_chain_backward_does_not_hit_the_recursion_limit():
    x = fastnn.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0])
