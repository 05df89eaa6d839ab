"""RMSprop with PyTorch's update rule (optionally centered, with momentum)."""
import numpy as np

from .optimizer import Optimizer


class RMSprop(Optimizer):
    """v = α v + (1 - α) g²; p -= lr g / (sqrt(v) + eps) (centered: sqrt(v - ḡ²); momentum: buffered)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        if lr < 0 or eps < 0 or weight_decay < 0 or momentum < 0 or not 0 <= alpha <= 1:
            raise ValueError(f"RMSprop: invalid hyper-parameters lr={lr}, alpha={alpha}, eps={eps}, "
                             f"weight_decay={weight_decay}, momentum={momentum}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered))

    def _update(self, group, param, grad, state, kernels):
        rmsprop_step = kernels.rmsprop_step  # first: a backend without it raises before any allocation
        if not state:
            state["step"] = 0
            zeros_like = kernels.zeros_like if kernels.NAME == "cuda" else np.zeros_like
            state["square_avg"] = zeros_like(param)
            if group["momentum"] > 0:
                state["momentum_buffer"] = zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = zeros_like(param)
        state["step"] += 1
        rmsprop_step(param, grad, state["square_avg"], state.get("momentum_buffer"), state.get("grad_avg"),
                     group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"],
                     group["centered"])
