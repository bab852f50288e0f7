"""Atlas (Umaashankar et al., 2019): clothing photos from 13 Indian e-commerce sites with a 3-level category path.

Layout implemented, from the dataset's repository https://github.com/vumaasha/Atlas
(dataset/README.md "Structure of the coresdataset19.json file", dataset/create_dataset.py,
data_collection/generate_split_json.py)::

    ROOT/
      atlas_dataset.json   (or coresdataset19.json / coresdataset.json)
          {"images": [{"filename": ".../Men-Western_Wear-Shirts/images/203_large.jpeg",
                       "title": "Men's slim fit cotton shirt",
                       "sentences": [{"tokens": ["Men", "Western Wear", "Shirts"]}],
                       "image_url": "https://...", "split": "train" | "val" | "test"}]}
      <Level1-Level_2-Level_3>/images/<file>   where create_dataset.py downloads each photo
                                               (also tried: ROOT/<filename>, ROOT/images/<file>)

Also accepted (not a published file: for re-exports such as a Kaggle mirror,
whose exact columns could not be checked here): a CSV with an image column
(``filename``, ``file_path``, ``image`` or ``image_path``), a title column
(``title`` or ``product_title``), a category path column (``category_path``,
``taxonomy``, ``category`` or ``path``; levels separated by '>' or '/') and an
optional ``split``.  ``root`` may also name the JSON or CSV file itself.

Category path: a first level naming a gender (Men, Women, ...) becomes
``gender``; of the remaining levels the last is ``article_type``, the one
before ``sub_category`` and a third ``master_category``, so "Men > Western Wear
> Shirts" gives gender Men, sub_category Western Wear, article_type Shirts.
The full path is kept in ``extra['category_path']``.  Atlas has no product
ids: one photo is one product, id ``<Level1-Level_2-Level_3>/<file stem>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..schema import Catalog, CatalogError
from ._common import (
    STANDARD_SPLITS,
    ProductGroups,
    choose_splits,
    csv_rows,
    load_json,
    text_value,
    title_gender,
)

__all__ = ["ATLAS_SPLITS", "read_atlas"]

ATLAS_SPLITS = ("train", "val", "test")
_JSON_NAMES = ("atlas_dataset.json", "coresdataset19.json", "coresdataset.json")
_CSV_NAMES = ("atlas_dataset.csv", "atlas.csv")
_GENDERS = {"men", "women", "boys", "girls", "kids", "unisex"}
_IMAGE_KEYS = ("filename", "file_path", "image", "image_path")
_TITLE_KEYS = ("title", "product_title")
_PATH_KEYS = ("category_path", "taxonomy", "category", "path")


def read_atlas(root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """Atlas photos as products with gender / sub_category / article_type from their category path.

    ``split``: train, val or test (None: all).  A record without an image
    path or category path, with non-text fields, whose photo was not
    downloaded, or that repeats an earlier photo, is a ``RowError`` (row =
    1-based position in the JSON "images" array, or the CSV line).
    """
    source, base = _source(root)
    splits = choose_splits(split, ATLAS_SPLITS, "Atlas") if split is not None else None
    groups = ProductGroups(limit)
    for row, record in _records(source):
        try:
            if isinstance(record, str):
                raise CatalogError(record)
            image_name, title, levels, record_split, url = _fields(record)
        except CatalogError as exc:
            groups.error(source, row, str(exc))
            continue
        if splits is not None and record_split not in splits:
            continue
        folder = "-".join(levels).replace(" ", "_")
        product_id = f"{folder}/{Path(image_name).stem}"
        if product_id in groups.products:
            groups.error(source, row, f"photo {image_name} appears twice")
            continue
        if not groups.wants(product_id):
            break
        image = _find_image(base, image_name, folder)
        if image is None:
            groups.error(source, row, f"image not found: {base / folder / 'images' / os.path.basename(image_name)}")
            continue
        extra: dict[str, Any] = {"category_path": " > ".join(levels)}
        if url:
            extra["image_url"] = url
        groups.add(
            product_id, image, source=source, row=row, split=record_split, title=title, attributes=_levels(levels), extra=extra
        )
    name = "atlas" if splits is None else f"atlas-{splits[0]}"
    return groups.catalog(name, base)


def _source(root: str | Path) -> tuple[Path, Path]:
    path = Path(os.path.abspath(os.path.expanduser(str(root))))
    if path.is_file():
        return path, path.parent
    if not path.is_dir():
        raise CatalogError(f"Atlas: dataset folder {root} not found")
    for name in (*_JSON_NAMES, *_CSV_NAMES):
        if (path / name).is_file():
            return path / name, path
    raise CatalogError(f"Atlas: none of {', '.join(_JSON_NAMES + _CSV_NAMES)} in {path}")


def _records(source: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    if source.suffix.lower() == ".csv":
        yield from csv_rows(source)
        return
    data = load_json(source)
    images = data.get("images") if isinstance(data, dict) else data
    if not isinstance(images, list):
        raise CatalogError(f"{source}: expected {{'images': [...]}}")
    for row, record in enumerate(images, 1):
        yield row, record if isinstance(record, dict) else f"expected an object, got {type(record).__name__}"


def _fields(record: dict[str, Any]) -> tuple[str, str, list[str], str | None, str]:
    image_name = next((text_value(record[k]) for k in _IMAGE_KEYS if k in record and text_value(record[k])), "")
    if not image_name:
        raise CatalogError("no image path (filename)")
    title = next((text_value(record[k]) for k in _TITLE_KEYS if k in record), "")
    levels = _category_levels(record)
    if not levels:
        raise CatalogError(f"{image_name}: no category path")
    split = text_value(record.get("split")).lower() or None
    split = STANDARD_SPLITS.get(split, split) if split else None
    return image_name.replace("\\", "/"), title, levels, split, text_value(record.get("image_url"))


def _category_levels(record: dict[str, Any]) -> list[str]:
    sentences = record.get("sentences")
    if isinstance(sentences, list) and sentences and isinstance(sentences[0], dict):
        tokens = sentences[0].get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise CatalogError(f"sentences[0].tokens must be a list of strings, got {tokens!r}")
        return [t.strip() for t in tokens if t.strip()]
    text = next((text_value(record[k]) for k in _PATH_KEYS if k in record and text_value(record[k])), "")
    separator = ">" if ">" in text else "/"
    return [part.strip() for part in text.split(separator) if part.strip()]


def _levels(levels: list[str]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    rest = list(levels)
    if rest and rest[0].lower() in _GENDERS:
        attributes["gender"] = title_gender(rest.pop(0))
    for key in ("article_type", "sub_category", "master_category"):
        if rest:
            attributes[key] = rest.pop()
    return attributes


def _find_image(base: Path, image_name: str, folder: str) -> str | None:
    name = os.path.basename(image_name)
    candidates = [Path(image_name)] if os.path.isabs(image_name) else [base / image_name]
    candidates += [base / folder / "images" / name, base / "images" / name, base / name]
    return next((str(Path(os.path.normpath(c))) for c in candidates if c.is_file()), None)
