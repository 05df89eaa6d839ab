"""fastnn.train: fit lowers the loss and fills the history, train/eval modes, NaN detection,
evaluate under no_grad, schedulers, progress bar and log."""
import math

import numpy as np
import pytest

import fastnn
from fastnn import data, models, nn, optim
from fastnn.train import evaluate, fit


def _digits_loaders(n=256, batch=32):
    ds = data.digits()
    train = data.Subset(ds, np.arange(n))
    val = data.Subset(ds, np.arange(n, n + 128))
    return data.DataLoader(train, batch, shuffle=True, seed=0), data.DataLoader(val, 64)


def test_fit_decreases_loss_and_fills_history():
    fastnn.manual_seed(0)
    train_loader, val_loader = _digits_loaders()
    model = models.mlp(in_features=64)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    logs = []
    history = fit(model, nn.CrossEntropyLoss(), opt, train_loader, 4, val_loader=val_loader, progress=False,
                  log=logs.append)
    assert set(history) == {"train_loss", "train_acc", "val_loss", "val_acc", "epoch_time"}
    assert all(len(v) == 4 for v in history.values())
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["train_acc"][-1] > 0.8 and 0 <= history["val_acc"][-1] <= 1
    assert all(t > 0 for t in history["epoch_time"])
    assert len(logs) == 4 and "epoch 4/4" in logs[-1] and "val" in logs[-1]


def test_fit_lenet5_on_digits():
    fastnn.manual_seed(0)
    train_loader, val_loader = _digits_loaders(n=512)
    model = models.lenet5(image_size=8)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = fit(model, nn.CrossEntropyLoss(), opt, train_loader, 3, val_loader=val_loader, progress=False,
                  log=None)
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_without_val_loader_val_lists_stay_empty():
    train_loader, _ = _digits_loaders(64)
    model = models.mlp(in_features=64)
    history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train_loader, 2,
                  progress=False, log=None)
    assert history["val_loss"] == [] and history["val_acc"] == [] and len(history["train_loss"]) == 2


class _ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, fastnn.is_grad_enabled()))
        return self.body(x)


def test_train_mode_each_epoch_and_eval_mode_for_validation():
    train_loader, val_loader = _digits_loaders(64)
    model = _ModeRecorder()
    model.eval()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train_loader, 2,
        val_loader=val_loader, progress=False, log=None)
    per_epoch = len(train_loader) + len(val_loader)
    for epoch in range(2):
        seen = model.seen[epoch * per_epoch:(epoch + 1) * per_epoch]
        assert seen[:len(train_loader)] == [(True, True)] * len(train_loader)
        assert seen[len(train_loader):] == [(False, False)] * len(val_loader)


def test_evaluate_matches_manual_computation_and_restores_mode():
    fastnn.manual_seed(1)
    _, loader = _digits_loaders()
    model = models.mlp(in_features=64)
    model.train()
    loss, acc = evaluate(model, nn.CrossEntropyLoss(reduction="sum"), loader)
    assert model.training
    x, y = data.digits().arrays
    x, y = x[256:384], y[256:384]
    model.eval()
    with fastnn.no_grad():
        logits = model(x).numpy()
    assert acc == pytest.approx(np.mean(logits.argmax(1) == y))
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    per_batch_sum = -log_probs[np.arange(len(y)), y]
    # reduction="sum" per batch of 64, weighted by batch size: mean over samples of 64 * per-sample loss
    assert loss == pytest.approx(64 * per_batch_sum.mean(), rel=1e-4)


class _NaNAt:
    """CrossEntropyLoss that returns NaN at one (epoch, batch)."""

    def __init__(self, epoch, batch, per_epoch):
        self.calls = 0
        self.target = (epoch - 1) * per_epoch + batch
        self.inner = nn.CrossEntropyLoss()

    def __call__(self, output, target):
        self.calls += 1
        loss = self.inner(output, target)
        return loss * float("nan") if self.calls == self.target else loss


def test_nan_loss_raises_naming_epoch_and_batch_before_the_update():
    train_loader, _ = _digits_loaders(128)
    model = models.mlp(in_features=64)
    loss_fn = _NaNAt(epoch=2, batch=3, per_epoch=len(train_loader))
    opt = optim.SGD(model.parameters(), lr=0.1)
    snapshots = []

    class Recorder:
        def __init__(self):
            self.param_groups = opt.param_groups

        def zero_grad(self):
            opt.zero_grad()

        def step(self):
            opt.step()
            snapshots.append(model.state_dict())

    with pytest.raises(FloatingPointError, match=r"nan at epoch 2, batch 3"):
        fit(model, loss_fn, Recorder(), train_loader, 3, progress=False, log=None)
    assert len(snapshots) == len(train_loader) + 2  # the NaN batch made no update
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snapshots[-1][key])


def test_divergent_learning_rate_raises_floating_point_error():
    train_loader, _ = _digits_loaders(128)
    fastnn.manual_seed(0)
    model = models.mlp(in_features=64)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="epoch"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=1e6), train_loader, 5,
            progress=False, log=None)


def test_regression_targets_have_no_accuracy():
    ds = data.cosine(64, noise=0.1, seed=0)
    loader = data.DataLoader(ds, 16, shuffle=True, seed=0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    history = fit(model, nn.MSELoss(), optim.Adam(model.parameters(), lr=1e-2), loader, 3, val_loader=loader,
                  progress=False, log=None)
    assert history["train_acc"] == [None] * 3 and history["val_acc"] == [None] * 3
    assert all(math.isfinite(v) for v in history["train_loss"])
    assert evaluate(model, nn.MSELoss(), loader)[1] is None


def test_epoch_scheduler_steps_once_per_epoch():
    train_loader, _ = _digits_loaders(64)
    model = models.mlp(in_features=64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    scheduler = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    fit(model, nn.CrossEntropyLoss(), opt, train_loader, 3, scheduler=scheduler, progress=False, log=None)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_one_cycle_scheduler_steps_every_batch():
    train_loader, _ = _digits_loaders(64)
    model = models.mlp(in_features=64)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch=len(train_loader))
    fit(model, nn.CrossEntropyLoss(), opt, train_loader, 2, scheduler=scheduler, progress=False, log=None)
    assert scheduler.last_epoch == 2 * len(train_loader)


def test_progress_bar_goes_to_stderr_only_when_enabled(capsys):
    train_loader, _ = _digits_loaders(64)
    model = models.mlp(in_features=64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    fit(model, nn.CrossEntropyLoss(), opt, train_loader, 1, progress=False, log=None)
    assert capsys.readouterr() == ("", "")
    fit(model, nn.CrossEntropyLoss(), opt, train_loader, 1, progress=True, log=print)
    out, err = capsys.readouterr()
    assert "epoch 1/1" in out and "epoch 1/1" in err


def test_bad_epochs():
    train_loader, _ = _digits_loaders(64)
    model = models.mlp(in_features=64)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), train_loader, -1)


# -- L1 / L2 regularisation ---------------------------------------------------------------------

def test_regularization_penalty_is_l1_plus_half_l2_over_weight_matrices_only():
    from fastnn.train import regularization_penalty
    fastnn.manual_seed(0)
    model = models.mlp(in_features=64)
    weights = [p.numpy().astype(np.float64) for p in model.parameters() if p.ndim >= 2]
    expected = sum(0.01 * np.abs(w).sum() + 0.5 * 0.1 * (w * w).sum() for w in weights)
    assert regularization_penalty(model, l1=0.01, l2=0.1).item() == pytest.approx(expected, rel=1e-5)
    assert regularization_penalty(model) is None
    with pytest.raises(ValueError, match="l1"):
        regularization_penalty(model, l1=-1)


@pytest.mark.parametrize("rates", [{"l2": 0.05}, {"l1": 0.002}])
def test_fit_with_weight_penalty_shrinks_the_weights(rates):
    def weight_norm(model):
        return sum(float(np.abs(p.numpy()).sum()) for p in model.parameters() if p.ndim >= 2)

    norms = []
    for penalty in ({}, rates):
        fastnn.manual_seed(0)
        train_loader, _ = _digits_loaders()
        model = models.mlp(in_features=64)
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), train_loader, 3,
            progress=False, log=None, **penalty)
        norms.append(weight_norm(model))
    assert norms[1] < 0.95 * norms[0]


def test_fit_rejects_negative_penalty():
    train_loader, _ = _digits_loaders(n=32)
    model = models.mlp(in_features=64)
    with pytest.raises(ValueError, match="l2"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), train_loader, 1, l2=-0.1,
            progress=False, log=None)
