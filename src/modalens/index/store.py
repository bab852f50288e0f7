"""The embedded on-disk catalogue index: products, their vectors and failures in one SQLite file.

One file (``index.sqlite`` inside an index directory) is easy to copy, back up
and delete, and SQLite's WAL journal with ``synchronous=FULL`` makes every
``add()`` an all-or-nothing transaction: a build killed at any moment leaves
the index exactly at its last committed batch, still fully usable, and the
next build resumes from there.

Search runs on one of two back-ends over the same row-mask contract: exact
(:class:`modalens.index.search.ExactSearch`, the default below
``ANN_THRESHOLD`` vectors) or approximate (:class:`modalens.index.ann.FaissIVFSearch`,
faiss IVF-Flat, above it when ``faiss-cpu`` is installed). SQLite stays the
source of truth: every vector row carries the ``generation`` of the
transaction that wrote it and deletions are logged with theirs, so the ANN
structure (kept in memory and in a derived cache file next to the database)
is caught up with only what changed, and rebuilt from SQLite whenever its
cache file is missing, stale beyond the log, corrupt, or from another index.
Titles and attributes are also indexed for BM25 keyword search (SQLite FTS5),
updated in the same transactions, for hybrid ranking.

This module is the face: :class:`CatalogIndex` opens and reads the index and
runs a search across the parts, each job in its own module:

- :mod:`modalens.index.schema`: the tables, opening the file, migration;
- :mod:`modalens.index.writes`: add, record failures, delete (one transaction each);
- :mod:`modalens.index.filters`: ``where`` as a row mask (and as SQL);
- :mod:`modalens.index.keyword`: BM25 keyword search and hybrid ranking;
- :mod:`modalens.index.vectors`: the exact / faiss back-end and its life-cycle;
- :mod:`modalens.index.scenes`: scene photos' instance embeddings beside the products, best-instance search;
- :mod:`modalens.index.base`: errors, :class:`Hit`, and the state they share.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from modalens.catalog.schema import Product
from modalens.index.ann import FaissIVFSearch
from modalens.index.base import (  # errors, Hit, MAX_K and ANN_FILE/BACKENDS below: re-exported, as before the split
    MAX_K,
    Hit,
    IndexMismatchError,
    IndexNotFoundError,
    IndexStoreError,
    _chunks,
    _validate_k,
    check_index_model,
)
from modalens.index.filters import FiltersMixin
from modalens.index.keyword import KeywordMixin, _validate_hybrid
from modalens.index.schema import FORMAT_VERSION, INDEX_FILE, _connect, _has_table, _initialise, _locate, _migrate
from modalens.index.scenes import SceneHit, SceneInstances, ScenesMixin
from modalens.index.search import ExactSearch, normalise_rows
from modalens.index.vectors import ANN_FILE, ANN_THRESHOLD, BACKENDS, VectorsMixin, _validate_backend
from modalens.index.writes import WritesMixin


class CatalogIndex(WritesMixin, VectorsMixin, FiltersMixin, KeywordMixin, ScenesMixin):
    """Products + L2-normalised float32 vectors + embedding failures, in one SQLite file.

    Open with :meth:`create` or :meth:`open`; use as a context manager or call
    :meth:`close`. Writes are single transactions; reads see the latest commit,
    including commits by another process (the search matrix reloads when the
    ``generation`` counter in ``meta`` moved).

    The methods come from one mixin per job (see the module docstring):
    writes (:meth:`add`, :meth:`record_failures`, :meth:`delete`), the vector
    back-end (:meth:`sync`, :meth:`compact`, :attr:`search_backend`), filters,
    and keyword search (:meth:`keyword_search`); opening, reading and
    :meth:`search` are here.
    """

    def __init__(self, db_path: Path, conn: sqlite3.Connection, *, backend: str | None = None) -> None:
        """Use :meth:`create` or :meth:`open`; this only wires an open connection."""
        self.db_path = db_path
        self.path = db_path.parent
        self._db: sqlite3.Connection | None = conn
        self._meta = self._read_meta()
        self._dim = int(self._meta["dim"])
        self._backend = _validate_backend(backend or self._meta.get("backend", "auto"))
        self._fts = _has_table(conn, "products_fts")
        self._searcher: ExactSearch | FaissIVFSearch | None = None
        self._generation = -1
        self._columns: dict[str, np.ndarray] = {}
        self._write_gen = -1  # generation of the write transaction in progress
        self._ann_dirty = False  # the in-memory ANN structure should be written to its cache file
        self._skip_ann_cache = False  # compact(): build from SQLite even if the cache file is current
        self._warned_no_faiss = False
        self._scene_matrix = None  # scene instances in memory (modalens.index.scenes), loaded by the first scene search
        self._scene_generation = -1

    # ----------------------------------------------------------------- opening

    @classmethod
    def create(
        cls, path: str | Path, *, model: str, dim: int, exist_ok: bool = True, backend: str | None = None
    ) -> CatalogIndex:
        """Create an index directory (or open it when it exists and ``exist_ok``).

        ``model`` and ``dim`` are fixed at creation: an existing index built with
        another model or dimension raises :class:`IndexMismatchError` instead of
        mixing incomparable vectors. ``backend`` (``auto``, ``exact`` or ``faiss``;
        see :data:`BACKENDS`) is stored in meta; a new index defaults to ``auto``,
        an existing one keeps its own unless a backend is given.
        """
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a non-empty string")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if backend is not None:
            _validate_backend(backend)
        directory = Path(path)
        db_path = directory / INDEX_FILE
        if db_path.exists() and not exist_ok:
            raise FileExistsError(f"an index already exists at {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        conn = _connect(db_path, create=True)
        try:
            _initialise(conn, model=model, dim=dim)
            _migrate(conn, db_path)
            index = cls(db_path, conn)
            index._check(model=model, dim=dim)
            if backend is not None and backend != index._meta.get("backend"):
                index._set_meta("backend", backend)
                index._backend = backend
        except BaseException:
            conn.close()
            raise
        return index

    @classmethod
    def open(cls, path: str | Path, *, model: str | None = None, backend: str | None = None) -> CatalogIndex:
        """Open an existing index; with ``model``, refuse one built with another model.

        ``backend`` overrides the stored one for this handle only (e.g. ``exact``
        to compare, or ``faiss`` to force the ANN path on a small index).
        """
        db_path = _locate(Path(path))
        conn = _connect(db_path, create=False)
        try:
            _migrate(conn, db_path)
            index = cls(db_path, conn, backend=backend)
            if model is not None:
                index._check(model=model)
        except BaseException:
            conn.close()
            raise
        return index

    def _check(self, *, model: str, dim: int | None = None) -> None:
        check_index_model(self.path, self._meta["model"], model, self._dim, dim)

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._db is not None:
            self._db.close()
            self._db = None
            self._searcher = None
            self._scene_matrix = None
            self._columns = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else f"{len(self)} products"
        return f"CatalogIndex({str(self.path)!r}, model={self._meta['model']!r}, dim={self._dim}, {state})"

    # ------------------------------------------------------------- properties

    @property
    def meta(self) -> dict[str, Any]:
        """model, dim, dtype, created, modalens_version, format, generation, backend, uuid (read fresh)."""
        meta: dict[str, Any] = self._read_meta()
        meta["dim"] = int(meta["dim"])
        meta["format"] = int(meta.get("format", FORMAT_VERSION))
        meta["generation"] = int(meta.get("generation", 0))
        meta["removed_floor"] = int(meta.get("removed_floor", 0))
        return meta

    @property
    def backend(self) -> str:
        """The configured back-end: ``auto``, ``exact`` or ``faiss`` (see :data:`BACKENDS`)."""
        return self._backend

    @property
    def dim(self) -> int:
        return self._dim

    def _set_meta(self, key: str, value: str) -> None:
        """Change a setting; not a content change, so ``generation`` stays."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._meta = self._read_meta()

    def _read_meta(self) -> dict[str, str]:
        try:
            rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexStoreError(f"{self.db_path} is not a modalens index ({exc})") from exc
        meta = dict(rows)
        if "model" not in meta or "dim" not in meta:
            raise IndexStoreError(f"{self.db_path} is not a modalens index (meta has no model/dim)")
        return meta

    # ----------------------------------------------------------------- reading

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM products").fetchone()[0])

    def __contains__(self, product_id: object) -> bool:
        row = self._conn.execute("SELECT 1 FROM products WHERE id = ?", (str(product_id),)).fetchone()
        return row is not None

    def ids(self) -> list[str]:
        """Indexed product ids in the order they were first added."""
        return [r[0] for r in self._conn.execute("SELECT id FROM products ORDER BY ord")]

    def get(self, product_id: str) -> Product:
        row = self._conn.execute("SELECT json FROM products WHERE id = ?", (str(product_id),)).fetchone()
        if row is None:
            raise KeyError(f"product {product_id!r} is not in the index at {self.path} ({len(self)} products)")
        return Product.from_dict(json.loads(row[0]))

    def content_keys(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        """id -> content key of the indexed products (all, or just ``ids``), so a builder can skip unchanged ones.

        Asking for ``ids`` keeps a one-product write from reading every key of a large index.
        """
        if ids is None:
            return dict(self._conn.execute("SELECT id, content_key FROM products"))
        keys: dict[str, str] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            keys.update(self._conn.execute(f"SELECT id, content_key FROM products WHERE id IN ({marks})", list(chunk)))
        return keys

    def attribute_counts(self, fields: Sequence[str]) -> dict[str, dict[str, int]]:
        """For each attribute field, how many indexed products have each value (for filter menus), in one query per field."""
        counts: dict[str, dict[str, int]] = {}
        for name in fields:
            if not isinstance(name, str) or not name or '"' in name:
                raise ValueError(f"attribute field {name!r} must be a non-empty string without quotes")
            rows = self._conn.execute(
                "SELECT json_extract(json, ?) AS v, COUNT(*) FROM products WHERE v IS NOT NULL GROUP BY v ORDER BY v",
                (f'$.attributes."{name}"',),
            )
            counts[name] = {str(value): int(n) for value, n in rows}
        return counts

    def attribute_values(self) -> dict[str, dict[str, int]]:
        """Every attribute name the products carry, with how many products have each value, in one pass
        (what a page builds its filter menus from, whatever columns the catalogue had)."""
        rows = self._conn.execute(
            "SELECT j.key, CAST(j.value AS TEXT), COUNT(*) FROM products p, json_each(p.json, '$.attributes') j "
            "WHERE j.value IS NOT NULL GROUP BY j.key, j.value"
        )
        counts: dict[str, dict[str, int]] = {}
        for name, value, n in rows:
            counts.setdefault(str(name), {})[str(value)] = int(n)
        return {name: dict(sorted(values.items())) for name, values in sorted(counts.items())}

    def price_range(self) -> tuple[float, float, int] | None:
        """(lowest, highest, products with a price), or None when no product has one."""
        low, high, n = self._conn.execute(
            "SELECT MIN(v), MAX(v), COUNT(v) FROM (SELECT json_extract(json, '$.price') AS v FROM products)"
        ).fetchone()
        return (float(low), float(high), int(n)) if n else None

    def failures(self) -> list[tuple[str, str]]:
        """(product id, reason) of products that could not be embedded, by id."""
        return [(r[0], r[1]) for r in self._conn.execute("SELECT id, reason FROM failures ORDER BY id")]

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        where: Mapping[str, str | list[str] | float] | None = None,
        text: str | Sequence[str] | None = None,
        hybrid_weight: float = 0.0,
    ) -> list[list[Hit]]:
        """Cosine top-k per query, best first (ties by id), optionally filtered and keyword-boosted.

        ``queries`` is (dim,) or (n, dim) and is normalised here; the result
        always has one list per query. ``where`` (see :meth:`_filter_mask`) is a
        mask applied inside the search, before ranking, so k results come back
        whenever k match. The back-end is exact below ``ANN_THRESHOLD`` vectors
        and faiss IVF-Flat above it (see :attr:`search_backend`).

        With ``text`` (one string, or one per query) and ``0 < hybrid_weight <= 1``
        the ranking is hybrid: candidates from both the vector search and BM25
        keyword search over titles and attributes (:meth:`keyword_search`) are
        scored ``(1 - w) * cosine + w * bm25 / best bm25 among the candidates``,
        and ``Hit.score`` is that fused score. ``hybrid_weight=0`` is plain vector search.
        """
        matrix = self._validate_queries(queries)
        k = _validate_k(k)
        texts = _validate_hybrid(text, hybrid_weight, matrix.shape[0])
        if texts is not None and not self._fts:
            raise IndexStoreError("hybrid search needs SQLite's FTS5, which this Python's sqlite3 lacks")
        conn = self._conn
        conn.execute("BEGIN")  # one read snapshot: vectors, products and keywords agree
        try:
            searcher = self._refresh()
            mask = self._filter_mask(where) if where is not None else None
            if texts is None:
                found = [
                    [(searcher.ids[row], score) for row, score in hits] for hits in searcher.search(matrix, k, mask)
                ]
            else:
                found = self._hybrid(searcher, matrix, k, mask, where, texts, float(hybrid_weight))
            products = self._products_by_id({pid for hits in found for pid, _ in hits})
        finally:
            conn.execute("COMMIT")
        self._persist_ann()
        return [[Hit(pid, score, products[pid]) for pid, score in hits] for hits in found]

    def _validate_queries(self, queries: np.ndarray) -> np.ndarray:
        matrix = np.asarray(queries, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[1] != self._dim or matrix.shape[0] == 0:
            raise ValueError(f"queries must have shape ({self._dim},) or (n, {self._dim}), got {np.shape(queries)}")
        if not np.isfinite(matrix).all():
            raise ValueError("queries contain NaN or infinite values")
        return normalise_rows(matrix, what="query")


__all__ = [
    "ANN_FILE",
    "ANN_THRESHOLD",
    "BACKENDS",
    "INDEX_FILE",
    "MAX_K",
    "CatalogIndex",
    "Hit",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexStoreError",
    "SceneHit",
    "SceneInstances",
]
