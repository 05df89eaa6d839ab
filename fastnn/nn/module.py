"""``Module``: holds parameters, buffers and sub-modules; state dicts with PyTorch's keys."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import device as _device
from ..tensor import Tensor
from .parameter import Parameter


def _host_copy(array):
    return array.copy_to_host() if _device.is_device_array(array) else array.copy()


class Module:
    """Base class of every layer and model. Subclasses set attributes in ``__init__`` and define
    ``forward``; parameters, buffers and sub-modules are registered by attribute assignment."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -----------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning '{name}'")
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(store)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is None:
            self._parameters[name] = None
            self.__dict__.pop(name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name, value):
        """A non-trainable array saved in the state dict (e.g. BatchNorm's running statistics)."""
        self._buffers[name] = value if value is None or isinstance(value, Tensor) else Tensor(np.asarray(value))
        self.__dict__.pop(name, None)

    def add_module(self, name, module):
        self._modules[name] = module

    # -- calling ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal --------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, child in self._modules.items():
            if child is not None:
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mod_prefix, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    # -- modes ------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True):
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    def requires_grad_(self, flag: bool = True):
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def to(self, device):
        """Move every parameter (and its gradient) and every floating-point buffer to ``device``
        ("cpu" or "cuda"), in place: the Parameter objects stay the same, so an optimizer built
        before or after keeps working. Integer buffers (``num_batches_tracked``) stay on the host,
        where the layer counts them without a device round trip.
        Raises RuntimeError saying why when "cuda" is not usable here (nothing is moved then).
        """
        target = _device.normalize(device)
        if target == "cuda":
            _device.require_cuda()
        for p in self.parameters():
            p.data = _device.move(p.data, target)
            if p.grad is not None:
                p.grad.data = _device.move(p.grad.data, target)
        for module in self.modules():
            for b in module._buffers.values():
                if b is not None and (b.dtype.kind == "f" or target == "cpu"):
                    b.data = _device.move(b.data, target)
        return self

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- state dicts ------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """name -> array (a copy) with PyTorch's keys: parameters then buffers, module by module."""
        state = OrderedDict()
        for prefix, module in self.named_modules():
            dot = prefix + "." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    state[dot + name] = _host_copy(p.data)
            for name, b in module._buffers.items():
                if b is not None:
                    state[dot + name] = _host_copy(b.data)
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays (or anything ``np.asarray`` takes) into parameters and buffers in place.

        Raises KeyError naming every missing and unexpected key (strict) and ValueError naming
        each key whose shape differs. Returns (missing_keys, unexpected_keys).
        """
        own = OrderedDict()
        for prefix, module in self.named_modules():
            dot = prefix + "." if prefix else ""
            for store in (module._parameters, module._buffers):
                for name, t in store.items():
                    if t is not None:
                        own[dot + name] = t
        try:
            keys = list(state_dict.keys())
        except AttributeError:
            raise TypeError(f"load_state_dict: expected a mapping of name -> array, got "
                            f"{type(state_dict).__name__}") from None
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in keys if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing key(s): " + ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected key(s): " + ", ".join(repr(k) for k in unexpected))
            raise KeyError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        arrays, mismatched = {}, []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            value = value.data if isinstance(value, Tensor) else value
            try:
                array = np.asarray(value)
            except Exception as exc:  # noqa: BLE001 - reported with the key
                raise TypeError(f"load_state_dict: value for key {key!r} is not array-like ({exc})") from None
            if array.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: value for key {key!r} has non-numeric dtype {array.dtype}")
            if array.shape != target.shape:
                mismatched.append(f"{key!r}: expected shape {tuple(target.shape)}, got {array.shape}")
            arrays[key] = array
        if mismatched:
            raise ValueError("load_state_dict: size mismatch for " + "; ".join(mismatched))
        for key, array in arrays.items():
            if _device.is_device_array(own[key].data):
                own[key].data.copy_to_device(np.ascontiguousarray(array, dtype=own[key].dtype))
            else:
                own[key].data[...] = array
        return missing, unexpected

    # -- printing ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        return head + "\n" + "\n".join(children) + "\n)"
