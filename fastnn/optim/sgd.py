"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""
from .optimizer import Optimizer


class SGD(Optimizer):
    """PyTorch's SGD: d = g + wd p; b = μ b + (1 - τ) d; d = d + μ b (nesterov) or b; p -= lr d.

    Example:
        >>> opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0:
            raise ValueError(f"SGD: lr must be >= 0, got {lr}")
        if momentum < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov requires momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, group, param, grad, state, kernels):
        state["momentum_buffer"] = kernels.sgd_step(
            param, grad, state.get("momentum_buffer"), group["lr"], group["momentum"],
            group["dampening"], group["weight_decay"], group["nesterov"])

    def _update_foreach(self, group, params, states, kernels):
        buffers = [state.get("momentum_buffer") for state in states]
        if group["momentum"] and any(b is None for b in buffers) and not all(b is None for b in buffers):
            return False  # some parameters start their momentum later: update them one by one
        buffers = kernels.sgd_step_foreach(
            [p.data for p in params], [p.grad.data for p in params], None if buffers[0] is None else buffers,
            group["lr"], group["momentum"], group["dampening"], group["weight_decay"], group["nesterov"])
        for state, buffer in zip(states, buffers or [None] * len(states)):
            state["momentum_buffer"] = buffer
        return True
