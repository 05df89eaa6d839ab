"""Optimisers against torch.optim: a LeNet-5 with BatchNorm trained a few steps from identical
weights must reach the same weights and BN running statistics; optimiser state dicts round-trip."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastnn  # noqa: E402
import fastnn.functional as F  # noqa: E402
from fastnn import nn, optim  # noqa: E402

from helpers import assert_close, torch_state_to_numpy  # noqa: E402

torch.set_num_threads(1)
STEPS = 3
BATCH = 8
OPT_TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-8, atol=1e-10)}


def lenet5_bn(lib, dtype, conv_bias=True):
    if lib is torch.nn:
        m = lib
        kw = {}
    else:
        m = nn
        kw = {"dtype": dtype}
    layers = [m.Conv2d(1, 6, 5, padding=2, bias=conv_bias, **kw), m.BatchNorm2d(6, **kw), m.ReLU(), m.MaxPool2d(2),
              m.Conv2d(6, 16, 5, bias=conv_bias, **kw), m.BatchNorm2d(16, **kw), m.ReLU(), m.MaxPool2d(2), m.Flatten(),
              m.Linear(400, 120, **kw), m.ReLU(), m.Linear(120, 84, **kw), m.ReLU(), m.Linear(84, 10, **kw)]
    model = m.Sequential(*layers)
    if lib is torch.nn and dtype == np.float64:
        model = model.double()
    return model


def make_pair(dtype, seed=0, conv_bias=True):
    torch.manual_seed(seed)
    tmodel = lenet5_bn(torch.nn, dtype, conv_bias)
    fmodel = lenet5_bn(nn, dtype, conv_bias)
    fmodel.load_state_dict(torch_state_to_numpy(tmodel))
    return fmodel, tmodel


def batches(dtype, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((BATCH, 1, 28, 28)).astype(dtype), rng.integers(0, 10, BATCH)) for _ in range(steps)]


def compare_models(fmodel, tmodel, dtype, where):
    t_sd = torch_state_to_numpy(tmodel)
    f_sd = fmodel.state_dict()
    assert list(f_sd) == list(t_sd)
    for k, expected in t_sd.items():
        if k.endswith("num_batches_tracked"):
            assert int(f_sd[k]) == int(expected), f"{where}: {k} {f_sd[k]} != {expected}"
        else:
            assert f_sd[k].dtype == expected.dtype, f"{where}: {k} dtype {f_sd[k].dtype} != {expected.dtype}"
            assert_close(f_sd[k], expected, dtype, **OPT_TOL[dtype], err_msg=f"{where}: {k}")


def train_both(fmodel, tmodel, f_opt, t_opt, data, dtype, backend_name):
    for step, (x, y) in enumerate(data):
        with fastnn.use_backend(backend_name):
            f_opt.zero_grad()
            f_loss = F.cross_entropy(fmodel(x), y)
            f_loss.backward()
            f_opt.step()
        t_opt.zero_grad()
        t_loss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
        t_loss.backward()
        t_opt.step()
        assert_close(f_loss.numpy(), t_loss.detach().numpy(), dtype, **OPT_TOL[dtype], err_msg=f"loss at step {step}")
        compare_models(fmodel, tmodel, dtype, f"after step {step + 1}")


SGD_VARIANTS = {
    "plain": dict(lr=0.05),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.5),
    "weight_decay": dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    "nesterov_weight_decay": dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=5e-3),
}
ADAM_VARIANTS = {
    "default": dict(lr=1e-2),
    "weight_decay": dict(lr=1e-2, weight_decay=1e-2),
    "betas_eps": dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-3),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("variant", list(SGD_VARIANTS))
def test_sgd_on_lenet5_bn_matches_torch(variant, dtype):
    fmodel, tmodel = make_pair(dtype)
    kw = SGD_VARIANTS[variant]
    train_both(fmodel, tmodel, optim.SGD(fmodel.parameters(), **kw), torch.optim.SGD(tmodel.parameters(), **kw),
               batches(dtype), dtype, "cpu")


@pytest.mark.parametrize("variant", list(ADAM_VARIANTS))
def test_adam_on_lenet5_bn_matches_torch_float64(variant):
    # conv biases feeding a BatchNorm have an exactly-zero true gradient: both libraries compute
    # rounding noise there, and Adam's g / (sqrt(v) + eps) turns noise into steps, so they are off.
    fmodel, tmodel = make_pair(np.float64, conv_bias=False)
    kw = ADAM_VARIANTS[variant]
    train_both(fmodel, tmodel, optim.Adam(fmodel.parameters(), **kw), torch.optim.Adam(tmodel.parameters(), **kw),
               batches(np.float64), np.float64, "cpu")


@pytest.mark.parametrize("opt_name,variant", [("sgd", v) for v in ("nesterov_weight_decay", "dampening")]
                         + [("adam", v) for v in ADAM_VARIANTS])
def test_float32_updates_on_identical_gradients_match_torch(opt_name, variant):
    """float32: Adam's first steps are ill-conditioned for gradients near eps (a 1e-3 relative
    difference in a 1e-8 gradient moves the weight by ~lr/10), so end-to-end float32 Adam cannot be
    compared at 1e-4. Here fastnn's optimiser gets torch's gradients; forward, BN statistics and
    the update rule are compared at float32 precision."""
    dtype = np.float32
    fmodel, tmodel = make_pair(dtype)
    if opt_name == "sgd":
        kw = SGD_VARIANTS[variant]
        f_opt, t_opt = optim.SGD(fmodel.parameters(), **kw), torch.optim.SGD(tmodel.parameters(), **kw)
    else:
        kw = ADAM_VARIANTS[variant]
        f_opt, t_opt = optim.Adam(fmodel.parameters(), **kw), torch.optim.Adam(tmodel.parameters(), **kw)
    for step, (x, y) in enumerate(batches(dtype)):
        f_opt.zero_grad()
        f_loss = F.cross_entropy(fmodel(x), y)
        f_loss.backward()
        t_opt.zero_grad()
        t_loss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
        t_loss.backward()
        assert_close(f_loss.numpy(), t_loss.detach().numpy(), dtype, err_msg=f"loss at step {step}")
        t_params = dict(tmodel.named_parameters())
        for name, p in fmodel.named_parameters():
            assert_close(p.grad.numpy(), t_params[name].grad.numpy(), dtype, rtol=1e-3, atol=1e-5,
                         err_msg=f"grad of {name} at step {step}")
            p.grad = fastnn.tensor(t_params[name].grad.numpy().copy())
        f_opt.step()
        t_opt.step()
        compare_models(fmodel, tmodel, dtype, f"after step {step + 1}")


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_optimisers_on_reference_backend_match_torch_in_float64(opt_name):
    fmodel, tmodel = make_pair(np.float64, seed=1, conv_bias=(opt_name == "sgd"))
    if opt_name == "sgd":
        kw = SGD_VARIANTS["nesterov_weight_decay"]
        f_opt, t_opt = optim.SGD(fmodel.parameters(), **kw), torch.optim.SGD(tmodel.parameters(), **kw)
    else:
        kw = ADAM_VARIANTS["weight_decay"]
        f_opt, t_opt = optim.Adam(fmodel.parameters(), **kw), torch.optim.Adam(tmodel.parameters(), **kw)
    train_both(fmodel, tmodel, f_opt, t_opt, batches(np.float64, seed=1), np.float64, "reference")


def test_sgd_defaults_match_torch():
    p = [nn.Parameter(np.zeros(2, np.float32))]
    group = optim.SGD(p, lr=0.1).param_groups[0]
    tgroup = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1).param_groups[0]
    for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov"):
        assert group[key] == tgroup[key], key
    agroup = optim.Adam(p).param_groups[0]
    tagroup = torch.optim.Adam([torch.zeros(2, requires_grad=True)]).param_groups[0]
    for key in ("lr", "betas", "eps", "weight_decay"):
        assert tuple(np.atleast_1d(agroup[key])) == tuple(np.atleast_1d(tagroup[key])), key


# ---------------------------------------------------------------------------------------------
# optimiser mechanics
# ---------------------------------------------------------------------------------------------
def _quadratic_step(opt, params, targets):
    opt.zero_grad()
    loss = None
    for p, t in zip(params, targets):
        term = ((p - t) * (p - t)).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    opt.step()


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
                                  lambda ps: optim.Adam(ps, lr=0.05, weight_decay=0.01)], ids=["sgd", "adam"])
def test_optimizer_state_dict_round_trip_continues_identically(make):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    targets = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    a = [nn.Parameter(v.copy()) for v in init]
    opt_a = make(a)
    for _ in range(3):
        _quadratic_step(opt_a, a, targets)
    saved = opt_a.state_dict()
    b = [nn.Parameter(p.numpy().copy()) for p in a]
    opt_b = make(b)
    opt_b.load_state_dict(saved)
    for _ in range(3):
        _quadratic_step(opt_a, a, targets)
        _quadratic_step(opt_b, b, targets)
    for pa, pb in zip(a, b):
        np.testing.assert_allclose(pb.numpy(), pa.numpy(), rtol=1e-12, atol=1e-14)


def test_optimizer_state_dict_uses_torch_layout_and_state_names():
    rng = np.random.default_rng(1)
    f_params = [nn.Parameter(rng.standard_normal((2, 2)))]
    t_params = [torch.tensor(f_params[0].numpy().copy(), requires_grad=True)]
    for f_opt, t_opt in [(optim.SGD(f_params, lr=0.1, momentum=0.9), torch.optim.SGD(t_params, lr=0.1, momentum=0.9)),
                         (optim.Adam(f_params), torch.optim.Adam(t_params))]:
        (f_params[0] * f_params[0]).sum().backward()
        (t_params[0] * t_params[0]).sum().backward()
        f_opt.step()
        t_opt.step()
        f_sd, t_sd = f_opt.state_dict(), t_opt.state_dict()
        assert set(f_sd) == {"state", "param_groups"}
        assert [g["params"] for g in f_sd["param_groups"]] == [g["params"] for g in t_sd["param_groups"]]
        assert set(f_sd["state"]) == set(t_sd["state"])
        assert set(f_sd["state"][0]) == set(t_sd["state"][0])
        for k, v in t_sd["state"][0].items():
            assert_close(np.asarray(f_sd["state"][0][k], dtype=np.float64), v.numpy().astype(np.float64), np.float64,
                         err_msg=k)
        f_params[0].grad = None
        t_params[0].grad = None


def test_optimizer_zero_grad_sets_grads_to_none_by_default_or_zero():
    p = nn.Parameter(np.ones(3, np.float32))
    opt = optim.SGD([p], lr=0.1)
    (p * 2.0).sum().backward()
    opt.zero_grad()
    assert p.grad is None
    (p * 2.0).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and not p.grad.numpy().any()


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.1)], ids=["sgd", "adam"])
def test_parameters_without_grad_are_not_updated(make):
    used = nn.Parameter(np.ones(2, np.float32))
    unused = nn.Parameter(np.ones(2, np.float32))
    opt = make([used, unused])
    (used * 3.0).sum().backward()
    opt.step()
    np.testing.assert_array_equal(unused.numpy(), [1.0, 1.0])
    assert not np.array_equal(used.numpy(), [1.0, 1.0])


def test_changing_lr_in_param_groups_takes_effect_like_torch():
    p = nn.Parameter(np.zeros(1, np.float64))
    opt = optim.SGD([p], lr=1.0)
    opt.param_groups[0]["lr"] = 0.5
    (p * 2.0).sum().backward()
    opt.step()
    np.testing.assert_allclose(p.numpy(), [-1.0])


def test_per_parameter_group_options_like_torch():
    rng = np.random.default_rng(2)
    f = [nn.Parameter(rng.standard_normal(3)), nn.Parameter(rng.standard_normal(3))]
    t = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in f]
    f_opt = optim.SGD([{"params": [f[0]]}, {"params": [f[1]], "lr": 0.01}], lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD([{"params": [t[0]]}, {"params": [t[1]], "lr": 0.01}], lr=0.1, momentum=0.9)
    for _ in range(2):
        f_opt.zero_grad(), t_opt.zero_grad()
        (f[0] * f[0] + f[1] * f[1] * f[1]).sum().backward()
        (t[0] * t[0] + t[1] * t[1] * t[1]).sum().backward()
        f_opt.step(), t_opt.step()
    for fp, tp in zip(f, t):
        assert_close(fp.numpy(), tp.detach().numpy(), np.float64)
