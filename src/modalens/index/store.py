"""The embedded on-disk catalogue index: products, their vectors and failures in one SQLite file.

One file (``index.sqlite`` inside an index directory) is easy to copy, back up
and delete, and SQLite's WAL journal with ``synchronous=FULL`` makes every
``add()`` an all-or-nothing transaction: a build killed at any moment leaves
the index exactly at its last committed batch, still fully usable, and the
next build resumes from there. Vector search lives in
:class:`modalens.index.search.ExactSearch` so an ANN library can replace it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Self

import numpy as np

from modalens.catalog.schema import Product
from modalens.index.search import ExactSearch, normalise_rows

INDEX_FILE = "index.sqlite"
FORMAT_VERSION = 1
MAX_K = 10_000
#: Filter keys with a fixed meaning; any other key filters on ``Product.attributes``.
PRICE_KEYS = ("price_min", "price_max")
_SQL_CHUNK = 900  # stays under SQLite's bound-parameter limit on old builds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, json TEXT NOT NULL, content_key TEXT NOT NULL, ord INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (id TEXT PRIMARY KEY, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS failures (id TEXT PRIMARY KEY, reason TEXT NOT NULL, time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS products_ord ON products(ord);
"""


class IndexStoreError(RuntimeError):
    """Base class for index files that cannot be used as asked."""


class IndexNotFoundError(IndexStoreError, FileNotFoundError):
    """No index where one was expected; the message says how to build one."""


class IndexMismatchError(IndexStoreError):
    """The index was built with another model or dimension than the caller uses."""


@dataclass(frozen=True)
class Hit:
    """One search result: cosine ``score`` in [-1, 1], higher is closer."""

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

    def __init__(self, db_path: Path, conn: sqlite3.Connection) -> None:
        """Use :meth:`create` or :meth:`open`; this only wires an open connection."""
        self.db_path = db_path
        self.path = db_path.parent
        self._db: sqlite3.Connection | None = conn
        self._meta = self._read_meta()
        self._dim = int(self._meta["dim"])
        self._searcher: ExactSearch | None = None
        self._generation = -1
        self._columns: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- opening

    @classmethod
    def create(cls, path: str | Path, *, model: str, dim: int, exist_ok: bool = True) -> CatalogIndex:
        """Create an index directory (or open it when it exists and ``exist_ok``).

        ``model`` and ``dim`` are fixed at creation: an existing index built with
        another model or dimension raises :class:`IndexMismatchError` instead of
        mixing incomparable vectors.
        """
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a non-empty string")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        directory = Path(path)
        db_path = directory / INDEX_FILE
        if db_path.exists() and not exist_ok:
            raise FileExistsError(f"an index already exists at {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        conn = _connect(db_path, create=True)
        try:
            _initialise(conn, model=model, dim=dim)
            index = cls(db_path, conn)
            index._check(model=model, dim=dim)
        except BaseException:
            conn.close()
            raise
        return index

    @classmethod
    def open(cls, path: str | Path, *, model: str | None = None) -> CatalogIndex:
        """Open an existing index; with ``model``, refuse one built with another model."""
        db_path = _locate(Path(path))
        conn = _connect(db_path, create=False)
        try:
            index = cls(db_path, conn)
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
        """model, dim, dtype, created, modalens_version, format, generation (read fresh)."""
        meta: dict[str, Any] = self._read_meta()
        meta["dim"] = int(meta["dim"])
        meta["format"] = int(meta.get("format", FORMAT_VERSION))
        meta["generation"] = int(meta.get("generation", 0))
        return meta

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self) -> str:
        return str(self._meta["model"])

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
        """One IMMEDIATE transaction that also bumps ``generation``: all of it commits or none."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
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
            "INSERT INTO vectors (id, vec) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET vec = excluded.vec",
            [(p.id, blob[i].tobytes()) for i, p in enumerate(products)],
        )
        conn.executemany("DELETE FROM failures WHERE id = ?", [(p.id,) for p in products])

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

    def content_keys(self) -> dict[str, str]:
        """id -> content key of every indexed product, so a builder can skip unchanged ones."""
        return dict(self._conn.execute("SELECT id, content_key FROM products"))

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
    ) -> list[list[Hit]]:
        """Exact cosine top-k per query, best first (ties by id), optionally filtered.

        ``queries`` is (dim,) or (n, dim) and is normalised here; the result
        always has one list per query. ``where`` (see :meth:`_filter_mask`) is a
        mask applied before ranking, so k results come back whenever k match.
        """
        matrix = self._validate_queries(queries)
        k = _validate_k(k)
        conn = self._conn
        conn.execute("BEGIN")  # one read snapshot: matrix and products agree
        try:
            searcher = self._refresh()
            mask = self._filter_mask(where) if where is not None else None
            found = searcher.search(matrix, k, mask)
            products = self._products_by_id({searcher.ids[row] for hits in found for row, _ in hits})
        finally:
            conn.execute("COMMIT")
        return [[Hit(searcher.ids[row], score, products[searcher.ids[row]]) for row, score in hits] for hits in found]

    def _validate_queries(self, queries: np.ndarray) -> np.ndarray:
        matrix = np.asarray(queries, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[1] != self._dim or matrix.shape[0] == 0:
            raise ValueError(f"queries must have shape ({self._dim},) or (n, {self._dim}), got {np.shape(queries)}")
        if not np.isfinite(matrix).all():
            raise ValueError("queries contain NaN or infinite values")
        return normalise_rows(matrix, what="query")

    def _refresh(self) -> ExactSearch:
        """The in-memory matrix, reloaded only when another write bumped ``generation``."""
        generation = int(self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        if self._searcher is None or generation != self._generation:
            rows = self._conn.execute("SELECT id, vec FROM vectors ORDER BY id").fetchall()
            ids = [r[0] for r in rows]
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            self._searcher = ExactSearch(ids, flat.reshape(len(ids), self._dim).astype(np.float32))
            self._columns = {}
            self._generation = generation
        return self._searcher

    def _products_by_id(self, ids: set[str]) -> dict[str, Product]:
        found: dict[str, Product] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for pid, text in self._conn.execute(f"SELECT id, json FROM products WHERE id IN ({marks})", chunk):
                found[pid] = Product.from_dict(json.loads(text))
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
        mask = np.ones(len(self._searcher or ()), dtype=bool)
        for key, value in where.items():
            if not isinstance(key, str) or not key or '"' in key:
                raise ValueError(f"filter field {key!r} must be a non-empty string without quotes")
            if key in PRICE_KEYS:
                mask &= self._price_mask(key, value)
            else:
                path = "$.split" if key == "split" else f'$.attributes."{key}"'
                mask &= np.isin(self._column(path), _filter_values(key, value))
        return mask

    def _price_mask(self, key: str, value: Any) -> np.ndarray:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"filter {key} must be a finite number, got {value!r}")
        prices = self._column("$.price")
        with np.errstate(invalid="ignore"):
            return prices >= value if key == "price_min" else prices <= value

    def _column(self, json_path: str) -> np.ndarray:
        """One JSON field of every indexed product, in matrix (id) order; cached until the next reload.

        Missing values become NaN for price and '' otherwise (stored attributes are never empty).
        """
        if json_path not in self._columns:
            rows = self._conn.execute(
                "SELECT json_extract(p.json, ?) FROM vectors v JOIN products p ON p.id = v.id ORDER BY v.id",
                (json_path,),
            ).fetchall()
            if json_path == "$.price":
                column = np.array([np.nan if r[0] is None else float(r[0]) for r in rows], dtype=np.float64)
            else:
                column = np.array(["" if r[0] is None else str(r[0]) for r in rows], dtype=str)
            self._columns[json_path] = column
        return self._columns[json_path]


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


__all__ = [
    "INDEX_FILE",
    "MAX_K",
    "CatalogIndex",
    "Hit",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexStoreError",
]
