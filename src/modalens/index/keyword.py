"""Keyword search (BM25 over SQLite FTS5) and hybrid ranking that fuses it with the vector search.

An exact SKU or a brand name is a word, not a direction in the embedding
space, so titles and attribute values are also indexed for BM25, in the same
transactions as the vectors (:mod:`modalens.index.writes`). FTS5 is optional
in Python's sqlite3: without it the index still works and these searches say
why they cannot run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modalens.catalog.schema import Product
from modalens.index.base import Hit, IndexState, IndexStoreError, _chunks, _validate_k
from modalens.index.filters import _filter_sql

if TYPE_CHECKING:
    from modalens.index.ann import FaissIVFSearch
    from modalens.index.search import ExactSearch

#: Candidates each side (vector, keyword) contributes to hybrid ranking, at least k.
HYBRID_CANDIDATES = 100


class KeywordMixin(IndexState):
    """BM25 keyword search, and the fusion of its scores with cosine scores."""

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

