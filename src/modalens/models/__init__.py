"""The dual-encoder model, its configs (``model_configs/*.json``) and the factory that builds it by name."""

from .config import HeadConfig, ModelConfig
from .dual_encoder import DualEncoder
from .factory import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    create_model,
    list_models,
    model_identity,
    model_metadata,
    save_model,
)
from .heads import ProjectionHead

__all__ = [
    "DEFAULT_MODEL",
    "DualEncoder",
    "HeadConfig",
    "ModelConfig",
    "ModelNotFoundError",
    "ProjectionHead",
    "create_model",
    "list_models",
    "model_identity",
    "model_metadata",
    "save_model",
]
