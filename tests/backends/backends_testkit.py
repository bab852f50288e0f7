"""Inputs shared by the back-end tests."""

from __future__ import annotations

from pathlib import Path

PHOTOS = sorted((Path(__file__).parents[1] / "fixtures" / "mini-catalog" / "images").glob("*.jpg"))
#: Varied lengths: empty, one letter, emoji and accents, longer than max_length (truncated).
TEXTS = [
    "a red cotton t-shirt for men",
    "",
    "a",
    "Women's black leather ankle boots with a block heel, perfect for autumn evenings",
    "émoji 👗 dress — 100% silk",
    "blue denim jeans",
    "slim fit stretch shirt with a button-down collar " * 12,
]
TOLERANCE = 1e-4
