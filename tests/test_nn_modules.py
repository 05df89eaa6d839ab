"""nn: state-dict keys and loading (against torch), PyTorch's default initialisation, train/eval
behaviour, module traversal, zero_grad, strict load errors, and each layer's forward/backward."""
import math
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastnn  # noqa: E402
from fastnn import nn  # noqa: E402

from helpers import assert_close, torch_state_to_numpy  # noqa: E402

torch.set_num_threads(1)


def fastnn_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10))


def torch_cnn():
    tn = torch.nn
    return tn.Sequential(tn.Conv2d(1, 4, 3, padding=1), tn.BatchNorm2d(4), tn.ReLU(), tn.MaxPool2d(2),
                         tn.Flatten(), tn.Linear(4 * 4 * 4, 10))


def randomise_bn_stats(tmodel, seed=0):
    """Non-trivial running stats / affine params so that a loading bug cannot hide behind 0/1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tmodel.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(m.num_features, generator=g))
                    m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.num_batches_tracked.fill_(3)


# ---------------------------------------------------------------------------------------------
# state dicts
# ---------------------------------------------------------------------------------------------
def test_state_dict_keys_order_and_shapes_equal_torch():
    f_sd, t_sd = fastnn_cnn().state_dict(), torch_cnn().state_dict()
    assert list(f_sd.keys()) == list(t_sd.keys()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "5.weight", "5.bias"]
    for k in t_sd:
        assert isinstance(f_sd[k], np.ndarray), f"{k}: {type(f_sd[k]).__name__}"
        assert f_sd[k].shape == tuple(t_sd[k].shape), f"{k}: {f_sd[k].shape} vs {tuple(t_sd[k].shape)}"
    assert f_sd["0.weight"].dtype == np.float32
    assert f_sd["1.num_batches_tracked"].dtype.kind in "iu"


def test_state_dict_keys_of_nested_custom_modules_and_bias_free_layers_equal_torch():
    class FBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, bias=False)
            self.bn = nn.BatchNorm2d(3)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(3, 2, bias=False), nn.BatchNorm1d(2))

        def forward(self, x):
            return self.head(self.bn(self.conv(x)))

    class TBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, bias=False)
            self.bn = torch.nn.BatchNorm2d(3)
            self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2, bias=False),
                                            torch.nn.BatchNorm1d(2))

    f_sd, t_sd = FBlock().state_dict(), TBlock().state_dict()
    assert list(f_sd) == list(t_sd)
    assert {k: v.shape for k, v in f_sd.items()} == {k: tuple(v.shape) for k, v in t_sd.items()}
    assert [n for n, _ in FBlock().named_parameters()] == [n for n, _ in TBlock().named_parameters()]


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_loading_a_torch_state_dict_gives_identical_outputs_and_running_stats(backend_name, train):
    torch.manual_seed(0)
    tmodel = torch_cnn()
    randomise_bn_stats(tmodel)
    fmodel = fastnn_cnn()
    fmodel.load_state_dict(torch_state_to_numpy(tmodel))
    tmodel.train(train)
    fmodel.train(train)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    with fastnn.use_backend(backend_name):
        out = fmodel(x)
    expected = tmodel(torch.tensor(x)).detach().numpy()
    assert_close(out.numpy(), expected, np.float32)
    f_sd, t_sd = fmodel.state_dict(), torch_state_to_numpy(tmodel)
    for k in t_sd:
        assert_close(f_sd[k], t_sd[k], np.float32, err_msg=k)


def test_load_state_dict_copies_values_and_accepts_lists_and_tensors():
    model = nn.Linear(3, 2)
    w = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    model.load_state_dict(OrderedDict([("weight", w), ("bias", fastnn.tensor([0.5, -0.5]))]))
    np.testing.assert_array_equal(model.weight.numpy(), np.array(w, np.float32))
    np.testing.assert_array_equal(model.bias.numpy(), [0.5, -0.5])
    assert model.weight.dtype == np.float32
    src = {"weight": np.zeros((2, 3), np.float32), "bias": np.zeros(2, np.float32)}
    model.load_state_dict(src)
    src["weight"][:] = 7.0
    assert model.weight.numpy().max() == 0.0, "load_state_dict must copy, not alias, the given arrays"


def test_state_dict_round_trips_between_two_fastnn_models():
    fastnn.manual_seed(1)
    a = fastnn_cnn()
    fastnn.manual_seed(2)
    b = fastnn_cnn()
    b.load_state_dict(a.state_dict())
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_strict_error_names_the_missing_key():
    sd = fastnn_cnn().state_dict()
    del sd["1.running_var"]
    with pytest.raises((KeyError, ValueError, RuntimeError), match=r"1\.running_var"):
        fastnn_cnn().load_state_dict(sd)


def test_load_state_dict_strict_error_names_the_unexpected_key():
    sd = fastnn_cnn().state_dict()
    sd["7.weight"] = np.zeros(3, np.float32)
    with pytest.raises((KeyError, ValueError, RuntimeError), match=r"7\.weight"):
        fastnn_cnn().load_state_dict(sd)


def test_load_state_dict_strict_error_names_every_missing_and_unexpected_key():
    sd = fastnn_cnn().state_dict()
    del sd["0.bias"], sd["5.weight"]
    sd["extra.thing"] = np.zeros(1)
    with pytest.raises((KeyError, ValueError, RuntimeError)) as info:
        fastnn_cnn().load_state_dict(sd)
    for key in ("0.bias", "5.weight", "extra.thing"):
        assert key in str(info.value), f"{key} not named in: {info.value}"


def test_load_state_dict_error_names_the_mis_shaped_key_and_both_shapes():
    sd = fastnn_cnn().state_dict()
    sd["5.weight"] = np.zeros((10, 63), np.float32)
    with pytest.raises((ValueError, RuntimeError, KeyError)) as info:
        fastnn_cnn().load_state_dict(sd)
    msg = str(info.value)
    assert "5.weight" in msg and "63" in msg and "64" in msg, msg


def test_failed_load_state_dict_leaves_the_model_unchanged():
    model = fastnn_cnn()
    before = model.state_dict()
    sd = {k: np.zeros_like(v) for k, v in before.items()}
    sd["5.bias"] = np.zeros(11, np.float32)  # one bad key
    with pytest.raises((ValueError, RuntimeError, KeyError)):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} was modified by a failed load")


def test_load_state_dict_non_strict_loads_the_matching_keys():
    model = fastnn_cnn()
    sd = model.state_dict()
    new_w = np.full_like(sd["0.weight"], 0.25)
    result = model.load_state_dict({"0.weight": new_w, "bogus": np.zeros(2)}, strict=False)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], new_w)
    np.testing.assert_array_equal(model.state_dict()["5.bias"], sd["5.bias"])
    missing, unexpected = result  # torch returns (missing_keys, unexpected_keys)
    assert "bogus" in list(unexpected) and "0.bias" in list(missing)


# ---------------------------------------------------------------------------------------------
# default initialisation (PyTorch's rules): bounds and statistics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,fan_in", [
    (lambda: nn.Linear(400, 120), 400),
    (lambda: nn.Linear(30, 2000), 30),
    (lambda: nn.Conv2d(6, 16, 5), 6 * 25),
    (lambda: nn.Conv2d(3, 64, (3, 2)), 3 * 6),
    (lambda: nn.Conv2d(8, 32, 3, groups=4), 2 * 9),
])
def test_default_initialisation_follows_torch_kaiming_uniform_a_sqrt5(make, fan_in):
    fastnn.manual_seed(0)
    layer = make()
    w, b = layer.weight.numpy(), layer.bias.numpy()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)): gain*sqrt(3/fan_in) = 1/sqrt(fan_in)
    assert w.dtype == np.float32 and b.dtype == np.float32
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.08 * bound / math.sqrt(3)
    assert abs(w.mean()) < 0.1 * bound
    assert np.abs(b).max() <= bound
    assert len(np.unique(b)) == b.size
    if b.size >= 100:
        assert abs(b.std() - bound / math.sqrt(3)) < 0.15 * bound / math.sqrt(3)


def test_default_initialisation_shapes_match_torch():
    for f_layer, t_layer in [(nn.Linear(7, 3), torch.nn.Linear(7, 3)),
                             (nn.Conv2d(4, 6, (3, 5), groups=2), torch.nn.Conv2d(4, 6, (3, 5), groups=2))]:
        assert f_layer.weight.shape == tuple(t_layer.weight.shape)
        assert f_layer.bias.shape == tuple(t_layer.bias.shape)
        assert isinstance(f_layer.weight, nn.Parameter) and f_layer.weight.requires_grad


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.BatchNorm2d])
def test_batch_norm_initialises_like_torch(cls):
    bn = cls(5)
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(sd["weight"], np.ones(5))
    np.testing.assert_array_equal(sd["bias"], np.zeros(5))
    np.testing.assert_array_equal(sd["running_mean"], np.zeros(5))
    np.testing.assert_array_equal(sd["running_var"], np.ones(5))
    assert sd["num_batches_tracked"] == 0 and sd["num_batches_tracked"].shape == ()
    assert bn.eps == 1e-5 and bn.momentum == 0.1


def test_parameter_is_a_tensor_that_requires_grad():
    p = nn.Parameter(np.zeros(3, np.float32))
    assert isinstance(p, fastnn.Tensor)
    assert p.requires_grad


# ---------------------------------------------------------------------------------------------
# train / eval
# ---------------------------------------------------------------------------------------------
def test_train_and_eval_set_the_training_flag_recursively_and_return_the_module():
    model = fastnn_cnn()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not any(m.training for m in model.modules())


def test_batch_norm_uses_batch_stats_and_updates_running_stats_only_in_training():
    bn = nn.BatchNorm2d(3)
    x = (np.random.default_rng(2).standard_normal((8, 3, 4, 4)) * 2 + 5).astype(np.float32)
    y = bn(x).numpy()
    assert_close(y.mean(axis=(0, 2, 3)), np.zeros(3), np.float32, atol=1e-5)
    sd = bn.state_dict()
    assert_close(sd["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)), np.float32)
    assert_close(sd["running_var"], 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), np.float32)
    assert sd["num_batches_tracked"] == 1
    bn.eval()
    y_eval = bn(x).numpy()
    expected = (x - sd["running_mean"][None, :, None, None]) / np.sqrt(sd["running_var"][None, :, None, None] + 1e-5)
    assert_close(y_eval, expected, np.float32)
    after = bn.state_dict()
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_array_equal(after[k], sd[k], err_msg=f"eval() forward changed {k}")


def test_batch_norm_with_momentum_none_uses_a_cumulative_average_like_torch():
    f_bn, t_bn = nn.BatchNorm1d(2, momentum=None), torch.nn.BatchNorm1d(2, momentum=None)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.standard_normal((6, 2)).astype(np.float32) * 3 + 1
        f_bn(x)
        t_bn(torch.tensor(x))
    t_sd = torch_state_to_numpy(t_bn)
    for k, v in f_bn.state_dict().items():
        assert_close(v, t_sd[k], np.float32, err_msg=k)


def test_dropout_module_is_active_in_training_and_identity_in_eval():
    drop = nn.Dropout(0.5)
    x = np.ones((100, 100), np.float32)
    fastnn.manual_seed(0)
    y = drop(x).numpy()
    assert 0.45 < (y == 0).mean() < 0.55
    assert set(np.unique(y)) <= {0.0, 2.0}
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x)


# ---------------------------------------------------------------------------------------------
# traversal, zero_grad
# ---------------------------------------------------------------------------------------------
def test_parameters_and_named_parameters_match_torch_names_and_order():
    fmodel, tmodel = fastnn_cnn(), torch_cnn()
    f_named = list(fmodel.named_parameters())
    assert [n for n, _ in f_named] == [n for n, _ in tmodel.named_parameters()]
    params = list(fmodel.parameters())
    assert len(params) == 6
    assert all(p is q for p, (_, q) in zip(params, f_named))
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)


def test_children_and_modules_traverse_like_torch():
    model = fastnn_cnn()
    children = list(model.children())
    assert [type(c).__name__ for c in children] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    modules = list(model.modules())
    assert modules[0] is model and modules[1:] == children
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 1))
    assert [type(m).__name__ for m in nested.modules()] == ["Sequential", "Sequential", "Linear", "ReLU", "Linear"]
    assert len(list(nested.children())) == 2


def test_shared_parameters_are_yielded_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2


def test_module_zero_grad_clears_every_parameter_grad():
    model = fastnn_cnn()
    x = np.random.default_rng(4).standard_normal((2, 1, 8, 8)).astype(np.float32)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())  # torch default: set_to_none=True
    model(x).sum().backward()
    model.zero_grad(set_to_none=False)
    for p in model.parameters():
        assert p.grad is not None and not p.grad.numpy().any()


def test_module_gradients_accumulate_like_torch_until_zero_grad():
    model = nn.Linear(3, 2)
    x = np.ones((1, 3), np.float32)
    model(x).sum().backward()
    g1 = model.weight.grad.numpy().copy()
    model(x).sum().backward()
    np.testing.assert_allclose(model.weight.grad.numpy(), 2 * g1)


def test_custom_module_registers_parameters_by_attribute_assignment():
    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(np.full(3, 2.0, np.float32))
            self.inner = nn.Linear(3, 3)
            self.not_a_param = np.zeros(3)

        def forward(self, x):
            return self.inner(x) * self.scale

    m = Affine()
    assert [n for n, _ in m.named_parameters()] == ["scale", "inner.weight", "inner.bias"]
    assert list(m.state_dict()) == ["scale", "inner.weight", "inner.bias"]
    out = m(np.ones((2, 3), np.float32))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert m.scale.grad is not None and m.inner.weight.grad is not None


# ---------------------------------------------------------------------------------------------
# each layer: forward and parameter/input gradients against torch
# ---------------------------------------------------------------------------------------------
LAYERS = [
    ("Linear", lambda m: m.Linear(6, 4), (5, 6)),
    ("Linear-nobias", lambda m: m.Linear(6, 4, bias=False), (3, 2, 6)),
    ("Conv2d", lambda m: m.Conv2d(3, 4, 3), (2, 3, 7, 7)),
    ("Conv2d-args", lambda m: m.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
                                        bias=False), (2, 4, 8, 9)),
    ("MaxPool2d", lambda m: m.MaxPool2d(2), (2, 3, 6, 6)),
    ("MaxPool2d-args", lambda m: m.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 6)),
    ("AvgPool2d", lambda m: m.AvgPool2d(2), (2, 3, 6, 6)),
    ("AvgPool2d-args", lambda m: m.AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0)), (2, 3, 5, 6)),
    ("Flatten", lambda m: m.Flatten(), (2, 3, 4, 5)),
    ("ReLU", lambda m: m.ReLU(), (4, 5)),
    ("Sigmoid", lambda m: m.Sigmoid(), (4, 5)),
    ("Tanh", lambda m: m.Tanh(), (4, 5)),
    ("Softmax", lambda m: m.Softmax(dim=1), (4, 5)),
    ("Softmax-neg", lambda m: m.Softmax(dim=-1), (2, 3, 5)),
    ("BatchNorm1d", lambda m: m.BatchNorm1d(5), (8, 5)),
    ("BatchNorm1d-3d", lambda m: m.BatchNorm1d(3, momentum=0.3), (4, 3, 6)),
    ("BatchNorm2d", lambda m: m.BatchNorm2d(3, eps=1e-3), (4, 3, 5, 5)),
    ("BatchNorm2d-noaffine", lambda m: m.BatchNorm2d(3, affine=False), (4, 3, 5, 5)),
    ("Identity", lambda m: m.Identity(), (3, 4)),
    ("Dropout-p0", lambda m: m.Dropout(0.0), (3, 4)),
]


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_layer_forward_and_gradients_match_torch(backend_name, train, name, make, shape):
    torch.manual_seed(0)
    tlayer = make(torch.nn)
    randomise_bn_stats(tlayer)
    flayer = make(nn)
    flayer.load_state_dict(torch_state_to_numpy(tlayer))
    tlayer.train(train)
    flayer.train(train)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    if "Max" in name:
        x = (rng.permutation(x.size).reshape(shape) / x.size).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    t_out = tlayer(tx)
    with fastnn.use_backend(backend_name):
        fx = fastnn.tensor(x, requires_grad=True)
        f_out = flayer(fx)
        assert f_out.shape == tuple(t_out.shape)
        assert_close(f_out.numpy(), t_out.detach().numpy(), np.float32, err_msg="forward")
        g = rng.standard_normal(f_out.shape).astype(np.float32)
        f_out.backward(g)
    t_out.backward(torch.tensor(g))
    assert_close(fx.grad.numpy(), tx.grad.numpy(), np.float32, err_msg="input grad")
    t_params = dict(tlayer.named_parameters())
    f_params = dict(flayer.named_parameters())
    assert list(f_params) == list(t_params)
    for k, p in f_params.items():
        assert_close(p.grad.numpy(), t_params[k].grad.numpy(), np.float32, err_msg=f"grad of {k}")
    t_sd = torch_state_to_numpy(tlayer)
    for k, v in flayer.state_dict().items():
        assert_close(v, t_sd[k], np.float32, err_msg=f"state {k} after forward")


def test_float64_layers_via_the_dtype_argument_match_torch_double():
    torch.manual_seed(1)
    tmodel = torch_cnn().double()
    randomise_bn_stats(tmodel)
    fmodel = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype=np.float64), nn.BatchNorm2d(4, dtype=np.float64),
                           nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10, dtype=np.float64))
    fmodel.load_state_dict(torch_state_to_numpy(tmodel))
    assert all(p.dtype == np.float64 for p in fmodel.parameters())
    x = np.random.default_rng(6).standard_normal((3, 1, 8, 8))
    out = fmodel(x)
    assert out.dtype == np.float64
    assert_close(out.numpy(), tmodel(torch.tensor(x)).detach().numpy(), np.float64)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_modules_match_torch(backend_name, reduction):
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    target = rng.integers(0, 4, 6)
    pred, goal = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    with fastnn.use_backend(backend_name):
        ce = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)(logits, target)
        mse = nn.MSELoss(reduction=reduction)(pred, goal)
        ce_default = nn.CrossEntropyLoss()(logits, target)
    t_ce = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)(torch.tensor(logits), torch.tensor(target))
    t_mse = torch.nn.MSELoss(reduction=reduction)(torch.tensor(pred), torch.tensor(goal))
    assert_close(ce.numpy(), t_ce.numpy(), np.float32)
    assert_close(mse.numpy(), t_mse.numpy(), np.float32)
    assert_close(ce_default.numpy(), torch.nn.CrossEntropyLoss()(torch.tensor(logits), torch.tensor(target)).numpy(),
                 np.float32)


def test_modules_accept_numpy_arrays_and_return_tensors():
    fastnn.manual_seed(0)
    out = fastnn_cnn()(np.zeros((2, 1, 8, 8), np.float32))
    assert isinstance(out, fastnn.Tensor) and out.shape == (2, 10)


def test_flatten_defaults_to_start_dim_one():
    assert nn.Flatten()(np.zeros((2, 3, 4, 5), np.float32)).shape == (2, 60)
    assert nn.Flatten(0)(np.zeros((2, 3, 4), np.float32)).shape == (24,)


def test_sequential_applies_modules_in_order_and_repr_names_layers():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    model.load_state_dict({"0.weight": -np.ones((3, 2), np.float32), "0.bias": np.array([1.0, 0.0, 3.0], np.float32)})
    np.testing.assert_array_equal(model(np.ones((1, 2), np.float32)).numpy(), [[0.0, 0.0, 1.0]])
    text = repr(model)
    assert "Linear" in text and "ReLU" in text
