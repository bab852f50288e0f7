"""The Python face of modalens: load a model, embed photos and texts, tag photos, search an index.

    >>> import modalens
    >>> m = modalens.load()                                  # the default model (or a name, or a trained folder)
    >>> m.encode_images(["a.jpg", pil_image]).shape          # (2, m.embed_dim), unit-length rows
    >>> m.encode_text(["red dress", "white sneakers"])       # the same space: cosine = dot product
    >>> m.zero_shot(["a.jpg"], ["dress", "shirt", "shoes"])  # the best label per photo
    >>> modalens.Index("my-index").search("red dress", k=5, filters={"brand": "Acme"})

Everything here is a thin layer over :mod:`modalens.models` (the model handle),
:mod:`modalens.search` (the index with its model) and :mod:`modalens.zeroshot`;
the CLI and the server use the same pieces, so a vector, a filter or a score
means the same thing from Python, the command line and the REST API.
``docs/python.md`` walks through it; its code blocks are run by the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from .catalog.images import load_image
from .models import DEFAULT_MODEL, ModelHandle, as_handle

if TYPE_CHECKING:
    from .catalog.schema import Catalog, Product
    from .index import BuildReport, Hit
    from .search import SearchEngine
    from .zeroshot import ZeroShotClassifier

#: What :meth:`Model.encode_images` takes for one photo: a file path, a PIL image, or the encoded bytes.
ImageLike = Union[str, Path, Image.Image, bytes]

__all__ = ["ImageLike", "Index", "Model", "load"]


def load(name_or_folder: str | Path = DEFAULT_MODEL, *, onnx_dir: str | Path | None = None) -> Model:
    """A model by name (``modalens models`` lists them) or a folder saved by ``modalens train``.

    Nothing heavy happens here: the weights load (and torch is imported) on the first
    vector asked for. With ``onnx_dir`` (a folder written by ``modalens export``) photos and
    texts are encoded by that export in ONNX Runtime, without torch.
    """
    return Model(ModelHandle(name_or_folder, onnx_dir))


class Model:
    """A model's image and text towers with their heads: photos and texts as vectors in one space."""

    def __init__(self, handle: ModelHandle | str | Path = DEFAULT_MODEL) -> None:
        #: The model handle underneath (shared with any :class:`Index` made from this model).
        self.handle = as_handle(handle)

    def __repr__(self) -> str:
        return f"modalens.Model({self.name!r}, embed_dim={self.embed_dim})"

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def embed_dim(self) -> int:
        """The length of every vector this model makes (from its config: nothing is loaded)."""
        return int(self.handle.config.embed_dim)

    def encode_images(self, images: ImageLike | Iterable[ImageLike], batch_size: int = 32) -> np.ndarray:
        """Photos → an ``(n, embed_dim)`` float32 array of unit-length rows, one per photo, in order.

        Each photo is a file path, a PIL image or the file's bytes; one photo alone gives one row.
        Files are decoded as ``modalens index`` decodes them (EXIF orientation, size limits), so
        a photo's vector here is the vector an index holds for it. A photo that cannot be read
        raises :class:`~modalens.catalog.ImageError` naming it.
        """
        items = _as_list(images, (str, Path, Image.Image, bytes))
        encoder = self.handle.query_encoder
        out = np.zeros((len(items), self.embed_dim), np.float32)
        for start in range(0, len(items), _positive(batch_size)):
            batch = items[start : start + batch_size]
            size = encoder.image_size
            pils = [item if isinstance(item, Image.Image) else load_image(item, draft_fit=size) for item in batch]
            out[start : start + len(batch)] = encoder.encode_image([p.convert("RGB") for p in pils])
        return out

    def encode_text(self, texts: str | Iterable[str], batch_size: int = 256) -> np.ndarray:
        """Texts → an ``(n, embed_dim)`` float32 array of unit-length rows; one string alone gives one row."""
        items = _as_list(texts, (str,))
        if not all(isinstance(t, str) for t in items):
            raise TypeError("encode_text takes a string or a list of strings")
        encoder = self.handle.query_encoder
        out = np.zeros((len(items), self.embed_dim), np.float32)
        for start in range(0, len(items), _positive(batch_size)):
            batch = items[start : start + batch_size]
            out[start : start + len(batch)] = encoder.encode_text(batch)
        return out

    def classifier(self, labels: Sequence[str], ensemble: bool = True) -> ZeroShotClassifier:
        """A zero-shot classifier over ``labels``: each label's prompts embedded once, reusable across calls."""
        from .prompts import ZERO_SHOT_TEMPLATES
        from .zeroshot import build_classifier

        labels = [labels] if isinstance(labels, str) else list(labels)
        templates = ZERO_SHOT_TEMPLATES if ensemble else ZERO_SHOT_TEMPLATES[:1]
        return build_classifier(self.handle.model, labels, templates)

    def zero_shot(self, images: ImageLike | Iterable[ImageLike], labels: Sequence[str] | ZeroShotClassifier) -> list[str]:
        """The most likely of ``labels`` for each photo (no labelled data needed), as FashionCLIP's
        ``zero_shot_classification``; :meth:`tag` gives the ranked labels with probabilities."""
        classifier = labels if _is_classifier(labels) else self.classifier(labels)  # type: ignore[arg-type]
        return classifier.predict(self.encode_images(images))

    def tag(
        self, images: ImageLike | Iterable[ImageLike], labels: Sequence[str] | ZeroShotClassifier, top: int = 3
    ) -> list[list[tuple[str, float]]]:
        """The ``top`` labels of each photo with their probabilities (softmax over ``labels``), best first."""
        classifier = labels if _is_classifier(labels) else self.classifier(labels)  # type: ignore[arg-type]
        return classifier.top_k(self.encode_images(images), k=min(_positive(top), len(classifier.labels)))


class Index:
    """A catalogue index on disk, with the model its vectors came from: add products, search them.

    ``Index(path)`` opens the index in that folder with the model it was built with (or
    creates it, empty, on the first :meth:`add`); ``path=None`` is the CLI's default index.
    ``model`` (a name, folder or :class:`Model`) is only needed for a new index that should
    not use the default model. ``store`` puts the index elsewhere than the SQLite file in ``path``,
    named as ``--store`` names it: ``milvus:shop.db`` (Milvus Lite, a local file) or
    ``milvus:http://host:19530[#collection]`` (a Milvus server); ``path`` is then unused.
    Close it (or use ``with``) to release the database.
    """

    def __init__(
        self, path: str | Path | None = None, model: Model | ModelHandle | str | Path | None = None, *, store: str | None = None
    ) -> None:
        from .index.stores import parse_store
        from .search import SearchEngine, default_index_dir

        self.path = Path(path) if path is not None else default_index_dir()
        self.store = store
        parse_store(store, self.path)  # a malformed store is an error now, not on the first add
        handle = model.handle if isinstance(model, Model) else model  # None: the index's own model (search.index_model)
        self._engine: SearchEngine = SearchEngine(self.path, handle, progress=False, store=store)

    def __repr__(self) -> str:
        where = repr(str(self.path)) if self.store is None else f"store={self.store!r}"
        return f"modalens.Index({where}, model={self.model.name!r})"

    @property
    def model(self) -> Model:
        """The index's model (sharing its loaded weights): encode queries of your own with it."""
        return Model(self._engine.handle)

    @property
    def engine(self) -> SearchEngine:
        """The :class:`~modalens.search.SearchEngine` underneath (what the CLI and the server use)."""
        return self._engine

    def add(self, catalogue: str | Path | Catalog | Iterable[Product], *, limit: int | None = None, prune: bool = False) -> BuildReport:
        """Index a catalogue (a ``.csv``/``.jsonl`` file, an image folder, a named catalogue such as ``kagl:test``)
        or products; what is already indexed unchanged is skipped. ``prune`` also removes products
        that are no longer in it. Rows that cannot be read are skipped (``report``'s counts say how many
        photos failed; the catalogue's own reader errors are in ``modalens.catalog.read_catalog(...).errors``)."""
        from .catalog import read_catalog

        products = read_catalog(catalogue, limit=limit) if isinstance(catalogue, (str, Path)) else catalogue
        return self._engine.build(products, prune=prune)  # type: ignore[arg-type]

    def search(
        self,
        text: str | None = None,
        *,
        image: ImageLike | None = None,
        k: int = 10,
        filters: dict[str, Any] | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        hybrid: float = 0.0,
    ) -> list[Hit]:
        """The ``k`` products closest to words, a photo, or both (best first); each hit has ``id``,
        ``score`` and ``product``.

        ``filters`` maps a field to a value or a list of values (any of them), as the CLI's
        ``-f`` and the REST API take them: catalogue column names (``articleType``, ``baseColour``)
        and modalens names (``article_type``, ``colour``) both work; an unknown field is an error
        naming the allowed ones. ``hybrid`` (0 to 1) blends BM25 keyword matching on titles in.
        """
        from .serving.validation import where_clause  # the filter check of the CLI and the REST API

        where = where_clause(filters, price_min, price_max)
        photo = load_image(image, draft_fit=self._engine.query_encoder.image_size) if isinstance(image, bytes) else image
        return self._engine.search(text, photo, k=k, where=where, hybrid_weight=hybrid)

    def similar(self, product_id: str, k: int = 10, *, filters: dict[str, Any] | None = None) -> list[Hit]:
        """"More like this": the products closest to an indexed product's photo, itself left out."""
        from .serving.validation import where_clause

        return self._engine.similar(product_id, k=k, where=where_clause(filters))

    def get(self, product_id: str) -> Product:
        """An indexed product by id (KeyError when there is none)."""
        return self._engine.index.get(product_id)

    def __len__(self) -> int:
        return len(self._engine.ensure_index())

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._engine.ensure_index()

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_list(items: Any, single: tuple[type, ...]) -> list:
    if isinstance(items, single):
        return [items]
    if isinstance(items, np.ndarray) or not isinstance(items, Iterable):
        raise TypeError(f"expected one item or a list of them, not {type(items).__name__}")
    return list(items)


def _positive(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expected a positive integer, not {n!r}")
    return n


def _is_classifier(value: Any) -> bool:
    return hasattr(value, "top_k") and hasattr(value, "labels")
