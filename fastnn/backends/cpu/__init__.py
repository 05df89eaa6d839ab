"""The default ``cpu`` backend: compiled kernels (C core under Cython, Numba), reference elsewhere.

Starts from every reference kernel and overrides those that have a compiled twin.
"""
from ..reference import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403

NAME = "cpu"
