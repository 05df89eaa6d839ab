"""The ``cuda`` backend: numba.cuda kernels on device arrays, with the reference kernels' names and
contracts (see docs/architecture.md, "cuda backend").

Kernels take and return ``numba.cuda`` device arrays. Unlike the ``cpu`` backend this one does
NOT fall back to the reference kernels: an op without a cuda kernel raises NotImplementedError
naming the op, instead of copying to the host behind the user's back.

Launch accounting: ``launch_count()``, ``reset_launch_count()`` and ``count_launches()``.
Memory: a caching allocator (``memory.py``); ``memory_stats()`` and ``empty_cache()``.
"""
from ._core import (SIMULATOR, array_interface, count_launches, empty, from_interface, launch_count, observe_launches,  # noqa: F401
                    pointer,  # noqa: F401
                    reset_launch_count, to_device, to_host)
from .conv import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .memory import empty_cache, memory_stats  # noqa: F401
from .norm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
from .report import training_step_launches  # noqa: F401

NAME = "cuda"


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    op = name[:-len("_forward")] if name.endswith("_forward") else name
    op = op[:-len("_backward")] if op.endswith("_backward") else op
    raise NotImplementedError(f"{op}: no kernel for the 'cuda' device yet (backend kernel {name!r}); "
                              "move the tensors to 'cpu' with .to('cpu') for this op")
