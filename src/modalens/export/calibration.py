"""Calibration photos for the image tower's static int8: which photos, and how the tower sees them.

Static int8 fixes each activation's range from real inputs, so the photos
must be a fair, repeatable sample of what the tower will see: a fixed draw
from a catalogue, prepared by the tower's own ``preprocess``. The manifest
records which photos (a digest of their names) so an export can be traced.
No torch here: a tower is passed in.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..encoders.base import ImageTower

log = logging.getLogger(__name__)

#: Where the image tower's static int8 takes its calibration photos by default, how many, and how it sets ranges.
IMAGE_CALIBRATION_SOURCE = "kagl:train"
IMAGE_CALIBRATION_PHOTOS = 128
IMAGE_CALIBRATION_METHOD = "percentile"  # KAGL test: the best zero-shot; MinMax and Entropy give the same graph
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
_CALIBRATION_SEED = 0


def calibration_photos(source: str | Path = IMAGE_CALIBRATION_SOURCE, n: int = IMAGE_CALIBRATION_PHOTOS) -> list[str]:
    """``n`` photos of a catalogue (``read_catalog`` source: ``kagl:train``, a folder of photos, ...), the same every time.

    Each product's main photo, ordered by path, then ``n`` of them drawn with
    a fixed seed (all of them when there are no more than ``n``).
    """
    from ..catalog import read_catalog

    photos = sorted({p.image for p in read_catalog(str(source)).products if p.image})
    if len(photos) <= n:
        return photos
    chosen = np.random.default_rng(_CALIBRATION_SEED).choice(len(photos), n, replace=False)
    return [photos[i] for i in sorted(chosen)]


def calibration_pixels(tower: ImageTower, photos: Sequence[str | Path]) -> np.ndarray:
    """The photos as the tower prepares them (its own ``preprocess``: letterbox, then normalise); unreadable ones are left out."""
    from ..catalog.images import load_image

    pixels = []
    for photo in photos:
        try:
            pixels.append(tower.preprocess(load_image(str(photo))).numpy())
        except Exception as e:  # a bad file among the calibration photos is not fatal
            log.warning("calibration photo %s left out: %s", photo, e)
    if not pixels:
        raise ValueError("no readable calibration photo")
    return np.stack(pixels).astype(np.float32, copy=False)


def read_calibration(
    tower: ImageTower, source: str | Path | Sequence[str | Path], n: int, say: Callable[[str], None]
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Calibration pixels for the image tower's static int8 and what the manifest records of them (``error`` when none)."""
    named = isinstance(source, (str, Path))
    name = str(source) if named else "photos given"
    try:
        photos = calibration_photos(source, n) if named else [str(p) for p in source]  # type: ignore[arg-type,union-attr]
        say(f"calibrating the image tower's int8 on {len(photos)} photos ({name})")
        pixels = calibration_pixels(tower, photos)
    except Exception as e:  # no KAGL here, an empty folder: the image tower stays fp32, with the reason
        return None, {"error": f"{name}: {type(e).__name__}: {e}"[:300]}
    digest = hashlib.sha256("\n".join(Path(p).name for p in photos).encode()).hexdigest()[:16]
    return pixels, {"calibration_source": name, "calibration_photos": len(pixels), "calibration_photo_names_sha256": digest}

