"""nn.Sequential runs a Linear, Conv2d or BatchNorm followed by a ReLU as one fused op (forward_relu): the
same values and gradients as the two modules in turn, on every backend, and only for those exact
pairs."""
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
                         nn.Linear(6, 5))


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
    model = _model()
    model(fastnn.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    # not the conv before BatchNorm2d (the BatchNorm2d + ReLU pair is fused), nor the one before a
    # ReLU subclass, nor the last Linear
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
