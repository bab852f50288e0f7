"""Fashion-Gen (Rostamzadeh et al., 2018; SSENSE photos): HDF5 files of 256x256 photos with stylist texts.

Layout, as distributed by the dataset's site (fashion-gen.com) and read by its
users (e.g. the dataset datasources of alibaba/EasyCV and the field list
quoted in several public loaders)::

    ROOT/
      fashiongen_256_256_train.h5
      fashiongen_256_256_validation.h5
        input_image         (N, 256, 256, 3) uint8
        input_productID     (N, 1) int          several rows (poses) per product
        input_name, input_description, input_category, input_subcategory,
        input_gender, input_brand, input_season, input_composition,
        input_department, input_pose  (N, 1) byte strings (UTF-8, some latin-1)
        input_msrpUSD       (N, 1) float

One product per ``input_productID`` (title = input_name, description =
input_description, price = input_msrpUSD, category / sub_category / gender /
brand / season as attributes, input_composition as ``material``,
``extra['poses']`` and ``extra['h5_rows']`` aligned with ``images``); each of
its rows (poses) becomes one PNG,
written once, atomically, under ``cache_dir()/fashion-gen/<split>-<key>/``
(``key`` fingerprints the HDF5 file, so a new release never reuses old
pictures) and reused by later reads.  Needs ``h5py`` (``pip install
'modalens[datasets]'``).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...paths import cache_dir
from ..schema import Catalog, CatalogError
from ._common import (
    ProductGroups,
    catalog_name,
    choose_splits,
    require_dir,
    title_gender,
    write_png_once,
)

__all__ = ["FASHION_GEN_SPLITS", "read_fashion_gen"]

FASHION_GEN_SPLITS = ("train", "val")
_FILES = {"train": "fashiongen_256_256_train.h5", "val": "fashiongen_256_256_validation.h5"}
#: HDF5 field -> where it goes: a Product field, an attribute, or extra.
_TEXT_FIELDS = {
    "input_name": ("title", None),
    "input_description": ("description", None),
    "input_category": ("attribute", "category"),
    "input_subcategory": ("attribute", "sub_category"),
    "input_gender": ("attribute", "gender"),
    "input_brand": ("attribute", "brand"),
    "input_season": ("attribute", "season"),
    "input_composition": ("attribute", "material"),
    "input_department": ("extra", "department"),
}
_CHUNK = 256


def read_fashion_gen(
    root: str | Path, split: str | None = None, *, limit: int | None = None, cache: str | Path | None = None
) -> Catalog:
    """Fashion-Gen products (poses grouped by product id) with their photos materialised as PNG files.

    ``split``: train or val ("validation" too; None: both).  ``cache``
    overrides the PNG folder (default ``cache_dir()/fashion-gen``).  A row
    whose product id is empty or not a positive integer, or whose product is
    already in the other split, is a ``RowError`` (row = 1-based row index).
    """
    h5py = _h5py()
    base = require_dir(root, "Fashion-Gen")
    splits = choose_splits(split, FASHION_GEN_SPLITS, "Fashion-Gen")
    paths = {s: base / _FILES[s] for s in splits}
    present = {s: p for s, p in paths.items() if p.is_file()}
    if not present:
        raise CatalogError(f"Fashion-Gen: none of {', '.join(_FILES[s] for s in splits)} in {base}")
    groups = ProductGroups(limit)
    out_root = Path(cache) if cache is not None else cache_dir() / "fashion-gen"
    for split_name, path in present.items():
        try:
            handle = h5py.File(path, "r")
        except OSError as exc:
            raise CatalogError(f"{path}: not a readable HDF5 file ({exc})") from exc
        with handle:
            _read_file(handle, path, split_name, groups, out_root)
    return groups.catalog(catalog_name("fashion-gen", splits, FASHION_GEN_SPLITS), base)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise CatalogError(
            "Fashion-Gen is stored as HDF5 and needs the 'h5py' package: pip install 'modalens[datasets]' (or pip install h5py)"
        ) from exc
    return h5py


def _read_file(handle: Any, path: Path, split: str, groups: ProductGroups, out_root: Path) -> None:
    for required in ("input_image", "input_productID"):
        if required not in handle:
            raise CatalogError(f"{path}: no dataset {required!r} (datasets: {', '.join(sorted(handle.keys()))})")
    images = handle["input_image"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise CatalogError(f"{path}: input_image is {images.shape} {images.dtype}, expected (N, H, W, 3) uint8")
    count = images.shape[0]
    ids = _column(handle["input_productID"][()], count, path, "input_productID")

    # Pass 1 (product ids only, cheap): which rows make the products we keep.
    chosen: list[tuple[int, str]] = []
    kept: set[str] = set()
    for index in range(count):
        product_id = _product_id(ids[index])
        if product_id is None:
            groups.error(path, index + 1, f"bad product id {ids[index]!r}: expected a positive integer")
            continue
        if product_id not in kept and product_id not in groups.products:
            if groups.limit is not None and len(groups.products) + len(kept) >= groups.limit:
                continue
            kept.add(product_id)
        chosen.append((index, product_id))
    if not chosen:
        return

    # Pass 2, in blocks of rows (the train file is ~13 GB): text fields, then PNGs for rows that lack one.
    names = [name for name in (*_TEXT_FIELDS, "input_pose", "input_msrpUSD") if name in handle]
    folder = out_root / f"{split}-{_fingerprint(path, count)}"
    position = 0
    while position < len(chosen):
        first = chosen[position][0]
        end = min(first + _CHUNK, count)
        block: list[tuple[int, str]] = []
        while position < len(chosen) and chosen[position][0] < end:
            block.append(chosen[position])
            position += 1
        columns = {name: _column(handle[name][first:end], end - first, path, name) for name in names}
        targets = {index: folder / f"{index:06d}.png" for index, _ in block}
        if any(not target.is_file() for target in targets.values()):
            pixels = images[first:end]
            for index, target in targets.items():
                write_png_once(target, pixels[index - first])
        for index, product_id in block:
            _add_row(
                groups,
                path,
                split,
                index,
                product_id,
                {name: column[index - first] for name, column in columns.items()},
                targets[index],
            )


def _add_row(groups: ProductGroups, path: Path, split: str, index: int, product_id: str, row: dict[str, Any], png: Path) -> None:
    fields: dict[str, Any] = {"title": "", "description": "", "attributes": {}, "extra": {}}
    for name, (role, key) in _TEXT_FIELDS.items():
        if name not in row:
            continue
        value = _decode(row[name])
        if role == "attribute":
            fields["attributes"][key] = title_gender(value) if key == "gender" and value else value
        elif role == "extra":
            if value:
                fields["extra"][key] = value
        else:
            fields[role] = value
    price = _price(row["input_msrpUSD"]) if "input_msrpUSD" in row else None
    added = groups.add(
        product_id,
        str(png.absolute()),
        source=path,
        row=index + 1,
        split=split,
        title=fields["title"],
        description=fields["description"],
        attributes=fields["attributes"],
        extra=fields["extra"],
        per_image={"poses": _decode(row["input_pose"]) if "input_pose" in row else "", "h5_rows": index},
    )
    if added and price is not None and groups.products[product_id].price is None:
        groups.products[product_id].price = price


def _column(values: Any, count: int, path: Path, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.shape[0] != count:
        raise CatalogError(f"{path}: {name} has shape {np.shape(values)}, expected ({count},) or ({count}, 1)")
    return array


def _decode(value: Any) -> str:
    """HDF5 byte strings: UTF-8 where valid, else latin-1 (the dataset mixes both)."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else b""
    if isinstance(value, (bytes, np.bytes_)):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    else:
        text = str(value)
    return " ".join(text.replace("\x00", "").split())


def _product_id(value: Any) -> str | None:
    if isinstance(value, (bytes, np.bytes_, str)):
        text = _decode(value)
        return text if text.isdigit() and int(text) > 0 else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0 or number != int(number):
        return None
    return str(int(number))


def _price(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price > 0 else None


def _fingerprint(path: Path, count: int) -> str:
    """Names the PNG folder after the file's identity, so a changed or different file never reuses old PNGs."""
    stat = os.stat(path)
    key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{count}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]
