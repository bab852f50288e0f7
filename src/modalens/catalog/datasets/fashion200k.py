"""Fashion200k (Han et al., ICCV 2017): Lyst product photos with their product descriptions.

Layout, as described in https://github.com/xthan/fashion-200k (README: "labels:
train/test labels. Format: ImageName DetectionScore ProductDescription";
"women.tar.gz: Cropped detected images") and as read by TIRG-style loaders::

    ROOT/
      labels/{dress,jacket,pants,skirt,top}_{train,test}_detect_all.txt
          women/dresses/casual_and_day_dresses/51727804/51727804_0.jpeg<TAB>0.9876<TAB>black shift dress
      women/<category>/<subcategory>/<product id>/<product id>_<n>.jpeg

A product is the folder holding the photo (``51727804`` above): its photos
from every line are grouped, in file order.  ``gender`` is Women (the release
has only women's clothing), ``category`` the labels file's garment group,
``sub_category`` the path's third part ('casual and day dresses'); the title
is the description; ``extra['detection_scores']`` is aligned with ``images``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..schema import Catalog, CatalogError
from ._common import (
    ProductGroups,
    catalog_name,
    choose_splits,
    humanise,
    read_lines,
    require_dir,
    title_gender,
)

__all__ = ["FASHION200K_CATEGORIES", "FASHION200K_SPLITS", "read_fashion200k"]

FASHION200K_CATEGORIES = ("dress", "jacket", "pants", "skirt", "top")
FASHION200K_SPLITS = ("train", "test")


def read_fashion200k(root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """Fashion200k products grouped by product folder; ``split`` is train or test (None: both).

    A line without three tab-separated fields, with a detection score that is
    not a number, with a path outside ``ROOT`` or to a missing photo, or whose
    product already appeared in the other split, is a ``RowError`` (row = line).
    """
    base = require_dir(root, "Fashion200k")
    splits = choose_splits(split, FASHION200K_SPLITS, "Fashion200k")
    groups = ProductGroups(limit)
    found = 0
    for split_name in splits:
        for category in FASHION200K_CATEGORIES:
            path = base / "labels" / f"{category}_{split_name}_detect_all.txt"
            if not path.is_file():
                continue
            found += 1
            for line, text in read_lines(path):
                if not text.strip():
                    continue
                try:
                    relative, score, description = _fields(text)
                except CatalogError as exc:
                    groups.error(path, line, str(exc))
                    continue
                parts = relative.split("/")
                product_id = parts[-2] if len(parts) >= 2 else ""
                if not product_id:
                    groups.error(path, line, f"image path {relative!r} has no product folder")
                    continue
                if not groups.wants(product_id):
                    continue
                image = os.path.normpath(base / relative)
                if not image.startswith(str(base) + os.sep):
                    groups.error(path, line, f"image path {relative!r} leaves the dataset folder")
                    continue
                if not os.path.isfile(image):
                    groups.error(path, line, f"image not found: {image}")
                    continue
                attributes = {"category": category}
                if len(parts) >= 5:  # women/<category>/<subcategory>/<id>/<file>
                    attributes["gender"] = title_gender(parts[0])
                    attributes["sub_category"] = humanise(parts[2])
                groups.add(
                    product_id,
                    image,
                    source=path,
                    row=line,
                    split=split_name,
                    title=description,
                    attributes=attributes,
                    per_image={"detection_scores": score},
                )
    if not found:
        raise CatalogError(f"Fashion200k: no labels/<category>_<{'|'.join(splits)}>_detect_all.txt under {base}")
    return groups.catalog(catalog_name("fashion200k", splits, FASHION200K_SPLITS), base)


def _fields(text: str) -> tuple[str, float, str]:
    fields = text.split("\t")
    if len(fields) != 3:
        raise CatalogError(f"expected 3 tab-separated fields (image, score, description), got {len(fields)}")
    relative, score_text, description = (f.strip() for f in fields)
    if not relative:
        raise CatalogError("empty image path")
    try:
        score = float(score_text)
    except ValueError:
        raise CatalogError(f"detection score {score_text!r} is not a number") from None
    if not math.isfinite(score):
        raise CatalogError(f"detection score {score_text!r} is not finite")
    return relative.replace("\\", "/").lstrip("/"), score, description
