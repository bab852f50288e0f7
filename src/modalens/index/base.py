"""What every part of the catalogue index shares: its errors, its result type and its state.

:class:`~modalens.index.store.CatalogIndex` is assembled from one mixin per
job (writes, filters, keyword search, the vector back-ends), each in its own
module so each can be read and changed alone. They work on one SQLite
connection and one in-memory search structure; :class:`IndexState` names
that shared state in one place, so a mixin's reader sees what it may touch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modalens.catalog.schema import Product
from modalens.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from modalens.index.ann import FaissIVFSearch
    from modalens.index.search import ExactSearch

MAX_K = 10_000
_SQL_CHUNK = 900  # stays under SQLite's bound-parameter limit on old builds


class IndexStoreError(RuntimeError):
    """Base class for index files that cannot be used as asked."""


class IndexNotFoundError(IndexStoreError, NotFoundError, FileNotFoundError):
    """No index where one was expected; the message says how to build one."""


class IndexMismatchError(IndexStoreError, ConflictError):
    """The index was built with another model or dimension than the caller uses."""


def check_index_model(where: object, stored: str, model: str, stored_dim: int, dim: int | None) -> None:
    """Refuse a caller whose model (identity ``name@digest``) or vector size is not the index's: one message for
    every store, naming the ``--model`` that would work."""
    if stored != model:
        raise IndexMismatchError(
            f"index at {where} was built with model {stored!r}, not {model!r}; "
            f"use --model {stored.rsplit('@', 1)[0]} or index with {model.rsplit('@', 1)[0]} into a new directory"
        )
    if dim is not None and stored_dim != dim:
        raise IndexMismatchError(f"index at {where} holds {stored_dim}-dim vectors, not {dim}-dim ones (model {stored!r})")


@dataclass(frozen=True)
class Hit:
    """One search result: cosine ``score`` in [-1, 1] (hybrid search: the fused score), higher is closer."""

    id: str
    score: float
    product: Product


def _chunks(items: Sequence[Any], size: int = _SQL_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _validate_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return int(k)


class IndexState:
    """The state the index's parts share (``CatalogIndex.__init__`` sets it), and the lookups all of them use."""

    db_path: Path
    path: Path
    _db: sqlite3.Connection | None
    _meta: dict[str, str]
    _dim: int
    _backend: str  # auto | exact | faiss (modalens.index.vectors.BACKENDS)
    _fts: bool  # the database has its FTS5 keyword table
    _searcher: ExactSearch | FaissIVFSearch | None
    _generation: int  # the generation ``_searcher`` reflects
    _columns: dict[str, np.ndarray]  # filter columns in the searcher's row order (modalens.index.filters)
    _write_gen: int  # generation of the write transaction in progress
    _ann_dirty: bool  # the in-memory ANN structure should be written to its cache file
    _skip_ann_cache: bool  # compact(): build from SQLite even if the cache file is current
    _warned_no_faiss: bool

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise IndexStoreError(f"index at {self.path} is closed")
        return self._db

    @property
    def model(self) -> str:
        return str(self._meta["model"])

    def _products_by_id(self, ids: set[str]) -> dict[str, Product]:
        return self._records_by_id("products", ids)

    def _records_by_id(self, table: str, ids: set[str]) -> dict[str, Product]:
        """The stored records of ``ids`` from ``table`` (``products`` or ``scenes``: both keep id and json)."""
        found: dict[str, Product] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for rid, text in self._conn.execute(f"SELECT id, json FROM {table} WHERE id IN ({marks})", chunk):
                found[rid] = Product.from_dict(json.loads(text))
        return found
