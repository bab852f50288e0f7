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
