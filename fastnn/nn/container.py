"""Containers: ``Sequential`` (keys "0", "1", ... like PyTorch)."""
from collections import OrderedDict

from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Linear, ReLU
from .module import Module


# modules whose forward_relu(x) is relu(forward(x)) as one op
FUSES_A_FOLLOWING_RELU = (Linear, Conv2d, BatchNorm1d, BatchNorm2d)
# the forwards that fusion stands in for, as defined: a patched one (a tracer, a profiler, a
# counting hook, on the class or on the instance) must run, so its module is never fused
_DEFINED_FORWARD = {cls: cls.forward for cls in FUSES_A_FOLLOWING_RELU + (ReLU, Dropout)}


def _plain_forward(module):
    """True if ``module`` would run its class's forward as defined in fastnn.nn."""
    return "forward" not in module.__dict__ and type(module).forward is _DEFINED_FORWARD.get(type(module))


class Sequential(Module):
    """Runs its modules in order. Accepts modules or one OrderedDict of name -> module.

    A ``Linear``, ``Conv2d``, ``BatchNorm1d`` or ``BatchNorm2d`` directly followed by a ``ReLU``
    (those exact classes, their ``forward`` not replaced on the class or the instance) runs as one
    fused op, the module's ``forward_relu``: the same values and gradients as one autograd node,
    the ReLU applied by the op's kernels (the convolution's epilogue, the normalising pass; after
    the dense layer's GEMM, in place) and its mask inside the op's backward. A ``Dropout`` right
    after a fused Linear + ReLU joins it (``Linear.forward_relu_dropout``): on cuda the dropout mask
    is applied in the same GEMM epilogue, with the same random draws. ``Sequential.fuse_relu = False``
    turns all of that off.
    """

    fuse_relu = True

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
                self.add_module(str(i), m)

    def forward(self, input):
        modules = tuple(self._modules.values())
        i = 0
        while i < len(modules):
            module = modules[i]
            if (self.fuse_relu and type(module) in FUSES_A_FOLLOWING_RELU and i + 1 < len(modules)
                    and type(modules[i + 1]) is ReLU and _plain_forward(module) and _plain_forward(modules[i + 1])):
                if (type(module) is Linear and i + 2 < len(modules) and type(modules[i + 2]) is Dropout
                        and _plain_forward(modules[i + 2])):
                    dropout = modules[i + 2]
                    input = module.forward_relu_dropout(input, dropout.p, dropout.training)
                    i += 3
                else:
                    input = module.forward_relu(input)
                    i += 2
            else:
                input = module(input)
                i += 1
        return input

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered under keys "0", "1", ... (PyTorch's state-dict keys)."""

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: expected a Module, got {type(module).__name__}")
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleDict(Module):
    """An ordered dict of name -> module, registered under those names."""

    def __init__(self, modules=None):
        super().__init__()
        for name, m in (modules or {}).items():
            self[name] = m

    def __setitem__(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: value for {name!r} is a {type(module).__name__}, not a Module")
        self.add_module(str(name), module)

    def __getitem__(self, name):
        return self._modules[name]

    def __contains__(self, name):
        return name in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()
