"""The course toolbox ops (issue 4): gradients vs finite differences (float64, reference backend),
values and gradients vs PyTorch on both backends, and bad-input errors."""
import numpy as np
import pytest

import fastnn
import fastnn.functional as F
from fastnn import nn

from helpers import gradcheck, helper_test_op

torch = pytest.importorskip("torch")
tF = torch.nn.functional
rng = np.random.default_rng(0)


def _x(*shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def _unpool_case():
    x = _x(2, 3, 6, 6)
    _, idx = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    pooled = _x(2, 3, 3, 3)
    return pooled, idx.numpy()


# (name, fastnn fn, torch fn, inputs)
CASES = [
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2), lambda x: tF.leaky_relu(x, 0.2), [_x(3, 5)]),
    ("elu", lambda x: F.elu(x, 1.3), lambda x: tF.elu(x, 1.3), [_x(3, 5)]),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (4, 5), w, b), lambda x, w, b: tF.layer_norm(x, (4, 5), w, b),
     [_x(2, 3, 4, 5), _x(4, 5), _x(4, 5)]),
    ("group_norm", lambda x, w, b: F.group_norm(x, 2, w, b), lambda x, w, b: tF.group_norm(x, 2, w, b),
     [_x(2, 4, 3, 3), _x(4), _x(4)]),
    ("instance_norm", lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
     lambda x, w, b: tF.instance_norm(x, weight=w, bias=b), [_x(2, 3, 4, 4), _x(3), _x(3)]),
    ("nll_loss", lambda x, t: F.nll_loss(F.log_softmax(x, 1), t), lambda x, t: tF.nll_loss(tF.log_softmax(x, 1), t),
     [_x(5, 4), rng.integers(0, 4, 5)]),
    ("nll_loss_2d_sum", lambda x, t: F.nll_loss(x, t, reduction="sum"), lambda x, t: tF.nll_loss(x, t, reduction="sum"),
     [_x(2, 3, 4, 4), rng.integers(0, 3, (2, 4, 4))]),
    ("cross_entropy_2d", lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
     lambda x, t: tF.cross_entropy(x, t, label_smoothing=0.1), [_x(2, 3, 4, 4), rng.integers(0, 3, (2, 4, 4))]),
    ("l1_loss", F.l1_loss, tF.l1_loss, [_x(4, 3), _x(4, 3)]),
    ("bce_with_logits", lambda x, t: F.binary_cross_entropy_with_logits(x, t),
     lambda x, t: tF.binary_cross_entropy_with_logits(x, t), [_x(4, 3, scale=5), rng.random((4, 3))]),
    ("triplet_margin_loss", lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=1.5),
     lambda a, p, n: tF.triplet_margin_loss(a, p, n, margin=1.5), [_x(6, 4), _x(6, 4), _x(6, 4)]),
    ("triplet_swap_p1", lambda a, p, n: F.triplet_margin_loss(a, p, n, p=1, swap=True, reduction="none"),
     lambda a, p, n: tF.triplet_margin_loss(a, p, n, p=1, swap=True, reduction="none"), [_x(6, 4), _x(6, 4), _x(6, 4)]),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), lambda x: tF.adaptive_avg_pool2d(x, (3, 2)),
     [_x(2, 3, 7, 5)]),
    ("interpolate_nearest", lambda x: F.interpolate(x, scale_factor=2), lambda x: tF.interpolate(x, scale_factor=2),
     [_x(2, 3, 3, 4)]),
    ("interpolate_nearest_size", lambda x: F.interpolate(x, size=(7, 5)), lambda x: tF.interpolate(x, size=(7, 5)),
     [_x(1, 2, 3, 4)]),
    ("interpolate_bilinear", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
     lambda x: tF.interpolate(x, scale_factor=2, mode="bilinear"), [_x(2, 3, 3, 4)]),
    ("interpolate_bilinear_aligned", lambda x: F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True),
     lambda x: tF.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True), [_x(2, 3, 3, 4)]),
    ("max_unpool2d", lambda x, i: F.max_unpool2d(x, i, 2), lambda x, i: tF.max_unpool2d(x, i, 2), list(_unpool_case())),
    ("cat_and_broadcast", lambda a, b: F.cat([a, a * b], 1), lambda a, b: torch.cat([a, a * b], 1), [_x(2, 3), _x(1, 3)]),
    ("stack", lambda a, b: F.stack([a, b], 1), lambda a, b: torch.stack([a, b], 1), [_x(2, 3), _x(2, 3)]),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_course_op_matches_pytorch_values_and_gradients(case, backend, dtype):
    _, f_fn, t_fn, inputs = case
    helper_test_op(t_fn, f_fn, inputs, dtype=dtype, backend=backend)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_course_op_gradients_match_finite_differences(case):
    _, f_fn, _, inputs = case
    gradcheck(f_fn, *[a.astype(np.float64) if a.dtype.kind == "f" else a for a in inputs], rtol=1e-4, atol=1e-6)


def test_one_hot_matches_pytorch():
    idx = rng.integers(0, 5, (3, 4))
    np.testing.assert_array_equal(F.one_hot(idx, 6).numpy(), tF.one_hot(torch.tensor(idx), 6).numpy())
    np.testing.assert_array_equal(F.one_hot(idx).numpy(), tF.one_hot(torch.tensor(idx)).numpy())


@pytest.mark.parametrize("module, torch_module, shape", [
    (lambda: nn.LayerNorm(6), lambda: torch.nn.LayerNorm(6), (3, 6)),
    (lambda: nn.GroupNorm(2, 4), lambda: torch.nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    (lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True),
     lambda: torch.nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 4, 4)),
])
def test_norm_modules_state_dict_keys_and_running_stats_match_pytorch(module, torch_module, shape):
    f, t = module(), torch_module()
    assert list(f.state_dict()) == list(t.state_dict())
    x = _x(*shape).astype(np.float32)
    for _ in range(2):
        f(x)
        t(torch.tensor(x))
    for key, value in t.state_dict().items():
        np.testing.assert_allclose(f.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    f.eval()
    t.eval()
    np.testing.assert_allclose(f(x).numpy(), t(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_module_list_and_dict_register_children_with_pytorch_keys():
    f = nn.ModuleDict({"enc": nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 4)]), "head": nn.Linear(4, 1)})
    t = torch.nn.ModuleDict({"enc": torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.Linear(3, 4)]),
                             "head": torch.nn.Linear(4, 1)})
    assert list(f.state_dict()) == list(t.state_dict())
    assert len(list(f.parameters())) == 6


@pytest.mark.parametrize("make", [
    lambda p: fastnn.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    lambda p: fastnn.optim.RMSprop(p, lr=1e-2),
    lambda p: fastnn.optim.RMSprop(p, lr=1e-2, momentum=0.9, centered=True, weight_decay=0.01),
], ids=["adamw", "rmsprop", "rmsprop-centered-momentum"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_new_optimizers_follow_pytorch_update_rules(make, backend):
    names = {"adamw": "AdamW"}
    w0 = _x(4, 3).astype(np.float32)
    grads = [_x(4, 3).astype(np.float32) for _ in range(5)]
    p = nn.Parameter(w0.copy())
    opt = make([p])
    tp = torch.nn.Parameter(torch.tensor(w0))
    kind = type(opt).__name__
    kwargs = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    topt = getattr(torch.optim, names.get(kind, kind))([tp], **kwargs)
    with fastnn.use_backend(backend):
        for g in grads:
            p.grad = fastnn.tensor(g)
            opt.step()
            tp.grad = torch.tensor(g)
            topt.step()
    np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_optimizer_state_dict_round_trip_continues_identically():
    w0 = _x(5).astype(np.float32)
    a, b = nn.Parameter(w0.copy()), nn.Parameter(w0.copy())
    opt_a = fastnn.optim.Adam([a], lr=0.1)
    for _ in range(3):
        a.grad = fastnn.tensor(np.ones(5, np.float32))
        opt_a.step()
    b.data[...] = a.data
    opt_b = fastnn.optim.Adam([b], lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.param_groups[0]["lr"] == 0.1
    for opt, p in ((opt_a, a), (opt_b, b)):
        p.grad = fastnn.tensor(np.full(5, 0.5, np.float32))
        opt.step()
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("call, exc, match", [
    (lambda: F.group_norm(np.zeros((2, 6, 3, 3), np.float32), 4), ValueError, "num_groups"),
    (lambda: F.layer_norm(np.zeros((2, 5), np.float32), (4,)), ValueError, "normalized_shape"),
    (lambda: F.nll_loss(np.zeros((2, 3), np.float32), np.array([0, 3])), IndexError, "out of range"),
    (lambda: F.one_hot(np.array([0, 5]), 3), IndexError, "num_classes"),
    (lambda: F.one_hot(np.array([0.5])), TypeError, "integer"),
    (lambda: F.interpolate(np.zeros((1, 1, 2, 2), np.float32), scale_factor=2, mode="cubic"), ValueError, "mode"),
    (lambda: F.interpolate(np.zeros((1, 1, 2, 2), np.float32)), ValueError, "size or scale_factor"),
    (lambda: F.max_unpool2d(np.zeros((1, 1, 2, 2), np.float32), np.full((1, 1, 2, 2), 99), 2), ValueError, "indices"),
    (lambda: F.triplet_margin_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4))), ValueError, "shape"),
    (lambda: F.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(4)), ValueError, "shape"),
    (lambda: F.adaptive_avg_pool2d(np.zeros((1, 1, 4, 4), np.float32), (0, 2)), ValueError, "output_size"),
])
def test_course_ops_reject_bad_input_with_a_clear_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
