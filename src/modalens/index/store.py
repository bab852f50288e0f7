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
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import sqlite3
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Self

import numpy as np

from modalens.catalog.schema import Product
from modalens.errors import ConflictError, NotFoundError
from modalens.index.ann import AnnCacheError, FaissIVFSearch, faiss_available
from modalens.index.search import ExactSearch, normalise_rows

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite"
#: The derived ANN cache file next to the database (safe to delete: it is rebuilt from SQLite).
ANN_FILE = "ann-faiss.bin"
FORMAT_VERSION = 2
MAX_K = 10_000
#: ``backend`` values: ``auto`` picks exact below ANN_THRESHOLD vectors and faiss IVF-Flat from there on.
BACKENDS = ("auto", "exact", "faiss")
ANN_THRESHOLD = 20_000
#: The ANN cache file is rewritten once this share of its rows changed since it was written (catching up is cheap).
ANN_SAVE_FRACTION = 0.05
#: The deletion log is pruned (up to the generation of a freshly written cache) past this many entries.
REMOVED_LOG_LIMIT = 100_000
#: Candidates each side (vector, keyword) contributes to hybrid ranking, at least k.
HYBRID_CANDIDATES = 100
#: Filter keys with a fixed meaning; any other key filters on ``Product.attributes``.
PRICE_KEYS = ("price_min", "price_max")
_SQL_CHUNK = 900  # stays under SQLite's bound-parameter limit on old builds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, json TEXT NOT NULL, content_key TEXT NOT NULL, ord INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (id TEXT PRIMARY KEY, vec BLOB NOT NULL, gen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failures (id TEXT PRIMARY KEY, reason TEXT NOT NULL, time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS products_ord ON products(ord);
"""
#: Format 2: the generation that wrote each vector, a log of deleted ids, keyword (FTS5) rows keyed by ``ord``.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS removed (id TEXT PRIMARY KEY, gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS vectors_gen ON vectors(gen);
CREATE INDEX IF NOT EXISTS removed_gen ON removed(gen);
"""
_FTS_SCHEMA = "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2')"


class IndexStoreError(RuntimeError):
    """Base class for index files that cannot be used as asked."""


class IndexNotFoundError(IndexStoreError, NotFoundError, FileNotFoundError):
    """No index where one was expected; the message says how to build one."""


class IndexMismatchError(IndexStoreError, ConflictError):
    """The index was built with another model or dimension than the caller uses."""


@dataclass(frozen=True)
class Hit:
    """One search result: cosine ``score`` in [-1, 1] (hybrid search: the fused score), higher is closer."""

    id: str
    score: float
    product: Product


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _modalens_version() -> str:
    """Recorded in meta so an index can be traced to the code that wrote it."""
    try:
        return version("modalens")
    except PackageNotFoundError:  # not installed (e.g. run from a source tree)
        return "unknown"


def _chunks(items: Sequence[Any], size: int = _SQL_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CatalogIndex:
    """Products + L2-normalised float32 vectors + embedding failures, in one SQLite file.

    Open with :meth:`create` or :meth:`open`; use as a context manager or call
    :meth:`close`. Writes are single transactions; reads see the latest commit,
    including commits by another process (the search matrix reloads when the
    ``generation`` counter in ``meta`` moved).
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
        stored = self._meta["model"]
        if stored != model:
            raise IndexMismatchError(
                f"index at {self.path} was built with model {stored!r}, not {model!r}; "
                f"use {stored!r} or rebuild the index with {model!r} in a new directory"
            )
        if dim is not None and self._dim != dim:
            raise IndexMismatchError(
                f"index at {self.path} holds {self._dim}-dim vectors, not {dim}-dim ones (model {stored!r})"
            )

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._db is not None:
            self._db.close()
            self._db = None
            self._searcher = None
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
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise IndexStoreError(f"index at {self.path} is closed")
        return self._db

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
    def search_backend(self) -> str:
        """The back-end a search runs on now: ``exact`` or ``faiss-ivf`` (brings it up to date first)."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            kind = self._refresh().kind
        finally:
            conn.execute("COMMIT")
        self._persist_ann()
        return kind

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self) -> str:
        return str(self._meta["model"])

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

    # ----------------------------------------------------------------- writing

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction that also bumps ``generation``: all of it commits or none.

        ``self._write_gen`` is the generation this transaction commits as; rows
        it writes are tagged with it, which is what lets a reader catch up.
        """
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
            self._write_gen = int(current) + 1
            yield conn
            conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(self._write_gen),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def add(self, products: Sequence[Product], vectors: np.ndarray, content_keys: Sequence[str]) -> None:
        """Insert or replace ``products`` with their vectors, in one transaction.

        Everything is validated (shape, finite values, non-zero rows, unique ids)
        before anything is written, so a bad batch leaves the index untouched.
        A replaced product keeps its original row order.
        """
        matrix = self._validate_add(products, vectors, content_keys)
        if not products:
            return
        with self._transaction() as conn:
            self._write_batch(conn, products, matrix, content_keys)

    def _validate_add(
        self, products: Sequence[Product], vectors: np.ndarray, content_keys: Sequence[str]
    ) -> np.ndarray:
        matrix = np.asarray(vectors)
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            raise ValueError(f"vectors must have shape (n, {self._dim}), got {matrix.shape}")
        if not (len(products) == matrix.shape[0] == len(content_keys)):
            raise ValueError(
                f"{len(products)} products, {matrix.shape[0]} vectors and {len(content_keys)} content keys; "
                "they must be equal"
            )
        if not all(isinstance(p, Product) for p in products):
            raise TypeError("products must be modalens Product objects")
        ids = [p.id for p in products]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate product ids in one add(): {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
        if not all(isinstance(key, str) and key for key in content_keys):
            raise ValueError("content keys must be non-empty strings")
        finite = np.isfinite(matrix.astype(np.float64)).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"vector for product {ids[bad]!r} has NaN or infinite values; nothing was written")
        return normalise_rows(matrix, what="vector")

    def _write_batch(
        self, conn: sqlite3.Connection, products: Sequence[Product], matrix: np.ndarray, content_keys: Sequence[str]
    ) -> None:
        """The inserts of one ``add()``; runs inside its transaction."""
        next_ord = conn.execute("SELECT COALESCE(MAX(ord), -1) + 1 FROM products").fetchone()[0]
        blob = matrix.astype("<f4")
        conn.executemany(
            "INSERT INTO products (id, json, content_key, ord) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET json = excluded.json, content_key = excluded.content_key",
            [
                (p.id, json.dumps(p.to_dict(), ensure_ascii=False, default=str), key, next_ord + i)
                for i, (p, key) in enumerate(zip(products, content_keys))
            ],
        )
        conn.executemany(
            "INSERT INTO vectors (id, vec, gen) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET vec = excluded.vec, gen = excluded.gen",
            [(p.id, blob[i].tobytes(), self._write_gen) for i, p in enumerate(products)],
        )
        conn.executemany("DELETE FROM failures WHERE id = ?", [(p.id,) for p in products])
        conn.executemany("DELETE FROM removed WHERE id = ?", [(p.id,) for p in products])
        if self._fts:
            conn.executemany(
                "INSERT OR REPLACE INTO products_fts (rowid, text) SELECT ord, ? FROM products WHERE id = ?",
                [(_keyword_text(p), p.id) for p in products],
            )

    def record_failures(self, failures: Iterable[tuple[str, str]]) -> None:
        """Remember products that could not be embedded (replacing an older reason), in one transaction.

        An already-indexed product keeps its previous vector: a failed re-embed
        should not make it vanish from search.
        """
        rows = [(str(pid), str(reason), _now()) for pid, reason in failures]
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO failures (id, reason, time) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET reason = excluded.reason, time = excluded.time",
                rows,
            )

    def delete(self, ids: Iterable[str]) -> int:
        """Remove products (and their vectors and failure records); returns how many were indexed."""
        keys = [(str(i),) for i in ids]
        if not keys:
            return 0
        with self._transaction() as conn:
            if self._fts:
                conn.executemany("DELETE FROM products_fts WHERE rowid IN (SELECT ord FROM products WHERE id = ?)", keys)
            conn.executemany(  # the deletion log a reader catches up from
                "INSERT INTO removed (id, gen) SELECT id, ? FROM vectors WHERE id = ? "
                "ON CONFLICT(id) DO UPDATE SET gen = excluded.gen",
                [(self._write_gen, key) for (key,) in keys],
            )
            before = conn.total_changes
            conn.executemany("DELETE FROM products WHERE id = ?", keys)
            removed = conn.total_changes - before
            conn.executemany("DELETE FROM vectors WHERE id = ?", keys)
            conn.executemany("DELETE FROM failures WHERE id = ?", keys)
        return removed

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

    def keyword_search(
        self, text: str, k: int = 10, *, where: Mapping[str, str | list[str] | float] | None = None
    ) -> list[Hit]:
        """BM25 keyword search over each product's id, title and attribute values (SQLite FTS5), best first.

        Any word of ``text`` may match (OR); ``Hit.score`` is the BM25 score
        (k1 = 1.2, b = 0.75, higher is better). ``where`` filters as in :meth:`search`.
        """
        k = _validate_k(k)
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        if not self._fts:
            raise IndexStoreError("keyword search needs SQLite's FTS5, which this Python's sqlite3 lacks")
        conn = self._conn
        conn.execute("BEGIN")
        try:
            found = self._keyword_matches(text, k, where)
            products = self._products_by_id({pid for pid, _ in found})
        finally:
            conn.execute("COMMIT")
        return [Hit(pid, score, products[pid]) for pid, score in found]

    def sync(self) -> str:
        """Bring the search back-end up to date with the store and write the ANN cache file if it is behind.

        Returns the back-end (``exact`` or ``faiss-ivf``). An exact index is
        left alone (its matrix loads on the first search); an ANN one is caught
        up or built now, so the first search after a build does not pay for it.
        The cache file is rewritten only when enough changed (``_save_due``): a
        one-product write must not cost a rewrite of a 100k-vector file, and a
        cache that is behind is caught up from SQLite on the next open anyway.
        """
        conn = self._conn
        conn.execute("BEGIN")
        try:
            if not self._use_ann(self._vector_count()):
                return "exact"
            searcher = self._refresh()  # marks the cache file due only when enough changed (_save_due)
        finally:
            conn.execute("COMMIT")
        self._persist_ann()
        return searcher.kind

    def compact(self) -> str:
        """Rebuild the ANN structure from SQLite (retraining its lists) and rewrite its cache file.

        Not needed for correctness: deletions are removed from the lists at once
        and rows are reused, and a rebuild happens by itself when the index grew
        or shrank fourfold since the lists were trained. Returns the back-end.
        """
        self._searcher, self._generation, self._columns = None, -1, {}
        self._skip_ann_cache = True
        try:
            return self.sync()
        finally:
            self._skip_ann_cache = False

    def _validate_queries(self, queries: np.ndarray) -> np.ndarray:
        matrix = np.asarray(queries, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[1] != self._dim or matrix.shape[0] == 0:
            raise ValueError(f"queries must have shape ({self._dim},) or (n, {self._dim}), got {np.shape(queries)}")
        if not np.isfinite(matrix).all():
            raise ValueError("queries contain NaN or infinite values")
        return normalise_rows(matrix, what="query")

    def _products_by_id(self, ids: set[str]) -> dict[str, Product]:
        found: dict[str, Product] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for pid, text in self._conn.execute(f"SELECT id, json FROM products WHERE id IN ({marks})", chunk):
                found[pid] = Product.from_dict(json.loads(text))
        return found

    # --------------------------------------------------------------- back-ends

    def _generation_now(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def _vector_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def _use_ann(self, n_vectors: int) -> bool:
        if self._backend == "exact" or (self._backend == "auto" and n_vectors < ANN_THRESHOLD):
            return False
        if faiss_available():
            return True
        if not self._warned_no_faiss:
            self._warned_no_faiss = True
            warnings.warn(
                f"index at {self.path} would search with faiss (backend {self._backend!r}, {n_vectors} vectors) but "
                "faiss-cpu is not installed (pip install 'modalens[ann]'); searching exactly",
                RuntimeWarning,
                stacklevel=3,
            )
        return False

    def _refresh(self) -> ExactSearch | FaissIVFSearch:
        """The search structure at the current generation; call inside a read transaction.

        Exact: the matrix, reloaded whole when another write bumped ``generation``.
        ANN: caught up from SQLite with only the rows written (and ids deleted)
        since the generation it reflects; see :meth:`_refresh_ann`.
        """
        generation = self._generation_now()
        if self._searcher is not None and generation == self._generation:
            return self._searcher
        n_vectors = self._vector_count()
        if self._use_ann(n_vectors):
            searcher: ExactSearch | FaissIVFSearch = self._refresh_ann(generation, n_vectors)
        else:
            rows = self._conn.execute("SELECT id, vec FROM vectors ORDER BY id").fetchall()
            ids = [r[0] for r in rows]
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            searcher = ExactSearch(ids, flat.reshape(len(ids), self._dim).astype(np.float32))
            self._columns = {}
        self._searcher, self._generation = searcher, generation
        return searcher

    def _refresh_ann(self, generation: int, n_vectors: int) -> FaissIVFSearch:
        """The in-memory ANN structure, else the cache file, caught up to ``generation``; else a rebuild.

        A cache file is used only when it is whole (checksum), belongs to this
        index (uuid, model, dim) and reflects a generation the deletion log can
        still catch up from; after catching up its size must equal the store's.
        Anything else rebuilds from SQLite, the source of truth.
        """
        current = self._searcher if isinstance(self._searcher, FaissIVFSearch) else None
        searcher = current
        if searcher is None:
            self._columns = {}
            searcher = None if self._skip_ann_cache else self._load_ann_cache()
        floor = int(self._read_meta().get("removed_floor", 0))
        if searcher is not None and not floor <= searcher.generation <= generation:
            log.warning(
                "ANN cache of %s reflects generation %d, which cannot be caught up to %d (log kept from %d); rebuilding",
                self.path, searcher.generation, generation, floor,
            )  # fmt: skip
            searcher = None
        if searcher is not None and searcher.generation < generation:
            self._catch_up(searcher, generation, update_columns=searcher is current)
        if searcher is not None and len(searcher) != n_vectors:
            log.warning("ANN cache of %s holds %d vectors, the index %d; rebuilding", self.path, len(searcher), n_vectors)
            searcher = None
        if searcher is not None and searcher.needs_rebuild():
            log.info("ANN index of %s grew or shrank fourfold since training; rebuilding", self.path)
            searcher = None
        if searcher is None:
            searcher = self._build_ann(generation, n_vectors)
            self._columns = {}
            self._ann_dirty = True
        elif _save_due(searcher):
            self._ann_dirty = True
        return searcher

    def _build_ann(self, generation: int, n_vectors: int) -> FaissIVFSearch:
        """Train and fill the ANN structure from every vector in SQLite (read in chunks, in id order)."""
        ids: list[str] = []
        matrix = np.empty((n_vectors, self._dim), dtype=np.float32)
        cursor = self._conn.execute("SELECT id, vec FROM vectors ORDER BY id")
        while rows := cursor.fetchmany(8192):
            start = len(ids)
            ids.extend(r[0] for r in rows)
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            matrix[start : len(ids)] = flat.reshape(len(rows), self._dim)
        searcher = FaissIVFSearch.build(ids, matrix[: len(ids)])
        searcher.generation = generation
        log.info("built the ANN index of %s: %d vectors, %d lists", self.path, len(ids), searcher.index.nlist)
        return searcher

    def _catch_up(self, searcher: FaissIVFSearch, generation: int, *, update_columns: bool) -> None:
        """Apply what changed in SQLite after ``searcher.generation``: deleted ids, then written vectors."""
        since = searcher.generation
        removed = [r[0] for r in self._conn.execute("SELECT id FROM removed WHERE gen > ?", (since,))]
        searcher.remove(removed)
        # No ORDER BY in SQL: with it SQLite scans every row by id instead of using the gen index.
        rows = sorted(self._conn.execute("SELECT id, vec FROM vectors WHERE gen > ?", (since,)).fetchall())
        if rows:
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            searcher.upsert([r[0] for r in rows], flat.reshape(len(rows), self._dim))
        if update_columns:
            for path in list(self._columns):
                changed = self._conn.execute(
                    "SELECT v.id, json_extract(p.json, ?) FROM vectors v JOIN products p ON p.id = v.id WHERE v.gen > ?",
                    (path, since),
                ).fetchall()
                column = _resize_column(self._columns[path], searcher.n_rows, path)
                values = _column_values(path, [r[1] for r in changed])
                if column.dtype.kind == "U" and values.dtype.itemsize > column.dtype.itemsize:
                    column = column.astype(values.dtype)
                column[searcher.rows_of([r[0] for r in changed])] = values
                self._columns[path] = column  # deleted rows keep stale values: the searcher masks dead rows
        else:
            self._columns = {}
        searcher.generation = generation

    def _ann_tag(self) -> dict[str, Any]:
        """What a cache file must match to be this index's: its identity, model and dimension."""
        return {"uuid": self._meta.get("uuid", ""), "model": self.model, "dim": self._dim}

    def _load_ann_cache(self) -> FaissIVFSearch | None:
        path = self.path / ANN_FILE
        if not path.exists():
            return None
        try:
            return FaissIVFSearch.load(path, tag=self._ann_tag())
        except AnnCacheError as exc:
            log.warning("ANN cache unusable, rebuilding it from the index: %s", exc)
            return None

    def _persist_ann(self) -> None:
        """Write the ANN cache file if due (outside any read transaction); a failure only costs a rebuild later."""
        searcher = self._searcher
        if not self._ann_dirty or not isinstance(searcher, FaissIVFSearch):
            return
        self._ann_dirty = False
        try:
            searcher.save(self.path / ANN_FILE, tag=self._ann_tag())
            self._prune_removed_log(searcher.generation)
        except (OSError, RuntimeError, sqlite3.OperationalError) as exc:  # a cache is never worth a failed search
            log.warning("could not write the ANN cache of %s (%s); it will be caught up or rebuilt later", self.path, exc)

    def _prune_removed_log(self, generation: int) -> None:
        """Forget deletions up to ``generation`` once the log is long; older caches then rebuild instead."""
        conn = self._conn
        if int(conn.execute("SELECT COUNT(*) FROM removed").fetchone()[0]) <= REMOVED_LOG_LIMIT:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM removed WHERE gen <= ?", (generation,))
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('removed_floor', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (str(generation),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ----------------------------------------------------------------- hybrid

    def _hybrid(
        self,
        searcher: ExactSearch | FaissIVFSearch,
        matrix: np.ndarray,
        k: int,
        mask: np.ndarray | None,
        where: Mapping[str, Any] | None,
        texts: list[str],
        weight: float,
    ) -> list[list[tuple[str, float]]]:
        """Fuse vector and BM25 candidates: (1 - w) * cosine + w * bm25 / best bm25, top k (ties by id)."""
        n_candidates = max(k, HYBRID_CANDIDATES)
        vector_hits = searcher.search(matrix, n_candidates, mask)
        found = []
        for query, hits, text in zip(matrix, vector_hits, texts):
            cosine = {searcher.ids[row]: score for row, score in hits}
            bm25 = dict(self._keyword_matches(text, n_candidates, where))
            missing = [pid for pid in bm25 if pid not in cosine]
            for pid, vec in self._vectors_by_id(missing).items():
                cosine[pid] = float(vec @ query)
            unscored = [pid for pid in cosine if pid not in bm25]
            bm25.update(self._keyword_scores(text, unscored))
            best = max(bm25.values(), default=0.0)
            fused = {
                pid: (1 - weight) * cos + (weight * bm25.get(pid, 0.0) / best if best > 0 else 0.0)
                for pid, cos in cosine.items()
            }
            found.append(sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))[:k])
        return found

    def _keyword_matches(self, text: str, limit: int, where: Mapping[str, Any] | None) -> list[tuple[str, float]]:
        """(id, bm25) of the best ``limit`` products matching any word of ``text``, filtered in SQL."""
        query = _fts_query(text)
        if query is None:
            return []
        clause, params = _filter_sql(where) if where is not None else ("", [])
        rows = self._conn.execute(
            "SELECT p.id, -bm25(products_fts) FROM products_fts JOIN products p ON p.ord = products_fts.rowid "
            f"WHERE products_fts MATCH ? {clause} ORDER BY bm25(products_fts), p.id LIMIT ?",
            [query, *params, limit],
        ).fetchall()
        return [(pid, float(score)) for pid, score in rows]

    def _keyword_scores(self, text: str, ids: Sequence[str]) -> dict[str, float]:
        """bm25 of the given products for ``text`` (those matching no word are left out)."""
        query = _fts_query(text)
        scores: dict[str, float] = {}
        if query is None:
            return scores
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT p.id, -bm25(products_fts) FROM products_fts JOIN products p ON p.ord = products_fts.rowid "
                f"WHERE products_fts MATCH ? AND p.id IN ({marks})",
                [query, *chunk],
            )
            scores.update((pid, float(score)) for pid, score in rows)
        return scores

    def _vectors_by_id(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for pid, blob in self._conn.execute(f"SELECT id, vec FROM vectors WHERE id IN ({marks})", chunk):
                found[pid] = np.frombuffer(blob, dtype="<f4").astype(np.float64)
        return found

    # ----------------------------------------------------------------- filters

    def _filter_mask(self, where: Mapping[str, Any]) -> np.ndarray:
        """Boolean row mask for ``where``: every key must match (AND), a list means any of (OR).

        Keys: ``split``, ``price_min``/``price_max`` (inclusive; products without a
        price never match) and any attribute name. An attribute no product has
        simply matches nothing; malformed values raise ValueError.
        """
        if not isinstance(where, Mapping):
            raise ValueError(f"where must be a dict of field -> value(s), got {type(where).__name__}")  # noqa: TRY004
        searcher = self._searcher
        mask = np.ones(0 if searcher is None else searcher.n_rows, dtype=bool)
        for key, value in where.items():
            _check_filter_key(key)
            if key in PRICE_KEYS:
                mask &= self._price_mask(key, value)
            else:
                mask &= np.isin(self._column(_json_path(key)), _filter_values(key, value))
        return mask

    def _price_mask(self, key: str, value: Any) -> np.ndarray:
        _check_price(key, value)
        prices = self._column("$.price")
        with np.errstate(invalid="ignore"):
            return prices >= value if key == "price_min" else prices <= value

    def _column(self, json_path: str) -> np.ndarray:
        """One JSON field of every indexed product, in the searcher's row order; cached until the rows change.

        Missing values become NaN for price and '' otherwise (stored attributes are never empty).
        """
        if json_path not in self._columns:
            rows = self._conn.execute(
                "SELECT v.id, json_extract(p.json, ?) FROM vectors v JOIN products p ON p.id = v.id ORDER BY v.id",
                (json_path,),
            ).fetchall()
            values = _column_values(json_path, [r[1] for r in rows])
            searcher = self._searcher
            if isinstance(searcher, FaissIVFSearch):  # rows are slots, not id order
                column = _resize_column(_column_values(json_path, []), searcher.n_rows, json_path)
                if values.dtype.kind == "U" and values.dtype.itemsize > column.dtype.itemsize:
                    column = column.astype(values.dtype)
                column[searcher.rows_of([r[0] for r in rows])] = values
            else:  # ExactSearch rows are the vectors in id order, as selected here
                column = values
            self._columns[json_path] = column
        return self._columns[json_path]


def _json_path(key: str) -> str:
    return "$.split" if key == "split" else f'$.attributes."{key}"'


def _check_filter_key(key: Any) -> None:
    if not isinstance(key, str) or not key or '"' in key:
        raise ValueError(f"filter field {key!r} must be a non-empty string without quotes")


def _check_price(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"filter {key} must be a finite number, got {value!r}")


def _column_values(json_path: str, raw: Sequence[Any]) -> np.ndarray:
    if json_path == "$.price":
        return np.array([np.nan if r is None else float(r) for r in raw], dtype=np.float64)
    return np.array(["" if r is None else str(r) for r in raw], dtype=str)


def _resize_column(column: np.ndarray, n_rows: int, json_path: str) -> np.ndarray:
    """The column padded (NaN / '') or cut to ``n_rows``."""
    if len(column) >= n_rows:
        return column[:n_rows].copy()
    pad = np.full(n_rows - len(column), np.nan if json_path == "$.price" else "", dtype=column.dtype)
    return np.concatenate([column, pad])


def _filter_sql(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``where`` as an SQL condition on ``products p``, with the same meaning as the row mask."""
    if not isinstance(where, Mapping):
        raise ValueError(f"where must be a dict of field -> value(s), got {type(where).__name__}")  # noqa: TRY004
    clauses, params = [], []
    for key, value in where.items():
        _check_filter_key(key)
        if key in PRICE_KEYS:
            _check_price(key, value)
            clauses.append(f"json_extract(p.json, '$.price') {'>=' if key == 'price_min' else '<='} ?")
            params.append(value)
        else:
            values = _filter_values(key, value)
            clauses.append(f"CAST(json_extract(p.json, ?) AS TEXT) IN ({','.join('?' * len(values))})")
            params += [_json_path(key), *values]
    return "".join(f" AND {c}" for c in clauses), params


_WORD = re.compile(r"\w+", re.UNICODE)


def _keyword_text(product: Product) -> str:
    """What keyword search matches: the id, the title and the attribute values."""
    parts = [product.id, product.title or "", *(str(v) for v in product.attributes.values())]
    return " ".join(part for part in parts if part)


def _fts_query(text: str) -> str | None:
    """Any word of ``text`` (OR), each quoted so no user input is read as FTS5 syntax."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    return " OR ".join(f'"{w}"' for w in words) or None


def _validate_hybrid(text: Any, weight: Any, n_queries: int) -> list[str] | None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ValueError(f"hybrid_weight must be a number from 0 to 1, got {weight!r}")
    if text is None:
        if weight > 0:
            raise ValueError("hybrid_weight > 0 needs text to match")
        return None
    texts = [text] * n_queries if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
    if texts is None or len(texts) != n_queries or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"text must be a string or {n_queries} strings (one per query)")
    return texts if weight > 0 else None


def _validate_backend(backend: Any) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return str(backend)


def _save_due(searcher: FaissIVFSearch) -> bool:
    """Rewrite the ANN cache file once the rows changed since the last save are many (1,000 or a share of the index)."""
    return searcher.unsaved > max(1000, ANN_SAVE_FRACTION * len(searcher))


def _filter_values(key: str, value: Any) -> list[str]:
    """A filter's accepted values as stripped strings (stored attributes are stripped too)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not values:
        raise ValueError(f"filter {key!r} must be a string or a non-empty list of strings, got {value!r}")
    cleaned = []
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"filter {key!r} has a value {item!r} that is not a non-empty string")
        cleaned.append(item.strip())
    return cleaned


def _validate_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return int(k)


# ------------------------------------------------------------------ connection


def _locate(path: Path) -> Path:
    """The database file for an index directory (or the file itself), or a helpful error."""
    db_path = path if path.suffix == ".sqlite" else path / INDEX_FILE
    if not db_path.is_file():
        where = "directory does not exist" if not db_path.parent.exists() else f"no {INDEX_FILE} in it"
        raise IndexNotFoundError(
            f"no modalens index at {path} ({where}); build one first with `modalens index CATALOGUE`"
        )
    return db_path


def _connect(db_path: Path, *, create: bool) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit) in WAL mode with full fsync."""
    mode = "rwc" if create else "rw"
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None, timeout=30.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise IndexStoreError(f"{db_path} is not a modalens index ({exc})") from exc
    return conn


def _initialise(conn: sqlite3.Connection, *, model: str, dim: int) -> None:
    """Tables and meta in one transaction, so a killed create leaves no half-made index.

    Existing meta is kept untouched (the caller then checks model and dim).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        meta = {
            "model": model,
            "dim": str(dim),
            "dtype": "float32",
            "created": _now(),
            "modalens_version": _modalens_version(),
            "format": str(FORMAT_VERSION),
            "generation": "0",
        }
        conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


@functools.cache
def _fts5_available() -> bool:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        try:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
        except sqlite3.OperationalError:
            return False
    return True


def _migrate(conn: sqlite3.Connection, db_path: Path) -> None:
    """Bring an index to format 2 in one transaction (a no-op, without a write lock, when it is there).

    Format 2 adds the generation column on vectors, the deletion log, the
    keyword table (filled from the stored products) and meta uuid/backend.
    A file without modalens tables is left for the meta check to reject.
    """

    def needed() -> bool:
        if not (_has_table(conn, "meta") and _has_table(conn, "vectors")):
            return False
        columns = {r[1] for r in conn.execute("PRAGMA table_info(vectors)")}
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return (
            "gen" not in columns
            or not _has_table(conn, "removed")
            or (_fts5_available() and not _has_table(conn, "products_fts"))
            or meta.get("format") != str(FORMAT_VERSION)
            or not {"uuid", "backend", "removed_floor"} <= meta.keys()
        )

    try:
        if not needed():
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if needed():  # another process may have migrated meanwhile
                if "gen" not in {r[1] for r in conn.execute("PRAGMA table_info(vectors)")}:
                    conn.execute("ALTER TABLE vectors ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
                for statement in filter(str.strip, _SCHEMA_V2.split(";")):
                    conn.execute(statement)
                if _fts5_available() and not _has_table(conn, "products_fts"):
                    conn.execute(_FTS_SCHEMA)
                    rows = conn.execute("SELECT ord, json FROM products").fetchall()
                    conn.executemany(
                        "INSERT INTO products_fts (rowid, text) VALUES (?, ?)",
                        [(ord_, _keyword_text(Product.from_dict(json.loads(text)))) for ord_, text in rows],
                    )
                defaults = {"uuid": uuid.uuid4().hex, "backend": "auto", "removed_floor": "0"}
                conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items())
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('format', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(FORMAT_VERSION),),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise IndexStoreError(f"{db_path} is not a usable modalens index ({exc})") from exc


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
]
