"""``Parameter``: a Tensor that a Module registers as trainable."""
import numpy as np

from .. import device as _device
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor with ``requires_grad=True`` that ``Module.parameters()`` yields."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        array = data.data if isinstance(data, Tensor) else data if _device.is_device_array(data) else np.asarray(data)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
