"""Autograd gradients of every differentiable op against central finite differences, float64.

Runs on the reference backend (the readable statement of the math); the core layer ops are also
checked on the compiled ``cpu`` backend in float64. Shapes, strides, paddings, dilations and
groups are drawn by hypothesis; sizes stay small because each check costs 2 forwards per element.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastnn
import fastnn.functional as F

from helpers import gradcheck

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def rand(rng, *shape):
    return rng.standard_normal(shape)


def separated(rng, *shape, spacing=0.05):
    """Distinct values at least ``spacing`` apart, away from 0: no ties or kinks within eps."""
    n = int(np.prod(shape))
    values = (rng.permutation(n) - n / 2 + 0.5) * spacing
    return values.reshape(shape)


@st.composite
def conv_configs(draw, max_hw=7):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h_min = max(1, dh * (kh - 1) + 1 - 2 * ph)
    w_min = max(1, dw * (kw - 1) + 1 - 2 * pw)
    h = draw(st.integers(h_min, max(h_min, max_hw)))
    w = draw(st.integers(w_min, max(w_min, max_hw)))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    return dict(x=(n, cin, h, w), weight=(cout, cin // groups, kh, kw), bias=bias,
                stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)


@settings(max_examples=20)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_conv2d_gradients_match_finite_differences(cfg, seed):
    rng = np.random.default_rng(seed)
    x, w = rand(rng, *cfg["x"]), rand(rng, *cfg["weight"])
    b = rand(rng, cfg["weight"][0]) if cfg["bias"] else None
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    if b is None:
        gradcheck(lambda x, w: F.conv2d(x, w, None, **kw), x, w)
    else:
        gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kw), x, w, b)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2), (3, 1, 1, 4)])
def test_conv2d_gradients_match_finite_differences_on_cpu_backend(stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, 2, 4, 7, 6), rand(rng, 4, 4 // groups, 3, 2), rand(rng, 4)
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), x, w, b, backend="cpu")


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
@pytest.mark.parametrize("x_shape", [(3, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients_match_finite_differences(backend_name, x_shape, bias):
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, *x_shape), rand(rng, 5, 4), rand(rng, 5)
    if bias:
        gradcheck(F.linear, x, w, b, backend=backend_name)
    else:
        gradcheck(lambda x, w: F.linear(x, w), x, w, backend=backend_name)


@st.composite
def pool_configs(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w),
                kernel_size=(kh, kw), stride=stride, padding=(ph, pw))


@settings(max_examples=20)
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_max_pool2d_gradients_match_finite_differences(cfg, seed):
    x = separated(np.random.default_rng(seed), *cfg["shape"])
    gradcheck(lambda x: F.max_pool2d(x, cfg["kernel_size"], cfg["stride"], cfg["padding"]), x)


@settings(max_examples=20)
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_avg_pool2d_gradients_match_finite_differences(cfg, seed):
    x = rand(np.random.default_rng(seed), *cfg["shape"])
    gradcheck(lambda x: F.avg_pool2d(x, cfg["kernel_size"], cfg["stride"], cfg["padding"]), x)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
def test_pool_gradients_match_finite_differences_with_overlapping_windows(backend_name):
    x = separated(np.random.default_rng(3), 2, 2, 6, 5)
    gradcheck(lambda x: F.max_pool2d(x, 3, 1, 1), x, backend=backend_name)
    gradcheck(lambda x: F.avg_pool2d(x, 3, 2, 1), x, backend=backend_name)


def test_max_pool2d_with_return_indices_backpropagates_through_values():
    x = separated(np.random.default_rng(4), 1, 2, 5, 5)

    def fn(x):
        values, indices = F.max_pool2d(x, 2, return_indices=True)
        return values

    gradcheck(fn, x)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
@pytest.mark.parametrize("op", [F.relu, F.sigmoid, F.tanh])
def test_activation_gradients_match_finite_differences(op, backend_name):
    x = separated(np.random.default_rng(5), 3, 4, 2)
    gradcheck(op, x, backend=backend_name)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape,dim", [((4, 5), 1), ((4, 5), 0), ((2, 3, 4), -1), ((2, 3, 2, 2), 1)])
def test_softmax_gradients_match_finite_differences(op, shape, dim, backend_name):
    x = rand(np.random.default_rng(6), *shape) * 2
    gradcheck(lambda x: op(x, dim), x, backend=backend_name)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.7])
def test_dropout_gradient_matches_finite_differences_for_a_fixed_mask(p):
    x = rand(np.random.default_rng(7), 4, 6)

    def fn(x):
        fastnn.manual_seed(123)  # the same mask on every call
        return F.dropout(x, p, training=True)

    gradcheck(fn, x)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 4)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients_match_finite_differences(shape, affine, training, backend_name):
    rng = np.random.default_rng(8)
    c = shape[1]
    x = rand(rng, *shape) * 2 + 0.5
    rm, rv = rand(rng, c), rng.uniform(0.5, 2.0, c)
    w, b = rand(rng, c), rand(rng, c)

    def fn(x, *wb):
        # fresh running buffers per call: training mode updates them in place
        return F.batch_norm(x, rm.copy(), rv.copy(), *wb, training=training, momentum=0.1, eps=1e-5)

    if affine:
        gradcheck(fn, x, w, b, backend=backend_name)
    else:
        gradcheck(fn, x, backend=backend_name)


def test_batch_norm_training_gradient_without_running_stats_matches_finite_differences():
    x = rand(np.random.default_rng(9), 5, 3, 2, 2)
    gradcheck(lambda x: F.batch_norm(x, None, None, training=True), x)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_gradient_matches_finite_differences(reduction, label_smoothing, backend_name):
    rng = np.random.default_rng(10)
    logits = rand(rng, 6, 4) * 2
    target = rng.integers(0, 4, 6)
    gradcheck(lambda z, t: F.cross_entropy(z, t, reduction=reduction, label_smoothing=label_smoothing),
              logits, target, backend=backend_name)


def test_cross_entropy_gradient_matches_finite_differences_for_spatial_logits():
    rng = np.random.default_rng(11)
    logits = rand(rng, 2, 3, 2, 2)
    target = rng.integers(0, 3, (2, 2, 2))
    gradcheck(lambda z, t: F.cross_entropy(z, t), logits, target)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_gradient_matches_finite_differences_for_both_arguments(reduction):
    rng = np.random.default_rng(12)
    gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), rand(rng, 3, 4), rand(rng, 3, 4))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((4,), (2, 1, 4)), ((3, 4), ())])
def test_arithmetic_gradients_with_broadcasting_match_finite_differences(op, shapes):
    rng = np.random.default_rng(13)
    a, b = rand(rng, *shapes[0]), rand(rng, *shapes[1])
    if op == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)
    fn = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}[op]
    gradcheck(fn, a, b)


def test_scalar_operands_and_negation_gradients_match_finite_differences():
    x = rand(np.random.default_rng(14), 3, 2) + 3
    gradcheck(lambda x: 2.0 - x * 3.0 + 1.5 / x - (-x) / 4.0, x)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((1, 4), (4, 1)), ((5, 1), (1, 3))])
def test_matmul_gradients_match_finite_differences(shapes, backend_name):
    rng = np.random.default_rng(15)
    gradcheck(lambda a, b: a @ b, rand(rng, *shapes[0]), rand(rng, *shapes[1]), backend=backend_name)


def test_reduction_and_reshape_gradients_match_finite_differences():
    rng = np.random.default_rng(16)
    x = rand(rng, 2, 3, 4)
    gradcheck(lambda x: x.sum().reshape(1), x)
    gradcheck(lambda x: x.mean().reshape(1, 1), x)
    gradcheck(lambda x: x.reshape(6, 4) * x.reshape(6, 4), x)
    gradcheck(lambda x: x.reshape(-1, 2).sum(), x)


@pytest.mark.parametrize("index", [
    (0,), (slice(1, None),), (Ellipsis, 1), (slice(None), slice(None, None, 2)),
    (np.array([0, 2, 0]),), (slice(None), np.array([1, 1, 3])), (-1, slice(0, 3))])
def test_indexing_gradients_match_finite_differences(index):
    x = rand(np.random.default_rng(17), 3, 4)
    gradcheck(lambda x: x[index], x)


def test_boolean_mask_indexing_gradient_matches_finite_differences():
    x = rand(np.random.default_rng(18), 3, 4)
    mask = x > 0
    gradcheck(lambda x: x[mask], x)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack_gradients_match_finite_differences(dim):
    rng = np.random.default_rng(19)
    a, b = rand(rng, 2, 3), rand(rng, 2, 3)
    gradcheck(lambda a, b: fastnn.cat([a, b], dim=dim), a, b)
    gradcheck(lambda a, b: fastnn.stack([a, b], dim=dim), a, b)


def test_composite_lenet_style_graph_gradients_match_finite_differences():
    """Many ops chained (conv, BN, relu, pool, linear, CE) with a tensor reused twice."""
    rng = np.random.default_rng(20)
    x = rand(rng, 2, 1, 6, 6)
    w1, b1 = rand(rng, 2, 1, 3, 3), rand(rng, 2)
    g, beta = rand(rng, 2), rand(rng, 2)
    w2 = rand(rng, 3, 8)
    target = np.array([0, 2])

    def fn(x, w1, b1, g, beta, w2):
        h = F.conv2d(x, w1, b1, padding=1)
        h = F.batch_norm(h, None, None, g, beta, training=True)
        h = F.max_pool2d(F.tanh(h) + h * 0.1, 3)
        z = F.linear(h.reshape(2, 8), w2)
        return F.cross_entropy(z, target) + (z * z).mean() * 0.01

    gradcheck(fn, x, w1, b1, g, beta, w2)
