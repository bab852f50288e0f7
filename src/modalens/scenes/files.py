"""Scenes as files and products: rendered once into a folder, then taken by the feature cache like photos.

A scene's file is named by :attr:`Scene.key` (a digest of everything its
pixels depend on), so a set rendered again finds its files, and the feature
cache (keyed by the file's bytes) finds their features: encoding scenes goes
through the same pipeline as a catalogue's photos, workers and all.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Sequence

from ..catalog.schema import Product
from ..paths import cache_dir
from .generator import Scene


def default_scene_dir() -> Path:
    """Where rendered scenes go unless told: ``<cache>/scenes`` (see :func:`modalens.paths.cache_dir`)."""
    return cache_dir() / "scenes"


def scene_path(scene: Scene, folder: Path) -> Path:
    return folder / f"{scene.key}.png"


def write_scenes(scenes: Sequence[Scene], folder: str | Path | None = None) -> list[Path]:
    """Render each scene to ``folder/<key>.png`` unless that file is there already; the paths, in order."""
    folder = Path(folder) if folder is not None else default_scene_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for scene in scenes:
        path = scene_path(scene, folder)
        if not path.is_file():
            tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
            scene.render().save(tmp, format="PNG", compress_level=1)  # lossless either way; 3x faster than the default
            os.replace(tmp, path)  # whole files only: a killed run leaves no half image under a real name
        paths.append(path)
    return paths


def scene_products(scenes: Sequence[Scene], folder: str | Path | None = None) -> list[Product]:
    """Each scene rendered (:func:`write_scenes`) and given as a product: id ``scene-<key>``, its file as the
    image, the products in it (ids) and their boxes in ``extra``, the split its products share (if one)."""
    out = []
    for scene, path in zip(scenes, write_scenes(scenes, folder)):
        splits = {p.split for p in scene.products}
        out.append(
            Product(
                id=f"scene-{scene.key}",
                images=[str(path)],
                title=", ".join(p.title for p in scene.products if p.title),
                split=splits.pop() if len(splits) == 1 else None,
                extra={"kind": scene.kind, "products": [p.id for p in scene.products], "boxes": scene.boxes},
            )
        )
    return out
