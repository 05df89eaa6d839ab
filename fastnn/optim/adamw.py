"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter)."""
from .adam import Adam


class AdamW(Adam):
    """p *= 1 - lr wd, then the Adam update without L2 in the gradient (PyTorch's AdamW)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
