"""Catalogue search: a model and an index together (the layer the CLI and the server use).

The index stores image embeddings from one model; queries must come from the
same model, so the index remembers the model's name and identity and
refuses another one.

The model is a :class:`~modalens.models.ModelHandle`: given one, several
engines (a server's query and ingest threads) share its model; given a name,
the engine loads its own handle. Queries go through the handle's query
encoder: the PyTorch model, or an ONNX export with no torch at all (the
server's fast path). Writing to the index (``build``, ``similar`` on the
torch path) uses the PyTorch model and its feature cache, imported only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .catalog.images import ImageError, load_image
from .catalog.schema import Catalog, Product
from .errors import InvalidInputError
from .index import BuildReport, CatalogIndex, Hit, build_index
from .index.stores import CatalogStore, create_store, open_store, parse_store
from .index.build import EmbedResult, product_content_key
from .models import DEFAULT_MODEL, ModelHandle, as_handle
from .paths import cache_dir
from .query_encoder import ExportMismatchError, QueryEncoder

if TYPE_CHECKING:
    from .embedding import CachedEncoder
    from .index.scenes import SceneHit
    from .instances import InstanceEncoder, OnnxInstanceEncoder
    from .models import DualEncoder

QUERY_CACHE_SIZE = 4096
#: Where ``build`` embeds: in this process, or on a Ray cluster (``modalens[ray]``).
EXECUTORS = ("local", "ray")

__all__ = ["LookItem", "QUERY_CACHE_SIZE", "SearchEngine", "default_index_dir"]


@dataclass
class LookItem:
    """One product found in a photo ("shop the look"): which query found it, how sure, where it looked, its matches."""

    query: int
    objectness: float
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) on the photo: the cells holding most of the query's attention
    hits: list[Hit]
    attention: list[float]  # the query's weights over the feature map's cells (7×7, reading order, summing to 1)


def default_index_dir() -> Path:
    return cache_dir() / "indexes" / "default"


def index_model(index_dir: str | Path | None, store: str | None = None) -> str:
    """The model to use with an index when none is named: the one it was built with, else (no index there yet) the
    default. So an upgrade that changes the default model leaves older indexes searchable as they are."""
    return built_with(Path(index_dir) if index_dir else default_index_dir(), store) or DEFAULT_MODEL


def built_with(path: Path, store: str | None = None) -> str | None:
    """The name of the model an existing index was built with (its identity is ``name@digest``), else None."""
    try:
        index = open_store(store, path, model=None)
    except Exception:  # no index there yet (it is created on the first add), or none readable: the engine says why
        return None
    try:
        identity = str(index.meta["model"])
    finally:
        index.close()
    return identity.rsplit("@", 1)[0]


class SearchEngine:
    """Index a catalogue, then search it by text, by image, or both."""

    def __init__(
        self,
        index_dir: str | Path | None = None,
        model: str | Path | ModelHandle | None = None,
        progress: bool | None = None,
        store: str | None = None,
    ) -> None:
        """``model``: a name or saved folder (loaded as a new handle), or a handle to share with other engines;
        None: the model the index was built with, or the default for a new index (:func:`index_model`).
        ``progress``: bars while indexing (None: only when stderr is a terminal).
        ``store``: where the index lives (``modalens.index.stores``): None for the SQLite file in ``index_dir``,
        or ``milvus:URI`` for Milvus (a local file: Milvus Lite)."""
        self.index_dir = Path(index_dir) if index_dir else default_index_dir()
        self.store = store
        self.handle = as_handle(model if model is not None else index_model(self.index_dir, store))
        self.model_name = self.handle.name
        self.progress = progress
        self._index: CatalogIndex | CatalogStore | None = None
        self._encoder: CachedEncoder | None = None
        self._instances: InstanceEncoder | OnnxInstanceEncoder | None = None
        # Shoppers repeat queries ("black dress"): the text tower runs once per distinct text.
        self._text_vector = lru_cache(maxsize=QUERY_CACHE_SIZE)(self._encode_text_query)

    @property
    def model(self) -> DualEncoder:
        """The handle's PyTorch model (torch is imported here, on first use)."""
        return self.handle.model

    @property
    def query_encoder(self) -> QueryEncoder:
        """The handle's query encoder (shared by every engine on the handle)."""
        return self.handle.query_encoder

    @property
    def identity(self) -> str:
        """The identity of the model queries come from; the index must have been built with it."""
        return self.query_encoder.identity

    @property
    def encoder(self) -> CachedEncoder:
        """The model behind the feature cache: re-embedding an indexed photo costs a cache lookup."""
        if self._encoder is None:
            from .embedding import CachedEncoder

            self._encoder = CachedEncoder(self.model, progress=False)
        return self._encoder

    @property
    def instance_encoder(self) -> InstanceEncoder | OnnxInstanceEncoder:
        """The model's instance decoder: on ONNX Runtime when queries come from an export that holds it (no torch),
        else PyTorch's over the feature cache; a clear error when the model has none."""
        if self._instances is None:
            from .instances import instance_encoder_for

            self._instances = instance_encoder_for(self.handle, None if self.handle.torch_free else self.encoder)
        return self._instances

    @property
    def index(self) -> CatalogIndex | CatalogStore:
        if self._index is None:
            self._index = open_store(self.store, self.index_dir, model=self.identity)
        return self._index

    def ensure_index(self) -> CatalogIndex | CatalogStore:
        """Open the index, creating an empty one for this model if there is none (no model weights loaded)."""
        if self._index is None:
            self._index = create_store(self.store, self.index_dir, model=self.identity, dim=self.query_encoder.embed_dim)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def build(
        self,
        catalog: Catalog | Sequence[Product],
        batch_size: int = 64,
        prune: bool = False,
        executor: str = "local",
        ray: dict[str, Any] | None = None,
    ) -> BuildReport:
        """Embed and store every product not already indexed unchanged; resumable after a kill.

        ``executor="ray"`` embeds on a Ray cluster into Parquet shards first
        (``modalens.distributed.ray_embed``; ``ray`` holds its options: ``address``, ``workers``,
        ``threads``, ``shards`` folder, ``shard_size``), then loads them here.
        """
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
        identity = self._writer_identity()
        index = self.ensure_index()
        prepare = None
        if executor == "ray":
            from .distributed.ray_embed import ShardedEmbedder

            options = dict(ray or {})
            folder = Path(options.pop("shards", None) or cache_dir() / "shards")
            model = Path(self.handle.name).resolve() if Path(self.handle.name).exists() else self.handle.name  # a saved folder
            embed_batch = ShardedEmbedder(folder, model=str(model), identity=identity, progress=bool(self.progress), **options)
            prepare = embed_batch.prepare
        else:
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
            index, products, embed_batch, batch_size=batch_size, content_key=content_key, progress=self.progress,
            prune=prune, prepare=prepare,
        )  # fmt: skip

    def _writer_identity(self) -> str:
        """The PyTorch model's identity, which writes use; it must be the one queries come from (an export may be older)."""
        identity = self.handle.identity
        if identity != self.identity:
            raise ExportMismatchError(
                f"the ONNX export answers queries as {self.identity!r} but {self.model_name!r} is now {identity!r}: "
                "export the model again (`modalens export`) so queries and new products share one model"
            )
        return identity

    def query_vector(self, text: str | None = None, image: str | Path | Image.Image | None = None) -> np.ndarray:
        """One query embedding; text and image together are averaged (then normalised)."""
        parts = []
        if text and text.strip():
            parts.append(self._text_vector(" ".join(text.split())))
        if image is not None:
            # A photo file decodes as indexed photos do (reduced JPEG decoding to the tower's size).
            pil = image if isinstance(image, Image.Image) else load_image(image, draft_fit=self.query_encoder.image_size)
            parts.append(self.query_encoder.encode_image([pil])[0])
        if not parts:
            raise ValueError("give a text query, an image, or both")
        vector = np.mean(parts, axis=0)
        return vector / np.linalg.norm(vector)

    def _encode_text_query(self, text: str) -> np.ndarray:
        vector = self.query_encoder.encode_text([text])[0]
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

    def look(self, image: str | Path | Image.Image, k: int = 5, where: dict[str, Any] | None = None) -> list[LookItem]:
        """Shop the look: each product the model's instance decoder finds in ``image``, with its top ``k`` catalogue
        matches (the decoder runs on the export when queries come from one, else in PyTorch)."""
        from .instances import attention_box, distinct_instances

        photo = image if isinstance(image, Image.Image) else self._query_photo(image)
        found = self.instance_encoder.encode_images([photo])
        side = int(round(found.attention.shape[2] ** 0.5))
        kept = list(distinct_instances(found.embeddings[0], found.objectness[0]))
        if not kept:
            return []
        # one search for all instances: one read snapshot, one pass over the vectors (not one per instance)
        found_hits = self.index.search(found.embeddings[0, kept], k=k, where=where)
        return [
            LookItem(q, float(found.objectness[0, q]), attention_box(found.attention[0, q], side, photo.size), hits, found.attention[0, q].tolist())
            for q, hits in zip(kept, found_hits)
        ]

    # ----------------------------------------------------------------- scenes

    def add_scenes(self, scenes: Catalog | Sequence[Product], batch_size: int = 64, prune: bool = False) -> BuildReport:
        """Store the instance embeddings of scene photos (lookbook pages, street photos, flat-lays) beside the products.

        ``scenes`` are read as a catalogue is (an id and a photo each; a title helps people, not search). Each
        scene keeps the decoder's instances that hold a product (:func:`~modalens.instances.distinct_instances`).
        Re-run safe and resumable like :meth:`build`: a scene is stored under a content key (its record, its photo
        file's size and time, the model and the decoder), so an unchanged scene is not decoded again. With
        ``prune``, stored scenes (and failure records) absent from ``scenes`` are removed, as products' are.
        """
        from .index.build import SceneEmbedResult, build_scene_index
        from .index.scenes import SceneInstances
        from .instances import distinct_instances

        self._check_scene_store()
        reader = self.instance_encoder  # no decoder: refused here, before an empty index is made
        index = self.scene_index(create=True)
        salt = f"{self.identity}|instances:{reader.digest}"

        def embed_batch(batch: list[Product]) -> SceneEmbedResult:
            found = reader.instances(batch)
            kept, ids = [], []
            for i, scene in enumerate(batch):
                if i in found.failures:
                    continue
                q = distinct_instances(found.embeddings[i], found.objectness[i])
                kept.append(SceneInstances(np.array(q), found.embeddings[i, q], found.objectness[i, q], found.attention[i, q]))
                ids.append(scene.id)
            return SceneEmbedResult(kept, ids, [(batch[i].id, reason) for i, reason in found.failures.items()])

        def content_key(scene: Product) -> str:
            return product_content_key(scene, salt=salt + "|".join(f"{p}:{_stat(p)}" for p in scene.images))

        items = list(scenes.products if isinstance(scenes, Catalog) else scenes)
        return build_scene_index(
            index, items, embed_batch, batch_size=batch_size, content_key=content_key, progress=self.progress, prune=prune
        )

    def search_scenes(
        self, text: str | None = None, image: str | Path | Image.Image | None = None, product_id: str | None = None, k: int = 10
    ) -> list[SceneHit]:
        """The scenes holding what is described: words, a product photo, or an indexed product (by id), each scene
        scored by its best-matching instance."""
        if product_id is not None:
            if text or image is not None:
                raise ValueError("give a product id alone, or words and/or a photo")
            vector = self._product_vector(self.index.get(product_id))
        else:
            vector = self.query_vector(text, image)
        return self.scene_index().search_scenes(vector, k=k)[0]

    def scene_index(self, create: bool = False) -> CatalogIndex:
        """The index as the scene store: the SQLite one (Milvus holds products only)."""
        self._check_scene_store()
        index = self.ensure_index() if create else self.index
        assert isinstance(index, CatalogIndex)
        return index

    def _check_scene_store(self) -> None:
        """Refuse scenes in a store that cannot hold them, from its name alone (so no empty collection is made first)."""
        if parse_store(self.store, self.index_dir)[0] != "sqlite":
            raise InvalidInputError(
                f"scene photos are kept only in the SQLite store (--index DIR), not in {self.store}; "
                "search products there and keep scenes in an SQLite index"
            )

    def _query_photo(self, path: str | Path) -> Image.Image:
        try:
            return load_image(path)
        except (ImageError, OSError) as e:
            raise ValueError(f"cannot read the photo {path}: {e}") from None

    def similar(self, product_id: str, k: int = 10, where: dict[str, Any] | None = None) -> list[Hit]:
        """"More like this": the product's own photo as the query, the product itself left out."""
        product = self.index.get(product_id)
        vector = self._product_vector(product)
        hits = self.index.search(vector, k=k + 1, where=where)[0]
        return [h for h in hits if h.id != product_id][:k]

    def _product_vector(self, product: Product) -> np.ndarray:
        """The embedding of a product's main photo: through the feature cache on the torch path, else the query encoder
        (an export's, which must not import torch)."""
        if not self.handle.torch_free:
            vectors, failures = self.encoder.image_embeddings([product])
            if failures:
                raise ValueError(f"product {product.id!r} has no usable image: {failures[0]}")
            return vectors[0]
        if not product.image:
            raise ValueError(f"product {product.id!r} has no usable image: product has no image")
        try:
            # Decoded as indexing decoded it (reduced JPEG decoding to the tower's size), so a product's
            # query vector is its indexed vector, not a full-size decode's near neighbour.
            photo = load_image(product.image, draft_fit=self.query_encoder.image_size)
        except (ImageError, OSError) as e:  # unreadable or missing: the caller reports it as bad input
            raise ValueError(f"product {product.id!r} has no usable image: {e}") from None
        return self.query_encoder.encode_image([photo])[0]

    def delete(self, ids: Sequence[str]) -> int:
        return self.index.delete(list(ids))


def _stat(path: str) -> str:
    try:
        st = Path(path).stat()
        return f"{st.st_size}-{st.st_mtime_ns}"
    except OSError:
        return "missing"
