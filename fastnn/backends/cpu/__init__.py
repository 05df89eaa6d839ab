"""The default ``cpu`` backend: compiled kernels (C core under Cython, Numba), reference elsewhere.

Starts from every reference kernel and overrides those that have a compiled twin.
"""
import sys as _sys

from ..reference import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403

NAME = "cpu"
_EXTENSIONS = ("_im2col", "_conv", "_pool", "_blas", "_openmp")


def compiled_modules():
    """Names and files of the compiled extension modules this backend loaded."""
    loaded = {}
    for name in _EXTENSIONS:
        module = _sys.modules.get(f"{__name__}.{name}")
        if module is not None:
            loaded[name] = getattr(module, "__file__", "?")
    return loaded
