"""Training helpers: ``fit`` (epochs of mini-batch training with a progress bar and a per-epoch
metric meter) and ``evaluate`` (loss and accuracy without gradients).

Example:
    >>> history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), train_loader,
    ...               epochs=10, val_loader=val_loader)
    >>> history["val_acc"][-1]
"""
from __future__ import annotations

import math
import time

import numpy as np

from .autograd import no_grad


class _Meter:
    """Running sample-weighted mean loss and accuracy over one pass."""

    def __init__(self):
        self.loss_sum = 0.0
        self.correct = 0
        self.count = 0
        self.classified = 0  # samples with class-index targets (accuracy is defined on those)
        self._device_correct = None  # on cuda: a device counter, read only when the accuracy is asked for

    def update(self, loss, logits, target, n):
        self.loss_sum += loss * n
        self.count += n
        if getattr(logits, "device", "cpu") == "cuda":
            if self._count_on_device(logits, target):
                self.classified += n
            return
        correct = _correct(logits, target)
        if correct is not None:
            self.correct += correct
            self.classified += n

    def _count_on_device(self, logits, target):
        """Argmax hits counted by a kernel into a device counter (no per-batch host round trip)."""
        if getattr(target, "device", "cpu") != "cuda" or target.dtype.kind not in "iu" or logits.ndim != 2 \
                or target.ndim != 1 or logits.shape[0] != target.shape[0]:
            return False
        from . import device
        k = device.cuda_kernels()
        if self._device_correct is None:
            self._device_correct = k.zeros((1,), np.int64)
        k.count_correct(logits.data, k.astype(target.data, np.int64), self._device_correct)
        return True

    @property
    def loss(self):
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def accuracy(self):
        correct = self.correct
        if self._device_correct is not None:
            correct += int(self._device_correct.copy_to_host()[0])
        return correct / self.classified if self.classified else None


def _correct(logits, target):
    """Number of argmax hits when ``target`` holds class indices for (N, C, ...) logits, else None."""
    target = np.asarray(target.numpy() if hasattr(target, "numpy") else target)
    logits = np.asarray(logits.numpy() if hasattr(logits, "numpy") else logits)
    if target.dtype.kind not in "iu" or logits.ndim != target.ndim + 1 or logits.shape[0] != target.shape[0]:
        return None
    return int(np.count_nonzero(logits.argmax(axis=1) == target))


def _unpack(batch, device=None):
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"fit/evaluate: each batch must be a pair (x, y), got {type(batch).__name__}"
                         + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    if device is None:
        return batch
    from .tensor import Tensor, tensor
    return tuple(t.to(device) if isinstance(t, Tensor) else tensor(t, device=device) for t in batch)


def _steps_per_batch(scheduler):
    # OneCycleLR counts optimizer steps (as in PyTorch, where the user steps it every batch)
    return type(scheduler).__name__ == "OneCycleLR" or getattr(scheduler, "step_per_batch", False)


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"


def regularization_penalty(model, l1=0.0, l2=0.0):
    """The course's weight penalties: ``l1 * sum |w| + (l2 / 2) * sum w^2`` over the weight
    matrices and kernels (parameters with ndim >= 2; biases and normalisation scales are not
    penalised, as in the TensorFlow Playground). A scalar Tensor, or None when both rates are 0.
    """
    if l1 < 0 or l2 < 0:
        raise ValueError(f"regularization_penalty: l1 and l2 must be >= 0, got l1={l1!r}, l2={l2!r}")
    weights = [p for p in model.parameters() if p.ndim >= 2]
    penalty = None
    for w in weights:
        terms = []
        if l1:
            terms.append(l1 * w.abs().sum())
        if l2:
            terms.append((0.5 * l2) * (w * w).sum())
        for term in terms:
            penalty = term if penalty is None else penalty + term
    return penalty


def fit(model, loss_fn, optimizer, train_loader, epochs, val_loader=None, scheduler=None, progress=True,
        log=print, l1=0.0, l2=0.0, device=None):
    """Train ``model`` for ``epochs`` passes over ``train_loader``.

    Each epoch calls ``model.train()``, then for every batch ``(x, y)``: forward, ``loss_fn``,
    ``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``. After the pass it
    evaluates ``val_loader`` (if given, with ``evaluate``), steps ``scheduler`` (if given; a
    ``OneCycleLR``, or a scheduler with ``step_per_batch = True``, is stepped after every batch
    instead) and logs one line.

    Args:
        model, loss_fn, optimizer: a ``Module``, a loss module/function returning a scalar
            Tensor (mean over the batch), an ``optim`` optimizer over ``model``'s parameters.
        train_loader, val_loader: iterables of ``(x, y)`` batches, e.g. ``DataLoader`` s.
        epochs: number of passes.
        progress: show a tqdm progress bar per epoch (on stderr).
        log: called with one summary string per epoch; None for silence.
        l1, l2: weight-penalty rates (``regularization_penalty``) added to the loss that is
            backpropagated; the reported losses are the data loss alone.
        device: None (leave everything where it is) or "cpu" / "cuda": the model is moved there
            (in place, before the first step) and so is every batch. On "cuda" a step reads only
            the loss back to the host (``loss.item()``); accuracy is counted on the device.
    Returns:
        ``{"train_loss", "train_acc", "val_loss", "val_acc", "epoch_time"}``: one entry per epoch
        (the val lists stay empty without ``val_loader``). Losses are sample-weighted means;
        accuracies (argmax of the logits against class-index targets) are None when the targets
        are not class indices. ``epoch_time`` is the seconds of the training pass alone.
    Raises:
        FloatingPointError as soon as a batch loss is NaN or infinite, naming the epoch and the
        batch (1-based), before that batch's backward pass and update.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    if not (isinstance(l1, (int, float)) and isinstance(l2, (int, float)) and l1 >= 0 and l2 >= 0):
        raise ValueError(f"fit: l1 and l2 must be numbers >= 0, got l1={l1!r}, l2={l2!r}")
    per_batch = scheduler is not None and _steps_per_batch(scheduler)
    if device is not None:
        model.to(device)
    history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "epoch_time": []}
    for epoch in range(1, epochs + 1):
        model.train()
        meter = _Meter()
        bar = None
        if progress and tqdm is not None:
            total = len(train_loader) if hasattr(train_loader, "__len__") else None
            bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                       dynamic_ncols=True)
        start = time.perf_counter()
        try:
            for batch_index, batch in enumerate(train_loader, 1):
                x, y = _unpack(batch, device)
                output = model(x)
                loss = loss_fn(output, y)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"fit: the loss is {value} at epoch {epoch}, batch {batch_index} (of "
                        f"{len(train_loader) if hasattr(train_loader, '__len__') else '?'}); try a smaller "
                        f"learning rate (lr={optimizer.param_groups[0].get('lr')}) or check the data")
                penalty = regularization_penalty(model, l1, l2) if (l1 or l2) else None
                optimizer.zero_grad()
                (loss if penalty is None else loss + penalty).backward()
                optimizer.step()
                if per_batch:
                    scheduler.step()
                meter.update(value, output, y, len(x))
                if bar is not None:
                    bar.update(1)
                    if batch_index % 10 == 0 or batch_index == total:
                        acc = meter.accuracy
                        bar.set_postfix(loss=f"{meter.loss:.4f}", **({"acc": f"{acc:.3f}"} if acc is not None else {}),
                                        refresh=False)
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.perf_counter() - start
        history["train_loss"].append(meter.loss)
        history["train_acc"].append(meter.accuracy)
        history["epoch_time"].append(elapsed)
        line = (f"epoch {epoch}/{epochs}: train loss {meter.loss:.4f} acc {_fmt(meter.accuracy)}")
        if val_loader is not None:
            val_loss, val_acc = evaluate(model, loss_fn, val_loader, device=device)
            history["val_loss"].append(val_loss)
            history["val_acc"].append(val_acc)
            line += f" | val loss {val_loss:.4f} acc {_fmt(val_acc)}"
        if scheduler is not None and not per_batch:
            scheduler.step()
        line += f" | {elapsed:.1f} s, {meter.count / elapsed if elapsed > 0 else float('inf'):.0f} images/s"
        if log is not None:
            log(line)
    return history


def evaluate(model, loss_fn, loader, device=None):
    """Mean loss and accuracy of ``model`` over ``loader``, in eval mode and under ``no_grad``.

    The model's previous train/eval mode is restored afterwards. ``device``: as in ``fit``.
    Returns:
        ``(loss, accuracy)``: sample-weighted mean loss; accuracy (argmax of the logits against
        class-index targets) or None when the targets are not class indices.
    """
    if device is not None:
        model.to(device)
    was_training = getattr(model, "training", True)
    model.eval()
    meter = _Meter()
    try:
        with no_grad():
            for batch in loader:
                x, y = _unpack(batch, device)
                output = model(x)
                meter.update(float(loss_fn(output, y).item()), output, y, len(x))
    finally:
        model.train(was_training)
    return meter.loss, meter.accuracy
