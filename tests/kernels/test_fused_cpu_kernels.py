"""The cpu backend's fused Numba kernels (activation backward, softmax+CE, batch norm, optimiser
steps) against the NumPy reference, over hypothesis-drawn shapes, both dtypes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref
from fastnn.backends.cpu import _numba


@pytest.fixture(autouse=True, scope="module", params=["serial", "parallel"])
def twin(request):
    """Run every test of this file on both compiled twins of each Numba kernel: the serial one
    (small inputs) and the prange one (large inputs), by moving the size threshold."""
    previous = _numba.PARALLEL_MIN_ELEMENTS
    _numba.PARALLEL_MIN_ELEMENTS = 1 << 62 if request.param == "serial" else 0
    yield request.param
    _numba.PARALLEL_MIN_ELEMENTS = previous

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_activation_backward_is_the_reference_hadamard_product(name, dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x = _rand(rng, shape, dtype)
    grad_y = _rand(rng, shape, dtype)
    y = getattr(ref, name + "_forward")(x)
    np.testing.assert_allclose(getattr(cpu, name + "_forward")(x), y, **TOL[dtype])
    np.testing.assert_allclose(getattr(cpu, name + "_backward")(grad_y, y),
                               getattr(ref, name + "_backward")(grad_y, y), **TOL[dtype])


def test_relu_kernels_accept_non_contiguous_views():
    rng = np.random.default_rng(0)
    x = _rand(rng, (6, 8), np.float32)[:, ::2]
    g = _rand(rng, (4, 6), np.float32).T
    assert not x.flags.c_contiguous and not g.flags.c_contiguous
    y = cpu.relu_forward(x)
    np.testing.assert_array_equal(y, ref.relu_forward(x))
    np.testing.assert_array_equal(cpu.relu_backward(g, y), ref.relu_backward(g, y))


def test_relu_propagates_nan_like_numpy_maximum():
    x = np.array([np.nan, -1.0, 2.0], np.float32)
    np.testing.assert_array_equal(cpu.relu_forward(x), ref.relu_forward(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 12), smoothing=st.sampled_from([0.0, 0.1, 0.5]),
       seed=st.integers(0, 2**31))
def test_fused_softmax_cross_entropy_matches_reference(dtype, reduction, n, c, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits = _rand(rng, (n, c), dtype) * 5
    target = rng.integers(0, c, n)
    loss, saved = cpu.cross_entropy_forward(logits, target, reduction, smoothing)
    loss_ref, saved_ref = ref.cross_entropy_forward(logits, target, reduction, smoothing)
    np.testing.assert_allclose(loss, loss_ref, **TOL[dtype])
    grad_loss = (rng.random(loss.shape) + 0.5).astype(dtype)
    np.testing.assert_allclose(cpu.cross_entropy_backward(grad_loss, saved),
                               ref.cross_entropy_backward(grad_loss, saved_ref), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@settings(max_examples=15, deadline=None)
@given(shape=st.tuples(st.integers(2, 5), st.integers(1, 6)).flatmap(
    lambda nc: st.lists(st.integers(1, 5), max_size=2).map(lambda rest: nc + tuple(rest))),
    affine=st.booleans(), relu=st.booleans(), seed=st.integers(0, 2**31))
def test_batch_norm_kernels_match_reference(dtype, training, shape, affine, relu, seed):
    """batch_norm and batch_norm_relu (the ReLU fused into the normalising pass and the backward)."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = _rand(rng, shape, dtype) * 3 + 1
    weight = _rand(rng, (c,), dtype) if affine else None
    bias = _rand(rng, (c,), dtype) if affine else None
    stats_cpu = [_rand(rng, (c,), dtype), (rng.random(c) + 0.5).astype(dtype)]
    stats_ref = [s.copy() for s in stats_cpu]
    forward = "batch_norm_relu_forward" if relu else "batch_norm_forward"
    y, saved = getattr(cpu, forward)(x, weight, bias, *stats_cpu, training, 0.1, 1e-5)
    y_ref, saved_ref = getattr(ref, forward)(x, weight, bias, *stats_ref, training, 0.1, 1e-5)
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    assert not relu or (y >= 0).all()
    for a, b in zip(stats_cpu, stats_ref):
        np.testing.assert_allclose(a, b, **TOL[dtype])
    grad_y = _rand(rng, shape, dtype)
    if relu:
        grads = cpu.batch_norm_relu_backward(grad_y, y, saved, (True,))
        grads_ref = ref.batch_norm_relu_backward(grad_y, y_ref, saved_ref, (True,))
    else:
        grads = cpu.batch_norm_backward(grad_y, saved, (True,))
        grads_ref = ref.batch_norm_backward(grad_y, saved_ref, (True,))
    for a, b in zip(grads, grads_ref):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,dampening,nesterov,weight_decay",
                         [(0.0, 0.0, False, 0.0), (0.9, 0.0, False, 0.0), (0.9, 0.0, True, 1e-2),
                          (0.5, 0.3, False, 1e-3)])
def test_fused_sgd_step_matches_reference_over_several_steps(dtype, momentum, dampening, nesterov, weight_decay):
    rng = np.random.default_rng(1)
    p_cpu = _rand(rng, (7, 5), dtype)
    p_ref = p_cpu.copy()
    buf_cpu = buf_ref = None
    for _ in range(4):
        g = _rand(rng, (7, 5), dtype)
        buf_cpu = cpu.sgd_step(p_cpu, g, buf_cpu, 0.1, momentum, dampening, weight_decay, nesterov)
        buf_ref = ref.sgd_step(p_ref, g, buf_ref, 0.1, momentum, dampening, weight_decay, nesterov)
    np.testing.assert_allclose(p_cpu, p_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.05, False), (0.05, True)])
def test_fused_adam_step_matches_reference_over_several_steps(dtype, weight_decay, decoupled):
    rng = np.random.default_rng(2)
    p_cpu = _rand(rng, (11,), dtype)
    p_ref = p_cpu.copy()
    state_cpu = [np.zeros_like(p_cpu), np.zeros_like(p_cpu)]
    state_ref = [np.zeros_like(p_cpu), np.zeros_like(p_cpu)]
    for step in range(1, 6):
        g = _rand(rng, (11,), dtype)
        cpu.adam_step(p_cpu, g, *state_cpu, step, 1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled)
        ref.adam_step(p_ref, g, *state_ref, step, 1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    np.testing.assert_allclose(p_cpu, p_ref, **TOL[dtype])
    np.testing.assert_allclose(state_cpu[1], state_ref[1], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=15, deadline=None)
@given(shape=shapes, slope=st.sampled_from([0.01, 0.2, -0.5]), alpha=st.sampled_from([0.5, 1.0, 2.0]),
       seed=st.integers(0, 2**31))
def test_leaky_relu_and_elu_kernels_match_reference(dtype, shape, slope, alpha, seed):
    rng = np.random.default_rng(seed)
    x = _rand(rng, shape, dtype)
    grad_y = _rand(rng, shape, dtype)
    np.testing.assert_allclose(cpu.leaky_relu_forward(x, slope), ref.leaky_relu_forward(x, slope), **TOL[dtype])
    np.testing.assert_allclose(cpu.leaky_relu_backward(grad_y, x, slope), ref.leaky_relu_backward(grad_y, x, slope),
                               **TOL[dtype])
    y = ref.elu_forward(x, alpha)
    np.testing.assert_allclose(cpu.elu_forward(x, alpha), y, **TOL[dtype])
    np.testing.assert_allclose(cpu.elu_backward(grad_y, y, alpha), ref.elu_backward(grad_y, y, alpha), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 17), seed=st.integers(0, 2**31))
def test_standardize_rows_kernels_match_reference(dtype, m, k, seed):
    rng = np.random.default_rng(seed)
    x = _rand(rng, (m, k), dtype) * 2 + 3
    x_hat, invstd = cpu.standardize_rows_forward(x, 1e-5)
    x_hat_ref, invstd_ref = ref.standardize_rows_forward(x, 1e-5)
    np.testing.assert_allclose(x_hat, x_hat_ref, **TOL[dtype])
    g = _rand(rng, (m, k), dtype)
    np.testing.assert_allclose(cpu.standardize_rows_backward(g, x_hat, invstd),
                               ref.standardize_rows_backward(g, x_hat_ref, invstd_ref),
                               rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,centered,weight_decay", [(0.0, False, 0.0), (0.9, False, 0.01), (0.5, True, 0.0)])
def test_fused_rmsprop_step_matches_reference(dtype, momentum, centered, weight_decay):
    rng = np.random.default_rng(3)
    p_cpu = _rand(rng, (13,), dtype)
    p_ref = p_cpu.copy()
    states = [[np.zeros_like(p_cpu) if (i == 0 or (i == 1 and momentum) or (i == 2 and centered)) else None
               for i in range(3)] for _ in range(2)]
    for _ in range(5):
        g = _rand(rng, (13,), dtype)
        cpu.rmsprop_step(p_cpu, g, *states[0], 1e-2, 0.99, 1e-8, weight_decay, momentum, centered)
        ref.rmsprop_step(p_ref, g, *states[1], 1e-2, 0.99, 1e-8, weight_decay, momentum, centered)
    np.testing.assert_allclose(p_cpu, p_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["nearest", "linear", "linear-aligned", "adaptive"])
@settings(max_examples=10, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), out_h=st.integers(1, 12), out_w=st.integers(1, 12),
       seed=st.integers(0, 2**31))
def test_resample_kernels_match_reference(dtype, kind, h, w, out_h, out_w, seed):
    rng = np.random.default_rng(seed)
    if kind == "adaptive":
        out_h, out_w = min(out_h, h), min(out_w, w)
        mh, mw = ref.adaptive_avg_matrix(h, out_h, dtype), ref.adaptive_avg_matrix(w, out_w, dtype)
    else:
        mode = "nearest" if kind == "nearest" else "linear"
        aligned = kind == "linear-aligned"
        mh = ref.interpolation_matrix(h, out_h, mode, h / out_h, aligned, dtype)
        mw = ref.interpolation_matrix(w, out_w, mode, w / out_w, aligned, dtype)
    x = _rand(rng, (2, 3, h, w), dtype)
    np.testing.assert_allclose(cpu.resample2d_forward(x, mh, mw), ref.resample2d_forward(x, mh, mw), **TOL[dtype])
    g = _rand(rng, (2, 3, out_h, out_w), dtype)
    np.testing.assert_allclose(cpu.resample2d_backward(g, mh, mw), ref.resample2d_backward(g, mh, mw), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_unpool_kernels_match_reference(dtype):
    rng = np.random.default_rng(4)
    x = _rand(rng, (2, 3, 4, 5), dtype)
    plane = 8 * 10
    indices = np.stack([rng.permutation(plane)[:20] for _ in range(6)]).reshape(2, 3, 4, 5).astype(np.int64)
    y = cpu.max_unpool2d_forward(x, indices, (8, 10))
    np.testing.assert_array_equal(y, ref.max_unpool2d_forward(x, indices, (8, 10)))
    g = _rand(rng, (2, 3, 8, 10), dtype)
    np.testing.assert_array_equal(cpu.max_unpool2d_backward(g, indices), ref.max_unpool2d_backward(g, indices))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_fused_nll_loss_matches_reference(dtype, reduction, n, c, seed):
    rng = np.random.default_rng(seed)
    log_probs = _rand(rng, (n, c), dtype) - 3
    target = rng.integers(0, c, n)
    loss = cpu.nll_loss_forward(log_probs, target, reduction)
    np.testing.assert_allclose(loss, ref.nll_loss_forward(log_probs, target, reduction), **TOL[dtype])
    grad_loss = (rng.random(loss.shape) + 0.5).astype(dtype)
    np.testing.assert_allclose(cpu.nll_loss_backward(grad_loss, log_probs.shape, dtype, target, reduction),
                               ref.nll_loss_backward(grad_loss, log_probs.shape, dtype, target, reduction),
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple), seed=st.integers(0, 2**31))
def test_fused_l1_loss_matches_reference(dtype, reduction, shape, seed):
    rng = np.random.default_rng(seed)
    x, target = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    target.reshape(-1)[0] = x.reshape(-1)[0]          # a zero difference: sign 0
    loss, diff = cpu.l1_loss_forward(x, target, reduction)
    loss_ref, diff_ref = ref.l1_loss_forward(x, target, reduction)
    np.testing.assert_allclose(loss, loss_ref, **TOL[dtype])
    grad_loss = (rng.random(np.shape(loss)) + 0.5).astype(dtype)
    np.testing.assert_allclose(cpu.l1_loss_backward(grad_loss, diff, reduction),
                               ref.l1_loss_backward(grad_loss, diff_ref, reduction), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighting", ["none", "scalar", "per-class"])
@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 8), c=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_fused_bce_with_logits_matches_reference(dtype, reduction, weighting, n, c, seed):
    rng = np.random.default_rng(seed)
    x = _rand(rng, (n, c), dtype) * 30                 # large |x|: the stable softplus matters
    target = rng.random((n, c)).astype(dtype)
    pos_weight = {"none": None, "scalar": np.asarray(2.5, dtype),
                  "per-class": (rng.random(c) + 0.5).astype(dtype)}[weighting]
    loss = cpu.bce_with_logits_forward(x, target, reduction, pos_weight)
    np.testing.assert_allclose(loss, ref.bce_with_logits_forward(x, target, reduction, pos_weight), **TOL[dtype])
    grad_loss = (rng.random(np.shape(loss)) + 0.5).astype(dtype)
    for g, g_ref in zip(cpu.bce_with_logits_backward(grad_loss, x, target, reduction, pos_weight),
                        ref.bce_with_logits_backward(grad_loss, x, target, reduction, pos_weight)):
        np.testing.assert_allclose(g, g_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=20, deadline=None)
@given(shape=shapes, p=st.sampled_from([0.0, 0.1, 0.4, 0.5, 0.999, 1.0]), mask_seed=st.integers(0, 2**31 - 1),
       seed=st.integers(0, 2**31))
def test_dropout_keeps_the_reference_elements_bit_for_bit(dtype, shape, p, mask_seed, seed):
    """The compiled dropout (Numba's int64 hash) keeps exactly the reference's elements (uint64
    NumPy hash), scaled by the same rounded 1 / (1 - p); backward applies the same mask."""
    rng = np.random.default_rng(seed)
    x, g = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    y = cpu.dropout_forward(x, p, mask_seed)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.tobytes() == ref.dropout_forward(x, p, mask_seed).tobytes()          # +0 for dropped, not -0
    assert cpu.dropout_backward(g, p, mask_seed).tobytes() == ref.dropout_backward(g, p, mask_seed).tobytes()


@pytest.mark.parametrize("seed", [0, 2**31 - 1, 2**32 + 5, -3])
def test_dropout_on_a_large_input_keeps_the_reference_elements(seed):
    """Sizes above the parallel threshold (the prange twin), and seeds taken mod 2³² alike."""
    x = _rand(np.random.default_rng(1), (300, 700), np.float32)
    y = cpu.dropout_forward(x, 0.4, seed)
    assert y.tobytes() == ref.dropout_forward(x, 0.4, seed).tobytes()
    assert y.tobytes() == ref.dropout_forward(x, 0.4, seed % 2**32).tobytes()


def test_dropout_reads_a_non_contiguous_input_in_c_order():
    x = _rand(np.random.default_rng(0), (6, 8), np.float32)[:, ::2]
    np.testing.assert_array_equal(cpu.dropout_forward(x, 0.5, 3), ref.dropout_forward(np.ascontiguousarray(x), 0.5, 3))


def test_dropout_of_float16_is_the_references():
    x = np.linspace(-2, 2, 50, dtype=np.float16)
    y = cpu.dropout_forward(x, 0.3, 11)
    assert y.dtype == np.float16 and y.tobytes() == ref.dropout_forward(x, 0.3, 11).tobytes()
