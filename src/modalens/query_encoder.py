"""Query encoders: texts and photos → vectors in a model's space, and the one that answers from an ONNX export without torch.

A search server spends its life turning short queries into vectors. On the
normal path that is the ``DualEncoder`` (PyTorch heads over towers that may
themselves run in ONNX Runtime), seen through a model handle's
``query_encoder`` (:class:`modalens.models.TorchQueryEncoder`), and importing
torch alone costs 1-2 s and hundreds of MB before the first query. A folder
written by ``modalens export`` holds everything a query needs (towers, heads,
tokenizer), so :class:`OnnxQueryEncoder` answers from it with ONNX Runtime,
``tokenizers`` and numpy only; its vectors agree with the normal path to about
1e-7 (the tests hold them to 1e-4). ``modalens.models.load(name, onnx_dir=...)``
picks between the two.

Vectors are only comparable within one model, so every encoder carries the
model's *identity* (its name and a digest of its trained heads) and the index
refuses queries from another. An export records the identity of the model it
was made from (``model_identity`` in its manifest).

This module imports neither torch nor :mod:`modalens.models` (which sits above it and imports it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:
    from PIL import Image

    from .backends.runtime import ExportImageTower, ExportTextTower

#: An export folder to answer queries from without torch (``modalens serve --onnx DIR`` sets it too).
ONNX_DIR_ENV = "MODALENS_ONNX_DIR"


class ExportMismatchError(InvalidInputError):
    """An export folder cannot stand in for the model asked for (another model, or no recorded identity)."""


class QueryEncoder(Protocol):
    """What search needs from a model: its identity, its vector size, and text and photo vectors."""

    backend: str

    @property
    def identity(self) -> str: ...

    @property
    def embed_dim(self) -> int: ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    @property
    def image_size(self) -> int: ...


class OnnxQueryEncoder:
    """An export folder (``modalens export``) as a query encoder: ONNX Runtime, ``tokenizers`` and numpy, no torch.

    Always the fp32 files: the int8 text tower saves about 2 ms per query but
    costs text→image R@1 (docs/onnx.md has the measurement).
    """

    backend = "onnx-export"

    def __init__(self, folder: str | Path, *, model: str | None = None, threads: int | None = None, verify: str = "sha256") -> None:
        """``verify``: ``"sha256"`` checks every file and opens every session now (a server, once);
        ``"stat"`` skips files that passed before unchanged and opens sessions on first use (a one-shot command)."""
        from .backends.runtime import load_export

        self.folder = Path(folder)
        self.exported = load_export(self.folder, threads=threads, verify=verify)
        self._identity = export_identity(self.exported.manifest, self.folder, model)
        self._image_tower: ExportImageTower | None = None
        self._text_tower: ExportTextTower | None = None

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def embed_dim(self) -> int:
        return self.exported.embed_dim

    @property
    def image_size(self) -> int:
        """The square the image tower sees (photos are letterboxed to it)."""
        return int(self.exported.manifest["components"]["image_tower"]["image_size"])

    @property
    def logit_scale(self) -> float:
        """The model's learned logit scale (before ``exp``): zero-shot tagging's temperature."""
        return self.exported.logit_scale

    @property
    def name(self) -> str:
        """The model's name, as ``DualEncoder.name``."""
        return str(self.exported.manifest.get("model") or self._identity.rsplit("@", 1)[0])

    @property
    def text_reads_tokens(self) -> bool:
        """Whether the text head reads token states (then the feature cache hands it ``TokenStates``)."""
        return self.exported.text_reads_tokens

    # What the feature cache (``embedding.CachedEncoder``: evaluation) needs of a model, on numpy: the towers
    # (whose features share the cache with the PyTorch model's) and the heads.

    @property
    def image_tower(self) -> ExportImageTower:
        if self._image_tower is None:
            from .backends.runtime import ExportImageTower

            self._image_tower = ExportImageTower(self.exported)
        return self._image_tower

    @property
    def text_tower(self) -> ExportTextTower:
        if self._text_tower is None:
            from .backends.runtime import ExportTextTower

            self._text_tower = ExportTextTower(self.exported)
        return self._text_tower

    def project_features(self, features: np.ndarray, kind: str) -> np.ndarray:
        """Cached tower features → embeddings (``image`` or ``text``), as ``DualEncoder.project_features``."""
        return self.exported.project_features(features, kind)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.exported.encode_texts(list(texts))

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.exported.encode_images(list(images))


def export_identity(manifest: dict[str, Any], folder: Path, model: str | None = None) -> str:
    """The model identity an export records; with ``model``, it must be that model's export."""
    identity = manifest.get("model_identity")
    if not identity:
        raise ExportMismatchError(
            f"{folder} records no model identity (an export from an older modalens): run `modalens export` again"
        )
    name = str(identity).rsplit("@", 1)[0]
    if model is not None and name != str(model):
        raise ExportMismatchError(f"{folder} is an export of model {name!r}, not {str(model)!r}")
    return str(identity)


def onnx_dir_from_env() -> Path | None:
    """``$MODALENS_ONNX_DIR`` as a path, or None when unset or empty."""
    value = os.environ.get(ONNX_DIR_ENV, "").strip()
    return Path(value) if value else None

