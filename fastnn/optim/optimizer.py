"""``Optimizer`` base: parameter groups, per-parameter state, state dicts like PyTorch's."""
from __future__ import annotations

import copy

import numpy as np

from ..backend import kernels_for
from ..tensor import Tensor


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
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(id(p), {})
                self._update(group, p.data, p.grad.data, state, kernels_for(p))
        return loss

    def _update(self, group, param, grad, state, kernels):
        raise NotImplementedError

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
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
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
