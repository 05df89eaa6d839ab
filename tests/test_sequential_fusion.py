"""nn.Sequential runs a Linear, Conv2d or BatchNorm followed by a ReLU as one fused op (forward_relu),
and a Linear, ReLU, Dropout as one (forward_relu_dropout): the same values, gradients and random draws
as the modules in turn, on every backend, and only for those exact sequences."""
import numpy as np
import pytest

import fastnn
from fastnn import nn


class MyReLU(nn.ReLU):
    """A user's subclass may do anything in forward: never fused."""

    def forward(self, input):
        return super().forward(input) * 2


def _model():
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 1), MyReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 6), nn.ReLU(),
                         nn.Dropout(0.25), nn.Linear(6, 5))


def _run(fuse, x, target):
    model = _model()
    previous = nn.Sequential.fuse_relu
    nn.Sequential.fuse_relu = fuse
    try:
        loss = nn.CrossEntropyLoss()(model(fastnn.tensor(x)), fastnn.tensor(target))
        loss.backward()
    finally:
        nn.Sequential.fuse_relu = previous
    return float(loss.item()), [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("batch", [1, 9], ids=["batched-schedule", "per-image-schedule"])
def test_fused_conv_relu_gives_the_same_loss_and_gradients(backend, batch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
    target = rng.integers(0, 5, batch)
    loss_fused, grads_fused = _run(True, x, target)
    loss_plain, grads_plain = _run(False, x, target)
    assert loss_fused == loss_plain
    for fused, plain in zip(grads_fused, grads_plain):
        np.testing.assert_array_equal(fused, plain)


def test_sequential_fuses_only_a_linear_conv2d_or_batchnorm_directly_followed_by_a_relu(monkeypatch):
    calls = []
    for cls in (nn.Linear, nn.Conv2d, nn.BatchNorm2d):
        original = cls.forward_relu
        monkeypatch.setattr(cls, "forward_relu",
                            lambda self, x, _original=original: calls.append(self) or _original(self, x))
    original_dropout = nn.Linear.forward_relu_dropout
    monkeypatch.setattr(nn.Linear, "forward_relu_dropout",
                        lambda self, x, p, training: calls.append(self) or original_dropout(self, x, p, training))
    model = _model()
    model(fastnn.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    # not the conv before BatchNorm2d (the BatchNorm2d + ReLU pair is fused), nor the one before a
    # ReLU subclass, nor the last Linear; model[9] takes the ReLU and the Dropout after it
    assert calls == [model[0], model[4], model[9]]
    monkeypatch.setattr(nn.Sequential, "fuse_relu", False)
    model(fastnn.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    assert calls == [model[0], model[4], model[9]]


@pytest.mark.parametrize("training", [True, False])
def test_fused_batchnorm_relu_counts_the_batch_and_updates_running_statistics_once(training):
    rng = np.random.default_rng(1)
    x = fastnn.tensor(rng.standard_normal((4, 3, 5, 5)).astype(np.float32))
    models = []
    for fuse in (True, False):
        fastnn.manual_seed(0)
        model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()).train(training)
        previous = nn.Sequential.fuse_relu
        nn.Sequential.fuse_relu = fuse
        try:
            y = model(x)
        finally:
            nn.Sequential.fuse_relu = previous
        models.append((y.numpy(), model.state_dict()))
    (y_fused, state_fused), (y_plain, state_plain) = models
    np.testing.assert_array_equal(y_fused, y_plain)
    for key in state_plain:
        np.testing.assert_array_equal(np.asarray(state_fused[key]), np.asarray(state_plain[key]))
    assert int(np.asarray(state_fused["0.num_batches_tracked"])) == int(training)


def test_a_forward_replaced_on_the_instance_is_never_bypassed_by_fusion():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    seen = []
    conv_forward = model[0].forward
    object.__setattr__(model[0], "forward", lambda x: seen.append(x) or conv_forward(x))
    model(fastnn.tensor(np.ones((1, 1, 5, 5), np.float32)))
    assert len(seen) == 1


def test_a_forward_patched_on_the_class_is_never_bypassed_by_fusion(monkeypatch):
    seen = []
    relu_forward = nn.ReLU.forward
    monkeypatch.setattr(nn.ReLU, "forward", lambda self, x: seen.append(x) or relu_forward(self, x))
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    model(fastnn.tensor(np.ones((1, 1, 5, 5), np.float32)))
    assert len(seen) == 1


@pytest.mark.parametrize("linear_training, dropout_training", [(True, True), (False, False), (True, False),
                                                                 (False, True)])
def test_a_linear_relu_dropout_run_gives_the_same_values_gradients_and_draws_as_three_modules(
        backend, linear_training, dropout_training):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    results = []
    for fuse in (True, False):
        fastnn.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(np.float32(0.15)), nn.Linear(16, 3))
        model[0].train(linear_training)
        model[2].train(dropout_training)
        previous = nn.Sequential.fuse_relu
        nn.Sequential.fuse_relu = fuse
        try:
            y = model(fastnn.tensor(x))
            y.sum().backward()
        finally:
            nn.Sequential.fuse_relu = previous
        after = fastnn.random.generator().integers(0, 2**31)     # the generator moved on alike
        results.append((y.numpy(), [p.grad.numpy() for p in model.parameters()], after))
    (y_fused, grads_fused, after_fused), (y_plain, grads_plain, after_plain) = results
    np.testing.assert_array_equal(y_fused, y_plain)
    for fused, plain in zip(grads_fused, grads_plain):
        np.testing.assert_array_equal(fused, plain)
    assert after_fused == after_plain


def test_a_dropout_whose_forward_is_patched_is_never_bypassed_by_fusion(monkeypatch):
    seen = []
    dropout_forward = nn.Dropout.forward
    monkeypatch.setattr(nn.Dropout, "forward", lambda self, x: seen.append(x) or dropout_forward(self, x))
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5))
    model(fastnn.tensor(np.ones((2, 3), np.float32)))
    assert len(seen) == 1

