"""Catalogue search: a model and an index together (the layer the CLI and, later, the server use).

The index stores image embeddings from one model; queries must come from the
same model, so the index remembers the model's name and identity and
refuses another one.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .catalog.images import load_image
from .catalog.schema import Catalog, Product
from .embedding import CachedEncoder
from .index import BuildReport, CatalogIndex, Hit, build_index
from .index.build import EmbedResult, product_content_key
from .models import DualEncoder, create_model, model_metadata
from .paths import cache_dir


QUERY_CACHE_SIZE = 4096


def default_index_dir() -> Path:
    return cache_dir() / "indexes" / "default"


def model_identity(model_name: str) -> str:
    """Name plus a digest of its trained heads, so re-trained heads never mix with old vectors."""
    import json

    meta = model_metadata(model_name)
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:10]
    return f"{model_name}@{digest}"


class SearchEngine:
    """Index a catalogue, then search it by text, by image, or both."""

    def __init__(
        self,
        index_dir: str | Path | None = None,
        model: str = "modalens-lite",
        progress: bool = True,
        shared_model: DualEncoder | None = None,
    ) -> None:
        """``shared_model`` lets several engines (a server's query and ingest threads) share one loaded model."""
        self.index_dir = Path(index_dir) if index_dir else default_index_dir()
        self.model_name = str(model)
        self.progress = progress
        self._model: DualEncoder | None = shared_model
        self._index: CatalogIndex | None = None
        self._encoder: CachedEncoder | None = None
        # Shoppers repeat queries ("black dress"): the text tower runs once per distinct text.
        self._text_vector = lru_cache(maxsize=QUERY_CACHE_SIZE)(self._encode_text_query)

    @property
    def model(self) -> DualEncoder:
        if self._model is None:
            self._model = create_model(self.model_name)
        return self._model

    @property
    def encoder(self) -> CachedEncoder:
        """The model behind the feature cache: re-embedding an indexed photo costs a cache lookup."""
        if self._encoder is None:
            self._encoder = CachedEncoder(self.model, progress=False)
        return self._encoder

    @property
    def index(self) -> CatalogIndex:
        if self._index is None:
            self._index = CatalogIndex.open(self.index_dir, model=model_identity(self.model_name))
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def build(self, catalog: Catalog | Sequence[Product], batch_size: int = 64, prune: bool = False) -> BuildReport:
        """Embed and store every product not already indexed unchanged; resumable after a kill."""
        identity = model_identity(self.model_name)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            self._index = CatalogIndex.create(self.index_dir, model=identity, dim=self.model.config.embed_dim)
        encoder = self.encoder

        def embed_batch(products: list[Product]) -> EmbedResult:
            vectors, failures = encoder.image_embeddings(products)
            ok = [i for i in range(len(products)) if i not in failures]
            return EmbedResult(vectors[ok], [products[i].id for i in ok], [(products[i].id, r) for i, r in failures.items()])

        def content_key(product: Product) -> str:
            stats = [f"{p}:{_stat(p)}" for p in product.images]
            return product_content_key(product, salt=identity + "|".join(stats))

        products = list(catalog.products if isinstance(catalog, Catalog) else catalog)
        return build_index(
            self._index, products, embed_batch, batch_size=batch_size, content_key=content_key, progress=self.progress, prune=prune
        )

    def query_vector(self, text: str | None = None, image: str | Path | Image.Image | None = None) -> np.ndarray:
        """One query embedding; text and image together are averaged (then normalised)."""
        parts = []
        if text and text.strip():
            parts.append(self._text_vector(" ".join(text.split())))
        if image is not None:
            pil = image if isinstance(image, Image.Image) else load_image(image)
            parts.append(self.model.encode_image([pil])[0])
        if not parts:
            raise ValueError("give a text query, an image, or both")
        vector = np.mean(parts, axis=0)
        return vector / np.linalg.norm(vector)

    def _encode_text_query(self, text: str) -> np.ndarray:
        vector = self.model.encode_text([text])[0]
        vector.setflags(write=False)  # shared by every caller of the cache
        return vector

    def search(
        self,
        text: str | None = None,
        image: str | Path | Image.Image | None = None,
        k: int = 10,
        where: dict[str, Any] | None = None,
        hybrid_weight: float = 0.0,
    ) -> list[Hit]:
        """``hybrid_weight`` > 0 blends BM25 keyword matches on titles into the vector score (an exact SKU or brand word counts)."""
        keywords = text if hybrid_weight and text else None
        return self.index.search(self.query_vector(text, image), k=k, where=where, text=keywords, hybrid_weight=hybrid_weight)[0]

    def similar(self, product_id: str, k: int = 10, where: dict[str, Any] | None = None) -> list[Hit]:
        """"More like this": the product's own photo as the query, the product itself left out."""
        product = self.index.get(product_id)
        vectors, failures = self.encoder.image_embeddings([product])
        if failures:
            raise ValueError(f"product {product_id!r} has no usable image: {failures[0]}")
        hits = self.index.search(vectors[0], k=k + 1, where=where)[0]
        return [h for h in hits if h.id != product_id][:k]

    def delete(self, ids: Sequence[str]) -> int:
        return self.index.delete(list(ids))


def _stat(path: str) -> str:
    try:
        st = Path(path).stat()
        return f"{st.st_size}-{st.st_mtime_ns}"
    except OSError:
        return "missing"
