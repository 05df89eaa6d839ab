"""Every op against PyTorch: forward values, dtype and input gradients, on both backends
("cpu", the default compiled one, and "reference"), float32 and float64, including
non-contiguous NumPy inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

import fastnn  # noqa: E402
import fastnn.functional as F  # noqa: E402

from helpers import assert_close, fortran, helper_test_op, noncontiguous  # noqa: E402

torch.set_num_threads(1)


def rand(rng, *shape):
    return rng.standard_normal(shape)


# ---------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------
@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h_min = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    w_min = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    h = draw(st.integers(h_min, h_min + 10))
    w = draw(st.integers(w_min, w_min + 10))
    return dict(x=(draw(st.integers(1, 3)), cin, h, w), weight=(cout, cin // groups, kh, kw),
                bias=draw(st.booleans()), stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@settings(max_examples=20)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_conv2d_matches_torch(backend_name, dtype, cfg, seed):
    rng = np.random.default_rng(seed)
    inputs = [rand(rng, *cfg["x"]), rand(rng, *cfg["weight"])]
    if cfg["bias"]:
        inputs.append(rand(rng, cfg["weight"][0]))
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    helper_test_op(lambda *a: TF.conv2d(*a, **kw), lambda *a: F.conv2d(*a, **kw), inputs, dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_conv2d_matches_torch_on_a_lenet_sized_layer(backend_name, dtype):
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, 8, 6, 14, 14), rand(rng, 16, 6, 5, 5) * 0.1, rand(rng, 16)
    helper_test_op(TF.conv2d, F.conv2d, [x, w, b], dtype, backend_name)
    helper_test_op(lambda x, w, b: TF.conv2d(x, w, b, padding=2), lambda x, w, b: F.conv2d(x, w, b, padding=2),
                   [rand(rng, 4, 1, 28, 28), rand(rng, 6, 1, 5, 5), rand(rng, 6)], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("layout", [noncontiguous, fortran], ids=["strided", "fortran"])
def test_conv2d_accepts_non_contiguous_numpy_inputs(backend_name, layout):
    rng = np.random.default_rng(1)
    x, w, b = (rand(rng, 2, 3, 9, 8).astype(np.float32), rand(rng, 4, 3, 3, 3).astype(np.float32),
               rand(rng, 4).astype(np.float32))
    inputs = [layout(x), layout(w), b]
    kw = dict(stride=2, padding=1)
    helper_test_op(lambda *a: TF.conv2d(*a, **kw), lambda *a: F.conv2d(*a, **kw), inputs, np.float32,
                   backend_name, as_numpy=True)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_conv2d_on_a_strided_slice_of_a_tensor_matches_torch_with_gradients(backend_name):
    """Indexing yields a non-contiguous operand; gradients must flow back into the full tensor."""
    rng = np.random.default_rng(2)
    xs, ws = rand(rng, 2, 5, 10, 9).astype(np.float32), rand(rng, 3, 3, 3, 3).astype(np.float32)
    helper_test_op(lambda x, w: TF.conv2d(x[:, 1:4, ::2, 1::2], w, padding=1),
                   lambda x, w: F.conv2d(x[:, 1:4, ::2, 1::2], w, padding=1),
                   [xs, ws], np.float32, backend_name)


# ---------------------------------------------------------------------------------------------
# linear, matmul
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("x_shape", [(7, 5), (2, 3, 5), (5,)], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(backend_name, dtype, x_shape, bias):
    rng = np.random.default_rng(3)
    inputs = [rand(rng, *x_shape), rand(rng, 4, 5)] + ([rand(rng, 4)] if bias else [])
    helper_test_op(TF.linear, F.linear, inputs, dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("layout", [noncontiguous, fortran], ids=["strided", "fortran"])
def test_linear_accepts_non_contiguous_numpy_inputs(backend_name, layout):
    rng = np.random.default_rng(4)
    x, w, b = rand(rng, 6, 5), rand(rng, 3, 5), rand(rng, 3)
    helper_test_op(TF.linear, F.linear, [layout(x), layout(w), b], np.float32, backend_name, as_numpy=True)
    helper_test_op(TF.linear, F.linear, [x.T.copy().T, w.T.copy().T, b], np.float64, backend_name, as_numpy=True)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((1, 7), (7, 1)), ((6, 1), (1, 6)), ((64, 33), (33, 17))])
def test_matmul_matches_torch(backend_name, dtype, shapes):
    rng = np.random.default_rng(5)
    helper_test_op(lambda a, b: a @ b, lambda a, b: a @ b,
                   [rand(rng, *shapes[0]), rand(rng, *shapes[1])], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_matmul_of_transposed_views_matches_torch(backend_name):
    rng = np.random.default_rng(6)
    a, b = rand(rng, 5, 3).astype(np.float32), rand(rng, 4, 5).astype(np.float32)
    with fastnn.use_backend(backend_name):
        out = fastnn.tensor(a.T) @ b.T  # Tensor @ ndarray, both operands transposed views
        out2 = a.T @ fastnn.tensor(b.T)  # ndarray @ Tensor uses the reflected operator
    ref = torch.tensor(a).T @ torch.tensor(b).T
    assert isinstance(out, fastnn.Tensor) and isinstance(out2, fastnn.Tensor)
    assert_close(out.numpy(), ref.numpy(), np.float32)
    assert_close(out2.numpy(), ref.numpy(), np.float32)


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------
@st.composite
def pool_configs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 12))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), 12))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w),
                kernel_size=draw(st.sampled_from([(kh, kw), kh])) if kh == kw else (kh, kw),
                stride=stride, padding=padding)


def _distinct(rng, shape):
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) / n


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@settings(max_examples=15)
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_max_pool2d_matches_torch(backend_name, dtype, cfg, seed):
    x = _distinct(np.random.default_rng(seed), cfg["shape"])  # no ties: torch's argmax is well defined
    args = (cfg["kernel_size"], cfg["stride"], cfg["padding"])
    helper_test_op(lambda x: TF.max_pool2d(x, *args), lambda x: F.max_pool2d(x, *args), [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@settings(max_examples=15)
@given(cfg=pool_configs(), seed=st.integers(0, 2**16))
def test_avg_pool2d_matches_torch(backend_name, dtype, cfg, seed):
    x = rand(np.random.default_rng(seed), *cfg["shape"])
    args = (cfg["kernel_size"], cfg["stride"], cfg["padding"])
    helper_test_op(lambda x: TF.avg_pool2d(x, *args), lambda x: F.avg_pool2d(x, *args), [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("args", [(2,), (3, 2, 1), ((2, 3), (1, 2), (1, 0))])
def test_max_pool2d_return_indices_match_torch(backend_name, args):
    x = _distinct(np.random.default_rng(7), (2, 3, 7, 8)).astype(np.float32)
    with fastnn.use_backend(backend_name):
        values, indices = F.max_pool2d(x, *args, return_indices=True)
    t_values, t_indices = TF.max_pool2d(torch.tensor(x), *args, return_indices=True)
    assert_close(values.numpy(), t_values.numpy(), np.float32)
    idx = indices.numpy() if isinstance(indices, fastnn.Tensor) else np.asarray(indices)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, t_indices.numpy())


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_max_pool2d_with_all_negative_inputs_and_padding_ignores_the_padding(backend_name):
    x = -1.0 - np.random.default_rng(8).random((1, 2, 4, 4))
    helper_test_op(lambda x: TF.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1), [x],
                   np.float32, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("layout", [noncontiguous, fortran], ids=["strided", "fortran"])
def test_pooling_accepts_non_contiguous_numpy_inputs(backend_name, layout):
    x = _distinct(np.random.default_rng(9), (2, 3, 8, 6)).astype(np.float32)
    helper_test_op(lambda x: TF.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 2), [layout(x)], np.float32,
                   backend_name, as_numpy=True)
    helper_test_op(lambda x: TF.avg_pool2d(x, 3, 1, 1), lambda x: F.avg_pool2d(x, 3, 1, 1), [layout(x)],
                   np.float32, backend_name, as_numpy=True)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_max_pool2d_on_a_strided_slice_of_a_tensor_matches_torch_with_gradients(backend_name):
    x = _distinct(np.random.default_rng(10), (2, 4, 10, 10))
    helper_test_op(lambda x: TF.max_pool2d(x[:, ::2, 1:, 1::2], 2),
                   lambda x: F.max_pool2d(x[:, ::2, 1:, 1::2], 2), [x], np.float32, backend_name)


# ---------------------------------------------------------------------------------------------
# activations, softmax, dropout
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape", [(5,), (4, 7), (2, 3, 5, 5)])
def test_activation_matches_torch(backend_name, dtype, name, shape):
    x = rand(np.random.default_rng(11), *shape) * 4
    helper_test_op(getattr(torch, name), getattr(F, name), [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activations_are_finite_for_extreme_inputs_like_torch(backend_name, name):
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4])
    for dtype in (np.float32, np.float64):
        helper_test_op(getattr(torch, name), getattr(F, name), [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("layout", [noncontiguous, fortran], ids=["strided", "fortran"])
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activations_accept_non_contiguous_numpy_inputs(backend_name, layout, name):
    x = rand(np.random.default_rng(12), 3, 4, 5).astype(np.float32)
    helper_test_op(getattr(torch, name), getattr(F, name), [layout(x)], np.float32, backend_name, as_numpy=True)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", [((6, 10), 1), ((6, 10), 0), ((6, 10), -1), ((2, 3, 4, 5), 1), ((2, 3, 4), -2)])
def test_softmax_matches_torch(backend_name, dtype, name, shape, dim):
    x = rand(np.random.default_rng(13), *shape) * 3
    helper_test_op(lambda x: getattr(TF, name)(x, dim), lambda x: getattr(F, name)(x, dim), [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_is_stable_for_large_logits(backend_name, name):
    x = np.array([[1000.0, 0.0, -1000.0], [88.0, 89.0, 90.0], [-1e4, -1e4, -1e4]])
    for dtype in (np.float32, np.float64):
        helper_test_op(lambda x: getattr(TF, name)(x, 1), lambda x: getattr(F, name)(x, 1), [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_accepts_non_contiguous_numpy_inputs(backend_name, name):
    x = rand(np.random.default_rng(14), 5, 6)
    helper_test_op(lambda x: getattr(TF, name)(x, 1), lambda x: getattr(F, name)(x, 1), [fortran(x)],
                   np.float32, backend_name, as_numpy=True)
    helper_test_op(lambda x: getattr(TF, name)(x, 0), lambda x: getattr(F, name)(x, 0),
                   [noncontiguous(x.astype(np.float32))], np.float32, backend_name, as_numpy=True)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_dropout_is_identity_when_not_training_or_p_is_zero(backend_name):
    x = rand(np.random.default_rng(15), 4, 5).astype(np.float32)
    helper_test_op(lambda x: TF.dropout(x, 0.5, training=False), lambda x: F.dropout(x, 0.5, training=False),
                   [x], np.float32, backend_name)
    helper_test_op(lambda x: TF.dropout(x, 0.0, training=True), lambda x: F.dropout(x, 0.0, training=True),
                   [x], np.float32, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dropout_zeroes_a_fraction_p_and_scales_the_rest_by_one_over_one_minus_p(backend_name, dtype):
    p = 0.3
    x = (np.random.default_rng(16).random((200, 100)) + 0.5).astype(dtype)
    fastnn.manual_seed(0)
    with fastnn.use_backend(backend_name):
        xt = fastnn.tensor(x, requires_grad=True)
        y = F.dropout(xt, p, training=True)
        g = np.random.default_rng(17).standard_normal(x.shape).astype(dtype)
        y.backward(g)
    out = y.numpy()
    assert out.dtype == dtype
    kept = out != 0
    assert abs(1 - kept.mean() - p) < 0.01, f"dropped fraction {1 - kept.mean():.4f}, expected {p}"
    assert_close(out[kept], x[kept] / (1 - p), dtype)
    assert_close(xt.grad.numpy(), np.where(kept, g / (1 - p), 0), dtype)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_dropout_with_p_one_zeroes_everything_like_torch(backend_name):
    x = rand(np.random.default_rng(18), 3, 4)
    helper_test_op(lambda x: TF.dropout(x, 1.0, training=True), lambda x: F.dropout(x, 1.0, training=True),
                   [x], np.float32, backend_name)


def test_dropout_masks_are_reproducible_with_manual_seed_and_differ_between_calls():
    x = np.ones((50, 50), np.float32)
    fastnn.manual_seed(42)
    a = F.dropout(x, 0.5, training=True).numpy().copy()
    b = F.dropout(x, 0.5, training=True).numpy().copy()
    fastnn.manual_seed(42)
    c = F.dropout(x, 0.5, training=True).numpy().copy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# batch_norm (torch's functional signature, running stats updated in place)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 5), (4, 2, 6)], ids=["NC", "NCHW", "NCL"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch_including_running_stats(backend_name, dtype, shape, training, affine):
    rng = np.random.default_rng(19)
    c = shape[1]
    x = rand(rng, *shape) * 3 + 1
    rm, rv = rand(rng, c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    w, b = rand(rng, c), rand(rng, c)
    f_rm, f_rv, t_rm, t_rv = rm.copy(), rv.copy(), torch.tensor(rm), torch.tensor(rv)
    inputs = [x, w, b] if affine else [x]
    helper_test_op(
        lambda x, *wb: TF.batch_norm(x, t_rm, t_rv, *wb, training=training, momentum=0.2, eps=1e-3),
        lambda x, *wb: F.batch_norm(x, f_rm, f_rv, *wb, training=training, momentum=0.2, eps=1e-3),
        inputs, dtype, backend_name)
    if not training:
        np.testing.assert_array_equal(f_rm, rm)
        np.testing.assert_array_equal(f_rv, rv)
    assert_close(f_rm, t_rm.numpy(), dtype, err_msg="running_mean")
    assert_close(f_rv, t_rv.numpy(), dtype, err_msg="running_var (unbiased batch variance, like torch)")


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_batch_norm_running_stats_accept_fastnn_tensors_and_are_updated_in_place(backend_name):
    rng = np.random.default_rng(20)
    x = rand(rng, 6, 3, 2, 2).astype(np.float32) + 2
    rm, rv = fastnn.tensor(np.zeros(3, np.float32)), fastnn.tensor(np.ones(3, np.float32))
    t_rm, t_rv = torch.zeros(3), torch.ones(3)
    with fastnn.use_backend(backend_name):
        F.batch_norm(x, rm, rv, training=True)
    TF.batch_norm(torch.tensor(x), t_rm, t_rv, training=True)
    assert_close(rm.numpy(), t_rm.numpy(), np.float32)
    assert_close(rv.numpy(), t_rv.numpy(), np.float32)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_matches_torch(backend_name, dtype, reduction, label_smoothing):
    rng = np.random.default_rng(21)
    logits, target = rand(rng, 16, 10) * 3, rng.integers(0, 10, 16)
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    helper_test_op(lambda z, t: TF.cross_entropy(z, t, **kw), lambda z, t: F.cross_entropy(z, t, **kw),
                   [logits, target], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_with_spatial_logits_matches_torch(backend_name, reduction):
    rng = np.random.default_rng(22)
    logits, target = rand(rng, 2, 4, 3, 3), rng.integers(0, 4, (2, 3, 3))
    helper_test_op(lambda z, t: TF.cross_entropy(z, t, reduction=reduction),
                   lambda z, t: F.cross_entropy(z, t, reduction=reduction), [logits, target], np.float64, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_cross_entropy_is_stable_for_large_logits_and_accepts_python_list_targets(backend_name):
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 2000.0, 0.0]])
    helper_test_op(lambda z: TF.cross_entropy(z, torch.tensor([0, 2])), lambda z: F.cross_entropy(z, [0, 2]),
                   [logits], np.float32, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_cross_entropy_accepts_non_contiguous_logits(backend_name):
    rng = np.random.default_rng(23)
    logits, target = rand(rng, 10, 6).astype(np.float32), rng.integers(0, 10, 6)
    helper_test_op(TF.cross_entropy, F.cross_entropy, [logits.T, target], np.float32, backend_name, as_numpy=True)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(backend_name, dtype, reduction):
    rng = np.random.default_rng(24)
    helper_test_op(lambda a, b: TF.mse_loss(a, b, reduction=reduction),
                   lambda a, b: F.mse_loss(a, b, reduction=reduction),
                   [rand(rng, 4, 5, 2), rand(rng, 4, 5, 2)], dtype, backend_name)


# ---------------------------------------------------------------------------------------------
# tensor ops
# ---------------------------------------------------------------------------------------------
BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((1,), (2, 3)), ((2, 3), ())])
def test_arithmetic_with_broadcasting_matches_torch(backend_name, dtype, op, shapes):
    rng = np.random.default_rng(25)
    a, b = rand(rng, *shapes[0]), np.asarray(rand(rng, *shapes[1]) + 3)
    helper_test_op(BINARY[op], BINARY[op], [a, b], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_python_scalars_on_either_side_keep_the_tensor_dtype_like_torch(backend_name, dtype):
    x = rand(np.random.default_rng(26), 3, 4) + 4
    def fn(x):  # 0.1 and 2.3 are inexact in float32: a float64 tensor must keep double precision
        return (2 - x) * 0.1 + 1 / x - (-x) / 3 + x * 2.3 + np.float64(0.7) * x

    helper_test_op(fn, fn, [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_arithmetic_with_numpy_operands_returns_tensors(backend_name):
    a = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
    with fastnn.use_backend(backend_name):
        t = fastnn.tensor(a, requires_grad=True)
        results = [t + a, a + t, a - t, a * t, a / t, t / a]
    for r, expected in zip(results, [a + a, a + a, a - a, a * a, a / a, a / a]):
        assert isinstance(r, fastnn.Tensor), f"got {type(r).__name__}"
        assert r.requires_grad
        assert_close(r.numpy(), expected, np.float32)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_reshape_sum_mean_match_torch(backend_name, dtype):
    rng = np.random.default_rng(27)
    x = rand(rng, 2, 3, 4)
    helper_test_op(lambda x: x.reshape(6, 4), lambda x: x.reshape(6, 4), [x], dtype, backend_name)
    helper_test_op(lambda x: x.reshape(-1), lambda x: x.reshape(-1), [x], dtype, backend_name)
    helper_test_op(lambda x: x.reshape((4, -1)), lambda x: x.reshape((4, -1)), [x], dtype, backend_name)
    helper_test_op(lambda x: x.sum(), lambda x: x.sum(), [x], dtype, backend_name)
    helper_test_op(lambda x: x.mean(), lambda x: x.mean(), [x], dtype, backend_name)
    helper_test_op(lambda x: x.sum(1), lambda x: x.sum(1), [x], dtype, backend_name)
    helper_test_op(lambda x: x.mean(-1), lambda x: x.mean(-1), [x], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("index", [
    (1,), (-1,), (slice(None, 2),), (Ellipsis, 0), (slice(None), None, 1), (0, 1, 2), (slice(None, None, 2), slice(1, 3)),
    (np.array([2, 0, 2]),), (slice(None), np.array([3, 3, 1])), (np.array([0, 1]), np.array([2, 3]))],
    ids=["int", "neg", "slice", "ellipsis", "newaxis", "scalar", "step", "fancy-repeat", "fancy-col", "fancy-pair"])
def test_indexing_matches_torch_with_repeated_indices_accumulating(backend_name, index):
    x = rand(np.random.default_rng(28), 3, 4, 5)
    t_index = tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in index)
    helper_test_op(lambda x: x[t_index], lambda x: x[index], [x], np.float32, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_boolean_mask_indexing_matches_torch(backend_name):
    x = rand(np.random.default_rng(29), 4, 5)
    mask = x > 0
    helper_test_op(lambda x: x[torch.tensor(mask)], lambda x: x[mask], [x], np.float32, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack_match_torch(backend_name, dtype, dim):
    rng = np.random.default_rng(30)
    a, b, c = rand(rng, 2, 3), rand(rng, 2, 3), rand(rng, 2, 3)
    helper_test_op(lambda *ts: torch.cat(ts, dim), lambda *ts: fastnn.cat(list(ts), dim), [a, b, c], dtype, backend_name)
    helper_test_op(lambda *ts: torch.stack(ts, dim), lambda *ts: fastnn.stack(ts, dim), [a, b, c], dtype, backend_name)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_cat_of_different_sizes_along_dim_matches_torch(backend_name):
    rng = np.random.default_rng(31)
    helper_test_op(lambda a, b: torch.cat([a, b], 1), lambda a, b: fastnn.cat([a, b], 1),
                   [rand(rng, 2, 3, 2), rand(rng, 2, 1, 2)], np.float64, backend_name)


# ---------------------------------------------------------------------------------------------
# the two backends agree with each other on a composite graph
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_composite_graph_matches_torch_on_both_backends(dtype):
    rng = np.random.default_rng(32)
    x, w1, b1 = rand(rng, 4, 2, 10, 10), rand(rng, 3, 2, 3, 3) * 0.3, rand(rng, 3)
    g, beta, w2, b2 = rng.uniform(0.5, 1.5, 3), rand(rng, 3), rand(rng, 5, 3 * 5 * 5) * 0.2, rand(rng, 5)
    target = rng.integers(0, 5, 4)

    def model(lib, fn, x, w1, b1, g, beta, w2, b2, t):
        h = fn.conv2d(x, w1, b1, padding=1, stride=1)
        h = fn.batch_norm(h, None, None, g, beta, training=True)
        h = fn.max_pool2d(fn.relu(h), 2, 2, 1)
        h = fn.avg_pool2d(fn.tanh(h), 2, 1)
        z = fn.linear(h.reshape(4, -1), w2, b2)
        return fn.cross_entropy(z, t, label_smoothing=0.05) + fn.mse_loss(fn.sigmoid(z), fn.softmax(z, 1))

    for backend_name in ("cpu", "reference"):
        helper_test_op(lambda *a: model(torch, TF, *a), lambda *a: model(fastnn, F, *a),
                       [x, w1, b1, g, beta, w2, b2, target], dtype, backend_name)
