"""``Optimizer`` base: parameter groups, per-parameter state, state dicts like PyTorch's."""
from __future__ import annotations

import copy

import numpy as np

from .. import device as _device
from ..backend import kernels_for
from ..tensor import Tensor


def _follow(param, state):
    """Move a parameter's state arrays (momentum, moments) to the parameter's device, e.g. after
    ``model.to("cuda")`` with an optimizer that has already stepped on the CPU."""
    device = param.device
    for key, value in state.items():
        if (isinstance(value, np.ndarray) or _device.is_device_array(value)) and _device.device_of(value) != device:
            state[key] = _device.move(value, device)


class Optimizer:
    """Holds ``param_groups`` (list of dicts with "params" and hyper-parameters) and ``state``
    (per-parameter dict). Subclasses implement ``_update(group, param, grad, state, kernels)``."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        self.state = {}
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        group = dict(group)
        ps = group["params"]
        group["params"] = [ps] if isinstance(ps, Tensor) else list(ps)
        for i, p in enumerate(group["params"]):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: params[{i}] is a {type(p).__name__}, expected a Parameter")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True):
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """Apply one update to every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            if _device.cuda_in_use and self._step_group_on_device(group):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(id(p), {})
                if _device.cuda_in_use and state:
                    _follow(p, state)
                self._update(group, p.data, p.grad.data, state, kernels_for(p))
        return loss

    def _update(self, group, param, grad, state, kernels):
        raise NotImplementedError

    _update_foreach = None  # (group, params, states, kernels): one update for a whole group, when a backend offers it

    def _step_group_on_device(self, group):
        """Update a group in one call when all its parameters with a gradient live on cuda and the
        optimiser has a foreach update; returns False (nothing done) otherwise."""
        params = [p for p in group["params"] if p.grad is not None]
        if self._update_foreach is None or not params or any(p.device != "cuda" for p in params) \
                or len({p.dtype for p in params}) != 1:
            return False
        states = [self.state.setdefault(id(p), {}) for p in params]
        for p, state in zip(params, states):
            _follow(p, state)
        return self._update_foreach(group, params, states, kernels_for(params[0]))

    # -- state dicts: PyTorch's layout, parameters numbered in group order ------------------
    def state_dict(self):
        index, groups = {}, []
        for group in self.param_groups:
            g = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            g["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                g["params"].append(index[id(p)])
            groups.append(g)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in self.state:
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else
                                               v.copy_to_host() if _device.is_device_array(v) else v)
                                           for k, v in self.state[id(p)].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: got {len(groups)} parameter groups, optimizer has "
                             f"{len(self.param_groups)}")
        params = []
        for saved, own in zip(groups, self.param_groups):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError("load_state_dict: a parameter group has a different number of parameters")
            params.extend(zip(saved["params"], own["params"]))
            for k, v in saved.items():
                if k != "params":
                    own[k] = v
        self.state = {}
        for saved_index, p in params:
            entry = state_dict["state"].get(saved_index, state_dict["state"].get(str(saved_index)))
            if entry is not None:
                self.state[id(p)] = {k: (np.array(v, dtype=p.dtype) if isinstance(v, np.ndarray) and v.shape == p.shape
                                         else v) for k, v in entry.items()}
                if p.device != "cpu":   # per-parameter state lives where the parameter does
                    self.state[id(p)] = {k: (_device.move(v, p.device) if isinstance(v, np.ndarray) and
                                             v.shape == p.shape else v) for k, v in self.state[id(p)].items()}
