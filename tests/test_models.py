"""fastnn.models: output shapes for 28x28 and 8x8 inputs, state-dict keys and shapes identical to the
equivalent torch.nn.Sequential, and identical outputs once PyTorch's weights are loaded."""
import numpy as np
import pytest

import fastnn
from fastnn import models, nn

NAMES = ["mlp", "lenet5", "tfconvnet", "bnconvnet"]  # the Fashion-MNIST benchmark table
COURSE_NAMES = ["resnet_small", "attention_cnn"]

LENET5_KEYS = ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias",
               "11.weight", "11.bias"]
BNCONVNET_KEYS = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                  "1.num_batches_tracked", "4.weight", "4.bias", "5.weight", "5.bias", "5.running_mean",
                  "5.running_var", "5.num_batches_tracked", "9.weight", "9.bias", "12.weight", "12.bias"]


def _input(n, size, channels=1, seed=0):
    return np.random.default_rng(seed).random((n, channels, size, size), dtype=np.float32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [28, 8, 16])
def test_output_shape(name, size):
    fastnn.manual_seed(0)
    model = models.get_model(name, image_size=size, num_classes=7)
    assert isinstance(model, nn.Sequential)
    out = model(_input(3, size))
    assert out.shape == (3, 7) and out.dtype == np.float32


def test_in_channels():
    model = models.get_model("tfconvnet", in_channels=3, image_size=8)
    assert model(_input(2, 8, channels=3)).shape == (2, 10)
    assert models.mlp(in_features=3 * 8 * 8)(_input(2, 8, channels=3)).shape == (2, 10)


def test_known_state_dict_keys():
    assert list(models.lenet5().state_dict()) == LENET5_KEYS
    assert list(models.bnconvnet().state_dict()) == BNCONVNET_KEYS
    assert list(models.mlp().state_dict()) == ["1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias",
                                               "7.weight", "7.bias"]
    shapes = {k: v.shape for k, v in models.tfconvnet().state_dict().items()}
    assert shapes == {"0.weight": (32, 1, 5, 5), "0.bias": (32,), "3.weight": (64, 32, 5, 5), "3.bias": (64,),
                      "7.weight": (1024, 3136), "7.bias": (1024,), "10.weight": (10, 1024), "10.bias": (10,)}
    assert models.lenet5(image_size=8).state_dict()["7.weight"].shape == (120, 64)


def test_dropout_and_registry():
    assert sorted(models.MODELS) == sorted(NAMES + COURSE_NAMES)
    dropouts = [m for m in models.tfconvnet().modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == 0.4
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.get_model("resnet")
    with pytest.raises(ValueError, match="image_size"):
        models.lenet5(image_size=2)


# -- against PyTorch ----------------------------------------------------------------------------

def _torch_model(name, size):
    tnn = pytest.importorskip("torch.nn")

    def tf_block(cin, cout, bn):
        layers = [tnn.Conv2d(cin, cout, 5, padding=2)] + ([tnn.BatchNorm2d(cout)] if bn else [])
        return layers + [tnn.ReLU(), tnn.MaxPool2d(2)]

    if name == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(size * size, 256), tnn.ReLU(), tnn.Linear(256, 128),
                              tnn.ReLU(), tnn.Linear(128, 100), tnn.ReLU(), tnn.Linear(100, 10))
    if name == "lenet5":
        pad2, flat = (0, 16 * 5 * 5) if size == 28 else (2, 16 * 2 * 2)
        return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                              tnn.Conv2d(6, 16, 5, padding=pad2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                              tnn.Linear(flat, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    bn = name == "bnconvnet"
    side = size // 4
    return tnn.Sequential(*tf_block(1, 32, bn), *tf_block(32, 64, bn), tnn.Flatten(),
                          tnn.Linear(64 * side * side, 1024), tnn.ReLU(), tnn.Dropout(0.4), tnn.Linear(1024, 10))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [28, 8])
def test_matches_torch_sequential(name, size):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = _torch_model(name, size).eval()
    model = models.get_model(name, image_size=size).eval()
    theirs = {k: v.numpy() for k, v in reference.state_dict().items()}
    ours = model.state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    model.load_state_dict(theirs)
    x = _input(4, size, seed=1)
    with fastnn.no_grad():
        out = model(x).numpy()
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
