"""Lesson: what a trained CNN has learned -- filters and feature maps.

LeNet-5 (``fastnn.models.lenet5``) is trained on the 8x8 digits. Its first convolution holds six
5x5 filters: they start as random noise and training turns them into detectors of strokes and
edges, like the fixed Laplacian or Sobel kernels of the convolution lesson but learned from the
data (on images this small they stay rough). Each filter, slid over an image, gives a *feature
map* that lights up where its pattern occurs; the second convolution combines those maps into
detectors of larger parts, and the classifier reads those.

    fastnn lesson features --out lesson-features
"""
from __future__ import annotations

import copy

import numpy as np

from . import _util


def first_conv(model):
    """The first ``Conv2d`` of a model."""
    from fastnn import nn

    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def feature_maps(model, image):
    """The output of every layer of a ``Sequential`` for one (1, H, W) image: a list of (name, array (C, h, w))
    for the 4-D outputs (convolutions, activations, pooling)."""
    import fastnn

    x = fastnn.tensor(np.asarray(image, np.float32)[None])
    maps = []
    model.eval()
    with fastnn.no_grad():
        for i, layer in enumerate(model.children()):
            x = layer(x)
            if x.ndim == 4:
                maps.append((f"{i}: {type(layer).__name__}", x.numpy()[0]))
    return maps


def run(out_dir, small=False, seed=0, epochs=None):
    """Train LeNet-5 on the digits; plot its first-layer filters (before and after training) and the
    feature maps of a test image.

    Returns ``{"epochs", "test_acc", "initial_test_acc", "num_filters", "out_channels", "seconds"}``.
    """
    import fastnn
    from fastnn import nn, optim
    from fastnn.data import DataLoader, TensorDataset
    from fastnn.models import lenet5
    from fastnn.train import evaluate, fit

    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    epochs = epochs if epochs is not None else (3 if small else 30)
    with _util.Timer() as timer:
        x_train, y_train, x_test, y_test = _util.digits_split(seed=seed)
        fastnn.manual_seed(seed)
        model = lenet5(in_channels=1, num_classes=10, image_size=8)
        initial = copy.deepcopy(first_conv(model).weight.numpy())
        loss_fn = nn.CrossEntropyLoss()
        train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True, seed=seed)
        test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=256)
        _, initial_acc = evaluate(model, loss_fn, test_loader)
        history = fit(model, loss_fn, optim.Adam(model.parameters(), lr=2e-3), train_loader, epochs,
                      val_loader=test_loader, progress=False, log=None)
        test_acc = history["val_acc"][-1]
        conv = first_conv(model)
        trained = conv.weight.numpy()
        sample = int(np.flatnonzero(y_test == 3)[0]) if (y_test == 3).any() else 0
        maps = feature_maps(model, x_test[sample])
        files = [_util.save(_filters_figure(plt, initial, trained, initial_acc, test_acc), out_dir,
                            "features_filters.png"),
                 _util.save(_maps_figure(plt, x_test[sample, 0], y_test[sample], maps), out_dir,
                            "features_maps.png"),
                 _util.save(_curves_figure(plt, history), out_dir, "features_training.png")]
    num_filters = trained.shape[0]
    _util.write_summary(out_dir, "Lesson: learned filters and feature maps of LeNet-5", [
        (f"LeNet-5 (image_size=8) on the digits: {len(y_train)} train / {len(y_test)} test, Adam lr 2e-3, "
         f"batch 32, {epochs} epochs (fastnn.train.fit)"),
        f"test accuracy: {initial_acc:.3f} at initialisation -> {test_acc:.3f} after training",
        f"first convolution: {conv.out_channels} filters of shape {tuple(trained.shape[1:])}",
        f"feature maps shown for test image {sample} (a {y_test[sample]})",
        "", "figures: " + ", ".join(f.rsplit("/", 1)[-1] for f in files), f"time: {timer.seconds:.1f} s"])
    return {"epochs": epochs, "test_acc": float(test_acc), "initial_test_acc": float(initial_acc),
            "num_filters": int(num_filters), "out_channels": int(conv.out_channels),
            "train_loss": history["train_loss"], "files": files, "seconds": timer.seconds}


def _filters_figure(plt, initial, trained, initial_acc, test_acc):
    n = trained.shape[0]
    bound = max(float(np.abs(initial).max()), float(np.abs(trained).max()), 1e-6)
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.8), squeeze=False)
    for row, (weights, label) in enumerate(((initial, f"initial (test acc {initial_acc:.2f})"),
                                            (trained, f"trained (test acc {test_acc:.2f})"))):
        for j in range(n):
            w = weights[j, 0]
            ax = axes[row, j]
            im = ax.imshow(w, cmap="coolwarm", vmin=-bound, vmax=bound)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"filter {j + 1}", fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02, label="weight")
    fig.suptitle("First-layer 5x5 filters of LeNet-5 (red positive, blue negative)")
    return fig


def _maps_figure(plt, image, label, maps):
    # the outputs of the two convolutions after their ReLU are the most telling
    relus = [m for name, m in maps if "ReLU" in name][:2]
    rows = [(f"input\n(digit {label})", image[None])]
    rows += [(f"conv{i + 1} + ReLU\n({m.shape[0]} @ {m.shape[1]}x{m.shape[2]})", m) for i, m in enumerate(relus)]
    width = min(8, max(m.shape[0] for _, m in rows))
    chunks = [(desc if start == 0 else "", m, start) for desc, m in rows for start in range(0, m.shape[0], width)]
    fig, axes = plt.subplots(len(chunks), width, figsize=(1.7 * width, 1.9 * len(chunks)), squeeze=False)
    for r, (desc, m, start) in enumerate(chunks):
        for j in range(width):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            c = start + j
            if c >= m.shape[0]:
                ax.axis("off")
                continue
            is_input = m.shape[0] == 1 and r == 0
            ax.imshow(m[c], cmap="gray" if is_input else "viridis", vmin=0)
            ax.set_title("image" if is_input else f"map {c + 1}", fontsize=8)
            if j == 0 and desc:
                ax.set_ylabel(desc, fontsize=9)
    fig.suptitle("Feature maps of a test image (bright: the filter's pattern is present there)")
    fig.tight_layout()
    return fig


def _curves_figure(plt, history):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_acc"], "o-", label="training accuracy")
    ax.plot(epochs, history["val_acc"], "s--", label="test accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("LeNet-5 on the digits")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
