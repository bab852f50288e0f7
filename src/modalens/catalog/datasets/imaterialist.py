"""iMaterialist-Fashion: the 2018 attribute challenge (FGVC5) and the 2019/2020 segmentation challenges (FGVC6/7).

2018, as published in https://github.com/visipedia/imat_fashion_comp (README and
``iMat_fashion_2018_label_map_228.csv``) and on the Kaggle competition page
(imaterialist-challenge-fashion-2018)::

    ROOT/
      train.json, validation.json (the GitHub README calls it val.json), test.json
          {"images": [{"imageId": "1", "url": "https://..."}],
           "annotations": [{"imageId": "1", "labelId": ["62", "17", "66"]}]}
          (the Kaggle files use imageId/labelId; the README writes image_id/label_id
           and url as a list: both spellings are read; test.json has no annotations)
      iMat_fashion_2018_label_map_228.csv     labelId,taskId,labelName,taskName (optional)
      train/{imageId}.jpg, validation/{imageId}.jpg, test/{imageId}.jpg
          (images are published as URLs only; this is the folder layout the usual
           download scripts produce; images/<split>/ and images/ are also searched)

Image ids restart at 1 in every split, so a product id is ``<split>-<imageId>``.
Label names go to ``extra['labels']`` (ids to ``extra['label_ids']``); the
label map's task names give attributes: category, color -> colour, gender,
material, pattern; neckline / sleeve / style go to ``extra`` (several labels of
one task are joined with ', ').  Without the label map the labels are the ids.

2019/2020 (Kaggle imaterialist-fashion-2019-FGVC6 / -2020-fgvc7, taxonomy of
https://github.com/visipedia/imat_comp)::

    ROOT/
      train.csv               ImageId,EncodedPixels,Height,Width,ClassId[,AttributesIds]
                              (2019: ClassId like "6_28_77" = category_attribute_...;
                               2020: ClassId "6", AttributesIds "28,77")
      label_descriptions.json {"categories": [{"id", "name", "supercategory", "level"}],
                               "attributes": [{"id", "name", "supercategory", "level"}]}
      train/{ImageId}.jpg

One product per image: ``extra['categories']`` and ``extra['attribute_names']``
list the segments' labels (``extra['labels']`` both), ``category`` joins the
whole-garment (level 1) categories, ``pattern`` the textile-pattern attributes.
Only train is annotated, so it is the only split.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from ..schema import Catalog, CatalogError, Product, check_id
from ._common import (
    ProductGroups,
    catalog_name,
    choose_splits,
    csv_rows,
    find_image,
    load_json,
    require_dir,
    title_gender,
)

__all__ = ["IMATERIALIST_SPLITS", "read_imaterialist", "read_imaterialist_segmentation"]

IMATERIALIST_SPLITS = ("train", "val", "test")
_SPLIT_FILES = {"train": ("train.json",), "val": ("validation.json", "val.json"), "test": ("test.json",)}
_SPLIT_DIRS = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
#: 2018 task names -> modalens attribute names (others go to extra under their task name).
_TASK_ATTRIBUTES = {"category": "category", "color": "colour", "gender": "gender", "material": "material", "pattern": "pattern"}
_LABEL_MAP = "iMat_fashion_2018_label_map_228.csv"


# ---------------------------------------------------------------- 2018 attributes


def read_imaterialist(root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """iMaterialist-Fashion 2018 images with their attribute labels; ``split``: train, val or test (None: all).

    An image record without an id, a second record for the same id, an
    annotation for an image not in ``images``, a label id that is not a number
    or not in the label map, or an image file that was not downloaded, is a
    ``RowError`` (row = 1-based position in the file's "images" or
    "annotations" array, named in the reason).
    """
    base = require_dir(root, "iMaterialist-Fashion 2018")
    splits = choose_splits(split, IMATERIALIST_SPLITS, "iMaterialist-Fashion 2018")
    label_map = _label_map(base)
    groups = ProductGroups(limit)
    found = 0
    for split_name in splits:
        path = next((base / name for name in _SPLIT_FILES[split_name] if (base / name).is_file()), None)
        if path is None:
            continue
        found += 1
        _read_split_2018(path, split_name, base, label_map, groups)
    if not found:
        wanted = ", ".join(name for s in splits for name in _SPLIT_FILES[s])
        raise CatalogError(f"iMaterialist-Fashion 2018: none of {wanted} in {base}")
    return groups.catalog(catalog_name("imaterialist", splits, IMATERIALIST_SPLITS), base)


def _label_map(base: Path) -> dict[int, tuple[str, str]] | None:
    """labelId -> (labelName, taskName) from the published CSV, or None when it is not there."""
    path = base / _LABEL_MAP
    if not path.is_file():
        path = next(iter(sorted(base.glob("*label_map*.csv"))), None)
        if path is None:
            return None
    table: dict[int, tuple[str, str]] = {}
    for line, row in csv_rows(path):
        if isinstance(row, str):
            raise CatalogError(f"{path}:{line}: {row}")
        try:
            table[int(row["labelId"])] = (row["labelName"].strip(), row.get("taskName", "").strip().lower())
        except (KeyError, ValueError) as exc:
            raise CatalogError(f"{path}:{line}: expected labelId,taskId,labelName,taskName ({exc})") from exc
    return table


def _read_split_2018(
    path: Path, split: str, base: Path, label_map: dict[int, tuple[str, str]] | None, groups: ProductGroups
) -> None:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CatalogError(f"{path}: expected a JSON object with an 'images' array")
    annotations = data.get("annotations") or []
    if not isinstance(annotations, list):
        raise CatalogError(f"{path}: 'annotations' is not an array")
    image_ids: dict[str, int] = {}
    urls: dict[str, str] = {}
    for row, record in enumerate(data["images"], 1):
        image_id = _field(record, "imageId", "image_id")
        if image_id is None:
            groups.error(path, row, f"images: record {record!r} has no imageId")
            continue
        if image_id in image_ids:
            groups.error(path, row, f"images: imageId {image_id} appears twice (first at {image_ids[image_id]})")
            continue
        image_ids[image_id] = row
        url = record.get("url")
        urls[image_id] = url[0] if isinstance(url, list) and url else url if isinstance(url, str) else ""

    labels: dict[str, list[int]] = {}
    bad: set[str] = set()
    for row, record in enumerate(annotations, 1):
        image_id = _field(record, "imageId", "image_id")
        if image_id is None or image_id not in image_ids:
            groups.error(path, row, f"annotations: imageId {image_id!r} is not in images")
            continue
        try:
            labels[image_id] = _label_ids(record, label_map)
        except CatalogError as exc:
            groups.error(path, row, f"annotations: imageId {image_id}: {exc}")
            bad.add(image_id)

    folders = [base / d for d in _SPLIT_DIRS[split]] + [base / "images" / d for d in _SPLIT_DIRS[split]] + [base / "images"]
    for image_id, row in image_ids.items():
        product_id = f"{split}-{image_id}"
        if image_id in bad or not groups.wants(product_id):
            continue
        image = find_image(folders, image_id, (".jpg", ".jpeg", ".png"))
        if image is None:
            groups.error(path, row, f"images: image {image_id} not downloaded (no {folders[0] / image_id}.jpg)")
            continue
        attributes, extra = _label_fields(labels.get(image_id, []), label_map)
        if urls.get(image_id):
            extra["url"] = urls[image_id]
        extra["image_id"] = image_id
        groups.add(product_id, image, source=path, row=row, split=split, attributes=attributes, extra=extra)


def _field(record: Any, *names: str) -> str | None:
    if not isinstance(record, dict):
        return None
    for name in names:
        value = record.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _label_ids(record: dict, label_map: dict[int, tuple[str, str]] | None) -> list[int]:
    raw = record.get("labelId", record.get("label_id"))
    if not isinstance(raw, list):
        raise CatalogError(f"labelId must be a list, got {raw!r}")
    ids: list[int] = []
    for value in raw:
        try:
            if isinstance(value, bool):
                raise ValueError
            label = int(str(value).strip())
        except ValueError:
            raise CatalogError(f"label id {value!r} is not a number") from None
        if label_map is not None and label not in label_map:
            raise CatalogError(f"label id {label} is not in the label map")
        if label not in ids:
            ids.append(label)
    return ids


def _label_fields(ids: list[int], label_map: dict[int, tuple[str, str]] | None) -> tuple[dict[str, str], dict[str, Any]]:
    extra: dict[str, Any] = {"label_ids": ids}
    if label_map is None:
        extra["labels"] = [str(i) for i in ids]
        return {}, extra
    by_task: dict[str, list[str]] = {}
    for label in ids:
        name, task = label_map[label]
        by_task.setdefault(task or "label", []).append(name)
    extra["labels"] = [label_map[i][0] for i in ids]
    attributes: dict[str, str] = {}
    for task, names in by_task.items():
        if task in _TASK_ATTRIBUTES:
            key = _TASK_ATTRIBUTES[task]
            joined = ", ".join(names)
            attributes[key] = title_gender(joined) if key == "gender" and len(names) == 1 else joined
        else:
            extra[task] = ", ".join(names)
    return attributes, extra


# ---------------------------------------------------------------- 2019 / 2020 segmentation


def read_imaterialist_segmentation(root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """iMaterialist-Fashion 2019/2020 (FGVC6/7) train images with the labels of their segments.

    Row numbers are lines of ``train.csv``.  A row whose ImageId is empty,
    whose Height/Width are not positive integers, or whose class or attribute
    ids are not numbers in ``label_descriptions.json``, is a ``RowError`` and
    its segment is left out; an image file that is missing is one
    ``RowError`` (at its first row) and the image is skipped.
    """
    base = require_dir(root, "iMaterialist-Fashion segmentation")
    splits = choose_splits(split, ("train",), "iMaterialist-Fashion segmentation")
    table = base / "train.csv"
    if not table.is_file():
        raise CatalogError(f"iMaterialist-Fashion segmentation: no train.csv in {base}")
    categories, attributes = _descriptions(base / "label_descriptions.json")
    groups = ProductGroups(limit)
    images: dict[str, dict[str, Any]] = {}
    missing: set[str] = set()
    folders = [base / "train", base / "images" / "train", base / "images"]
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, min(sys.maxsize, 2**31 - 1)))  # masks of large photos exceed the default
    try:
        for line, row in csv_rows(table):
            if isinstance(row, str):
                groups.error(table, line, row)
                continue
            try:
                image_id, size, class_ids, attribute_ids = _segment(row, categories, attributes)
                check_id(image_id)  # the product id: refused here, as a row, not when the product is made
            except CatalogError as exc:
                groups.error(table, line, str(exc))
                continue
            if image_id in missing:
                continue
            entry = images.get(image_id)
            if entry is None:
                if limit is not None and len(images) >= limit:
                    continue
                path = find_image(folders, image_id, (".jpg", ".jpeg", ".png"))
                if path is None:
                    missing.add(image_id)
                    groups.error(table, line, f"image not found: {folders[0] / image_id}.jpg")
                    continue
                entry = images[image_id] = {"path": path, "line": line, "size": size, "classes": [], "attributes": [], "n": 0}
            entry["n"] += 1
            entry["classes"] += [c for c in class_ids if c not in entry["classes"]]
            entry["attributes"] += [a for a in attribute_ids if a not in entry["attributes"]]
    finally:
        csv.field_size_limit(previous)
    for image_id, entry in images.items():
        names = [categories[c]["name"] for c in entry["classes"]]
        whole = [categories[c]["name"] for c in entry["classes"] if categories[c].get("level", 1) == 1]
        attribute_names = [attributes[a]["name"] for a in entry["attributes"]]
        patterns = [attributes[a]["name"] for a in entry["attributes"] if attributes[a].get("supercategory") == "textile pattern"]
        extra = {
            "categories": names,
            "attribute_names": attribute_names,
            "labels": names + attribute_names,
            "segments": entry["n"],
            "height": entry["size"][0],
            "width": entry["size"][1],
        }
        groups.products[image_id] = Product(
            image_id,
            [entry["path"]],
            attributes={"category": ", ".join(whole), "pattern": ", ".join(patterns)},
            split="train",
            extra=extra,
        )
    return groups.catalog(catalog_name("imaterialist-seg", splits, ("train",)), base)


def _descriptions(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise CatalogError(f"{path}: expected an object with 'categories' and 'attributes' arrays")
    tables = []
    for key in ("categories", "attributes"):
        table: dict[int, dict] = {}
        for i, item in enumerate(data.get(key) or [], 1):
            if not isinstance(item, dict) or not isinstance(item.get("id"), int) or not isinstance(item.get("name"), str):
                raise CatalogError(f"{path}: {key}[{i}] is not an object with an integer id and a name")
            table[item["id"]] = item
        tables.append(table)
    return tables[0], tables[1]


def _segment(
    row: dict[str, str], categories: dict[int, dict], attributes: dict[int, dict]
) -> tuple[str, tuple[int, int], list[int], list[int]]:
    image_id = (row.get("ImageId") or "").strip()
    if not image_id:
        raise CatalogError("empty ImageId")
    try:
        size = (int(row["Height"]), int(row["Width"]))
        if min(size) <= 0:
            raise ValueError
    except (KeyError, ValueError):
        raise CatalogError(f"Height/Width {row.get('Height')!r}/{row.get('Width')!r} are not positive integers") from None
    class_field = (row.get("ClassId") or "").strip()
    parts = class_field.split("_")
    attribute_field = row.get("AttributesIds")
    if attribute_field is not None:  # 2020: separate column, comma-separated
        attribute_parts = [p for p in attribute_field.replace(" ", "").split(",") if p]
    else:  # 2019: ClassId "category_attr_attr"
        parts, attribute_parts = parts[:1], parts[1:]
    if len(parts) != 1:
        raise CatalogError(f"ClassId {class_field!r} is not a class id")
    class_ids = _ids(parts, categories, "class")
    attribute_ids = _ids(attribute_parts, attributes, "attribute")
    return image_id, size, class_ids, attribute_ids


def _ids(parts: list[str], known: dict[int, dict], kind: str) -> list[int]:
    ids = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise CatalogError(f"{kind} id {part!r} is not a number") from None
        if value not in known:
            raise CatalogError(f"{kind} id {value} is not in label_descriptions.json")
        ids.append(value)
    return ids
