"""Lesson: learning an embedding with the triplet loss.

Instead of predicting a class, the network maps each image to a point (here in the plane, so it
can be drawn). The triplet loss shapes that map from triplets (anchor, positive, negative): an
anchor image, another image of the same digit, an image of a different digit:

    loss = mean(max(d(anchor, positive) - d(anchor, negative) + margin, 0))

It pulls same-digit images together and pushes different digits at least ``margin`` further
away. No class output is ever trained, yet the classes come out as clusters: a new image is
recognised by its nearest neighbours in the embedding (the k-nearest-neighbour accuracy measured
here on held-out digits). This is how face recognition or re-identification of individual animals
works: new individuals need no retraining, only reference pictures.

    fastnn lesson embedding --out lesson-embedding
"""
from __future__ import annotations

import numpy as np

from . import _util


def make_network(dim=2, seed=0):
    """A small CNN from (N, 1, 8, 8) digits to (N, dim) embeddings."""
    import fastnn
    from fastnn import nn

    fastnn.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, dim))


def embed(model, images, batch_size=512):
    """The embeddings of ``images`` (eval mode, no gradients), (N, dim) float32."""
    import fastnn

    model.eval()
    with fastnn.no_grad():
        return np.concatenate([model(images[i:i + batch_size]).numpy() for i in range(0, len(images), batch_size)])


def knn_accuracy(train_points, train_labels, test_points, test_labels, k=5):
    """Accuracy of the majority vote of the ``k`` nearest training points (Euclidean distance)."""
    d = ((test_points[:, None, :] - train_points[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = train_labels[nearest]
    pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
    return float(np.mean(pred == test_labels))


def sample_triplets(labels, anchors, rng):
    """For each anchor index: a positive (another index with the same label) and a negative (an index
    with another label), drawn at random."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    positives = np.empty_like(anchors)
    negatives = np.empty_like(anchors)
    for i, a in enumerate(anchors):
        same = by_class[labels[a]]
        p = rng.choice(same)
        while p == a and len(same) > 1:
            p = rng.choice(same)
        positives[i] = p
        negatives[i] = rng.integers(len(labels))
        while labels[negatives[i]] == labels[a]:
            negatives[i] = rng.integers(len(labels))
    return positives, negatives


def run(out_dir, small=False, seed=0, dim=2, margin=1.0, epochs=None, k=5):
    """Train the embedding network with ``TripletMarginLoss``; compare its kNN accuracy with the same
    network at initialisation; plot both embeddings.

    Returns ``{"dim", "epochs", "knn_acc", "random_knn_acc", "losses", "seconds"}``.
    """
    from fastnn import nn, optim

    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    epochs = epochs if epochs is not None else (8 if small else 40)
    batch_size = 64
    with _util.Timer() as timer:
        x_train, y_train, x_test, y_test = _util.digits_split(seed=seed)
        if small:
            x_train, y_train = x_train[:600], y_train[:600]
        model = make_network(dim, seed)
        initial_train, initial_test = embed(model, x_train), embed(model, x_test)
        random_acc = knn_accuracy(initial_train, y_train, initial_test, y_test, k)
        loss_fn = nn.TripletMarginLoss(margin=margin)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(seed)
        losses = []
        for _ in range(epochs):
            model.train()
            order, total = rng.permutation(len(y_train)), 0.0
            for start in range(0, len(order), batch_size):
                anchors = order[start:start + batch_size]
                positives, negatives = sample_triplets(y_train, anchors, rng)
                loss = loss_fn(model(x_train[anchors]), model(x_train[positives]), model(x_train[negatives]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.item()) * len(anchors)
            losses.append(total / len(y_train))
        final_train, final_test = embed(model, x_train), embed(model, x_test)
        acc = knn_accuracy(final_train, y_train, final_test, y_test, k)
        files = [_util.save(_figure(plt, (initial_test, final_test), y_test, random_acc, acc, dim, k), out_dir,
                            "embedding.png"),
                 _util.save(_loss_figure(plt, losses, margin), out_dir, "embedding_loss.png")]
    _util.write_summary(out_dir, "Lesson: an embedding learned with the triplet loss", [
        f"digits: {len(y_train)} train / {len(y_test)} held-out; a CNN maps each image to a point in {dim}-D",
        f"TripletMarginLoss(margin={margin}), random triplets, Adam lr 1e-3, batch {batch_size}, {epochs} epochs",
        f"triplet loss: {losses[0]:.3f} (epoch 1) -> {losses[-1]:.3f} (epoch {epochs})",
        "",
        f"{k}-nearest-neighbour accuracy on held-out digits:",
        f"  network at initialisation (random weights): {random_acc:.3f}",
        f"  after triplet training:                      {acc:.3f}",
        "", "figures: " + ", ".join(f.rsplit("/", 1)[-1] for f in files), f"time: {timer.seconds:.1f} s"])
    return {"dim": dim, "epochs": epochs, "knn_acc": acc, "random_knn_acc": random_acc, "losses": losses,
            "files": files, "seconds": timer.seconds}


def _project(points):
    """Points in 2-D for plotting: themselves when 2-D, else their first two principal components."""
    if points.shape[1] == 2:
        return points
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def _figure(plt, embeddings, labels, random_acc, acc, dim, k):
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    cmap = plt.cm.tab10
    titles = (f"Random initial network: {k}-NN accuracy {random_acc:.2f}",
              f"After triplet training: {k}-NN accuracy {acc:.2f}")
    for ax, points, title in zip(axes, embeddings, titles):
        p = _project(points)
        ax.scatter(p[:, 0], p[:, 1], c=labels, cmap=cmap, vmin=-0.5, vmax=9.5, s=12, alpha=0.8)
        for digit in range(10):
            centre = np.median(p[labels == digit], axis=0)
            ax.text(*centre, str(digit), fontsize=15, weight="bold", ha="center", va="center",
                    color=cmap(digit),
                    bbox={"boxstyle": "circle,pad=0.15", "fc": "white", "ec": cmap(digit), "alpha": 0.9})
        ax.set_title(title)
        which = "embedding" if dim == 2 else "principal component"
        ax.set_xlabel(f"{which} 1")
        ax.set_ylabel(f"{which} 2")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Held-out digits in the learned {dim}-D embedding (colour and label: the true digit)")
    fig.tight_layout()
    return fig


def _loss_figure(plt, losses, margin):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(np.arange(1, len(losses) + 1), losses, "o-", color="black")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"triplet margin loss (margin {margin:g})")
    ax.set_title("Triplet loss during training (0: every triplet satisfied)")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
