"""Lesson: the TensorFlow Playground (playground.tensorflow.org), in fastnn.

The Playground trains a tiny fully connected network on 2-D points and colours the plane with its
output. Everything it lets you change is here, with the same meaning and defaults:

* ``dataset``: ``circle``, ``xor``, ``gauss`` or ``spiral`` (500 points); ``noise`` (0 to 0.5);
  ``ratio`` of training to test data (0.5);
* ``features``: what the network sees of a point (x1, x2): ``x1``, ``x2``, ``x1^2``, ``x2^2``,
  ``x1*x2``, ``sin(x1)``, ``sin(x2)`` -- the *feature crosses* that make a problem linear (the
  circle is a line in (x1², x2²), the xor a line in x1·x2);
* ``hidden``: neurons per hidden layer (default two layers of 4 and 2), ``activation``
  (``tanh``, ``relu``, ``sigmoid``, ``linear``);
* ``lr`` (0.03), ``batch_size`` (10), ``l1`` / ``l2`` regularisation rates (0), ``epochs``.

As on the site: weights start uniform in [-0.5, 0.5] and biases at 0.1, the output neuron is a
tanh whose sign is the class (-1 orange, +1 blue), the loss is the squared error
0.5 (output - label)², and an epoch is one pass over the training points with plain SGD.
The defaults reproduce the site's opening screen (circle, noise 0, features x1 and x2).

    fastnn lesson playground --out lesson-playground
    fastnn lesson playground --out xor --set dataset=xor --set features=x1*x2 --set hidden=
"""
from __future__ import annotations

import numpy as np

from . import _util

FEATURES = {
    "x1": lambda p: p[:, 0],
    "x2": lambda p: p[:, 1],
    "x1^2": lambda p: p[:, 0] ** 2,
    "x2^2": lambda p: p[:, 1] ** 2,
    "x1*x2": lambda p: p[:, 0] * p[:, 1],
    "sin(x1)": lambda p: np.sin(p[:, 0]),
    "sin(x2)": lambda p: np.sin(p[:, 1]),
}
ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
DEFAULTS = {"dataset": "circle", "features": ("x1", "x2"), "hidden": (4, 2), "activation": "tanh", "lr": 0.03,
            "batch_size": 10, "ratio": 0.5, "noise": 0.0, "l1": 0.0, "l2": 0.0, "epochs": 300}
N_POINTS = 500
# settings that solve each problem (the gallery of the default run)
RECIPES = {
    "circle": {"features": ("x1^2", "x2^2"), "hidden": (), "epochs": 60},
    "xor": {"features": ("x1*x2",), "hidden": (), "epochs": 60},
    "gauss": {"features": ("x1", "x2"), "hidden": (), "epochs": 60},
    "spiral": {"features": tuple(FEATURES), "hidden": (8, 8, 4), "epochs": 400, "lr": 0.03},
}
ORANGE, BLUE = "#f59322", "#0877bd"  # the site's colours for -1 and +1


def _as_features(features):
    if isinstance(features, str):
        features = [f.strip() for f in features.split(",") if f.strip()]
    features = tuple(features)
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ValueError(f"playground: features must be a non-empty subset of {list(FEATURES)}, got {features!r}")
    return features


def _as_hidden(hidden):
    if isinstance(hidden, str):
        hidden = [int(h) for h in hidden.replace("-", ",").split(",") if h.strip()]
    elif isinstance(hidden, (int, np.integer)):
        hidden = [hidden]
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden) or len(hidden) > 6:
        raise ValueError(f"playground: hidden must list up to 6 positive layer widths, got {hidden!r}")
    return hidden


def feature_matrix(points, features):
    """The network's input: one column per feature of the (n, 2) points. Shape (n, len(features)), float32."""
    return np.stack([FEATURES[f](points) for f in features], 1).astype(np.float32)


def make_network(n_inputs, hidden, activation, seed=0):
    """The Playground's network: Linear + activation per hidden layer, then Linear(., 1) + tanh;
    weights uniform in [-0.5, 0.5], biases 0.1, as on the site."""
    import fastnn
    from fastnn import nn

    if activation not in ACTIVATIONS:
        raise ValueError(f"playground: activation must be one of {ACTIVATIONS}, got {activation!r}")
    make_act = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "linear": nn.Identity}[activation]
    layers, width = [], n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), make_act()]
        width = h
    layers += [nn.Linear(width, 1), nn.Tanh()]
    model = nn.Sequential(*layers)
    rng = np.random.default_rng(seed)
    fastnn.manual_seed(seed)
    for name, p in model.named_parameters():
        p.data[...] = rng.uniform(-0.5, 0.5, p.shape) if name.endswith("weight") else 0.1
    return model


def _weights(model):
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


def data(dataset="circle", noise=0.0, ratio=0.5, seed=0):
    """(train_points, train_labels, test_points, test_labels): labels -1/+1 as float32 (n, 1)."""
    from fastnn.data import playground as make

    points, labels = make(dataset, N_POINTS, noise, seed=seed).arrays  # already shuffled
    n_train = round(ratio * len(labels))
    if not 1 <= n_train < len(labels):
        raise ValueError(f"playground: ratio must leave at least one training and one test point, got {ratio!r}")
    signed = (2.0 * labels - 1.0).astype(np.float32)[:, None]
    return points[:n_train], signed[:n_train], points[n_train:], signed[n_train:]


def train(dataset="circle", features=("x1", "x2"), hidden=(4, 2), activation="tanh", lr=0.03, batch_size=10,
          ratio=0.5, noise=0.0, l1=0.0, l2=0.0, epochs=300, seed=0):
    """Train one Playground configuration; returns a dict with the model, the data and per-epoch
    ``train_loss`` / ``test_loss`` (the site's 0.5 mean squared error, epoch 0 included),
    ``train_acc`` / ``test_acc`` (final) and ``weight_norm`` (sum of squared weights)."""
    import fastnn
    import fastnn.functional as F
    from fastnn import optim
    from fastnn.train import regularization_penalty

    features, hidden = _as_features(features), _as_hidden(hidden)
    if batch_size < 1 or epochs < 0 or lr <= 0 or l1 < 0 or l2 < 0:
        raise ValueError(f"playground: need batch_size >= 1, epochs >= 0, lr > 0, l1, l2 >= 0; got batch_size="
                         f"{batch_size}, epochs={epochs}, lr={lr}, l1={l1}, l2={l2}")
    p_train, y_train, p_test, y_test = data(dataset, noise, ratio, seed)
    x_train, x_test = feature_matrix(p_train, features), feature_matrix(p_test, features)
    model = make_network(len(features), hidden, activation, seed)
    opt = optim.SGD(model.parameters(), lr=lr)

    def loss_of(x, y):
        with fastnn.no_grad():
            return 0.5 * float(F.mse_loss(model(x), y).item())

    history = {"train_loss": [loss_of(x_train, y_train)], "test_loss": [loss_of(x_test, y_test)]}
    for _ in range(epochs):
        for start in range(0, len(y_train), batch_size):
            xb, yb = x_train[start:start + batch_size], y_train[start:start + batch_size]
            loss = 0.5 * F.mse_loss(model(xb), yb)
            penalty = regularization_penalty(model, l1, l2)
            if penalty is not None:
                loss = loss + penalty
            opt.zero_grad()
            loss.backward()
            opt.step()
        history["train_loss"].append(loss_of(x_train, y_train))
        history["test_loss"].append(loss_of(x_test, y_test))
    with fastnn.no_grad():
        train_acc = float(np.mean(np.sign(model(x_train).numpy()) == y_train))
        test_acc = float(np.mean(np.sign(model(x_test).numpy()) == y_test))
    config = {"dataset": dataset, "features": features, "hidden": hidden, "activation": activation, "lr": lr,
              "batch_size": batch_size, "ratio": ratio, "noise": noise, "l1": l1, "l2": l2, "epochs": epochs}
    return {"config": config, "model": model, "points": (p_train, y_train, p_test, y_test), **history,
            "train_acc": train_acc, "test_acc": test_acc,
            "weight_norm": float(sum(np.sum(w.numpy() ** 2) for w in _weights(model)))}


def _grid(extent=6.0, steps=121):
    axis = np.linspace(-extent, extent, steps, dtype=np.float32)
    gx, gy = np.meshgrid(axis, axis)
    return axis, np.stack([gx.ravel(), gy.ravel()], 1)


def _neuron_maps(model, features, grid):
    """Output of every neuron (after its activation) over the grid: a list of (steps², width) arrays per layer."""
    import fastnn
    from fastnn import nn

    maps, x = [], fastnn.tensor(feature_matrix(grid, features))
    with fastnn.no_grad():
        layers = list(model.children())
        for i, layer in enumerate(layers):
            x = layer(x)
            if not isinstance(layer, nn.Linear) or i == len(layers) - 1:
                maps.append(x.numpy())
    return maps


def _cmap(plt):
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("playground", [ORANGE, "#f7f7f7", BLUE])


def _boundary(ax, plt, result, title=None, show_test=True):
    axis, grid = _grid()
    out = _neuron_maps(result["model"], result["config"]["features"], grid)[-1].reshape(len(axis), len(axis))
    im = ax.imshow(out, origin="lower", extent=(-6, 6, -6, 6), cmap=_cmap(plt), vmin=-1, vmax=1, alpha=0.55)
    ax.contour(axis, axis, out, levels=[0], colors="black", linewidths=1)
    p_train, y_train, p_test, y_test = result["points"]
    colors = np.where(y_train[:, 0] > 0, BLUE, ORANGE)
    ax.scatter(p_train[:, 0], p_train[:, 1], c=colors, s=18, edgecolors="white", linewidths=0.7)
    if show_test:
        colors = np.where(y_test[:, 0] > 0, BLUE, ORANGE)
        ax.scatter(p_test[:, 0], p_test[:, 1], c=colors, s=16, marker="s", edgecolors="black", linewidths=0.7)
    ax.set_xlim(-6, 6)
    ax.set_ylim(-6, 6)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return im


def _describe(config):
    hidden = "-".join(map(str, config["hidden"])) or "none"
    reg = []
    if config["l1"]:
        reg.append(f"L1 {config['l1']:g}")
    if config["l2"]:
        reg.append(f"L2 {config['l2']:g}")
    return (f"{config['dataset']}, noise {config['noise']:g}, ratio {config['ratio']:.0%}, features "
            f"{', '.join(config['features'])}; hidden {hidden} {config['activation']}, lr {config['lr']:g}, "
            f"batch {config['batch_size']}" + (", " + ", ".join(reg) if reg else "") + f", {config['epochs']} epochs")


def _main_figure(plt, result):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1, 1.15]})
    im = _boundary(ax1, plt, result, f"Decision boundary (black line: output = 0)\ntrain acc "
                                     f"{result['train_acc']:.3f}, test acc {result['test_acc']:.3f}")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color="0.5", mec="white", label="training point"),
               Line2D([], [], ls="", marker="s", color="0.5", mec="black", label="test point")]
    ax1.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
    fig.colorbar(im, ax=ax1, fraction=0.046, pad=0.04, label="network output (-1 orange ... +1 blue)")
    epochs = np.arange(len(result["train_loss"]))
    ax2.plot(epochs, result["train_loss"], color="black", label=f"training loss ({result['train_loss'][-1]:.3f})")
    ax2.plot(epochs, result["test_loss"], color="tab:red", ls="--", label=f"test loss ({result['test_loss'][-1]:.3f})")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("loss: mean of 0.5 (output - label)$^2$")
    ax2.set_title("Training and test loss per epoch")
    ax2.set_ylim(0, max(max(result["train_loss"]), max(result["test_loss"])) * 1.05)
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle("TensorFlow Playground: " + _describe(result["config"]), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _neurons_figure(plt, result):
    axis, grid = _grid(steps=61)
    maps = _neuron_maps(result["model"], result["config"]["features"], grid)
    inputs = feature_matrix(grid, result["config"]["features"])
    columns = [("input " + f, inputs[:, i]) for i, f in enumerate(result["config"]["features"])]
    layers = [columns] + [[(f"layer {k + 1}, neuron {j + 1}", m[:, j]) for j in range(m.shape[1])]
                          for k, m in enumerate(maps[:-1])] + [[("output", maps[-1][:, 0])]]
    width = max(len(layer) for layer in layers)
    fig, axes = plt.subplots(width, len(layers), figsize=(2.3 * len(layers), 2.2 * width), squeeze=False)
    for k, layer in enumerate(layers):
        for j in range(width):
            ax = axes[j, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(layer):
                ax.axis("off")
                continue
            name, values = layer[j]
            values = values.reshape(len(axis), len(axis))
            bound = max(float(np.max(np.abs(values))), 1e-6)
            ax.imshow(values, origin="lower", extent=(-6, 6, -6, 6), cmap=_cmap(plt), vmin=-bound, vmax=bound)
            ax.set_title(name, fontsize=8)
    fig.suptitle("What each neuron computes over the plane (x1 right, x2 up; orange < 0 < blue)", fontsize=10)
    fig.tight_layout()
    return fig


def _gallery(plt, seed, small):
    results = {}
    fig, axes = plt.subplots(1, len(RECIPES), figsize=(4.4 * len(RECIPES), 4.9))
    for ax, (name, recipe) in zip(axes, RECIPES.items()):
        settings = dict(DEFAULTS, dataset=name, **recipe)
        if small:
            settings["epochs"] = max(10, settings["epochs"] // 10)
        r = train(**settings, seed=seed)
        results[name] = {"test_acc": r["test_acc"], "features": settings["features"], "hidden": settings["hidden"],
                         "epochs": settings["epochs"]}
        hidden = "-".join(map(str, settings["hidden"])) or "no hidden layer"
        feats = ", ".join(settings["features"]) if len(settings["features"]) < 7 else "all 7 features"
        _boundary(ax, plt, r, f"{name}: test acc {r['test_acc']:.2f}\n{feats}; {hidden}; {settings['epochs']} ep.",
                  show_test=False)
    fig.suptitle("The four Playground problems, each with settings that solve it (training points shown)")
    fig.tight_layout()
    return fig, results


def run(out_dir, small=False, seed=0, gallery=None, **options):
    """Train one Playground configuration (keyword options as in ``DEFAULTS``) and plot it.

    ``gallery`` (default: ``not small``) also solves all four problems with ``RECIPES``.
    Returns ``{"config", "train_acc", "test_acc", "train_loss", "test_loss", "weight_norm",
    "gallery", "seconds"}`` (final losses).
    """
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"playground: unknown option(s) {sorted(unknown)}; expected some of {sorted(DEFAULTS)}")
    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    settings = dict(DEFAULTS, **options)
    if small and "epochs" not in options:
        settings["epochs"] = 60
    gallery = (not small) if gallery is None else gallery
    with _util.Timer() as timer:
        result = train(**settings, seed=seed)
        files = [_util.save(_main_figure(plt, result), out_dir, "playground.png"),
                 _util.save(_neurons_figure(plt, result), out_dir, "playground_neurons.png")]
        gallery_results = None
        if gallery:
            fig, gallery_results = _gallery(plt, seed, small)
            files.append(_util.save(fig, out_dir, "playground_problems.png"))
    config = result["config"]
    lines = [_describe(config), "",
             f"epoch 0:  training loss {result['train_loss'][0]:.3f}, test loss {result['test_loss'][0]:.3f}",
             (f"epoch {config['epochs']}: training loss {result['train_loss'][-1]:.3f}, test loss "
              f"{result['test_loss'][-1]:.3f}"),
             f"accuracy: train {result['train_acc']:.3f}, test {result['test_acc']:.3f}",
             f"sum of squared weights: {result['weight_norm']:.3f}"]
    if gallery_results:
        lines += ["", "gallery (settings that solve each problem):"]
        lines += [f"  {name:<7} features {', '.join(g['features'])}; hidden {list(g['hidden'])}; {g['epochs']} "
                  f"epochs -> test acc {g['test_acc']:.3f}" for name, g in gallery_results.items()]
    lines += ["", "figures: " + ", ".join(f.rsplit("/", 1)[-1] for f in files), f"time: {timer.seconds:.1f} s"]
    _util.write_summary(out_dir, "Lesson: the TensorFlow Playground", lines)
    return {"config": config, "train_acc": result["train_acc"], "test_acc": result["test_acc"],
            "train_loss": result["train_loss"][-1], "test_loss": result["test_loss"][-1],
            "initial_test_loss": result["test_loss"][0], "weight_norm": result["weight_norm"],
            "gallery": gallery_results, "files": files, "seconds": timer.seconds}
