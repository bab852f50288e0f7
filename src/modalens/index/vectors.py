"""The vector search back-end and its life-cycle: exact below a size, faiss IVF-Flat above, kept in step with SQLite.

SQLite stays the source of truth. Every vector row carries the
``generation`` of the transaction that wrote it and deletions are logged with
theirs, so the ANN structure (in memory, and in a derived cache file next to
the database) is caught up with only what changed, and rebuilt from SQLite
whenever its cache file is missing, stale beyond the log, corrupt, or from
another index. The filter columns (:mod:`modalens.index.filters`) follow the
structure's rows and are caught up with it.
"""

from __future__ import annotations

import logging
import sqlite3
import warnings
from typing import Any

import numpy as np

from modalens.index.ann import AnnCacheError, FaissIVFSearch, faiss_available
from modalens.index.base import IndexState
from modalens.index.filters import _column_values, _resize_column
from modalens.index.search import ExactSearch

log = logging.getLogger(__name__)

#: The derived ANN cache file next to the database (safe to delete: it is rebuilt from SQLite).
ANN_FILE = "ann-faiss.bin"
#: ``backend`` values: ``auto`` picks exact below ANN_THRESHOLD vectors and faiss IVF-Flat from there on.
BACKENDS = ("auto", "exact", "faiss")
ANN_THRESHOLD = 20_000
#: The ANN cache file is rewritten once this share of its rows changed since it was written (catching up is cheap).
ANN_SAVE_FRACTION = 0.05
#: The deletion log is pruned (up to the generation of a freshly written cache) past this many entries.
REMOVED_LOG_LIMIT = 100_000


class VectorsMixin(IndexState):
    """Which structure answers vector searches, and keeping it (and its cache file) current."""

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


def _validate_backend(backend: Any) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return str(backend)


def _save_due(searcher: FaissIVFSearch) -> bool:
    """Rewrite the ANN cache file once the rows changed since the last save are many (1,000 or a share of the index)."""
    return searcher.unsaved > max(1000, ANN_SAVE_FRACTION * len(searcher))

