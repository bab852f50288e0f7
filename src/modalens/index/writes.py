"""Writes: add, record failures, delete; each one SQLite transaction that bumps the index's ``generation``.

All of a write commits or none of it (WAL, ``synchronous=FULL``), so a build
killed at any moment leaves the index at its last committed batch. Every row
a write touches is tagged with the generation it commits as, and deletions
are logged with theirs: that is what lets a reader (the vector back-end in
:mod:`modalens.index.vectors`, or another process) catch up with only what changed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from modalens.catalog.schema import Product
from modalens.index.base import IndexState
from modalens.index.keyword import _keyword_text
from modalens.index.schema import _now
from modalens.index.search import normalise_rows


class WritesMixin(IndexState):
    """Validated, all-or-nothing writes of products, vectors, keyword rows and failures."""

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
