"""Inference back-ends for the towers: ONNX Runtime (fast on a CPU) and PyTorch (always there).

Which one a model's towers run on, first match wins:

1. ``$MODALENS_BACKEND`` = ``torch`` | ``onnx`` | ``auto``;
2. the tower's own ``"backend"`` key in the model config (``"image_tower": {"name": ..., "backend": "torch"}``);
3. the model config's top-level ``backend`` field (when ``ModelConfig`` has one);
4. ``auto``: ONNX Runtime when ``onnxruntime`` is importable, else torch.

In ``auto`` a tower that cannot run in ONNX Runtime (no ``onnx`` package to
export with, an exporter failure) falls back to torch with a warning; an
explicit ``onnx`` raises instead. ONNX exports are made once per machine and
tower, into ``cache_dir()/onnx`` (see ``modalens.backends.onnx``).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Mapping
from typing import Any

from .device import DeviceError

BACKENDS = ("torch", "onnx")
ENV_VAR = "MODALENS_BACKEND"


class BackendError(RuntimeError):
    """The back-end asked for cannot be used here."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[module] = None: import blocked
        return False


def onnxruntime_available() -> bool:
    """``onnxruntime`` can be imported (checked without importing it)."""
    return _installed("onnxruntime")


def onnx_export_available() -> bool:
    """The ``onnx`` package, which both torch exporters need, is installed."""
    return _installed("onnx")


def resolve_backend(*requested: str | None) -> tuple[str, bool]:
    """``(backend, explicit)``: the environment variable, then the first non-empty request, then auto."""
    for source, value in ((ENV_VAR, os.environ.get(ENV_VAR)), *(("model config", r) for r in requested)):
        value = (value or "").strip().lower()
        if not value or value == "auto":
            continue
        if value not in BACKENDS:
            raise ValueError(f"{source}: backend must be one of {', '.join(BACKENDS)} or auto, not {value!r}")
        return value, True
    return ("onnx" if onnxruntime_available() else "torch"), False


def _onnx_or_fallback(kind: str, tower: Any, explicit: bool, **kwargs: Any) -> Any | None:
    """The ONNX version of ``tower``; None (after a warning) when auto-selected and impossible."""
    name = getattr(tower, "name", kind)
    try:
        if not onnxruntime_available():
            raise BackendError("onnxruntime is not installed (pip install 'modalens[onnx]')")
        from .onnx import OnnxImageTower, OnnxTextTower, cached_export, tower_cache_dir  # noqa: F401
        from .runtime import read_manifest

        if not onnx_export_available():
            try:  # no exporter here, but an export made earlier (or copied in) serves as well
                read_manifest(tower_cache_dir(tower, f"{kind}_tower", kwargs.get("root")))
            except Exception:
                raise BackendError("the 'onnx' package is needed to export the tower once (pip install 'modalens[onnx]')") from None
        cls = OnnxImageTower if kind == "image" else OnnxTextTower
        return cls.from_torch(tower, **kwargs)
    except DeviceError:  # cuda asked for and absent: an error to act on, never a silent fallback to torch
        raise
    except Exception as e:
        if explicit:
            raise BackendError(f"{kind} tower {name!r} cannot run in ONNX Runtime: {e}") from e
        warnings.warn(f"{kind} tower {name!r} runs in PyTorch: ONNX Runtime unusable ({e})", RuntimeWarning, stacklevel=3)
        return None


def tower_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A model config's tower entry minus what modalens itself reads (name, dim, backend): the tower's own options."""
    return {k: v for k, v in spec.items() if k not in ("name", "dim", "backend")}


def build_image_tower(spec: Mapping[str, Any], backend: str | None = None, **onnx_kwargs: Any) -> Any:
    """An image tower from a model config's ``image_tower`` entry, on the selected back-end."""
    import torch

    from ..encoders import create_image_tower

    tower = create_image_tower(spec["name"], **tower_options(spec)).eval()
    choice, explicit = resolve_backend(spec.get("backend"), backend)
    if choice == "onnx":
        onnx_tower = _onnx_or_fallback("image", tower, explicit, **onnx_kwargs)
        if onnx_tower is not None:
            return onnx_tower
    return tower.to(memory_format=torch.channels_last)


def build_text_tower(spec: Mapping[str, Any], backend: str | None = None, **onnx_kwargs: Any) -> Any:
    """A text tower from a model config's ``text_tower`` entry, on the selected back-end."""
    from ..encoders import create_text_tower

    tower = create_text_tower(spec["name"], **tower_options(spec)).eval()
    choice, explicit = resolve_backend(spec.get("backend"), backend)
    if choice == "onnx":
        onnx_tower = _onnx_or_fallback("text", tower, explicit, **onnx_kwargs)
        if onnx_tower is not None:
            return onnx_tower
    return tower


def tower_backend(tower: Any) -> str:
    """``"onnx"`` or ``"torch"``: what a built tower runs on."""
    return getattr(tower, "backend", "torch")


__all__ = [
    "BACKENDS",
    "DeviceError",
    "ENV_VAR",
    "BackendError",
    "build_image_tower",
    "build_text_tower",
    "onnx_export_available",
    "onnxruntime_available",
    "resolve_backend",
    "tower_backend",
    "tower_options",
]
