"""Named image views: deterministic degradations used as training augmentations.

Frozen towers see only what they are given, so robustness to poor photos
(greyscale scans, tiny thumbnails) has to come from the heads having seen such
views in training. Each view is deterministic, so its tower features are cached
like any other image's (the view name is part of the cache key).
"""

from __future__ import annotations

from typing import Callable

from PIL import Image, ImageOps


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


def get_view(name: str) -> Callable[[Image.Image], Image.Image]:
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"unknown image view {name!r}; known: {sorted(VIEWS)}") from None
