"""Which device the towers and training run on: the one place that reads ``$MODALENS_DEVICE``.

``auto`` (the default everywhere) means ``$MODALENS_DEVICE`` when it is set,
else CUDA when this machine offers it, else the CPU; ``cpu`` and ``cuda``
are explicit and win over the variable. An explicit ``cuda`` on a machine
without it is a :class:`DeviceError` naming what is missing, never a silent
CPU run: a job sized for a GPU would otherwise take hours without saying why.

Two engines ask:

* ONNX Runtime (indexing and query encoding, the default back-end):
  :func:`onnx_providers` turns the providers this onnxruntime build offers
  into the list a session is opened with (``CUDAExecutionProvider`` first
  when chosen, the CPU provider always last so an operator CUDA lacks still
  runs). The default ``onnxruntime`` wheel offers only the CPU; the GPU
  build is ``onnxruntime-gpu`` (CUDA 12, cuDNN 9), installed instead of it.
* torch (``modalens train``'s ``optim.device``): :func:`torch_device`.

Torch-free (``torch`` is imported only by :func:`torch_device`), so the
search server's ONNX path keeps its small import footprint.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import ModalensError

DEVICES = ("auto", "cpu", "cuda")
DEVICE_ENV = "MODALENS_DEVICE"
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class DeviceError(ModalensError, RuntimeError):
    """The device asked for is not on this machine (or not in this build of the engine)."""

    http_status = 503


def requested_device(device: str | None = None) -> str:
    """``cpu``, ``cuda`` or ``auto``: ``device`` when explicit, else ``$MODALENS_DEVICE``, else ``auto``."""
    for source, value in (("device", device), (DEVICE_ENV, os.environ.get(DEVICE_ENV))):
        value = (value or "").strip().lower()
        if not value or value == "auto":
            continue
        if value not in DEVICES:
            raise DeviceError(f"{source}: the device must be one of {', '.join(DEVICES)}, not {value!r}")
        return value
    return "auto"


def onnx_providers(available: Sequence[str], device: str | None = None) -> list[str]:
    """The execution providers to open a session with, given those this onnxruntime offers (``get_available_providers()``)."""
    choice = requested_device(device)
    if choice != "cpu" and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if choice == "cuda":
        raise DeviceError(
            f"the device is cuda, but this onnxruntime offers no {CUDA_PROVIDER} (it offers {', '.join(available) or 'none'}): "
            f"install onnxruntime-gpu in place of onnxruntime on a machine with an NVIDIA GPU, or set {DEVICE_ENV}=cpu"
        )
    return [CPU_PROVIDER]


def prepare_cuda(ort: Any) -> None:
    """Let onnxruntime-gpu find CUDA and cuDNN from the nvidia-* pip wheels (torch's) when the system has none on its path.

    Best effort: ``preload_dlls`` exists from onnxruntime-gpu 1.21; a failure here shows up as the session not getting CUDA.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - the session's own check below reports what matters
            pass


def check_session_device(session: Any, providers: Sequence[str], device: str | None = None) -> None:
    """After opening: a session that asked for CUDA but did not get it (missing CUDA/cuDNN libraries) fails when CUDA was explicit, warns under ``auto``."""
    if providers[0] != CUDA_PROVIDER or CUDA_PROVIDER in session.get_providers():
        return
    message = f"ONNX Runtime offers {CUDA_PROVIDER} but could not start it (CUDA 12 / cuDNN 9 libraries not found?)"
    if requested_device(device) == "cuda":
        raise DeviceError(f"{message}; set {DEVICE_ENV}=cpu to run on the CPU")
    warnings.warn(f"{message}: running on the CPU", RuntimeWarning, stacklevel=3)


def torch_device(device: str | None = None) -> str:
    """``"cuda"`` or ``"cpu"`` for torch: ``auto`` is CUDA when ``torch.cuda.is_available()``."""
    import torch

    choice = requested_device(device)
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"the device is cuda, but torch sees no GPU here (torch {torch.__version__}); set {DEVICE_ENV}=cpu or optim.device: cpu")
    return choice


__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "DEVICES",
    "DEVICE_ENV",
    "DeviceError",
    "check_session_device",
    "onnx_providers",
    "requested_device",
    "torch_device",
]
