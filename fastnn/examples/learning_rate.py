"""Lesson: the learning rate, from far too small to far too large.

The same network, started from the same initial weights, is trained on the digits with plain
SGD and learning rates from 1e-7 to 3 (a log sweep). The course's rule of thumb shows up:

* too small (~1e-7): the weights hardly move, the loss stays at its starting value (ln 10 ~ 2.30
  for 10 classes);
* a good rate (~0.1 here): the loss falls quickly;
* too large (~3): each update overshoots, the loss explodes or becomes NaN -- the run is
  *diverged*. The lesson records that and stops the run instead of crashing.

The hidden activation is tanh: with ReLU, a too-large rate tends to kill every hidden unit instead
(the loss then sticks at ln 10 -- another failure, but a less visible one).

    fastnn lesson learning-rate --out lesson-lr
"""
from __future__ import annotations

import math

import numpy as np

from . import _util

LEARNING_RATES = (1e-7, 1e-5, 1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0)


def make_model(seed=0):
    """The network of the sweep: an MLP 64-64-10 with tanh (identical initial weights for a given seed)."""
    import fastnn
    from fastnn import nn

    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def train_one(lr, x_train, y_train, x_test, y_test, epochs, batch_size=32, seed=0, explode=2.0):
    """Train ``make_model(seed)`` with SGD(lr). The run stops as *diverged* at the first NaN/inf
    batch loss, or after an epoch whose mean loss exceeds ``explode`` times the initial loss.

    Returns ``{"lr", "initial_loss", "losses" (mean train loss per epoch), "step_losses" (per
    batch), "final_loss", "test_acc", "diverged", "diverged_at" (epoch, or None)}``.
    """
    import fastnn
    from fastnn import nn, optim

    model = make_model(seed)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=lr)
    with fastnn.no_grad():
        initial = float(loss_fn(model(x_train), y_train).item())
    rng = np.random.default_rng(seed)
    losses, step_losses, diverged, diverged_at = [], [], False, None
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(y_train))
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            value = float(loss.item())
            step_losses.append(value)
            if not math.isfinite(value):
                diverged = True
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += value * len(idx)
            count += len(idx)
        losses.append(total / count if not diverged and count else float("nan"))
        if diverged or losses[-1] > explode * initial:
            diverged, diverged_at = True, epoch
            break
    with fastnn.no_grad():
        logits = model(x_test).numpy()
    test_acc = float(np.mean(logits.argmax(1) == y_test)) if np.all(np.isfinite(logits)) else float("nan")
    final = losses[-1] if losses else initial
    return {"lr": lr, "initial_loss": initial, "losses": losses, "step_losses": step_losses, "final_loss": final,
            "test_acc": test_acc, "diverged": diverged, "diverged_at": diverged_at}


def verdict(result):
    """``"diverged"``, ``"too slow"`` (loss down by < 5 %), ``"slow"`` (< 50 %) or ``"good"``."""
    if result["diverged"]:
        return "diverged"
    drop = 1 - result["final_loss"] / result["initial_loss"]
    return "too slow" if drop < 0.05 else "slow" if drop < 0.5 else "good"


def run(out_dir, small=False, seed=0, learning_rates=LEARNING_RATES, epochs=None):
    """Sweep the learning rates; plot the loss curves and the final loss against the rate.

    Returns ``{"epochs", "runs": {lr: {..., "verdict"}}, "best_lr", "seconds"}``.
    """
    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    epochs = epochs if epochs is not None else (6 if small else 15)
    with _util.Timer() as timer:
        x_train, y_train, x_test, y_test = _util.digits_split(seed=seed)
        runs = {}
        for lr in learning_rates:
            result = train_one(lr, x_train, y_train, x_test, y_test, epochs, seed=seed)
            result["verdict"] = verdict(result)
            runs[lr] = result
        ok = [lr for lr, r in runs.items() if not r["diverged"]]
        best = min(ok, key=lambda lr: runs[lr]["final_loss"]) if ok else None
        files = [_util.save(_figure(plt, runs, epochs), out_dir, "learning_rate.png")]
    lines = [(f"MLP 64-64-10 (tanh) on the digits ({len(y_train)} train / {len(y_test)} test), plain SGD, "
              f"batch 32, {epochs} epochs, the same initial weights for every rate"),
             f"initial loss {runs[learning_rates[0]]['initial_loss']:.3f} (ln 10 = {math.log(10):.3f})", ""]
    for lr, r in runs.items():
        if r["diverged"]:
            lines.append(f"lr = {lr:<6g} DIVERGED at epoch {r['diverged_at']} (loss {r['final_loss']:.3g}); "
                         "the run was stopped")
        else:
            lines.append(f"lr = {lr:<6g} final train loss {r['final_loss']:.4f}  test acc {r['test_acc']:.3f}"
                         f"  -> {r['verdict']}")
    lines += ["", f"best rate here: {best:g}" if best is not None else "every rate diverged",
              f"figure: learning_rate.png; time: {timer.seconds:.1f} s"]
    _util.write_summary(out_dir, "Lesson: the learning rate", lines)
    return {"epochs": epochs, "runs": runs, "best_lr": best, "files": files, "seconds": timer.seconds}


def _figure(plt, runs, epochs):
    lrs = list(runs)
    colors = [plt.cm.tab10(i % 10) for i in range(len(lrs))]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.2))
    initial = runs[lrs[0]]["initial_loss"]
    for color, lr in zip(colors, lrs):
        r = runs[lr]
        color = "black" if r["diverged"] else color
        steps = np.array(r["step_losses"], np.float64)
        steps[~np.isfinite(steps)] = np.nan
        width = min(10, len(steps))
        smooth = np.convolve(steps, np.ones(width) / width, mode="valid") if width else steps
        label = f"lr = {lr:g}" + (f" (diverged, stopped after epoch {r['diverged_at']})" if r["diverged"] else "")
        ax1.plot(np.arange(len(smooth)) + width, smooth, color=color, label=label, lw=1.6,
                 ls="--" if r["diverged"] else "-")
        if r["diverged"] and len(smooth):
            ax1.plot(len(smooth) - 1 + width, smooth[-1], "x", color=color, ms=12, mew=3)
    ax1.axhline(initial, color="0.5", ls=":", lw=1)
    ax1.set_yscale("log")
    ax1.set_xlabel("training step (mini-batch of 32)")
    ax1.set_ylabel("training loss (10-step average, log scale)")
    ax1.set_title("Loss curves: flat (too small), falling (good), exploding (too large)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    ok = [lr for lr in lrs if not runs[lr]["diverged"]]
    bad = [lr for lr in lrs if runs[lr]["diverged"]]
    ax2.plot(ok, [runs[lr]["final_loss"] for lr in ok], "o-", color="tab:blue", label="final training loss")
    if bad:
        top = 1.4 * initial
        ax2.plot(bad, [top] * len(bad), "X", color="tab:red", ms=12, label="diverged (loss exploded)")
        for lr in bad:
            value = runs[lr]["final_loss"]
            ax2.annotate("diverged\n" + (f"loss {value:.3g}" if math.isfinite(value) else "loss NaN"), (lr, top),
                         textcoords="offset points", xytext=(-10, -32), ha="right", fontsize=8, color="tab:red")
    ax2.axhline(initial, color="0.5", ls=":", label=f"initial loss ({initial:.2f})")
    ax2.set_xscale("log")
    ax2.set_ylim(0, 1.5 * initial)
    ax2.set_xlabel("learning rate (log scale)")
    ax2.set_ylabel(f"training loss after {epochs} epochs")
    ax2.set_title("Too small: nothing moves; too large: divergence")
    ax2b = ax2.twinx()
    ax2b.plot(ok, [runs[lr]["test_acc"] for lr in ok], "s--", color="tab:green", label="test accuracy")
    ax2b.set_ylim(0, 1.05)
    ax2b.set_ylabel("test accuracy", color="tab:green")
    handles = ax2.get_legend_handles_labels()
    handles_b = ax2b.get_legend_handles_labels()
    ax2.legend(handles[0] + handles_b[0], handles[1] + handles_b[1], loc="center left", fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle("The same MLP (same initial weights) trained on the digits with learning rates from 1e-7 to 3, "
                 "plain SGD")
    fig.tight_layout()
    return fig
