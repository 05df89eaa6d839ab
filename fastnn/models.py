"""The model zoo: the networks of Fashion-MNIST's benchmark table, as ``nn.Sequential`` s.

Every model is a plain ``nn.Sequential``, so its ``state_dict`` keys (``"0.weight"``, ...) are
those of the same ``torch.nn.Sequential``, and weights move between fastnn and PyTorch.

Example:
    >>> model = get_model("lenet5", image_size=8)      # for the 8x8 digits
    >>> model(fastnn.tensor(np.zeros((2, 1, 8, 8), np.float32))).shape
    (2, 10)
"""
from __future__ import annotations

from . import nn


def _check_size(name, image_size, minimum):
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < minimum:
        raise ValueError(f"{name}: image_size must be an int >= {minimum}, got {image_size!r}")


def mlp(in_features=784, num_classes=10):
    """Multi-layer perceptron in_features-256-128-100-num_classes with ReLUs (Fashion-MNIST's
    "MLP 256-128-100", 0.883 test accuracy there).

    Shape: input (N, *) with in_features elements per sample (e.g. (N, 1, 28, 28)); output (N, num_classes).
    """
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 100), nn.ReLU(),
        nn.Linear(100, num_classes))


def lenet5(in_channels=1, num_classes=10, image_size=28):
    """LeNet-5 with ReLU and max pooling: conv 6@5x5 (padding 2), pool 2, conv 16@5x5, pool 2,
    dense 120, 84, num_classes.

    For small images (``image_size`` < 16, e.g. 8 for the digits) the second convolution is
    padded by 2 as well, so the feature map never shrinks to nothing (8 -> 4 -> 2 instead of -> 0).
    Shape: input (N, in_channels, image_size, image_size); output (N, num_classes).
    """
    _check_size("lenet5", image_size, 4)
    after_pool1 = image_size // 2
    padding2 = 0 if after_pool1 >= 8 else 2
    after_pool2 = (after_pool1 + 2 * padding2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=padding2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * after_pool2 * after_pool2, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes))


def _tf_convnet(in_channels, num_classes, image_size, batch_norm, dropout, name):
    _check_size(name, image_size, 4)

    def block(cin, cout):
        layers = [nn.Conv2d(cin, cout, 5, padding=2)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        return layers + [nn.ReLU(), nn.MaxPool2d(2)]

    side = image_size // 2 // 2
    return nn.Sequential(
        *block(in_channels, 32), *block(32, 64),
        nn.Flatten(),
        nn.Linear(64 * side * side, 1024), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(1024, num_classes))


def tfconvnet(in_channels=1, num_classes=10, image_size=28, dropout=0.4):
    """The TensorFlow tutorial convnet: conv 32@5x5 "same", ReLU, pool 2, conv 64@5x5 "same",
    ReLU, pool 2, dense 1024, ReLU, dropout 0.4, dense num_classes (0.916 on Fashion-MNIST).

    Shape: input (N, in_channels, image_size, image_size); output (N, num_classes).
    """
    return _tf_convnet(in_channels, num_classes, image_size, False, dropout, "tfconvnet")


def bnconvnet(in_channels=1, num_classes=10, image_size=28, dropout=0.4):
    """``tfconvnet`` with ``BatchNorm2d`` after each convolution, before its ReLU (0.934 on
    Fashion-MNIST). Keys: ``"1.weight"``, ``"1.running_mean"``, ``"1.num_batches_tracked"``, ...
    """
    return _tf_convnet(in_channels, num_classes, image_size, True, dropout, "bnconvnet")


from .course_models import attention_cnn, resnet_small, tiny_unet  # noqa: E402,F401  (the course's zoo additions, re-exported)

MODELS = {"mlp": mlp, "lenet5": lenet5, "tfconvnet": tfconvnet, "bnconvnet": bnconvnet,
          "resnet_small": resnet_small, "attention_cnn": attention_cnn}
SIZE_AGNOSTIC = ("resnet_small", "attention_cnn")  # global average pooling: any image size


def get_model(name, **kwargs):
    """Build the zoo model ``name`` (a key of ``MODELS``).

    ``in_channels`` and ``image_size`` are accepted for every model: for ``mlp`` they set
    ``in_features = in_channels * image_size ** 2`` unless ``in_features`` is given.
    """
    if name not in MODELS:
        raise ValueError(f"get_model: unknown model {name!r}; expected one of {sorted(MODELS)}")
    if name == "mlp":
        in_channels = kwargs.pop("in_channels", 1)
        image_size = kwargs.pop("image_size", 28)
        kwargs.setdefault("in_features", in_channels * image_size * image_size)
    if name in SIZE_AGNOSTIC:
        kwargs.pop("image_size", None)
    return MODELS[name](**kwargs)
