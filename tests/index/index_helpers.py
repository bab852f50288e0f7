"""Helpers for the index tests (uniquely named so it cannot clash with other test folders)."""

from __future__ import annotations

import zlib

import numpy as np

from modalens.catalog.schema import Product
from modalens.index import EmbedResult

DIM = 16
COLOURS = ["Blue", "Navy Blue", "Black", "White", "Red"]


def pid(i: int) -> str:
    """Zero-padded ids, so id order == numeric order in the brute-force checks."""
    return f"p{i:05d}"


def make_product(i: int, **overrides) -> Product:
    fields = {
        "id": pid(i),
        "images": [f"images/{i}.jpg"],
        "title": f"Product {i}",
        "description": f"A test product number {i}",
        "attributes": {"gender": "Men" if i % 2 else "Women", "colour": COLOURS[i % len(COLOURS)]},
        "price": float(10 + i % 50),
        "split": ["train", "val", "test"][i % 3],
    }
    fields.update(overrides)
    return Product(**fields)


def make_products(n: int) -> list[Product]:
    return [make_product(i) for i in range(n)]


def fake_vector(product_id: str) -> np.ndarray:
    """A deterministic (unnormalised) vector per id, independent of the code under test."""
    return np.random.default_rng(zlib.crc32(product_id.encode())).normal(size=DIM)


def fake_embed(products: list[Product]) -> EmbedResult:
    return EmbedResult(np.stack([fake_vector(p.id) for p in products]), [p.id for p in products], [])


def clustered_vectors(n: int, dim: int = DIM, clusters: int = 64, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Real-like embeddings: points around random cluster centres (uniform noise is not what ANN indexes meet)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def top_ids(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[str]:
    """Exact top-k ids in float64, ties by id — independent of the code under test."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    rows = range(len(ids)) if allowed is None else np.flatnonzero(allowed)
    return [ids[r] for r in sorted(rows, key=lambda r: (-scores[r], ids[r]))[:k]]
