"""Define-by-run autograd at the granularity of whole ops.

Each op that sees an input requiring grad records a :class:`Node` on its output: the inputs and
a closure mapping the output's gradient to one gradient per input. ``backward`` sorts the graph
topologically and runs the closures in reverse, accumulating into leaf ``.grad`` like PyTorch.
"""
from __future__ import annotations

import functools

from . import device as _device

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class no_grad:
    """Context manager (and decorator) that stops ops from recording the graph.

    Example:
        >>> with fastnn.no_grad():
        ...     logits = model(x)
    """

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


class Node:
    """One recorded op: its input tensors and ``backward(grad_out) -> tuple of input grads``."""

    __slots__ = ("inputs", "backward", "name")

    def __init__(self, name, inputs, backward):
        self.name = name
        self.inputs = inputs
        self.backward = backward


def needs_grad(*tensors) -> bool:
    """True when grad mode is on and any of ``tensors`` requires grad."""
    return _grad_enabled and any(t is not None and t.requires_grad for t in tensors)


def _topological_order(root):
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        stack.append((tensor, True))
        node = tensor._node
        if node is not None:
            for parent in node.inputs:
                if parent is not None and parent.requires_grad and id(parent) not in seen:
                    stack.append((parent, False))
    return order  # parents before children


def run_backward(root, grad) -> None:
    """Backpropagate ``grad`` (an array shaped like ``root``) through the recorded graph."""
    from .tensor import Tensor

    grads = {id(root): grad}
    handed_to_leaves = set()  # ids of arrays already stored as some leaf's .grad in this pass
    for tensor in reversed(_topological_order(root)):
        g = grads.pop(id(tensor), None)
        if g is None:
            continue
        node = tensor._node
        if node is None:  # a leaf: accumulate like PyTorch
            if _device.cuda_in_use and _device.is_device_array(g):
                _accumulate_on_device(tensor, g, grad, handed_to_leaves)
                continue
            if tensor.grad is None:
                # A leaf's .grad must own its memory: a closure may hand the same array (or a view
                # of another gradient) to several inputs, and users update .grad in place.
                if g is grad or id(g) in handed_to_leaves or not g.flags.owndata:
                    g = g.copy()
                handed_to_leaves.add(id(g))
                tensor.grad = Tensor(g)
            else:
                tensor.grad.data += g
            continue
        if node.backward is None:
            raise RuntimeError(
                f"backward: the graph through '{node.name}' was already freed by a previous "
                "backward() call; recompute the forward pass")
        input_grads = node.backward(g)
        node.backward = None  # free saved arrays, like retain_graph=False
        for parent, pg in zip(node.inputs, input_grads):
            if parent is None or pg is None or not parent.requires_grad:
                continue
            previous = grads.get(id(parent))
            if previous is None:
                grads[id(parent)] = pg
            elif _device.cuda_in_use and _device.is_device_array(pg):
                grads[id(parent)] = _device.cuda_kernels().binary("add", previous, pg)
            else:
                grads[id(parent)] = previous + pg


def _accumulate_on_device(tensor, g, root_grad, handed_to_leaves):
    """The leaf rule of ``run_backward`` for device arrays: aliasing is judged by device address
    (device arrays carry no owndata flag), and accumulation is one add kernel in place."""
    from .tensor import Tensor

    k = _device.cuda_kernels()
    if tensor.grad is None:
        address = k.pointer(g)
        if g is root_grad or address in handed_to_leaves or not g.is_c_contiguous():
            g = k.copy(g)
            address = k.pointer(g)
        handed_to_leaves.add(address)
        tensor.grad = Tensor(g)
    else:
        k.accumulate_(tensor.grad.data, g)
