"""Embed products and texts with a model, reusing cached frozen-tower features.

Training, evaluation and indexing all go through here, so a photo's tower
features are computed once per machine whatever asks for them.

The model is a ``DualEncoder`` (PyTorch heads) or a whole-model ONNX export's
query encoder (:class:`~modalens.query_encoder.OnnxQueryEncoder`: numpy towers
and ONNX Runtime heads, no torch), which a read-only evaluation uses when the
model has one; both read and fill the same cache entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .catalog.schema import Product
from .encoders.features import (
    FeatureStore,
    TokenStates,
    default_grid_store,
    default_store,
    default_token_store,
    image_features,
    image_grids,
    text_features,
    text_states,
)

if TYPE_CHECKING:
    from .models import DualEncoder
    from .query_encoder import OnnxQueryEncoder


class CachedEncoder:
    """A model's towers behind the on-disk feature cache; heads applied on top."""

    def __init__(
        self,
        model: DualEncoder | OnnxQueryEncoder,
        *,
        progress: bool | None = None,
        batch_size: int = 32,
        use_cache: bool = True,
        image_view: str | None = None,
        workers: int | None = None,
    ) -> None:
        """``image_view`` (an ``encoders.views`` name) is applied to every image unless a call names its own.

        ``progress``: bars on stderr (None: only when it is a terminal, see :mod:`modalens.progress`).
        ``workers``: processes decoding photos ahead of the image tower (None:
        ``encoders.pipeline.default_workers``, which keeps small jobs in-process).
        """
        self.model = model
        self.workers = workers
        self.image_view = image_view
        self.progress = progress
        self.batch_size = batch_size
        self.use_cache = use_cache
        self._stores: dict[str, FeatureStore] = {}

    def _store(self, kind: str) -> FeatureStore | None:
        if not self.use_cache:
            return None
        if kind not in self._stores:
            tower = self.model.image_tower if kind == "image" else self.model.text_tower
            self._stores[kind] = default_store(tower, kind)
        return self._stores[kind]

    def image_features(self, products: Sequence[Product], view: str | None = None) -> tuple[np.ndarray, dict[int, str]]:
        """Tower features of each product's main image (optionally a named view of it); ``failures[i]`` explains a miss."""
        sources, positions, failures = _main_images(products)
        feats, failed = image_features(
            self.model.image_tower,
            sources,
            store=self._store("image"),
            batch_size=self.batch_size,
            progress=self.progress,
            view=view if view is not None else self.image_view,
            workers=self.workers,
        )
        out = np.zeros((len(products), feats.shape[1]), np.float32)
        out[positions] = feats
        failures.update({positions[j]: reason for j, reason in failed.items()})
        return out, failures

    def image_grids(self, products: Sequence[Product]) -> tuple[np.ndarray, dict[int, str]]:
        """Spatial feature maps (n, h·w, C) float16 of each product's main image (what instance queries attend
        to); the pooled features of the same pass fill the pooled cache, so ``image_embeddings`` after this is free."""
        sources, positions, failures = _main_images(products)
        if self.use_cache and "grid" not in self._stores:
            self._stores["grid"] = default_grid_store(self.model.image_tower)
        grids, failed = image_grids(
            self.model.image_tower, sources, store=self._stores.get("grid"), pooled_store=self._store("image"),
            batch_size=self.batch_size, progress=self.progress, workers=self.workers,
        )  # fmt: skip
        out = np.zeros((len(products), *grids.shape[1:]), np.float16)
        out[positions] = grids
        failures.update({positions[j]: reason for j, reason in failed.items()})
        return out, failures

    def text_features(self, texts: Sequence[str]) -> np.ndarray | TokenStates:
        """What the model's text head reads: pooled tower features, or token states for a token head."""
        if getattr(self.model, "text_reads_tokens", False):
            return self.text_states(texts)
        return text_features(self.model.text_tower, list(texts), store=self._store("text"), progress=self.progress)

    def text_states(self, texts: Sequence[str]) -> TokenStates:
        """The text tower's token states of each text (cached), filling the pooled cache from the same pass."""
        if self.use_cache and "tokens" not in self._stores:
            self._stores["tokens"] = default_token_store(self.model.text_tower)
        return text_states(
            self.model.text_tower, list(texts), store=self._stores.get("tokens"), pooled_store=self._store("text"), progress=self.progress
        )

    def image_embeddings(self, products: Sequence[Product], view: str | None = None) -> tuple[np.ndarray, dict[int, str]]:
        feats, failures = self.image_features(products, view=view)
        return self.model.project_features(feats, "image"), failures

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.project_features(self.text_features(texts), "text")


def _main_images(products: Sequence[Product]) -> tuple[list[str], list[int], dict[int, str]]:
    """Each product's main image path, its position in ``products``, and a failure for each product without one."""
    sources, positions, failures = [], [], {}
    for i, product in enumerate(products):
        if product.image:
            sources.append(product.image)
            positions.append(i)
        else:
            failures[i] = "product has no image"
    return sources, positions, failures
