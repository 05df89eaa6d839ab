"""Adam (Kingma & Ba) with PyTorch's bias correction and L2 weight decay."""
import numpy as np

from .optimizer import Optimizer


class Adam(Optimizer):
    """m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²; p -= lr/(1-β1^t) · m / (sqrt(v/(1-β2^t)) + eps).

    Example:
        >>> opt = optim.Adam(model.parameters(), lr=1e-3)
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, group, param, grad, state, kernels):
        if not state:
            state["step"] = 0
            zeros_like = kernels.zeros_like if kernels.NAME == "cuda" else np.zeros_like
            state["exp_avg"] = zeros_like(param)
            state["exp_avg_sq"] = zeros_like(param)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        kernels.adam_step(param, grad, state["exp_avg"], state["exp_avg_sq"], state["step"], group["lr"],
                          beta1, beta2, group["eps"], group["weight_decay"], self._decoupled)
