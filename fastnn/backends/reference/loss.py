"""Losses. Class dimension is axis 1 (N, C) or (N, C, d1, ...), targets are int class indices."""
import numpy as np

from .softmax import log_softmax_forward

__all__ = ["cross_entropy_forward", "cross_entropy_backward", "mse_loss_forward", "mse_loss_backward"]


def _reduce(per_item, reduction):
    if reduction == "mean":
        return np.asarray(per_item.mean(), dtype=per_item.dtype)
    if reduction == "sum":
        return np.asarray(per_item.sum(), dtype=per_item.dtype)
    return per_item


def cross_entropy_forward(logits, target, reduction, label_smoothing):
    """loss_n = -sum_c q_nc log softmax(logits_n)_c, with q = (1 - ε) onehot(target) + ε / C.

    Returns (loss, saved). ``logits`` (N, C, *), ``target`` int (N, *).
    """
    num_classes = logits.shape[1]
    log_p = log_softmax_forward(logits, 1)
    picked = np.take_along_axis(log_p, np.expand_dims(target, 1), axis=1)[:, 0]
    per_item = -(1 - label_smoothing) * picked
    if label_smoothing:
        per_item = per_item - label_smoothing / num_classes * log_p.sum(axis=1)
    return _reduce(per_item, reduction), (log_p, target, reduction, label_smoothing)


def cross_entropy_backward(grad_loss, saved):
    """grad_logits = (softmax(logits) - q) * grad_loss (/ number of items for 'mean')."""
    log_p, target, reduction, label_smoothing = saved
    num_classes = log_p.shape[1]
    grad = np.exp(log_p)
    if label_smoothing:
        grad -= label_smoothing / num_classes
    onehot = np.zeros_like(grad)
    np.put_along_axis(onehot, np.expand_dims(target, 1), 1 - label_smoothing, axis=1)
    grad -= onehot
    if reduction == "none":
        return grad * np.expand_dims(grad_loss, 1)
    scale = grad_loss / (target.size if reduction == "mean" else 1)
    return grad * scale


def mse_loss_forward(x, target, reduction):
    """loss = reduce((x - target)²)."""
    diff = x - target
    return _reduce(diff * diff, reduction), diff


def mse_loss_backward(grad_loss, diff, reduction):
    """grad_x = 2 (x - target) * grad_loss (/ n for 'mean'); grad_target = -grad_x."""
    scale = 2 * grad_loss / (diff.size if reduction == "mean" else 1)
    return diff * scale
