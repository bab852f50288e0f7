"""The dual-encoder model, its configs (``model_configs/*.json``), the factory that builds it by name, and the handle.

:func:`load` is how the rest of modalens gets a model: one :class:`ModelHandle`
per model, shared, so the model is built once. Importing this package does not
import torch: :class:`DualEncoder` and :class:`ProjectionHead` (which do) are
imported when first named, so a torch-free server can load a handle on an export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

from .config import HeadConfig, ModelConfig
from .factory import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    create_model,
    list_models,
    model_config,
    model_identity,
    model_metadata,
    save_model,
)
from .handle import ModelHandle, TorchQueryEncoder, as_handle, load

if TYPE_CHECKING:
    from .dual_encoder import DualEncoder
    from .heads import ProjectionHead

#: Names whose modules import torch, and those modules: imported on first use (PEP 562).
_TORCH_NAMES = {"DualEncoder": ".dual_encoder", "ProjectionHead": ".heads"}


__getattr__, __dir__ = lazy_attributes(__name__, _TORCH_NAMES, globals())


__all__ = [
    "DEFAULT_MODEL",
    "DualEncoder",
    "HeadConfig",
    "ModelConfig",
    "ModelHandle",
    "ModelNotFoundError",
    "ProjectionHead",
    "TorchQueryEncoder",
    "as_handle",
    "create_model",
    "list_models",
    "load",
    "model_config",
    "model_identity",
    "model_metadata",
    "save_model",
]
