"""FashionIQ (Wu, Gao, Guo et al., CVPR 2021): products from the image splits, and the relative-caption triplets.

Layout, as published in https://github.com/XiaoxiaoGuo/fashion-iq (``captions/``
and ``image_splits/`` of that repository; images fetched by ASIN, e.g. with the
fashion-iq-metadata URL lists) and as read by its starter kit and CLIP4Cir::

    ROOT/
      captions/cap.{dress,shirt,toptee}.{train,val,test}.json
          [{"candidate": ASIN, "target": ASIN, "captions": [str, str]}, ...]
          (the public test files carry no "target")
      image_splits/split.{dress,shirt,toptee}.{train,val,test}.json
          [ASIN, ...]
      images/{ASIN}.png   (or .jpg / .jpeg; the release's own files are PNG, many
                           mirrors re-encode them as JPEG)

A product is one ASIN from an image-split file: ``category`` is the garment
group (dress / shirt / toptee), ``split`` is train / val / test.  FashionIQ has
no product titles; its text lives in the relative captions, exposed by
:func:`read_fashioniq_triplets` as ``(candidate_id, target_id, [captions])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..schema import Catalog, CatalogError, RowError
from ._common import (
    ProductGroups,
    RecordList,
    catalog_name,
    choose_splits,
    find_image,
    load_json_list,
    require_dir,
)

__all__ = ["FASHIONIQ_CATEGORIES", "FASHIONIQ_SPLITS", "FashionIQTriplet", "read_fashioniq", "read_fashioniq_triplets"]

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_SPLITS = ("train", "val", "test")


class FashionIQTriplet(NamedTuple):
    """A reference image, the wanted image and how they differ (target_id is None where withheld, e.g. test)."""

    candidate_id: str
    target_id: str | None
    captions: list[str]


def read_fashioniq(root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """FashionIQ products (one per ASIN of ``image_splits``) with their local image.

    ``split``: train, val or test (None: all three).  An entry that is not an
    ASIN string, an ASIN without an image file, or one listed in two splits is
    a ``RowError`` (row = 1-based position in the split file).
    """
    base = require_dir(root, "FashionIQ")
    splits = choose_splits(split, FASHIONIQ_SPLITS, "FashionIQ")
    image_folders = [base / "images", base]
    groups = ProductGroups(limit)
    found = 0
    for split_name in splits:
        for category in FASHIONIQ_CATEGORIES:
            path = base / "image_splits" / f"split.{category}.{split_name}.json"
            if not path.is_file():
                continue
            found += 1
            for row, asin in enumerate(load_json_list(path), 1):
                if not isinstance(asin, str) or not asin.strip():
                    groups.error(path, row, f"expected an ASIN string, got {asin!r}")
                    continue
                asin = asin.strip()
                if not groups.wants(asin):
                    continue
                image = find_image(image_folders, asin)
                if image is None:
                    groups.error(path, row, f"image not found: {base / 'images' / asin}.png (or .jpg)")
                    continue
                groups.add(asin, image, source=path, row=row, split=split_name, attributes={"category": category})
    if not found:
        raise CatalogError(f"FashionIQ: no image_splits/split.<category>.<{'|'.join(splits)}>.json under {base}")
    return groups.catalog(catalog_name("fashioniq", splits, FASHIONIQ_SPLITS), base)


def read_fashioniq_triplets(
    root: str | Path, split: str | None = None, *, categories: tuple[str, ...] | list[str] | None = None
) -> RecordList[FashionIQTriplet]:
    """The relative-caption triplets of ``captions/cap.<category>.<split>.json``, in file order.

    ``categories`` restricts the garment groups (default: all three).  A
    record without a candidate ASIN, with a target that is not a string, or
    whose captions are not a list of strings is a ``RowError`` and skipped.
    Image existence is not checked here: pair them with :func:`read_fashioniq`.
    """
    base = require_dir(root, "FashionIQ")
    splits = choose_splits(split, FASHIONIQ_SPLITS, "FashionIQ")
    wanted = tuple(categories) if categories else FASHIONIQ_CATEGORIES
    unknown = [c for c in wanted if c not in FASHIONIQ_CATEGORIES]
    if unknown:
        raise CatalogError(f"FashionIQ has no category {unknown[0]!r}; categories: {', '.join(FASHIONIQ_CATEGORIES)}")
    result: RecordList[FashionIQTriplet] = RecordList([])
    found = 0
    for split_name in splits:
        for category in wanted:
            path = base / "captions" / f"cap.{category}.{split_name}.json"
            if not path.is_file():
                continue
            found += 1
            for row, record in enumerate(load_json_list(path), 1):
                try:
                    result.items.append(_triplet(record))
                except CatalogError as exc:
                    result.errors.append(RowError(str(path), row, str(exc)))
    if not found:
        raise CatalogError(f"FashionIQ: no captions/cap.<category>.<{'|'.join(splits)}>.json under {base}")
    return result


def _triplet(record: object) -> FashionIQTriplet:
    if not isinstance(record, dict):
        raise CatalogError(f"expected a JSON object, got {type(record).__name__}")
    candidate = record.get("candidate")
    if not isinstance(candidate, str) or not candidate.strip():
        raise CatalogError(f"missing or bad candidate {candidate!r}")
    target = record.get("target")
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise CatalogError(f"bad target {target!r}")
    captions = record.get("captions")
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise CatalogError(f"captions must be a list of strings, got {captions!r}")
    cleaned = [c.strip() for c in captions if c.strip()]
    if not cleaned:
        raise CatalogError("no non-empty caption")
    return FashionIQTriplet(candidate.strip(), target.strip() if target else None, cleaned)
