"""One handle per model: its name, identity and config, the dual encoder built once, and a query-encoder view.

Search, the server, evaluation, export and training all need "the model", and
each used to load it on its own (a server had three lazy loaders wired together
with lambdas). A :class:`ModelHandle` is the one place a model is loaded:
whatever is given the same handle shares the same :class:`DualEncoder`, built
on first use under a lock (a server's query and ingest threads may both ask first).

A handle made with ``onnx_dir`` answers queries from that export folder
(:class:`~modalens.query_encoder.OnnxQueryEncoder`) and imports no torch
until something asks for :attr:`ModelHandle.model` (writes, tagging): this
module, the config and the identity are all torch-free.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..query_encoder import OnnxQueryEncoder, QueryEncoder
from .config import ModelConfig
from .factory import DEFAULT_MODEL, create_model, model_config, model_identity

if TYPE_CHECKING:
    from PIL import Image

    from .dual_encoder import DualEncoder


class ModelHandle:
    """A model by name (or saved folder), loaded at most once however many users share the handle.

    Make one with :func:`load`. The config is read at once (an unknown name
    fails here, before any work); the identity, the dual encoder and the
    query encoder are made on first use.
    """

    def __init__(
        self, name_or_folder: str | Path = DEFAULT_MODEL, onnx_dir: str | Path | None = None, *, verify: str = "sha256"
    ) -> None:
        self.name = str(name_or_folder)
        #: An export folder queries are answered from without torch, or None for the PyTorch model.
        self.onnx_dir = Path(onnx_dir) if onnx_dir is not None else None
        #: How the export's files are checked (:func:`modalens.backends.runtime.load_export`): ``sha256`` or ``stat``.
        self.verify = verify
        self.config: ModelConfig = model_config(name_or_folder)
        self._lock = threading.RLock()
        self._model: DualEncoder | None = None
        self._identity: str | None = None
        self._query_encoder: QueryEncoder | None = None

    def __repr__(self) -> str:
        onnx = f", onnx_dir={str(self.onnx_dir)!r}" if self.onnx_dir else ""
        return f"ModelHandle({self.name!r}{onnx}, loaded={self.loaded})"

    @property
    def torch_free(self) -> bool:
        """True when queries come from an ONNX export: nothing on the query path may import torch."""
        return self.onnx_dir is not None

    @property
    def identity(self) -> str:
        """The model's name plus a digest of its trained heads: what an index built with it records."""
        if self._identity is None:
            self._identity = model_identity(self.name)
        return self._identity

    @property
    def loaded(self) -> bool:
        """Whether the PyTorch dual encoder has been built (a torch-free server's queries never build it)."""
        return self._model is not None

    @property
    def model(self) -> DualEncoder:
        """The PyTorch dual encoder (torch is imported here), built once on first use and shared."""
        model = self._model
        if model is None:
            with self._lock:  # two threads asking first build it once
                if self._model is None:
                    self._model = create_model(self.name)
                model = self._model
        return model

    def warm(self) -> DualEncoder:
        """Build the model and both towers now, so a server's first request does not pay for them."""
        model = self.model
        _ = model.image_tower, model.text_tower
        return model

    @property
    def query_encoder(self) -> QueryEncoder:
        """Texts and photos → vectors: the export's torch-free encoder with ``onnx_dir``, else this handle's model."""
        if self._query_encoder is None:
            with self._lock:
                if self._query_encoder is None:
                    self._query_encoder = (
                        OnnxQueryEncoder(self.onnx_dir, model=self.name, verify=self.verify)
                        if self.onnx_dir is not None
                        else TorchQueryEncoder(self)
                    )
        return self._query_encoder


class TorchQueryEncoder:
    """A handle's PyTorch model as a query encoder; nothing is loaded (nor torch imported) until a vector is asked for."""

    backend = "torch"

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle

    @property
    def model(self) -> DualEncoder:
        return self.handle.model

    @property
    def identity(self) -> str:
        return self.handle.identity

    @property
    def embed_dim(self) -> int:
        return int(self.handle.config.embed_dim)  # from the config: an empty index needs no weights

    @property
    def image_size(self) -> int:
        """The square the image tower sees (photos are letterboxed to it)."""
        return int(self.model.image_tower.image_size)

    @property
    def logit_scale(self) -> float:
        """The model's learned logit scale (before ``exp``): zero-shot tagging's temperature."""
        return float(self.model.logit_scale.detach())

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode_text(list(texts))

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.model.encode_image(list(images))


def load(name_or_folder: str | Path = DEFAULT_MODEL, onnx_dir: str | Path | None = None, *, verify: str = "sha256") -> ModelHandle:
    """A handle on a named model or a folder saved by ``modalens train``; with ``onnx_dir``, queries come from that export.

    ``verify`` says how the export's files are checked: ``"sha256"`` all of them when the query encoder
    is made (a server), ``"stat"`` only those changed since they last passed (a one-shot command;
    :func:`modalens.export.cache.query_handle` picks the cached export and this).
    """
    return ModelHandle(name_or_folder, onnx_dir, verify=verify)


def as_handle(model: str | Path | ModelHandle) -> ModelHandle:
    """A handle given is shared as it is; a name or folder becomes a new handle (what callers accepting either use)."""
    return model if isinstance(model, ModelHandle) else load(model)
