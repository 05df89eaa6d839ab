"""Build the compiled cpu backend: Cython extensions over the C core in csrc/.

Project metadata lives in pyproject.toml. Set FASTNN_NATIVE=1 to tune the C core for the
building machine (-march=native); the default build runs on any x86-64 CPU.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILE_ARGS = ["-O3", "-fopenmp"]
if os.environ.get("FASTNN_NATIVE") == "1":
    COMPILE_ARGS.append("-march=native")
LINK_ARGS = ["-fopenmp"]


def extension(name, c_sources=()):
    return Extension(
        f"fastnn.backends.cpu.{name}",
        sources=[f"fastnn/backends/cpu/{name}.pyx", *c_sources],
        include_dirs=["csrc", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
    )


EXTENSIONS = [
    extension("_im2col", ["csrc/im2col.c"]),
    extension("_conv", ["csrc/conv.c", "csrc/direct_conv.c", "csrc/winograd_conv.c", "csrc/im2col.c",
                          "csrc/sgemm.c"]),
    extension("_pool", ["csrc/pool.c"]),
    extension("_blas", ["csrc/sgemm.c"]),
    extension("_openmp"),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
