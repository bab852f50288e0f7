"""Which store an index lives in, named by one string (``--store``): the embedded SQLite file or Milvus.

``sqlite`` (the default: the ``--index`` folder), ``sqlite:DIR``, or
``milvus:URI[#collection]`` (a local file path runs Milvus Lite in-process; an
``http://`` URI talks to a Milvus server). Both stores answer the calls in
:class:`CatalogStore`, which is all that building (:func:`~modalens.index.build.build_index`)
and searching (:class:`~modalens.search.SearchEngine`) use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from modalens.catalog.schema import Product
from modalens.index.base import Hit

if TYPE_CHECKING:
    from modalens.index.milvus import MilvusIndex
    from modalens.index.store import CatalogIndex

#: Store kinds ``--store`` accepts.
STORE_KINDS = ("sqlite", "milvus")


class CatalogStore(Protocol):
    """What every store offers: writes, reads, and vector search with filters."""

    def add(self, products: Sequence[Product], vectors: np.ndarray, content_keys: Sequence[str]) -> None: ...
    def record_failures(self, failures: Iterable[tuple[str, str]]) -> None: ...
    def delete(self, ids: Iterable[str]) -> int: ...
    def content_keys(self, ids: Sequence[str] | None = None) -> dict[str, str]: ...
    def ids(self) -> list[str]: ...
    def get(self, product_id: str) -> Product: ...
    def failures(self) -> list[tuple[str, str]]: ...
    def sync(self) -> str: ...
    def close(self) -> None: ...
    def __len__(self) -> int: ...
    def search(
        self, queries: np.ndarray, k: int = 10, *, where: Mapping[str, Any] | None = None,
        text: str | Sequence[str] | None = None, hybrid_weight: float = 0.0,
    ) -> list[list[Hit]]: ...  # fmt: skip


def parse_store(store: str | None, index_dir: Path) -> tuple[str, str]:
    """(kind, location): ``None``/``sqlite`` -> the index folder; ``sqlite:DIR``; ``milvus:URI[#collection]``."""
    if store is None or store == "sqlite":
        return "sqlite", str(index_dir)
    kind, sep, location = store.partition(":")
    if kind not in STORE_KINDS or not sep or not location.strip():
        raise ValueError(
            f"store {store!r} is not one of: sqlite, sqlite:DIR, milvus:PATH.db (Milvus Lite), milvus:http://HOST:19530[#collection]"
        )
    return kind, location.strip()


def open_store(store: str | None, index_dir: Path, *, model: str | None) -> CatalogIndex | MilvusIndex:
    """Open an existing index in the named store; refuse one built with another model (``None``: any model)."""
    kind, location = parse_store(store, index_dir)
    if kind == "milvus":
        from modalens.index.milvus import MilvusIndex

        return MilvusIndex.open(location, model=model)
    from modalens.index.store import CatalogIndex

    return CatalogIndex.open(location, model=model)


def create_store(store: str | None, index_dir: Path, *, model: str, dim: int) -> CatalogIndex | MilvusIndex:
    """Open the index in the named store, creating an empty one for ``model`` if there is none."""
    kind, location = parse_store(store, index_dir)
    if kind == "milvus":
        from modalens.index.milvus import MilvusIndex

        return MilvusIndex.create(location, model=model, dim=dim)
    from modalens.index.store import CatalogIndex

    Path(location).mkdir(parents=True, exist_ok=True)
    return CatalogIndex.create(location, model=model, dim=dim)


__all__ = ["STORE_KINDS", "CatalogStore", "create_store", "open_store", "parse_store"]
