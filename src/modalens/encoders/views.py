"""Named image views: deterministic degradations and photo-like renderings used as training augmentations.

Frozen towers see only what they are given, so robustness to poor photos
(greyscale scans, tiny thumbnails, a garment on a sofa rather than on white)
has to come from the heads having seen such views in training. Each view is
deterministic, so its tower features are cached like any other image's (the
view's id, :func:`view_id`, is part of the cache key).

Seeded families (``photo-like:3``) are random augmentations made repeatable:
the randomness is seeded by the view's seed and the photo's pixels, so the
same photo always gets the same rendering under the same name, and a cache of
K renderings per photo is simply the names ``photo-like:0`` … ``photo-like:K-1``.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Callable

from PIL import Image, ImageOps

from .photo_like import PHOTO_LIKE_VERSION, photo_like


def thumbnail_grey(image: Image.Image, size: int = 28) -> Image.Image:
    """A greyscale thumbnail blown back up: what a low-resolution catalogue scan looks like."""
    grey = ImageOps.grayscale(image)
    w, h = grey.size
    scale = size / max(w, h)
    small = grey.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return small.resize((w, h), Image.Resampling.BICUBIC).convert("RGB")


def greyscale(image: Image.Image) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def invert(image: Image.Image) -> Image.Image:
    """Light-on-dark → dark-on-light (Fashion-MNIST's garments on black, rendered like catalogue photos on white)."""
    return ImageOps.invert(image.convert("RGB"))


VIEWS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "greyscale": greyscale,
    "invert": invert,
    "thumbnail-grey": thumbnail_grey,
}


#: Seeded view families: ``NAME:SEED`` → ``family(image, seed)``, with the version that enters the cache key.
SEEDED_VIEWS: dict[str, tuple[Callable[[Image.Image, int], Image.Image], int]] = {
    "photo-like": (photo_like, PHOTO_LIKE_VERSION),
}


def _seeded(name: str) -> tuple[str, int] | None:
    family, sep, seed = str(name).partition(":")
    if sep and family in SEEDED_VIEWS and re.fullmatch(r"[0-9]+", seed):
        return family, int(seed)
    return None


def is_view(name: object) -> bool:
    return isinstance(name, str) and (name in VIEWS or _seeded(name) is not None)


def known_views() -> list[str]:
    return sorted(VIEWS) + [f"{family}:SEED" for family in SEEDED_VIEWS]


def get_view(name: str) -> Callable[[Image.Image], Image.Image]:
    """The view called ``name``: a fixed view (``greyscale``) or one seed of a family (``photo-like:3``)."""
    if name in VIEWS:
        return VIEWS[name]
    seeded = _seeded(name)
    if seeded is None:
        raise ValueError(f"unknown image view {name!r}; known: {', '.join(known_views())}")
    family, seed = seeded
    return partial(SEEDED_VIEWS[family][0], seed=seed)


def view_id(name: str) -> str:
    """What the feature cache keys a view by: its name, plus its family's version for a seeded view
    (so changing how photo-like views are drawn never serves stale features)."""
    seeded = _seeded(name)
    if seeded is None:
        return name
    family, seed = seeded  # photo-like:03 and photo-like:3 are one view, with one key
    return f"{family}:{seed}@v{SEEDED_VIEWS[family][1]}"
