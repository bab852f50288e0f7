"""Scene photos beside the products: each scene's instance embeddings, and "which scenes hold this product".

A lookbook page, a street photo or a flat-lay shows several products; its one
global embedding blurs them. The model's instance decoder
(:mod:`modalens.instances`) gives one embedding per product it finds in the
photo, and this part of the index keeps those, per scene, in their own tables
(:data:`~modalens.index.schema._SCENES_SCHEMA`): product rows, product search,
filters and keywords are untouched by them.

A scene matches a query (a text, a product photo) by its best instance: the
scene's score is the highest cosine of the query with any of its stored
instances, and the hit says which instance that was and where it looked.
Scenes are searched exactly (their instances are a few per scene), in a
matrix kept in memory and reloaded when another write changed the scenes
(``scene_generation`` in meta, apart from the products' ``generation``).

Writes follow the products' rules: each :meth:`ScenesMixin.add_scenes` is one
transaction that validates everything first, and a scene is stored under a
content key, so re-adding unchanged scenes writes nothing
(:func:`modalens.index.build.build_scene_index`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from modalens.catalog.schema import Product
from modalens.errors import InvalidInputError
from modalens.index.base import IndexState, _chunks, _validate_k
from modalens.index.schema import _ensure_scene_tables, _has_table, _now
from modalens.index.search import _top_k, normalise_rows


@dataclass(frozen=True)
class SceneInstances:
    """What is stored of one scene photo: the instances kept (those holding a product), one row each."""

    queries: np.ndarray  # (m,) which decoder query each instance came from
    vectors: np.ndarray  # (m, dim) unit vectors in the model's space
    objectness: np.ndarray  # (m,) in [0, 1]
    attention: np.ndarray  # (m, cells) where each query looked on the photo (rows sum to 1)


@dataclass(frozen=True)
class SceneHit:
    """A scene that holds what was searched for: its score is its best instance's cosine with the query."""

    id: str
    score: float
    scene: Product
    query: int  # the decoder query whose instance matched best
    objectness: float
    attention: list[float]  # where that query looked on the scene photo (the feature map's cells, reading order)


class _SceneMatrix:
    """Every stored instance as one (n, dim) matrix, grouped by scene in scene order, for exact best-instance search."""

    def __init__(self, scene_ids: list[str], starts: np.ndarray, queries: np.ndarray, matrix: np.ndarray) -> None:
        self.scene_ids = scene_ids
        self.starts = starts  # index of each scene's first instance row
        self.queries = queries
        self.matrix = matrix

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float, int]]]:
        """Per query, the top-k scenes as (scene position, best cosine, instance row), best first, ties by scene order."""
        if not self.scene_ids:
            return [[] for _ in range(len(queries))]
        scores = queries @ self.matrix.T  # (q, instances)
        best = np.maximum.reduceat(scores, self.starts, axis=1)  # (q, scenes): each scene's best instance
        out = []
        for row, per_scene in zip(scores, best):
            found = []
            for s in _top_k(per_scene, k):
                end = self.starts[s + 1] if s + 1 < len(self.starts) else len(row)
                found.append((int(s), float(per_scene[s]), int(self.starts[s] + np.argmax(row[self.starts[s] : end]))))
            out.append(found)
        return out


class ScenesMixin(IndexState):
    """Scene photos and their instance embeddings: add, read, delete, and best-instance search."""

    _scene_matrix: _SceneMatrix | None
    _scene_generation: int

    # ----------------------------------------------------------------- writes

    def add_scenes(self, scenes: Sequence[Product], instances: Sequence[SceneInstances], content_keys: Sequence[str]) -> None:
        """Insert or replace scenes with their instances, in one transaction (validated first: a bad batch writes nothing)."""
        rows = self._validate_scenes(scenes, instances, content_keys)
        if not scenes:
            return
        with self._scene_transaction() as conn:
            next_ord = conn.execute("SELECT COALESCE(MAX(ord), -1) + 1 FROM scenes").fetchone()[0]
            conn.executemany(
                "INSERT INTO scenes (id, json, content_key, ord) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET json = excluded.json, content_key = excluded.content_key",
                [(s.id, json.dumps(s.to_dict(), ensure_ascii=False, default=str), key, next_ord + i)
                 for i, (s, key) in enumerate(zip(scenes, content_keys))],
            )  # fmt: skip
            conn.executemany("DELETE FROM scene_instances WHERE scene_id = ?", [(s.id,) for s in scenes])
            conn.executemany("INSERT INTO scene_instances (scene_id, query, objectness, vec, attention) VALUES (?, ?, ?, ?, ?)", rows)
            conn.executemany("DELETE FROM scene_failures WHERE id = ?", [(s.id,) for s in scenes])

    def _validate_scenes(
        self, scenes: Sequence[Product], instances: Sequence[SceneInstances], content_keys: Sequence[str]
    ) -> list[tuple[str, int, float, bytes, bytes]]:
        if not (len(scenes) == len(instances) == len(content_keys)):
            raise ValueError(f"{len(scenes)} scenes, {len(instances)} instance sets and {len(content_keys)} content keys; they must be equal")
        ids = [s.id for s in scenes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate scene ids in one add_scenes(): {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
        if not all(isinstance(key, str) and key for key in content_keys):
            raise ValueError("content keys must be non-empty strings")
        rows = []
        for scene, found in zip(scenes, instances):
            vectors = np.asarray(found.vectors, np.float64)
            m = len(found.queries)
            if vectors.ndim != 2 or vectors.shape != (m, self._dim) or m == 0 or len(found.objectness) != m or len(found.attention) != m:
                raise ValueError(f"scene {scene.id!r}: instances must be (m, {self._dim}) vectors with m ≥ 1 queries, objectness and attention rows")
            queries = [int(q) for q in found.queries]
            if len(set(queries)) != m:  # the table's key is (scene, query): a repeat would abort the write half-way
                raise ValueError(f"scene {scene.id!r}: each instance needs its own decoder query number, got {queries}")
            if not np.isfinite(vectors).all():
                raise ValueError(f"scene {scene.id!r} has NaN or infinite instance vectors; nothing was written")
            unit = normalise_rows(vectors, what=f"scene {scene.id!r} instance").astype("<f4")
            attention = np.asarray(found.attention, "<f4")
            rows += [(scene.id, int(q), float(o), unit[j].tobytes(), attention[j].tobytes())
                     for j, (q, o) in enumerate(zip(found.queries, found.objectness))]  # fmt: skip
        return rows

    def record_scene_failures(self, failures: Iterable[tuple[str, str]]) -> None:
        """Remember scenes whose photo could not be read (a stored scene keeps its instances)."""
        rows = [(str(sid), str(reason), _now()) for sid, reason in failures]
        if not rows:
            return
        with self._scene_transaction() as conn:
            conn.executemany(
                "INSERT INTO scene_failures (id, reason, time) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET reason = excluded.reason, time = excluded.time",
                rows,
            )

    def delete_scenes(self, ids: Iterable[str]) -> int:
        """Remove scenes (their instances and failure records); returns how many were stored."""
        keys = [(str(i),) for i in ids]
        if not keys or not self._has_scenes():
            return 0
        with self._scene_transaction() as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM scenes WHERE id = ?", keys)
            removed = conn.total_changes - before
            conn.executemany("DELETE FROM scene_instances WHERE scene_id = ?", keys)
            conn.executemany("DELETE FROM scene_failures WHERE id = ?", keys)
        return removed

    @contextlib.contextmanager
    def _scene_transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction over the scene tables (made here on first use) that bumps ``scene_generation``."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            _ensure_scene_tables(conn)
            yield conn
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('scene_generation', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ----------------------------------------------------------------- reads

    def _has_scenes(self) -> bool:
        return _has_table(self._conn, "scenes")

    def scene_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM scenes").fetchone()[0]) if self._has_scenes() else 0

    def scene_ids(self) -> list[str]:
        """Stored scene ids in the order they were first added."""
        return [r[0] for r in self._conn.execute("SELECT id FROM scenes ORDER BY ord")] if self._has_scenes() else []

    def get_scene(self, scene_id: str) -> Product:
        row = self._conn.execute("SELECT json FROM scenes WHERE id = ?", (str(scene_id),)).fetchone() if self._has_scenes() else None
        if row is None:
            raise KeyError(f"scene {scene_id!r} is not in the index at {self.path} ({self.scene_count()} scenes)")
        return Product.from_dict(json.loads(row[0]))

    def scene_content_keys(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        """scene id -> content key (all, or just ``ids``), so a builder can skip unchanged scenes."""
        if not self._has_scenes():
            return {}
        if ids is None:
            return dict(self._conn.execute("SELECT id, content_key FROM scenes"))
        keys: dict[str, str] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            keys.update(self._conn.execute(f"SELECT id, content_key FROM scenes WHERE id IN ({marks})", list(chunk)))
        return keys

    def scene_failures(self) -> list[tuple[str, str]]:
        """(scene id, reason) of scene photos that could not be read, by id."""
        if not self._has_scenes():
            return []
        return [(r[0], r[1]) for r in self._conn.execute("SELECT id, reason FROM scene_failures ORDER BY id")]

    def scene_instances(self, scene_id: str) -> SceneInstances:
        """A stored scene's instances (what :meth:`add_scenes` kept), in query order."""
        self.get_scene(scene_id)
        rows = self._conn.execute(
            "SELECT query, objectness, vec, attention FROM scene_instances WHERE scene_id = ? ORDER BY query", (str(scene_id),)
        ).fetchall()
        return SceneInstances(
            np.array([r[0] for r in rows]), np.stack([np.frombuffer(r[2], "<f4") for r in rows]),
            np.array([r[1] for r in rows], np.float32), np.stack([np.frombuffer(r[3], "<f4") for r in rows]),
        )  # fmt: skip

    # ----------------------------------------------------------------- search

    def search_scenes(self, queries: np.ndarray, k: int = 10) -> list[list[SceneHit]]:
        """The top-k scenes per query (``(dim,)`` or ``(n, dim)``, normalised here), each scored by its best instance."""
        matrix = np.asarray(queries, np.float64)
        matrix = matrix[None, :] if matrix.ndim == 1 else matrix
        if matrix.ndim != 2 or matrix.shape[1] != self._dim or matrix.shape[0] == 0 or not np.isfinite(matrix).all():
            raise ValueError(f"queries must be finite, of shape ({self._dim},) or (n, {self._dim}), got {np.shape(queries)}")
        matrix = normalise_rows(matrix, what="query")
        k = _validate_k(k)
        if not self._has_scenes():
            raise InvalidInputError(
                f"the index at {self.path} holds no scene photos: add some with `modalens index SCENES.csv --scenes`"
            )
        conn = self._conn
        conn.execute("BEGIN")  # one read snapshot: the matrix and the scene rows agree
        try:
            searcher = self._refresh_scenes()
            found = searcher.search(matrix, k)
            positions = {searcher.scene_ids[s] for hits in found for s, _, _ in hits}
            scenes = self._records_by_id("scenes", positions)
            details = self._instance_details({(searcher.scene_ids[s], int(searcher.queries[r])) for hits in found for s, _, r in hits})
        finally:
            conn.execute("COMMIT")
        out = []
        for hits in found:
            row = []
            for s, score, r in hits:
                sid, query = searcher.scene_ids[s], int(searcher.queries[r])
                objectness, attention = details[(sid, query)]
                row.append(SceneHit(sid, score, scenes[sid], query, objectness, attention))
            out.append(row)
        return out

    def _refresh_scenes(self) -> _SceneMatrix:
        """The in-memory instance matrix, reloaded when a write (here or in another process) changed the scenes."""
        current = self._conn.execute("SELECT value FROM meta WHERE key = 'scene_generation'").fetchone()
        generation = int(current[0]) if current else 0
        if getattr(self, "_scene_matrix", None) is None or self._scene_generation != generation:
            rows = self._conn.execute(
                "SELECT s.id, i.query, i.vec FROM scene_instances i JOIN scenes s ON s.id = i.scene_id ORDER BY s.ord, i.query"
            ).fetchall()
            ids = [r[0] for r in rows]
            starts = np.flatnonzero([j == 0 or ids[j] != ids[j - 1] for j in range(len(ids))])
            matrix = np.stack([np.frombuffer(r[2], "<f4") for r in rows]) if rows else np.zeros((0, self._dim), np.float32)
            self._scene_matrix = _SceneMatrix([ids[j] for j in starts], starts, np.array([r[1] for r in rows], np.int64), matrix)
            self._scene_generation = generation
        return self._scene_matrix  # type: ignore[return-value]

    def _instance_details(self, keys: set[tuple[str, int]]) -> dict[tuple[str, int], tuple[float, list[float]]]:
        out = {}
        for sid, query in keys:
            objectness, attention = self._conn.execute(
                "SELECT objectness, attention FROM scene_instances WHERE scene_id = ? AND query = ?", (sid, query)
            ).fetchone()
            out[(sid, query)] = (float(objectness), np.frombuffer(attention, "<f4").astype(float).tolist())
        return out
