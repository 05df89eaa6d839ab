"""Lesson: semantic segmentation with a tiny U-Net.

Segmentation classifies every pixel. The data set is generated: grey 32x32 images holding squares
and discs of random size, position and brightness on a noisy background, with a per-pixel label
map (0 background, 1 square, 2 disc). Squares and discs have the same brightness distribution, so
the network must use *shape* -- corners against round edges -- not intensity.

``fastnn.models``' ``tiny_unet`` encodes (convolutions and pooling: more context, less detail),
decodes (upsampling) and concatenates the encoder's maps back in (skip connections: the detail),
and ends with one logit per class and pixel, (N, 3, 32, 32), trained with the ordinary
cross-entropy against the (N, 32, 32) label map. It is scored with the intersection over union
(IoU) of each class, averaged over the classes (mean IoU).

    fastnn lesson segmentation --out lesson-segmentation
"""
from __future__ import annotations

import numpy as np

from . import _util

CLASSES = ("background", "square", "disc")


def make_shapes(n, size=32, seed=0, max_shapes=3):
    """``n`` images of squares and discs with their label maps.

    Returns ``(images, labels)``: float32 (n, 1, size, size) in about [0, 1] and int64
    (n, size, size) with 0 = background, 1 = square, 2 = disc (a later shape covers an earlier one).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((n, 1, size, size), np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        image = np.full((size, size), rng.uniform(0.0, 0.3), np.float32)
        for _ in range(rng.integers(1, max_shapes + 1)):
            kind = rng.integers(1, 3)
            r = rng.uniform(3.5, size / 4)
            cy, cx = rng.uniform(r, size - r, 2)
            if kind == 1:
                mask = (np.abs(yy - cy) <= r * 0.9) & (np.abs(xx - cx) <= r * 0.9)
            else:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            image[mask] = rng.uniform(0.5, 1.0)
            labels[i][mask] = kind
        images[i, 0] = image + rng.normal(0, 0.08, (size, size)).astype(np.float32)
    return images, labels


def iou_per_class(pred, target, num_classes=3):
    """Intersection over union of each class over the whole set: |pred = c and target = c| / |pred = c or target = c|
    (NaN for a class absent from both)."""
    ious = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        union = np.count_nonzero(p | t)
        ious.append(np.count_nonzero(p & t) / union if union else float("nan"))
    return np.array(ious)


def predict(model, images, batch_size=128):
    """Per-pixel class predictions (argmax of the logits), (N, H, W) int64, in eval mode without gradients."""
    import fastnn

    model.eval()
    out = []
    with fastnn.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(model(images[start:start + batch_size]).numpy().argmax(1))
    return np.concatenate(out)


def run(out_dir, small=False, seed=0, n_train=None, epochs=None, base=8, upsampling="nearest"):
    """Train ``tiny_unet`` on generated shapes; report per-class and mean IoU, plot masks and curves.

    Returns ``{"n_train", "n_test", "epochs", "output_shape", "iou": {class: value}, "mean_iou",
    "pixel_accuracy", "chance_mean_iou", "losses", "seconds"}``.
    """
    import fastnn
    from fastnn import nn, optim

    from ..course_models import tiny_unet

    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    n_train = n_train if n_train is not None else (256 if small else 768)
    n_test = 64 if small else 200
    epochs = epochs if epochs is not None else (8 if small else 20)
    batch_size = 32
    with _util.Timer() as timer:
        x_train, y_train = make_shapes(n_train, seed=seed)
        x_test, y_test = make_shapes(n_test, seed=seed + 1000)
        fastnn.manual_seed(seed)
        model = tiny_unet(in_channels=1, num_classes=len(CLASSES), base=base, upsampling=upsampling)
        loss_fn = nn.CrossEntropyLoss()
        opt = optim.Adam(model.parameters(), lr=0.01)
        sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        rng = np.random.default_rng(seed)
        losses, test_ious = [], []
        for _ in range(epochs):
            model.train()
            order, total = rng.permutation(n_train), 0.0
            for start in range(0, n_train, batch_size):
                idx = order[start:start + batch_size]
                logits = model(x_train[idx])                 # (B, 3, 32, 32): one logit per class and pixel
                loss = loss_fn(logits, y_train[idx])         # cross-entropy against (B, 32, 32) labels
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.item()) * len(idx)
            sched.step()
            losses.append(total / n_train)
            test_ious.append(float(np.nanmean(iou_per_class(predict(model, x_test), y_test))))
        pred = predict(model, x_test)
        output_shape = tuple(model(x_test[:2]).shape)
        ious = iou_per_class(pred, y_test)
        # chance: pixels labelled at random with the training set's class frequencies
        freq = np.bincount(y_train.ravel(), minlength=len(CLASSES)) / y_train.size
        chance = iou_per_class(np.random.default_rng(seed).choice(len(CLASSES), y_test.shape, p=freq), y_test)
        files = [_util.save(_masks_figure(plt, x_test, y_test, pred), out_dir, "segmentation_masks.png"),
                 _util.save(_curves_figure(plt, losses, test_ious, ious, chance), out_dir,
                            "segmentation_training.png")]
    results = {"n_train": n_train, "n_test": n_test, "epochs": epochs, "output_shape": output_shape,
               "iou": dict(zip(CLASSES, map(float, ious))), "mean_iou": float(np.nanmean(ious)),
               "pixel_accuracy": float(np.mean(pred == y_test)), "chance_mean_iou": float(np.nanmean(chance)),
               "losses": losses, "files": files, "seconds": timer.seconds}
    params = sum(p.numel() for p in model.parameters())
    _util.write_summary(out_dir, "Lesson: semantic segmentation with a tiny U-Net", [
        f"data: generated 32x32 images of squares and discs, {n_train} train / {n_test} test",
        f"model: tiny_unet(base={base}, upsampling={upsampling!r}), {params} parameters, output {output_shape}",
        f"training: Adam lr 0.01 with cosine annealing, batch {batch_size}, {epochs} epochs, per-pixel cross-entropy",
        "",
        "test IoU: " + ", ".join(f"{c} {v:.3f}" for c, v in results["iou"].items()),
        (f"mean IoU {results['mean_iou']:.3f} (random pixels with the class frequencies: "
         f"{results['chance_mean_iou']:.3f}); pixel accuracy {results['pixel_accuracy']:.3f}"),
        "", "figures: " + ", ".join(f.rsplit("/", 1)[-1] for f in files), f"time: {timer.seconds:.1f} s"])
    return results


def _label_cmap():
    from matplotlib.colors import ListedColormap

    return ListedColormap(["#202020", "#e6550d", "#3182bd"])


def _pick_examples(labels, pred, count):
    """The first images that hold both a square and a disc, then the worst-segmented image."""
    wrong = (pred != labels).mean(axis=(1, 2))
    worst = int(np.argmax(wrong))
    both = [i for i in range(len(labels)) if i != worst and (labels[i] == 1).any() and (labels[i] == 2).any()]
    rest = [i for i in range(len(labels)) if i != worst and i not in both]
    return (both + rest)[:count - 1] + [worst]


def _masks_figure(plt, images, labels, pred, count=6):
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(4, count, figsize=(2.2 * count, 9.4))
    cmap = _label_cmap()
    picks = _pick_examples(labels, pred, count)
    for j, k in enumerate(picks):
        errors = pred[k] != labels[k]
        panels = [(images[k, 0], "gray", f"test image {k}" + (" (worst)" if j == count - 1 else "")),
                  (labels[k], cmap, "true mask"), (pred[k], cmap, "predicted mask"),
                  (errors, "Reds", f"errors: {errors.mean():.1%} of pixels")]
        for i, (values, cm, title) in enumerate(panels):
            ax = axes[i, j]
            if cm is cmap:
                ax.imshow(values, cmap=cm, vmin=0, vmax=len(CLASSES) - 1, interpolation="nearest")
            elif cm == "Reds":
                ax.imshow(values, cmap=cm, vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(values, cmap=cm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
    for i, name in enumerate(["input", "ground truth", "U-Net", "wrong pixels"]):
        axes[i, 0].set_ylabel(name, fontsize=10)
    handles = [Patch(color=c, label=name) for c, name in zip(_label_cmap().colors, CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9)
    fig.suptitle("tiny_unet on held-out images: per-pixel classes")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _curves_figure(plt, losses, test_ious, ious, chance):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    epochs = np.arange(1, len(losses) + 1)
    ax1.plot(epochs, losses, "o-", color="black", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("per-pixel cross-entropy")
    ax1b = ax1.twinx()
    ax1b.plot(epochs, test_ious, "s--", color="tab:green", label="test mean IoU")
    ax1b.set_ylim(0, 1)
    ax1b.set_ylabel("test mean IoU", color="tab:green")
    lines = ax1.get_legend_handles_labels()
    lines_b = ax1b.get_legend_handles_labels()
    ax1.legend(lines[0] + lines_b[0], lines[1] + lines_b[1], loc="center right")
    ax1.set_title("Training")
    ax1.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    x = np.arange(len(CLASSES) + 1)
    values = list(ious) + [np.nanmean(ious)]
    baseline = list(chance) + [np.nanmean(chance)]
    ax2.bar(x - 0.2, values, 0.4, color="tab:blue", label="tiny U-Net")
    ax2.bar(x + 0.2, baseline, 0.4, color="0.7", label="random pixels (class frequencies)")
    for xi, v, b in zip(x, values, baseline):
        ax2.text(xi - 0.2, v + 0.02, f"{v:.2f}", ha="center", fontsize=9)
        ax2.text(xi + 0.2, b + 0.02, f"{b:.2f}", ha="center", fontsize=9, color="0.4")
    ax2.set_xticks(x, list(CLASSES) + ["mean IoU"])
    ax2.set_ylim(0, 1.3)
    ax2.set_ylabel("intersection over union (test set)")
    ax2.set_title("IoU per class")
    ax2.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    return fig
