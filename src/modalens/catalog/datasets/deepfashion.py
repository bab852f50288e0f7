"""DeepFashion In-shop Clothes Retrieval (Liu et al., CVPR 2016) and DeepFashion-MultiModal (Jiang et al., 2022).

In-shop, as described by the benchmark's README.txt ("EVALUATION PARTITIONS",
"ITEM LABELS", "DESCRIPTION LABELS"; a copy is in czla/cloth-image-retrieval
data/InShop/README.txt) and the folder tree of open-mmlab/mmfashion
docs/DATA_PREPARATION.md::

    ROOT/
      Eval/list_eval_partition.txt    line 1: number of images; line 2: "image_name item_id evaluation_status";
                                      then "img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train"
                                      (status: train, query or gallery)
      Anno/list_item_inshop.txt       line 1: number of items; then one item id per line (optional)
      Anno/list_description_inshop.json  [{"item": id, "color": str, "description": [str, ...]}] (optional)
      Img/img/WOMEN/Dresses/id_00000002/02_1_front.jpg
    (the files may also sit directly in ROOT, and img/ directly under ROOT)

A product is an item id with all its photos of one status: train items keep
their item id; a test item has query and gallery photos, so its products are
``<item_id>-query`` and ``<item_id>-gallery`` (``extra['item_id']`` is always
the bare id, the key to match queries with gallery photos).  ``gender`` and
``category`` come from the image path; colour and description from the
description file when present; ``extra['views']`` is aligned with ``images``.

DeepFashion-MultiModal, as published in https://github.com/yumingj/DeepFashion-MultiModal
(README: "Labels", shape / fabric / color annotation formats) with the file
names its users read (labels/shape/shape_anno_all.txt,
labels/texture/fabric_ann.txt, labels/texture/pattern_ann.txt, captions.json)::

    ROOT/
      images/MEN-Denim-id_00000080-01_7_additional.jpg   (image/ is also searched)
      captions.json                       {"<image name>": "<caption>", ...}
      labels/shape/shape_anno_all.txt     <img_name> <shape_0> ... <shape_11>
      labels/texture/fabric_ann.txt       <img_name> <upper> <lower> <outer>   (optional)
      labels/texture/pattern_ann.txt      <img_name> <upper> <lower> <outer>   (optional; the README's "color")

Photos named ``<GENDER>-<Category>-id_<n>-<shot>_<seq>_<view>.jpg`` with the
same ``<GENDER>-<Category>-id_<n>`` are one product (the images listed in
captions.json); ``extra['captions']`` is aligned with ``images`` and the first
caption is the description.  Each shape field (``extra['sleeve_length']``, ...)
and ``material`` / ``pattern`` take the first photo's value that is not NA.
The dataset has no splits.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..schema import Catalog, CatalogError
from ._common import (
    ProductGroups,
    catalog_name,
    choose_splits,
    first_existing,
    humanise,
    load_json,
    read_lines,
    require_dir,
    title_gender,
)

__all__ = ["INSHOP_SPLITS", "read_deepfashion_inshop", "read_deepfashion_multimodal"]

INSHOP_SPLITS = ("train", "query", "gallery")


# ---------------------------------------------------------------- In-shop


def read_deepfashion_inshop(root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """DeepFashion In-shop products; ``split``: train, query, gallery, or test (= query and gallery); None: all.

    Row numbers are lines of ``list_eval_partition.txt``.  A line without
    exactly three fields, with an unknown status, an item that
    ``list_item_inshop.txt`` does not list, or a photo that is missing, is a
    ``RowError``; so is a header count that disagrees with the lines below it.
    """
    base = require_dir(root, "DeepFashion In-shop")
    if split is not None and str(split).strip().lower() == "test":
        splits = ["query", "gallery"]
    else:
        splits = choose_splits(split, INSHOP_SPLITS, "DeepFashion In-shop")
    partition = first_existing([base / "Eval" / "list_eval_partition.txt", base / "list_eval_partition.txt"])
    if partition is None:
        raise CatalogError(f"DeepFashion In-shop: no Eval/list_eval_partition.txt in {base}")
    items = _item_list(first_existing([base / "Anno" / "list_item_inshop.txt", base / "list_item_inshop.txt"]))
    descriptions = _inshop_descriptions(
        first_existing([base / "Anno" / "list_description_inshop.json", base / "list_description_inshop.json"])
    )
    image_roots = [base / "Img", base]
    groups = ProductGroups(limit)
    declared: tuple[int, int] | None = None
    listed = 0
    for line, text in read_lines(partition):
        fields = text.split()
        if not fields:
            continue
        if line == 1 and len(fields) == 1 and fields[0].isdigit():
            declared = (line, int(fields[0]))
            continue
        if fields[0] == "image_name":
            continue
        listed += 1
        if len(fields) != 3:
            groups.error(partition, line, f"expected 'image_name item_id evaluation_status', got {len(fields)} fields")
            continue
        name, item_id, status = fields
        if status not in INSHOP_SPLITS:
            groups.error(partition, line, f"unknown evaluation status {status!r} (train, query, gallery)")
            continue
        if status not in splits:
            continue
        if items is not None and item_id not in items:
            groups.error(partition, line, f"item {item_id} is not in list_item_inshop.txt")
            continue
        product_id = item_id if status == "train" else f"{item_id}-{status}"
        if not groups.wants(product_id):
            continue
        candidates = [Path(os.path.normpath(r / name)) for r in image_roots]
        image = next((c for c in candidates if c.is_file() and base in c.parents), None)
        if image is None:
            groups.error(partition, line, f"image not found: {candidates[0]}")
            continue
        parts = Path(name).parts  # img / WOMEN / Dresses / id_00000002 / 02_1_front.jpg
        attributes: dict[str, str] = {}
        if len(parts) >= 5:
            attributes = {"gender": title_gender(parts[-4]), "category": humanise(parts[-3])}
        extra: dict[str, Any] = {"item_id": item_id}
        description = ""
        if item_id in descriptions:
            colour, description = descriptions[item_id]
            if colour:
                attributes["colour"] = colour
        view = Path(name).stem.split("_", 2)[-1] if Path(name).stem.count("_") >= 2 else ""
        groups.add(
            product_id,
            str(image),
            source=partition,
            row=line,
            split=status,
            description=description,
            attributes=attributes,
            extra=extra,
            per_image={"views": view},
        )
    if declared is not None and declared[1] != listed:
        groups.error(partition, declared[0], f"header says {declared[1]} images but {listed} are listed (truncated file?)")
    return groups.catalog(catalog_name("deepfashion-inshop", splits, INSHOP_SPLITS), base)


def _item_list(path: Path | None) -> set[str] | None:
    if path is None:
        return None
    items: set[str] = set()
    for line, text in read_lines(path):
        fields = text.split()
        if not fields or (line == 1 and len(fields) == 1 and fields[0].isdigit()) or fields[0] == "item_id":
            continue
        items.add(fields[0])
    return items


def _inshop_descriptions(path: Path | None) -> dict[str, tuple[str, str]]:
    """item id -> (colour, description) from list_description_inshop.json; records it cannot use are ignored."""
    if path is None:
        return {}
    data = load_json(path)
    records = data if isinstance(data, list) else []
    table: dict[str, tuple[str, str]] = {}
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("item"), str):
            continue
        text = record.get("description")
        if isinstance(text, list):
            text = " ".join(t.strip() for t in text if isinstance(t, str) and t.strip())
        colour = record.get("color")
        table[record["item"]] = (colour.strip() if isinstance(colour, str) else "", text.strip() if isinstance(text, str) else "")
    return table


# ---------------------------------------------------------------- MultiModal

_MULTIMODAL_NAME = re.compile(
    r"^(?P<gender>MEN|WOMEN)-(?P<category>.+?)-(?P<item>id_\d+)-(?P<shot>\d+)_(?P<seq>\d+)_(?P<view>[^./]+)\.(?:jpe?g|png)$"
)
_NA = "NA"
#: Shape annotation fields in file order, with their code tables (README "Labels").
SHAPE_FIELDS: tuple[tuple[str, dict[int, str]], ...] = tuple(
    (name, dict(enumerate(values)) if isinstance(values, list) else values)
    for name, values in (
        ("sleeve_length", ["sleeveless", "short-sleeve", "medium-sleeve", "long-sleeve", "not long-sleeve", _NA]),
        ("lower_clothing_length", ["three-point", "medium short", "three-quarter", "long", _NA]),
        ("socks", ["no", "socks", "leggings", _NA]),
        ("hat", ["no", "yes", _NA]),
        ("glasses", ["no", "eyeglasses", "sunglasses", "glasses in hand or on clothes", _NA]),
        ("neckwear", ["no", "yes", _NA]),
        ("wrist_wearing", ["no", "yes", _NA]),
        ("ring", ["no", "yes", _NA]),
        ("waist_accessories", ["no", "belt", "clothing", "hidden", _NA]),
        # The README lists 0-2 and 4-7 (no 3); 3 is kept as an unnamed code rather than rejected.
        ("neckline", {0: "V-shape", 1: "square", 2: "round", 3: "code 3", 4: "standing", 5: "lapel", 6: "suspenders", 7: _NA}),
        ("outer_clothing_cardigan", ["yes", "no", _NA]),
        ("upper_clothing_covering_navel", ["no", "yes", _NA]),
    )
)
FABRIC_CODES = dict(enumerate(["denim", "cotton", "leather", "furry", "knitted", "chiffon", "other", _NA]))
PATTERN_CODES = dict(enumerate(["floral", "graphic", "striped", "pure color", "lattice", "other", "color block", _NA]))
_GARMENT_PARTS = ("upper", "lower", "outer")


def read_deepfashion_multimodal(root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """DeepFashion-MultiModal products (photos of one garment grouped) with captions and shape/texture labels.

    A caption that is not a string, an image name not of the published form,
    a missing photo (row = 1-based position in captions.json), or a label line
    with the wrong number of fields or an unknown code (row = line), is a
    ``RowError``.  ``split`` must be None: the dataset publishes no splits.
    """
    base = require_dir(root, "DeepFashion-MultiModal")
    if split is not None:
        raise CatalogError(f"DeepFashion-MultiModal has no splits (asked for {split!r}); leave the split out")
    captions_path = base / "captions.json"
    captions = load_json(captions_path)
    if not isinstance(captions, dict):
        raise CatalogError(f"{captions_path}: expected a JSON object of image name -> caption")
    groups = ProductGroups(limit)
    shape = _codes_file(base / "labels" / "shape" / "shape_anno_all.txt", [t for _, t in SHAPE_FIELDS], groups)
    fabric = _codes_file(base / "labels" / "texture" / "fabric_ann.txt", [FABRIC_CODES] * 3, groups)
    pattern = _codes_file(base / "labels" / "texture" / "pattern_ann.txt", [PATTERN_CODES] * 3, groups)
    folders = [base / "images", base / "image", base]
    for row, (name, caption) in enumerate(captions.items(), 1):
        if not isinstance(caption, str):
            groups.error(captions_path, row, f"{name}: caption must be a string, got {type(caption).__name__}")
            continue
        match = _MULTIMODAL_NAME.match(name)
        if match is None:
            groups.error(captions_path, row, f"{name!r} is not a <GENDER>-<Category>-id_<n>-<shot>_<seq>_<view>.jpg name")
            continue
        product_id = f"{match['gender']}-{match['category']}-{match['item']}"
        if not groups.wants(product_id):
            continue
        image = next((str(f / name) for f in folders if (f / name).is_file()), None)
        if image is None:
            groups.error(captions_path, row, f"image not found: {folders[0] / name}")
            continue
        attributes = {"gender": title_gender(match["gender"]), "category": humanise(match["category"])}
        groups.add(
            product_id,
            image,
            source=captions_path,
            row=row,
            description=caption.strip(),
            attributes=attributes,
            extra={"item_id": match["item"]},
            per_image={"captions": caption.strip(), "views": match["view"]},
        )
    for product in groups.products.values():
        names = [os.path.basename(p) for p in product.images]
        for index, (field, _) in enumerate(SHAPE_FIELDS):
            value = _first_known(shape.get(n, [])[index] if n in shape else _NA for n in names)
            if value != _NA:
                product.extra[field] = value
        for label, table, attribute in (("fabric", fabric, "material"), ("pattern", pattern, "pattern")):
            for index, part in enumerate(_GARMENT_PARTS):
                value = _first_known(table[n][index] if n in table else _NA for n in names)
                if value != _NA:
                    product.extra[f"{part}_{label}"] = value
                    product.attributes.setdefault(attribute, value)
    return groups.catalog(catalog_name("deepfashion-multimodal", [], []), base)


def _codes_file(path: Path, tables: list[dict[int, str]], groups: ProductGroups) -> dict[str, list[str]]:
    """image name -> decoded values of a '<img_name> <code> <code> ...' file (empty when the file is absent)."""
    if not path.is_file():
        return {}
    decoded: dict[str, list[str]] = {}
    for line, text in read_lines(path):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != len(tables) + 1:
            groups.error(path, line, f"expected an image name and {len(tables)} codes, got {len(fields)} fields")
            continue
        try:
            values = [tables[i][int(code)] for i, code in enumerate(fields[1:])]
        except (ValueError, KeyError):
            groups.error(path, line, f"unknown code in {' '.join(fields[1:])!r}")
            continue
        decoded[fields[0]] = values
    return decoded


def _first_known(values: Any) -> str:
    return next((v for v in values if v != _NA), _NA)
