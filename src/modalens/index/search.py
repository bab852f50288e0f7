"""Exact vector search, the reference the ANN back-end (:mod:`modalens.index.ann`) is measured against.

Kept apart from the SQLite store so a back-end only has to offer ``ids``,
``n_rows`` and ``search(queries, k, mask)`` (an optional row mask, applied
before ranking); storage, filters and product lookup stay as they are.
"""

from __future__ import annotations

import numpy as np


def normalise_rows(matrix: np.ndarray, *, what: str = "vector") -> np.ndarray:
    """Rows scaled to unit L2 norm as float32, so a dot product is the cosine.

    Zero rows have no direction, so they are an error rather than a silent NaN.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ValueError(f"{what} row {int(zero[0])} has zero length and cannot be normalised")
    return (matrix / norms).astype(np.float32)


class ExactSearch:
    """Brute-force cosine top-k over an in-memory (n, dim) float32 matrix.

    Rows must already be L2-normalised and ordered by id: ties in score are then
    broken by row position, which is the id order, so results are deterministic.
    """

    def __init__(self, ids: list[str], matrix: np.ndarray) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise ValueError(f"matrix shape {matrix.shape} does not match {len(ids)} ids")
        self.ids = ids
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)

    kind = "exact"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_rows(self) -> int:
        """Length a row mask must have (every row is live here)."""
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """Top-k (row, score) per normalised query, best first, restricted to ``mask`` rows.

        The mask selects candidate rows before scoring, so a narrow filter still
        yields k results whenever k rows match (no over-fetch-and-drop).
        """
        rows = np.arange(len(self.ids)) if mask is None else np.flatnonzero(mask)
        if rows.size == 0:
            return [[] for _ in range(queries.shape[0])]
        candidates = self.matrix if mask is None else self.matrix[rows]
        scores = queries @ candidates.T
        return [[(int(rows[j]), float(s[j])) for j in _top_k(s, k)] for s in scores]


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores, best first, ties by lower position.

    argpartition alone picks arbitrarily among scores equal to the k-th one, so
    every score tied with the cut-off is kept and the final order is a stable
    (score desc, position asc) sort.
    """
    n = scores.shape[0]
    if k < n:
        cut = scores[np.argpartition(-scores, k - 1)[k - 1]]
        pool = np.flatnonzero(scores >= cut)
    else:
        pool = np.arange(n)
    order = np.lexsort((pool, -scores[pool]))
    return pool[order[:k]]
