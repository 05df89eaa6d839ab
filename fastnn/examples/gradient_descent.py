"""Lesson: gradient descent on f(x) = x².

Gradient descent repeats x <- x - lr * f'(x). Here f'(x) = 2x, so one step multiplies x by
(1 - 2 lr): x_k = x0 (1 - 2 lr)^k. The learning rate decides everything:

* lr = 0.01: factor 0.98, a slow crawl towards the minimum;
* lr = 0.1: factor 0.8, steady convergence;
* lr = 0.5: factor 0, the minimum in one step (the ideal rate for this f);
* lr = 0.9: factor -0.8, x overshoots and zig-zags around 0 but still converges;
* lr > 1 (e.g. 1.05): |factor| > 1, every step overshoots further: divergence.

The gradient is not written by hand: fastnn's autograd computes it from f, exactly as it does for
a network's loss.

    fastnn lesson gradient-descent --out lesson-gd
"""
from __future__ import annotations

import numpy as np

from . import _util

LEARNING_RATES = (0.01, 0.1, 0.5, 0.9, 1.05)


def f(x):
    """The function to minimise, on fastnn Tensors (or numbers): f(x) = x²."""
    return x ** 2


def descend(x0, lr, steps):
    """Run ``steps`` gradient-descent steps on ``f`` from ``x0``, with fastnn autograd.

    Returns ``(xs, losses)``: float64 arrays of length ``steps + 1`` (the starting point included).
    """
    import fastnn

    x = fastnn.tensor(np.array([x0], np.float64), requires_grad=True)
    xs, losses = [], []
    for _ in range(steps + 1):
        loss = f(x).sum()
        xs.append(float(x.numpy()[0]))
        losses.append(float(loss.item()))
        if len(xs) > steps:
            break
        loss.backward()                       # x.grad = f'(x) = 2x
        with fastnn.no_grad():
            x = fastnn.tensor(x.numpy() - lr * x.grad.numpy(), requires_grad=True)
    return np.array(xs), np.array(losses)


def _classify(xs, lr):
    factor = abs(1 - 2 * lr)
    if not np.all(np.isfinite(xs)) or abs(xs[-1]) > abs(xs[0]):
        return "diverges"
    if factor == 0:
        return "converges in one step"
    if abs(xs[-1]) > 0.5 * abs(xs[0]):
        return "too slow"
    return "converges (oscillating)" if 1 - 2 * lr < 0 else "converges"


def run(out_dir, small=False, seed=0, x0=4.0, learning_rates=LEARNING_RATES, steps=None):
    """Descend on x² from ``x0`` with every learning rate; plot the paths and the losses.

    Returns ``{"x0", "steps", "runs": {lr: {"final_x", "final_loss", "factor", "verdict"}},
    "max_error_vs_formula", "seconds"}``; ``max_error_vs_formula`` compares every iterate with
    x0 (1 - 2 lr)^k.
    """
    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    steps = steps if steps is not None else (15 if small else 25)
    with _util.Timer() as timer:
        runs, paths, worst = {}, {}, 0.0
        for lr in learning_rates:
            xs, losses = descend(x0, lr, steps)
            formula = x0 * (1 - 2 * lr) ** np.arange(steps + 1)
            worst = max(worst, float(np.max(np.abs(xs - formula) / np.maximum(1.0, np.abs(formula)))))
            paths[lr] = (xs, losses)
            runs[lr] = {"final_x": float(xs[-1]), "final_loss": float(losses[-1]), "factor": 1 - 2 * lr,
                        "verdict": _classify(xs, lr)}
        files = [_util.save(_figure(plt, paths, runs, x0), out_dir, "gradient_descent.png")]
    lines = [f"f(x) = x^2, f'(x) = 2x (by fastnn autograd), start x0 = {x0}, {steps} steps",
             "update x <- x - lr f'(x) = (1 - 2 lr) x, so x_k = x0 (1 - 2 lr)^k",
             f"autograd iterates vs the formula: max relative error {worst:.1e}", ""]
    lines += [f"lr = {lr:<5g} factor {r['factor']:+.2f}  final x = {r['final_x']:+.3e}  "
              f"f = {r['final_loss']:.3e}  -> {r['verdict']}" for lr, r in runs.items()]
    lines += ["", f"figure: gradient_descent.png; time: {timer.seconds:.1f} s"]
    _util.write_summary(out_dir, "Lesson: gradient descent on f(x) = x^2", lines)
    return {"x0": x0, "steps": steps, "runs": runs, "max_error_vs_formula": worst, "files": files,
            "seconds": timer.seconds}


def _figure(plt, paths, runs, x0):
    lrs = list(paths)
    colors = [plt.cm.tab10(i % 10) for i in range(len(lrs))]
    fig = plt.figure(figsize=(4.0 * len(lrs), 7.6))
    grid = fig.add_gridspec(2, len(lrs), height_ratios=[1, 1.1])
    for j, lr in enumerate(lrs):
        ax = fig.add_subplot(grid[0, j])
        shown = paths[lr][0][:12]
        bound = 1.15 * np.max(np.abs(shown))
        curve = np.linspace(-bound, bound, 200)
        ax.plot(curve, curve ** 2, color="0.6", lw=1.5, label="$f(x) = x^2$")
        ax.plot(shown, shown ** 2, "-o", color=colors[j], ms=4, lw=1, label="iterates $x_k$")
        ax.plot(shown[0], shown[0] ** 2, "s", color="black", ms=6, label="start $x_0$")
        ax.set_title(f"lr = {lr:g}: {runs[lr]['verdict']}")
        ax.set_xlabel("x")
        if j == 0:
            ax.set_ylabel("f(x)")
            ax.legend(loc="upper center")
        ax.set_ylim(-0.05 * bound ** 2, 1.1 * bound ** 2)
    styles = ["-", "-", "-", "--", "-"] + ["-"] * len(lrs)
    ax = fig.add_subplot(grid[1, : len(lrs) // 2 + 1])
    for j, lr in enumerate(lrs):
        ax.plot(paths[lr][0], styles[j], marker="o", ms=3, color=colors[j])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("step k")
    ax.set_ylabel("$x_k$  (symlog scale)")
    ax.set_title("Path: $x_k = x_0 (1 - 2\\,lr)^k$ (a negative factor flips the sign at every step)")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[1, len(lrs) // 2 + 1:])
    for j, lr in enumerate(lrs):
        losses = paths[lr][1]
        ax.plot(np.maximum(losses, 1e-30), styles[j], color=colors[j], label=f"lr = {lr:g}, factor {1 - 2 * lr:+.2f}")
    ax.set_yscale("log")
    ax.set_ylim(1e-8, None)
    ax.set_xlabel("step k")
    ax.set_ylabel("loss $f(x_k)$ (log scale)")
    ax.set_title("Loss per step (lr = 0.5 hits 0 after one step)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.suptitle("Gradient descent on f(x) = x²: the learning rate decides between crawling, converging and diverging")
    fig.tight_layout()
    return fig
