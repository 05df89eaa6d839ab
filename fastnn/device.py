"""Devices: where a tensor's array lives.

``"cpu"``: a NumPy ``ndarray``. ``"cuda"``: a ``numba.cuda`` device array (a ``DeviceNDArray``;
Numba's simulator array under ``NUMBA_ENABLE_CUDASIM=1``). ``numba.cuda`` is imported only when
something first asks for ``"cuda"``, so a CPU-only program never pays for it, and
``cuda_in_use`` stays False until then: the CPU path tests that one flag and nothing else.
"""
from __future__ import annotations

import numpy as np

cuda_in_use = False   # set the first time an array is moved to the cuda device
DEVICES = ("cpu", "cuda")
_unavailable = None   # cached reason string once checked ("" = available)


def normalize(device, op="to") -> str:
    """``"cpu"`` or ``"cuda"`` from a device name (``"cuda:0"`` is accepted for the one GPU)."""
    if device is None:
        return "cpu"
    name = str(getattr(device, "type", device))
    if name in ("cuda:0",):
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"{op}: unknown device {device!r}; expected 'cpu' or 'cuda'")
    return name


def cuda_unavailable_reason() -> str:
    """Why the cuda device cannot be used here ('' when it can): no numba.cuda, no driver, no GPU."""
    global _unavailable
    if _unavailable is None:
        _unavailable = _probe()
    return _unavailable


def _probe() -> str:
    try:
        from numba import config, cuda
    except ImportError as exc:  # pragma: no cover - numba is a dependency of the cpu backend
        return f"numba.cuda cannot be imported ({exc}); install fastnn[cuda]"
    if config.ENABLE_CUDASIM:
        return ""
    try:
        cuda.current_context()
    except Exception as exc:  # noqa: BLE001 - CudaSupportError, CudaDriverError, ...: reported as text
        text = " ".join(str(exc).split()).rstrip(" :")
        if "driver" in text.lower() and ("cannot be found" in text or "not found" in text):
            return f"no CUDA driver was found ({text})"
        return f"no usable CUDA GPU ({text})"
    if not cuda.is_available():
        return "numba.cuda reports no usable CUDA GPU (cuda.is_available() is False)"
    return ""


def require_cuda(op="to") -> None:
    """Raise RuntimeError saying why, when the cuda device is not usable."""
    reason = cuda_unavailable_reason()
    if reason:
        raise RuntimeError(f"{op}: the 'cuda' device is not available: {reason}. "
                           "Run on a machine with an NVIDIA GPU, its driver and numba's CUDA support, "
                           "or keep tensors on 'cpu'")


def is_device_array(array) -> bool:
    """True for a numba.cuda device array (or the simulator's)."""
    return cuda_in_use and not isinstance(array, np.ndarray) and getattr(array, "__cuda_ndarray__", False) is True


def device_of(array) -> str:
    return "cuda" if is_device_array(array) else "cpu"


def cuda_kernels():
    """The cuda backend module (after checking that the device is usable)."""
    global cuda_in_use
    require_cuda()
    from .backends import cuda
    cuda_in_use = True
    return cuda


def move(array, device: str):
    """``array`` on ``device`` (the same object when it is already there)."""
    if device == "cuda":
        if is_device_array(array):
            return array
        return cuda_kernels().to_device(array)
    if is_device_array(array):
        return array.copy_to_host()
    return array
