"""The reference backend: short, readable NumPy kernels that state the math of every op.

Every compiled kernel is tested against these and benchmarked against them.
"""
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403

NAME = "reference"
