"""The cuda device through the public API: tensors and modules moving, autograd on the device,
training steps matching the CPU, mixed-device and no-GPU errors, launch counts per step."""
import sys

import numpy as np
import pytest

import fastnn
import fastnn.device
import fastnn.functional as F
from fastnn import models, nn, optim

if fastnn.device.cuda_unavailable_reason():
    pytest.skip(f"the cuda device is not usable: {fastnn.device.cuda_unavailable_reason()}", allow_module_level=True)
import fastnn.backends.cuda as cu  # noqa: E402


def test_tensor_to_cuda_and_back_round_trips():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = fastnn.tensor(a, device="cuda")
    assert t.device == "cuda" and t.shape == (2, 3) and t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), a)
    back = t.to("cpu")
    assert back.device == "cpu" and isinstance(back.data, np.ndarray)
    np.testing.assert_array_equal(back.numpy(), a)
    assert t.cpu().device == "cpu" and back.cuda().device == "cuda"
    assert t.to("cuda") is t and back.to("cpu") is back
    assert fastnn.tensor(a).to("cuda:0").device == "cuda"
    assert fastnn.tensor([[2.5]], device="cuda").item() == 2.5
    assert "device='cuda'" in repr(t)


def test_cuda_array_interface_is_exposed_on_cuda_tensors_only():
    t = fastnn.tensor(np.ones((2, 3), np.float32), device="cuda")
    iface = t.__cuda_array_interface__
    assert iface["shape"] == (2, 3) and iface["typestr"] == "<f4" and iface["version"] >= 2
    assert not hasattr(fastnn.tensor([1.0]), "__cuda_array_interface__")
    with pytest.raises(TypeError, match="numpy"):
        np.asarray(t)   # no silent device-to-host copy


def test_device_tensors_wrap_device_arrays_without_copy():
    d = cu.to_device(np.arange(4, dtype=np.float32))
    t = fastnn.Tensor(d)
    assert t.device == "cuda" and t.data is d


@pytest.mark.skipif(not cu.SIMULATOR, reason="about the simulator's arrays")
def test_simulator_device_arrays_are_strict():
    d = cu.to_device(np.ones(3, np.float32))
    with pytest.raises(TypeError):
        d + 1
    with pytest.raises(AttributeError):
        d.sum()


def test_autograd_on_device_matches_cpu():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((3,)).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        ta = fastnn.tensor(a, requires_grad=True, device=device)
        tb = fastnn.tensor(b, requires_grad=True, device=device)
        assert ta.is_leaf and tb.is_leaf
        y = ((ta * tb + 1.5) / (tb * tb + 1) - ta).exp().sum(1)
        z = (y.mean() + (ta - 0.5).abs().sum() + (ta ** 2).mean(0).sum() + (tb * tb + 1).log().sum() + (-tb).sum()
             + fastnn.cat([ta, ta[:, 1:]], 1).sum() + fastnn.stack([tb, tb], 0).sum()
             + ta.T.reshape(6)[2:5].sum() + ta.transpose(0, 1).sum())
        z.backward()
        results[device] = (z.item(), ta.grad.numpy(), tb.grad.numpy())
    for got, want in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gradient_accumulates_on_device():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True, device="cuda")
    for _ in range(2):
        (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])
    assert x.grad.device == "cuda"


def test_gradient_flows_through_to():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    (x.to("cuda") * x.to("cuda")).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_module_to_moves_parameters_in_place():
    model = models.bnconvnet(image_size=8)
    params = list(model.parameters())
    opt = optim.SGD(model.parameters(), lr=0.1)
    state = model.state_dict()
    assert model.to("cuda") is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.device == "cuda" for p in model.parameters())
    assert model[1].running_mean.device == "cuda"
    assert model[1].num_batches_tracked.device == "cpu"   # counted on the host
    assert opt.param_groups[0]["params"][0] is params[0]
    moved = model.state_dict()
    assert list(moved) == list(state)
    for key in state:
        assert isinstance(moved[key], np.ndarray)
        np.testing.assert_array_equal(moved[key], state[key])
    model.load_state_dict(state)
    model.to("cpu")
    assert all(p.device == "cpu" for p in model.parameters())


def test_mixed_devices_raise_naming_both():
    x = fastnn.tensor(np.ones((1, 1, 5, 5), np.float32))
    w = fastnn.tensor(np.ones((2, 1, 3, 3), np.float32), device="cuda")
    with pytest.raises(RuntimeError, match="conv2d.*cpu.*cuda"):
        F.conv2d(x, w)
    with pytest.raises(RuntimeError, match="add.*cpu.*cuda"):
        fastnn.tensor([1.0]) + fastnn.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match="same device"):
        F.cross_entropy(fastnn.tensor(np.zeros((2, 3), np.float32), device="cuda"), fastnn.tensor(np.array([0, 1])))


def test_ops_without_cuda_kernel_raise_not_implemented():
    x = fastnn.tensor(np.ones((1, 2, 4, 4), np.float32), device="cuda")
    with pytest.raises(NotImplementedError, match="argmax.*cuda"):
        x.argmax()


@pytest.mark.parametrize("op, kwargs", [
    ("interpolate", dict(scale_factor=2, mode="nearest")),
    ("interpolate", dict(size=(7, 5), mode="bilinear")),
    ("interpolate", dict(scale_factor=(1.5, 2), mode="bilinear", align_corners=True)),
    ("adaptive_avg_pool2d", dict(output_size=(2, 3))),
    ("adaptive_avg_pool2d", dict(output_size=1)),
])
def test_resampling_on_cuda_matches_the_cpu(op, kwargs):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    g = None
    results = []
    for device in ("cpu", "cuda"):
        tx = fastnn.tensor(x, requires_grad=True, device=device)
        out = getattr(F, op)(tx, **kwargs)
        if g is None:
            g = rng.standard_normal(out.shape).astype(np.float32)
        (out * fastnn.tensor(g, device=device)).sum().backward()
        results.append((out.numpy(), tx.grad.numpy()))
    for on_cuda, on_cpu in zip(results[1], results[0]):
        np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-5, atol=1e-6)


def test_no_gpu_gives_a_clear_error_and_changes_nothing(no_gpu):
    t = fastnn.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="'cuda' device is not available: no CUDA driver"):
        t.to("cuda")
    with pytest.raises(RuntimeError, match="not available"):
        fastnn.tensor([1.0], device="cuda")
    model = models.mlp(in_features=4)
    with pytest.raises(RuntimeError, match="not available"):
        model.to("cuda")
    assert all(p.device == "cpu" for p in model.parameters())
    assert fastnn.device.cuda_in_use is False
    np.testing.assert_allclose((t * 2).numpy(), [2.0, 4.0])


def test_availability_probe_reports_a_reason_without_a_gpu(monkeypatch):
    from numba import config
    monkeypatch.setattr(config, "ENABLE_CUDASIM", 0)
    reason = fastnn.device._probe()
    assert isinstance(reason, str)   # '' on a GPU machine, else why (driver / device)


def _train(model, device, steps, x, y, adam=False):
    model.to(device)
    opt = optim.Adam(model.parameters(), lr=0.01) if adam else optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(fastnn.tensor(x, device=device)), fastnn.tensor(y, device=device),
                               label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model.state_dict()


def _small_bn_net(conv_bias=True):
    """bnconvnet's layer kinds (conv, batch norm, ReLU, max pool, dense, dropout) at a simulator-friendly size."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, 10))


@pytest.mark.parametrize("name, adam", [("lenet5", False), ("small_bn", False), ("small_bn", True)])
def test_training_steps_match_cpu_reference(name, adam):
    """A few steps on cuda give the weights of the same steps with the NumPy reference kernels.
    (With Adam the conv before batch norm has no bias: that bias's gradient is exactly 0 in theory
    and rounding noise in practice, which Adam's normalisation scales up to +-lr per step.)"""
    rng = np.random.default_rng(1)
    size = 8 if name == "lenet5" else 4
    x = rng.standard_normal((3, 1, size, size)).astype(np.float32)
    y = np.array([1, 7, 3])
    build = (lambda: models.lenet5(image_size=8)) if name == "lenet5" else (lambda: _small_bn_net(not adam))
    fastnn.manual_seed(0)
    cpu_model, cuda_model = build(), build()
    cuda_model.load_state_dict(cpu_model.state_dict())
    with fastnn.use_backend("reference"):
        cpu_losses, cpu_state = _train(cpu_model, "cpu", 2, x, y, adam)
    cuda_losses, cuda_state = _train(cuda_model, "cuda", 2, x, y, adam)
    np.testing.assert_allclose(cuda_losses, cpu_losses, rtol=1e-5)
    for key in cpu_state:
        np.testing.assert_allclose(cuda_state[key], cpu_state[key], rtol=1e-4, atol=1e-5, err_msg=key)


def _small_tfconvnet():
    """tfconvnet's layer kinds (conv + ReLU, max pool, dense + ReLU + dropout 0.4 fused by
    Sequential, dense) at a simulator-friendly size."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.4), nn.Linear(32, 10))


def test_training_with_dropout_draws_the_same_masks_on_cuda_and_on_the_cpu():
    """With the same seed, steps on cuda and on the default cpu backend drop the same units (the
    dropout mask is a hash of a seed drawn from fastnn's generator, the same on every backend), so
    the two runs give the same losses and weights up to rounding: same accuracy by construction."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 1, 4, 4)).astype(np.float32)
    y = np.array([1, 7, 3, 0, 9, 3])
    runs = []
    for device in ("cpu", "cuda"):
        fastnn.manual_seed(0)
        model = _small_tfconvnet()
        runs.append(_train(model, device, 3, x, y))
    (cpu_losses, cpu_state), (cuda_losses, cuda_state) = runs
    np.testing.assert_allclose(cuda_losses, cpu_losses, rtol=1e-5)
    for key in cpu_state:
        np.testing.assert_allclose(cuda_state[key], cpu_state[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # and the masks did drop units: without dropout the same steps end elsewhere
    fastnn.manual_seed(0)
    undropped = _small_tfconvnet()
    undropped[6].p = 0.0
    _, plain_state = _train(undropped, "cpu", 3, x, y)
    assert not np.allclose(plain_state["4.weight"], cpu_state["4.weight"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet_small", "attention_cnn"])
def test_course_models_train_on_cuda_like_on_the_cpu(name):
    """The course zoo's residual and attention networks (global average pooling through
    adaptive_avg_pool2d, attention products, batch norm) on the device: loss and gradients."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        fastnn.manual_seed(0)
        model = models.get_model(name).to(device)
        loss = nn.CrossEntropyLoss()(model(fastnn.tensor(x, device=device)), fastnn.tensor(np.array([1, 3]), device=device))
        loss.backward()
        results.append([np.asarray(loss.item())] + [p.grad.numpy() for p in model.parameters()])
    for on_cuda, on_cpu in zip(results[1], results[0]):
        np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-4, atol=1e-5)


def test_dropout_on_device_in_training_only():
    fastnn.manual_seed(0)
    x = fastnn.tensor(np.ones((4, 50), np.float32), requires_grad=True, device="cuda")
    y = F.dropout(x, 0.5, training=True)
    kept = y.numpy() != 0
    assert 0.3 < kept.mean() < 0.7
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept * 2.0)
    assert F.dropout(x, 0.5, training=False) is x


@pytest.mark.parametrize("batch, bias, dtype, p", [(3, True, np.float32, 0.3), (24, True, np.float32, 0.3),
                                                   (3, False, np.float32, np.float32(0.15)),
                                                   (24, True, np.float64, np.float32(0.29))])
def test_a_fused_linear_relu_dropout_on_cuda_is_the_three_modules_bit_for_bit(batch, bias, dtype, p, monkeypatch):
    """One GEMM launch with the dropout mask in its epilogue, and its backward through the mask
    z > 0 scaled by 1 / (1 - p): the values, gradients and random draws of Linear, ReLU, Dropout.
    The fused GEMMs split k (8 multiprocessors, slices of one slab), in the simulator and on a GPU,
    so the last block of a split tile applies the mask too. A NumPy float32 p: the scale is worked
    out from the same float either way."""
    from fastnn.backends.cuda import _core, linear
    monkeypatch.setattr(_core, "_multiprocessors", 8)
    monkeypatch.setattr(linear, "MIN_K_CHUNK", linear.TILINGS[0].BK)
    monkeypatch.setattr(linear, "MAX_SPLITS", 8)
    assert linear.split_k(batch, 40, 40) > 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 40)).astype(dtype)
    results = []
    for fuse in (True, False):
        fastnn.manual_seed(0)
        model = nn.Sequential(nn.Linear(40, 40, bias=bias, dtype=dtype), nn.ReLU(), nn.Dropout(p),
                              nn.Linear(40, 3, dtype=dtype)).to("cuda")
        previous = nn.Sequential.fuse_relu
        nn.Sequential.fuse_relu = fuse
        try:
            xt = fastnn.tensor(x, device="cuda", requires_grad=True)
            with cu.count_launches() as launches:
                z = model[:3](xt) if fuse else model[2](model[1](model[0](xt)))
                forward = launches()
            (model[3](z) * fastnn.tensor(rng.standard_normal((batch, 3)).astype(dtype), device="cuda")).sum().backward()
        finally:
            nn.Sequential.fuse_relu = previous
        results.append((forward, z.numpy(), xt.grad.numpy(), [p.grad.numpy() for p in model.parameters()],
                        fastnn.random.generator().integers(0, 2**31)))
        rng = np.random.default_rng(3)
        x = rng.standard_normal((batch, 40)).astype(dtype)
    (launches_fused, *fused), (launches_plain, *plain) = results
    assert (launches_fused, launches_plain) == (1, 3)
    dropped = fused[0] == 0
    assert 0 < dropped.mean() < 1
    for a, b in zip(fused, plain):
        if isinstance(a, list):
            for ga, gb in zip(a, b):
                np.testing.assert_array_equal(ga, gb)
        else:
            np.testing.assert_array_equal(a, b)


def test_a_fused_linear_relu_dropout_saves_the_two_dropout_launches_of_a_training_step():
    """Against a Linear + ReLU fused without the Dropout (a nested Sequential keeps it apart)."""
    x = fastnn.tensor(np.ones((4, 20), np.float32), device="cuda")
    counts = []
    for nested in (False, True):
        layers = [nn.Linear(20, 40), nn.ReLU(), nn.Dropout(0.3), nn.Linear(40, 3)]
        model = nn.Sequential(nn.Sequential(*layers[:2]), *layers[2:]) if nested else nn.Sequential(*layers)
        model.to("cuda")
        with cu.count_launches(dry_run=True) as launches:
            model(x).sum().backward()
            counts.append(launches())
    assert counts[1] - counts[0] == 2


def test_an_observer_sees_every_launch_that_runs_and_runs_it():
    """cu.observe_launches (bench/cuda_step_profile.py times launches with it): each kernel that runs
    goes through the observer once, and the results are those of an unobserved run."""
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    results, seen = [], []

    def observer(kernel, grid, args, run):
        seen.append(kernel)
        run()
    for observe in (False, True):
        fastnn.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).to("cuda")
        xt = fastnn.tensor(x, device="cuda", requires_grad=True)
        with cu.count_launches() as launches:
            if observe:
                with cu.observe_launches(observer):
                    model(xt).sum().backward()
            else:
                model(xt).sum().backward()
            count = launches()
        results.append((count, xt.grad.numpy(), [p.grad.numpy() for p in model.parameters()]))
    (plain_count, plain_gx, plain_grads), (observed_count, gx, grads) = results
    assert observed_count == plain_count == len(seen) > 0
    np.testing.assert_array_equal(gx, plain_gx)
    for a, b in zip(grads, plain_grads):
        np.testing.assert_array_equal(a, b)


def test_fit_and_evaluate_on_cuda():
    from fastnn.data import DataLoader, TensorDataset
    from fastnn.train import evaluate, fit
    rng = np.random.default_rng(0)
    data = TensorDataset(rng.standard_normal((8, 1, 2, 2)).astype(np.float32), rng.integers(0, 3, 8))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    opt = optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(data, batch_size=4), epochs=1, progress=False,
                  log=None, device="cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    assert np.isfinite(history["train_loss"][0]) and history["train_acc"][0] is not None
    loss, acc = evaluate(model, nn.CrossEntropyLoss(), DataLoader(data, batch_size=8), device="cuda")
    assert np.isfinite(loss) and 0 <= acc <= 1


@pytest.mark.parametrize("name", ["mlp", "lenet5", "tfconvnet", "bnconvnet"])
def test_launches_per_training_step_are_the_same_at_the_benchmark_batches(name):
    counts = [cu.training_step_launches(name, batch) for batch in (64, 256)]
    assert counts[0] == counts[1]
    assert counts[1] <= {"mlp": 13, "lenet5": 21, "tfconvnet": 18, "bnconvnet": 26}[name]   # measured; keep it down


def test_launches_per_training_step_on_an_h100_are_the_documented_ones(monkeypatch, gpu_tilings):
    """docs/architecture.md's counts: the GPU's tilings and 132 multiprocessors (split-K
    launches depend on them), counted in a dry run."""
    from fastnn.backends.cuda import _core, linear
    monkeypatch.setattr(linear, "MIN_K_CHUNK", 256)
    monkeypatch.setattr(linear, "MAX_SPLITS", 128)
    monkeypatch.setattr(_core, "_multiprocessors", 132)
    counts = {name: cu.training_step_launches(name, 64) for name in ("mlp", "lenet5", "tfconvnet", "bnconvnet")}
    assert counts == {"mlp": 13, "lenet5": 21, "tfconvnet": 18, "bnconvnet": 26}


def test_command_line_without_gpu_fails_clearly(no_gpu, capsys):
    from fastnn.benchmark.run import main as bench_main
    from fastnn.cli import main
    assert main(["train", "--device", "cuda", "--epochs", "1", "--no-progress"]) == 1
    assert "--device cuda: the 'cuda' device is not available: no CUDA driver" in capsys.readouterr().err
    assert bench_main(["--device", "cuda", "--models", "mlp", "--batches", "8", "--out", "unused"]) == 1
    assert "fastnn bench --device cuda: the 'cuda' device is not available" in capsys.readouterr().err


def test_optimizer_state_follows_the_model_to_the_device():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 3)).astype(np.float32), np.array([0, 1])
    fastnn.manual_seed(0)
    model = nn.Linear(3, 2)
    reference = nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    opt, opt_ref = optim.SGD(model.parameters(), lr=0.1, momentum=0.9), optim.SGD(reference.parameters(), lr=0.1,
                                                                                  momentum=0.9)
    for step in range(3):
        if step == 1:
            model.to("cuda")   # after a CPU step: the momentum buffers must follow
        device = "cuda" if step else "cpu"
        for m, o, d in ((model, opt, device), (reference, opt_ref, "cpu")):
            loss = F.cross_entropy(m(fastnn.tensor(x, device=d)), fastnn.tensor(y, device=d))
            o.zero_grad()
            loss.backward()
            o.step()
    assert opt.state[id(model.weight)]["momentum_buffer"] is not None
    for key, value in reference.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.9, True)])
def test_rmsprop_trains_on_cuda_like_on_the_cpu(momentum, centered):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 3)).astype(np.float32), np.array([0, 1, 1, 0])
    fastnn.manual_seed(0)
    model, reference = nn.Linear(3, 2), nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    model.to("cuda")
    optimizers = [(model, optim.RMSprop(model.parameters(), lr=0.01, momentum=momentum, centered=centered), "cuda"),
                  (reference, optim.RMSprop(reference.parameters(), lr=0.01, momentum=momentum, centered=centered),
                   "cpu")]
    for _ in range(3):
        for m, o, d in optimizers:
            loss = F.cross_entropy(m(fastnn.tensor(x, device=d)), fastnn.tensor(y, device=d))
            o.zero_grad()
            loss.backward()
            o.step()
    for key, value in reference.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["l1_loss", "mse_loss", "binary_cross_entropy_with_logits"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_paired_losses_on_cuda_match_the_cpu_with_gradients_for_both_arguments(loss, reduction):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t = rng.random((3, 4)).astype(np.float32)
    kwargs = {"pos_weight": np.array([1.0, 2.0, 0.5, 3.0], np.float32)} if loss.startswith("binary") else {}
    results = []
    for device in ("cpu", "cuda"):
        tx = fastnn.tensor(x, requires_grad=True, device=device)
        tt = fastnn.tensor(t, requires_grad=True, device=device)
        out = getattr(F, loss)(tx, tt, reduction=reduction, **kwargs)
        (out if reduction != "none" else out.sum()).backward()
        results.append((out.numpy(), tx.grad.numpy(), tt.grad.numpy()))
    for on_cuda, on_cpu in zip(*results):
        np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["layer_norm", "group_norm"])
def test_layer_and_group_norm_on_cuda_match_the_cpu(layer):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    fastnn.manual_seed(0)
    module = nn.LayerNorm((5, 5)) if layer == "layer_norm" else nn.GroupNorm(2, 4)
    module.weight.data[...] = rng.standard_normal(module.weight.shape).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        module.to(device)
        module.zero_grad()
        tx = fastnn.tensor(x, requires_grad=True, device=device)
        out = module(tx)
        (out * out).sum().backward()
        results.append((out.numpy(), tx.grad.numpy(), module.weight.grad.numpy(), module.bias.grad.numpy()))
    for on_cuda, on_cpu in zip(results[1], results[0]):
        np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-4, atol=1e-5)


def test_max_unpool2d_on_cuda_matches_the_cpu_and_checks_indices_on_the_device():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        tx = fastnn.tensor(x, requires_grad=True, device=device)
        pooled, indices = F.max_pool2d(tx, 2, return_indices=True)
        out = F.max_unpool2d(pooled, indices, 2)
        (out * out).sum().backward()
        results.append((out.numpy(), tx.grad.numpy()))
    for on_cuda, on_cpu in zip(results[1], results[0]):
        np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-6)
    values = fastnn.tensor(np.ones((1, 1, 2, 2), np.float32), device="cuda")
    bad = fastnn.tensor(np.array([[[[0, 1], [2, 16]]]]), device="cuda")
    with pytest.raises(ValueError, match=r"max_unpool2d: indices must lie in \[0, 16\).*\[0, 16\]"):
        F.max_unpool2d(values, bad, 2)
    with pytest.raises(RuntimeError, match="same device|cpu.*cuda"):
        F.max_unpool2d(values, np.zeros((1, 1, 2, 2), np.int64), 2)


def test_max_unpool2d_counts_its_launches_in_a_dry_run():
    from fastnn.backends.cuda import count_launches
    x = fastnn.tensor(np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6), device="cuda")
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    with count_launches(dry_run=True) as counter:
        F.max_unpool2d(pooled, indices, 2)
    assert counter() >= 2     # the index check and the scatter (plus the zero fill)


@pytest.mark.parametrize("track_running_stats", [False, True])
def test_instance_norm_on_cuda_matches_the_cpu(track_running_stats):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32) * 2 + 1
    results = []
    for device in ("cpu", "cuda"):
        fastnn.manual_seed(0)
        module = nn.InstanceNorm2d(4, affine=True, track_running_stats=track_running_stats)
        module.weight.data[...] = np.linspace(0.5, 2, 4, dtype=np.float32)
        module.to(device)
        tx = fastnn.tensor(x, requires_grad=True, device=device)
        out = module(tx)
        (out * out).sum().backward()
        state = [np.asarray(fastnn.tensor(v).numpy() if not isinstance(v, np.ndarray) else v)
                 for v in module.to("cpu").state_dict().values()]
        results.append([out.numpy(), tx.grad.numpy(), module.weight.grad.numpy()] + state)
        if track_running_stats:   # eval mode then normalises with the running statistics
            module.to(device).eval()
            results[-1].append(module(fastnn.tensor(x, device=device)).numpy())
    for on_cuda, on_cpu in zip(results[1], results[0]):
        np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_on_cuda_matches_the_cpu(reduction):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 3, 2)).astype(np.float32)
    target = np.array([[0, 2], [1, 1], [2, 0], [1, 2]])
    results = []
    for device in ("cpu", "cuda"):
        x = fastnn.tensor(logits, requires_grad=True, device=device)
        out = F.nll_loss(F.log_softmax(x, dim=1), fastnn.tensor(target, device=device), reduction=reduction)
        (out if reduction != "none" else out.sum()).backward()
        results.append((out.numpy(), x.grad.numpy()))
    for on_cuda, on_cpu in zip(results[1], results[0]):
        np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("expression", [lambda x: x + 2.5, lambda x: 2.5 + x, lambda x: x - 2.5, lambda x: 2.5 - x,
                                        lambda x: x * 3, lambda x: 3 * x, lambda x: x / 3.0, lambda x: 3.0 / x,
                                        lambda x: (x - 1) / 7 * 0.5, lambda x: x + np.int64(3),
                                        lambda x: np.float64(0.1) * x, lambda x: x / np.float32(3)],
                         ids=["add", "radd", "sub", "rsub", "mul", "rmul", "div", "rdiv", "chain", "numpy-int",
                              "numpy-float64", "numpy-float32"])
def test_python_scalar_operands_on_cuda_match_the_cpu_bit_for_bit(expression, monkeypatch):
    """A Python number is passed to the kernel by value in the tensor's dtype: the arithmetic is
    NumPy's with a Python scalar, and nothing is copied to the device."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 5)) + 3).astype(np.float32)
    g = rng.standard_normal((3, 5)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        tx = fastnn.tensor(x, requires_grad=True, device=device)
        tg = fastnn.tensor(g, device=device)
        counting = device == "cuda" and cu.SIMULATOR
        if counting:
            cu.unit_seed((), np.float32)        # backward()'s cached ones: copied to the device once
            transfers = _count_host_transfers(monkeypatch)
        out = expression(tx)
        (out * tg).sum().backward()
        if counting:
            assert transfers == [], "a scalar operand was copied to the device"
            monkeypatch.undo()
        results.append((out.numpy(), tx.grad.numpy()))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-6)
    assert results[1][0].dtype == np.float32


def _count_host_transfers(monkeypatch):
    """Host-to-device copies (apart from the simulator's poisoned fresh allocations) and
    device-to-host copies, counted in a list of their kinds."""
    from numba import cuda
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    from fastnn.backends.cuda import _core
    transfers = []
    to_device, to_host, into_device = cuda.to_device, FakeCUDAArray.copy_to_host, FakeCUDAArray.copy_to_device

    def counted_to_device(*args, **kwargs):
        if sys._getframe(1).f_code is not _core.empty.__code__:
            transfers.append("host to device")
        return to_device(*args, **kwargs)

    def counted(kind, method):
        def wrapper(self, *args, **kwargs):
            transfers.append(kind)
            return method(self, *args, **kwargs)
        return wrapper
    monkeypatch.setattr(cuda, "to_device", counted_to_device)
    monkeypatch.setattr(FakeCUDAArray, "copy_to_host", counted("device to host", to_host))
    monkeypatch.setattr(FakeCUDAArray, "copy_to_device", counted("host to device", into_device))
    return transfers


@pytest.mark.skipif(not cu.SIMULATOR, reason="counts the simulator's copies")
@pytest.mark.parametrize("name", list(models.MODELS))
@pytest.mark.parametrize("adam", [False, True], ids=["sgd", "adam"])
def test_a_training_step_makes_no_host_round_trip(name, adam, monkeypatch):
    """Forward, loss, backward and the update of every zoo model queue kernels only: no copy either
    way between host and device (each would make the host wait for the GPU). Dry run: kernels
    are not executed, so the models run at full size."""
    model = models.get_model(name).to("cuda")
    opt = optim.Adam(model.parameters()) if adam else optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = fastnn.tensor(np.zeros((2, 1, 28, 28), np.float32), device="cuda")
    y = fastnn.tensor(np.zeros(2, np.int64), device="cuda")

    def step():
        loss = nn.CrossEntropyLoss()(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with cu.count_launches(dry_run=True):
        step()                                   # the first step also creates the optimizer state
        transfers = _count_host_transfers(monkeypatch)
        step()
    assert transfers == []


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("upstream", [None, 2.5], ids=["implicit", "explicit"])
def test_cross_entropy_gradient_for_implicit_and_explicit_upstream_gradients(reduction, upstream):
    """backward()'s implicit gradient is a marked array of ones (no launch, and cross-entropy's
    backward returns its saved gradient); an explicit one scales it. A dry run before (which
    fills no cache with garbage) changes nothing."""
    cu.training_step_launches("mlp", 4)
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    target = np.array([0, 3, 1, 1, 2])
    grads = []
    for device in ("cpu", "cuda"):
        x = fastnn.tensor(logits, requires_grad=True, device=device)
        loss = F.cross_entropy(x, fastnn.tensor(target, device=device), reduction=reduction)
        loss.backward(None if upstream is None else fastnn.tensor(np.float32(upstream), device=device))
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6, atol=1e-7)


def test_conv2d_with_no_input_channels_still_sums_its_bias_gradient():
    """Zero input channels: the weight gradient has no columns, so its GEMM has no blocks to sum
    the bias gradient in; it is summed on its own, as on the CPU."""
    results = []
    for device in ("cpu", "cuda"):
        x = fastnn.tensor(np.zeros((2, 0, 5, 5), np.float32), requires_grad=True, device=device)
        w = fastnn.tensor(np.zeros((3, 0, 3, 3), np.float32), requires_grad=True, device=device)
        b = fastnn.tensor(np.array([1.0, -2.0, 0.5], np.float32), requires_grad=True, device=device)
        y = F.relu(F.conv2d(x, w, b, padding=1))
        (y * y).sum().backward()
        results.append(b.grad.numpy())
    np.testing.assert_array_equal(results[1], results[0])
