"""Lesson: over-fitting, on a noisy cos(x) regression.

A few noisy samples of y = cos(x) + noise are fitted by two networks with the same training loop:

* a small network (1-3-1, tanh): too few parameters to follow the noise, it learns the smooth
  curve; its training and test errors stay close, both near the noise level (noise² = 0.09);
* a large network (1-128-128-1, tanh): enough parameters to pass through every training point; its
  training error keeps falling far below the noise level while its test error stops improving and
  climbs -- it learns the noise of these particular samples, not the function.

The gap between test and training error is the signature of over-fitting; a validation set is how
one sees it (and when to stop) without the test set.

    fastnn lesson overfitting --out lesson-overfitting
"""
from __future__ import annotations

import numpy as np

from . import _util

NETWORKS = {"small (1-3-1)": (3,), "large (1-128-128-1)": (128, 128)}


def make_network(hidden, seed=0):
    """An MLP 1-hidden...-1 with tanh."""
    import fastnn
    from fastnn import nn

    fastnn.manual_seed(seed)
    layers, width = [], 1
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 1))


def fit_regression(model, x_train, y_train, x_test, y_test, steps, lr=0.01, every=10):
    """Full-batch Adam on the MSE, written as the plain loop; returns (steps, train_mse, test_mse)
    recorded every ``every`` steps (step 0 included)."""
    import fastnn
    import fastnn.functional as F
    from fastnn import optim

    opt = optim.Adam(model.parameters(), lr=lr)
    recorded, train_curve, test_curve = [], [], []
    for step in range(steps + 1):
        loss = F.mse_loss(model(x_train), y_train)
        if step % every == 0 or step == steps:
            with fastnn.no_grad():
                test = F.mse_loss(model(x_test), y_test).item()
            recorded.append(step)
            train_curve.append(float(loss.item()))
            test_curve.append(float(test))
        if step == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.array(recorded), np.array(train_curve), np.array(test_curve)


def run(out_dir, small=False, seed=0, n_train=30, n_test=200, noise=0.3, steps=None):
    """Fit the small and the large network to ``n_train`` noisy cos samples; plot fits and curves.

    Returns ``{"noise", "n_train", "steps", "networks": {name: {"parameters", "train_mse",
    "test_mse", "gap", "best_test_mse", "best_step"}}, "seconds"}``.
    """
    import fastnn
    from fastnn.data import cosine

    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    steps = steps if steps is not None else (800 if small else 3000)
    with _util.Timer() as timer:
        x_train, y_train = cosine(n_train, noise, seed=seed).arrays
        x_test, y_test = cosine(n_test, noise, seed=seed + 1000).arrays
        grid = np.linspace(-np.pi, np.pi, 400, dtype=np.float32)[:, None]
        results, fits, curves = {}, {}, {}
        for name, hidden in NETWORKS.items():
            model = make_network(hidden, seed)
            recorded, train_curve, test_curve = fit_regression(model, x_train, y_train, x_test, y_test, steps)
            with fastnn.no_grad():
                fits[name] = model(grid).numpy()[:, 0]
            curves[name] = (recorded, train_curve, test_curve)
            best = int(np.argmin(test_curve))
            results[name] = {"parameters": int(sum(p.numel() for p in model.parameters())),
                             "train_mse": float(train_curve[-1]), "test_mse": float(test_curve[-1]),
                             "gap": float(test_curve[-1] - train_curve[-1]),
                             "best_test_mse": float(test_curve[best]), "best_step": int(recorded[best])}
        files = [_util.save(_figure(plt, x_train, y_train, x_test, y_test, grid, fits, curves, noise), out_dir,
                                "overfitting.png")]
    lines = [(f"y = cos(x) + {noise:g} N(0, 1), x uniform in [-pi, pi]; {n_train} training points, {n_test} test "
              f"points; full-batch Adam (lr 0.01), {steps} steps, MSE loss"),
             f"noise level (the best achievable expected test MSE): {noise ** 2:.3f}", ""]
    for name, r in results.items():
        lines.append(f"{name:<20} {r['parameters']:>6} parameters: train MSE {r['train_mse']:.4f}, test MSE "
                     f"{r['test_mse']:.4f}, gap {r['gap']:+.4f} (best test MSE {r['best_test_mse']:.4f} at step "
                     f"{r['best_step']})")
    small_net, large_net = results.values()
    if large_net["train_mse"] < small_net["train_mse"] and large_net["gap"] > small_net["gap"]:
        verdict = "the large network fits the training points better and generalises worse: over-fitting"
    else:
        verdict = "no clear over-fitting in this run (try fewer points, more noise or more steps)"
    lines += ["", verdict, f"figure: overfitting.png; time: {timer.seconds:.1f} s"]
    _util.write_summary(out_dir, "Lesson: over-fitting on a noisy cos(x)", lines)
    return {"noise": noise, "n_train": n_train, "steps": steps, "networks": results, "files": files,
            "seconds": timer.seconds}


def _figure(plt, x_train, y_train, x_test, y_test, grid, fits, curves, noise):
    colors = {name: c for name, c in zip(NETWORKS, ("tab:blue", "tab:red"))}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    ax = axes[0]
    ax.scatter(x_test[:, 0], y_test[:, 0], s=8, color="0.75", label="test points")
    ax.scatter(x_train[:, 0], y_train[:, 0], s=36, color="black", zorder=3, label="training points")
    ax.plot(grid[:, 0], np.cos(grid[:, 0]), color="0.3", ls=":", lw=2, label="true function cos(x)")
    for name, fit in fits.items():
        ax.plot(grid[:, 0], fit, color=colors[name], lw=2, label=f"{name} network")
    ax.set_ylim(-2.2, 2.2)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Fitted functions")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ymax = max(max(c[2].max() for c in curves.values()), 0.3)
    for ax, (name, (steps, train_curve, test_curve)) in zip(axes[1:], curves.items()):
        ax.plot(steps, train_curve, color=colors[name], label="training MSE")
        ax.plot(steps, test_curve, color=colors[name], ls="--", label="test MSE")
        ax.axhline(noise ** 2, color="0.4", ls=":", label=f"noise level {noise ** 2:.2f}")
        gap = test_curve[-1] - train_curve[-1]
        ax.annotate("", xy=(steps[-1], train_curve[-1]), xytext=(steps[-1], test_curve[-1]),
                    arrowprops={"arrowstyle": "<->", "color": "black"})
        ax.annotate(f"gap (test - train)\n{gap:+.3f}", (steps[-1], test_curve[-1]), ha="right", va="bottom",
                    fontsize=9, xytext=(-6, 6), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, ymax * 1.5)
        ax.set_xlabel("training step (full batch)")
        ax.set_ylabel("mean squared error (log scale)")
        ax.set_title(f"{name} network")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Over-fitting: the large network memorises the noise of the training points")
    fig.tight_layout()
    return fig
