"""Tiny real files in the datasets' published layouts, and checks shared by the dataset-reader tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from modalens.catalog import Catalog, load_image


def photo(path: Path, colour: tuple[int, int, int] = (180, 40, 40), size: tuple[int, int] = (12, 16)) -> Path:
    """A small real image; JPEG or PNG by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, "JPEG", quality=95)
    else:
        image.save(path, "PNG")
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def by_id(catalog: Catalog) -> dict:
    return {p.id: p for p in catalog}


def assert_images_ok(catalog: Catalog) -> None:
    """Every product has images, each an absolute path of a file that decodes to RGB."""
    assert catalog.products, "no products"
    for product in catalog:
        assert product.images, product.id
        for image in product.images:
            assert os.path.isabs(image) and os.path.isfile(image), image
            assert load_image(image).mode == "RGB"


def error_rows(catalog_or_list: Any) -> list[tuple[str, int]]:
    """(file name, row) of each error, for compact assertions."""
    return [(Path(e.source).name, e.row) for e in catalog_or_list.errors]
