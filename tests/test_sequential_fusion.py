"""nn.Sequential runs a Conv2d followed by a ReLU as one fused op (Conv2d.forward_relu): the same
values and gradients as the two modules in turn, on every backend, and only for that exact pair."""
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
                         nn.Conv2d(8, 4, 1), MyReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 5))


def _run(fuse, x, target):
    model = _model()
    previous = nn.Sequential.fuse_conv_relu
    nn.Sequential.fuse_conv_relu = fuse
    try:
        loss = nn.CrossEntropyLoss()(model(fastnn.tensor(x)), fastnn.tensor(target))
        loss.backward()
    finally:
        nn.Sequential.fuse_conv_relu = previous
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


def test_sequential_fuses_only_a_conv2d_directly_followed_by_a_relu(monkeypatch):
    calls = []
    original = nn.Conv2d.forward_relu
    monkeypatch.setattr(nn.Conv2d, "forward_relu", lambda self, x: calls.append(self) or original(self, x))
    model = _model()
    model(fastnn.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    assert calls == [model[0]]   # not the conv before BatchNorm2d, nor the one before a ReLU subclass
    monkeypatch.setattr(nn.Sequential, "fuse_conv_relu", False)
    model(fastnn.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    assert calls == [model[0]]


def test_a_forward_replaced_on_the_instance_is_never_bypassed_by_fusion():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    seen = []
    conv_forward = model[0].forward
    object.__setattr__(model[0], "forward", lambda x: seen.append(x) or conv_forward(x))
    model(fastnn.tensor(np.ones((1, 1, 5, 5), np.float32)))
    assert len(seen) == 1
