"""Polyvore Outfits (Vasileva et al., ECCV 2018): items with their metadata, and the outfits they form.

Layout, as read by the dataset's own code (https://github.com/mvasil/fashion-compatibility,
polyvore_outfits.py: ``polyvore_outfits/<split version>/<split>.json``, images
``polyvore_outfits/images/<item_id>.jpg``, metadata fields ``title``,
``url_name``, ``semantic_category``)::

    ROOT/                                 (the unpacked polyvore_outfits folder)
      polyvore_item_metadata.json         {item_id: {"title", "url_name", "description",
                                                     "categories" (spelled "catgeories" in the
                                                     release), "semantic_category", "category_id",
                                                     "related"}}
      images/{item_id}.jpg
      nondisjoint/{train,valid,test}.json [{"set_id": str, "items": [{"item_id": str, "index": int}]}]
      disjoint/{train,valid,test}.json

A product is an item of the metadata whose image is present: title =
``title`` (else ``url_name``), ``category`` = ``semantic_category``, the fine
categories and ``category_id`` in ``extra``.  Without a split every item is
read (no split set: in the nondisjoint version an item can be in several);
with one (train, val/valid, test; ``disjoint-train`` etc. picks the other
version) only the items of that split's outfits, in outfit order.  Outfits come
from :func:`read_polyvore_outfits`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ..schema import Catalog, CatalogError, RowError
from ._common import (
    ProductGroups,
    RecordList,
    choose_splits,
    load_json,
    load_json_list,
    require_dir,
    text_value,
)

__all__ = ["POLYVORE_SPLITS", "POLYVORE_VERSIONS", "PolyvoreOutfit", "read_polyvore", "read_polyvore_outfits"]

POLYVORE_SPLITS = ("train", "val", "test")
POLYVORE_VERSIONS = ("nondisjoint", "disjoint")
_FILE_NAMES = {"train": "train", "val": "valid", "test": "test"}


class PolyvoreOutfit(NamedTuple):
    set_id: str
    item_ids: list[str]  # in the outfit's "index" order
    split: str


def read_polyvore(
    root: str | Path, split: str | None = None, *, limit: int | None = None, version: str = "nondisjoint"
) -> Catalog:
    """Polyvore Outfits items as products (see the module docstring for split and version).

    A metadata record that is not an object or has non-text fields, or an
    item whose image is missing, is a ``RowError`` (row = 1-based position in
    the metadata); with a split, so is an outfit item absent from the metadata
    (row = the outfit's position in the split file).
    """
    base = require_dir(root, "Polyvore Outfits")
    version, splits = _version_and_splits(split, version)
    metadata_path = base / "polyvore_item_metadata.json"
    metadata = load_json(metadata_path)
    if not isinstance(metadata, dict):
        raise CatalogError(f"{metadata_path}: expected a JSON object of item_id -> metadata")
    positions = {item_id: row for row, item_id in enumerate(metadata, 1)}
    groups = ProductGroups(limit)
    if split is None:
        wanted: list[tuple[str, str | None, Path, int]] = [(i, None, metadata_path, positions[i]) for i in metadata]
    else:
        wanted = []
        split_name = splits[0]
        outfits = read_polyvore_outfits(base, split_name, version=version)
        groups.errors += outfits.errors
        source = base / version / f"{_FILE_NAMES[split_name]}.json"
        seen: set[str] = set()
        for row, outfit in enumerate(outfits, 1):
            for item_id in outfit.item_ids:
                if item_id in seen:
                    continue
                seen.add(item_id)
                if item_id not in metadata:
                    groups.error(source, row, f"outfit {outfit.set_id}: item {item_id} is not in polyvore_item_metadata.json")
                    continue
                wanted.append((item_id, split_name, metadata_path, positions[item_id]))
    for item_id, split_name, source, row in wanted:
        if not groups.wants(item_id):
            break
        try:
            fields = _item_fields(metadata[item_id])
        except CatalogError as exc:
            groups.error(source, row, f"item {item_id}: {exc}")
            continue
        image = base / "images" / f"{item_id}.jpg"
        if not image.is_file():
            groups.error(source, row, f"item {item_id}: image not found: {image}")
            continue
        groups.add(item_id, str(image), source=source, row=row, split=split_name, **fields)
    name = "polyvore" if split is None else f"polyvore-{version}-{splits[0]}"
    return groups.catalog(name, base)


def read_polyvore_outfits(
    root: str | Path, split: str | None = None, *, version: str = "nondisjoint"
) -> RecordList[PolyvoreOutfit]:
    """The outfits of one split version (None: train, val and test), items ordered by their ``index``.

    An outfit that is not an object, has no set_id, or whose items are not
    ``{"item_id", "index"}`` objects, is a ``RowError`` (row = 1-based
    position in the split file) and skipped.
    """
    base = require_dir(root, "Polyvore Outfits")
    version, splits = _version_and_splits(split, version)
    result: RecordList[PolyvoreOutfit] = RecordList([])
    found = 0
    for split_name in splits:
        path = base / version / f"{_FILE_NAMES[split_name]}.json"
        if not path.is_file():
            continue
        found += 1
        for row, record in enumerate(load_json_list(path), 1):
            try:
                result.items.append(_outfit(record, split_name))
            except CatalogError as exc:
                result.errors.append(RowError(str(path), row, str(exc)))
    if not found:
        raise CatalogError(f"Polyvore Outfits: no {version}/<{'|'.join(_FILE_NAMES[s] for s in splits)}>.json under {base}")
    return result


def _version_and_splits(split: str | None, version: str) -> tuple[str, list[str]]:
    if split is not None and "-" in str(split):
        version, _, split = str(split).partition("-")
    version = str(version).strip().lower()
    if version not in POLYVORE_VERSIONS:
        raise CatalogError(f"Polyvore Outfits has no split version {version!r}; versions: {', '.join(POLYVORE_VERSIONS)}")
    return version, choose_splits(split, POLYVORE_SPLITS, "Polyvore Outfits")


def _item_fields(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise CatalogError(f"metadata must be an object, got {type(record).__name__}")
    title = text_value(record.get("title")) or text_value(record.get("url_name"))
    extra: dict[str, Any] = {}
    categories = record.get("categories", record.get("catgeories"))
    if isinstance(categories, list):
        extra["categories"] = [str(c).strip() for c in categories if str(c).strip()]
    category_id = text_value(record.get("category_id"))
    if category_id:
        extra["category_id"] = category_id
    return {
        "title": title,
        "description": text_value(record.get("description")),
        "attributes": {"category": text_value(record.get("semantic_category"))},
        "extra": extra,
    }


def _outfit(record: Any, split: str) -> PolyvoreOutfit:
    if not isinstance(record, dict):
        raise CatalogError(f"expected an outfit object, got {type(record).__name__}")
    set_id = text_value(record.get("set_id")) if isinstance(record.get("set_id"), (str, int)) else ""
    if not set_id:
        raise CatalogError(f"outfit has no set_id: {str(record)[:80]}")
    items = record.get("items")
    if not isinstance(items, list) or not items:
        raise CatalogError(f"outfit {set_id}: 'items' must be a non-empty list")
    ordered: list[tuple[int, str]] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("item_id"), (str, int)) or isinstance(item.get("item_id"), bool):
            raise CatalogError(f"outfit {set_id}: item {position + 1} has no item_id")
        index = item.get("index", position + 1)
        if not isinstance(index, int) or isinstance(index, bool):
            raise CatalogError(f"outfit {set_id}: item {position + 1} has a non-integer index {index!r}")
        ordered.append((index, str(item["item_id"]).strip()))
    return PolyvoreOutfit(set_id, [item_id for _, item_id in sorted(ordered, key=lambda pair: pair[0])], split)
