"""Shared plumbing for the open-dataset readers: files, splits, grouping photos into products.

Every reader follows the catalogue contract of :mod:`modalens.catalog.readers`:
a record that cannot be used becomes a ``RowError`` (source file, position,
reason) and is skipped; a file that cannot be used at all raises
``CatalogError``.  ``RowError.row`` is the 1-based line number for text and
CSV files, and the 1-based position of the record for JSON arrays/objects and
HDF5 datasets.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image

from ..readers import CsvLines, check_header_text
from ..readers import csv_rows as split_csv_rows
from ..readers import read_utf8 as read_text  # one UTF-8 file reader for all catalogues
from ..schema import Catalog, CatalogError, Product, RowError

T = TypeVar("T")

#: The usual spellings of the three standard splits, mapped to modalens' names.
STANDARD_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class RecordList(Generic[T]):
    """Records that are not products (triplets, outfits), with the ones that could not be read."""

    items: list[T]
    errors: list[RowError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __getitem__(self, i: int) -> T:
        return self.items[i]


# ---------------------------------------------------------------- files


def require_dir(root: str | Path, dataset: str) -> Path:
    """The dataset root as an absolute path, or a CatalogError naming the dataset."""
    path = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not path.is_dir():
        raise CatalogError(f"{dataset}: dataset folder {root} not found")
    return path


def first_existing(candidates: Iterable[Path]) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) for every line of a text file."""
    for number, line in enumerate(read_text(path).split("\n"), 1):
        yield number, line.rstrip("\r")


def load_json(path: Path) -> Any:
    """A JSON document; a file that does not parse is unusable as a whole."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def load_json_list(path: Path) -> list[Any]:
    data = load_json(path)
    if not isinstance(data, list):
        raise CatalogError(f"{path}: expected a JSON array, got {type(data).__name__}")
    return data


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line, row) per CSV data row, or (line, reason) for a row that does not match the header.

    Streams the file (some dataset CSVs are gigabytes of run-length masks).
    A byte that is not UTF-8, or a quote that is never closed, costs only its
    row (see :func:`modalens.catalog.readers.csv_rows`).
    """
    if not path.is_file():
        raise CatalogError(f"{path}: no such file")
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        yield from _csv_records(CsvLines(handle), path)


def _csv_records(lines: CsvLines, path: Path) -> Iterator[tuple[int, dict[str, str] | str]]:
    header = next(csv.reader(lines), None)
    if not header:
        raise CatalogError(f"{path}: no header row")
    names = [h.strip() for h in header]
    check_header_text(names, path)
    yield from split_csv_rows(lines, names)


def find_image(folders: Sequence[Path], stem: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> str | None:
    """The absolute path of ``stem`` + one of ``extensions`` in the first folder that has it."""
    for folder in folders:
        for ext in extensions:
            candidate = folder / f"{stem}{ext}"
            if candidate.is_file():
                return str(candidate)
    return None


def existing_file(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def write_png_once(path: Path, pixels: np.ndarray) -> Path:
    """Write via a temporary file + rename so an interrupted run never leaves half a PNG; keep an existing file."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(np.ascontiguousarray(pixels)).save(handle, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- values


def text_value(value: Any) -> str:
    """A scalar as stripped text; anything else is a per-record error."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CatalogError(f"expected text, got {type(value).__name__}")
    return str(value).strip()


def humanise(name: str) -> str:
    """Folder-style names ('Blouses_Shirts', 'casual_and_day_dresses') as words."""
    return " ".join(name.replace("_", " ").split())


def title_gender(value: str) -> str:
    """MEN/women/Female/Neutral -> Men, Women, Unisex (the spellings KAGL uses)."""
    lowered = value.strip().lower()
    table = {"men": "Men", "man": "Men", "male": "Men", "women": "Women", "woman": "Women", "female": "Women"}
    table.update({"unisex": "Unisex", "neutral": "Unisex"})
    return table.get(lowered, value.strip().title())


# ---------------------------------------------------------------- splits


def choose_splits(split: str | None, available: Sequence[str], dataset: str, aliases: dict[str, str] | None = None) -> list[str]:
    """The canonical splits to read: all of ``available`` for None, else the one asked for (aliases allowed)."""
    if split is None:
        return list(available)
    key = str(split).strip().lower()
    table = {**STANDARD_SPLITS, **(aliases or {})}
    canonical = table.get(key, key)
    if canonical not in available:
        raise CatalogError(f"{dataset} has no split {split!r}; splits: {', '.join(available)}")
    return [canonical]


# ---------------------------------------------------------------- grouping photos into products


class ProductGroups:
    """Products built record by record: several records (photos) with one id become one product.

    The first record of a product sets its title, description, split and
    attributes; later ones add their photo and fill fields still empty.
    ``per_image`` values are kept as lists aligned with ``images``.  With a
    ``limit``, records of products beyond it are ignored (``wants`` says so
    before the caller does any work for them).
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.products: dict[str, Product] = {}
        self.errors: list[RowError] = []
        self._origin: dict[str, tuple[str, int]] = {}

    def error(self, source: str | Path, row: int, reason: str) -> None:
        self.errors.append(RowError(str(source), row, reason))

    def wants(self, product_id: str) -> bool:
        return product_id in self.products or self.limit is None or len(self.products) < self.limit

    def add(
        self,
        product_id: str,
        image: str | None,
        *,
        source: str | Path,
        row: int,
        split: str | None = None,
        title: str = "",
        description: str = "",
        attributes: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        per_image: dict[str, Any] | None = None,
    ) -> bool:
        """Add one record; False (with a RowError) when it contradicts the product's split."""
        attributes = {k: v for k, v in (attributes or {}).items() if v is not None and str(v).strip()}
        product = self.products.get(product_id)
        if product is None:
            if not self.wants(product_id):
                return False
            try:
                product = Product(product_id, [], title, description, attributes, split=split, extra=dict(extra or {}))
            except CatalogError as exc:
                self.error(source, row, str(exc))
                return False
            self.products[product_id] = product
            self._origin[product_id] = (str(source), row)
        elif product.split != split:
            where = self._origin[product_id]
            self.error(
                source, row, f"product {product_id!r} is in split {product.split!r} ({where[0]}:{where[1]}), not {split!r}"
            )
            return False
        else:
            product.title = product.title or title
            product.description = product.description or description
            for key, value in attributes.items():
                product.attributes.setdefault(key, str(value).strip())
            for key, value in (extra or {}).items():
                product.extra.setdefault(key, value)
        if image is None or image in product.images:
            return True
        product.images.append(image)
        for key, value in (per_image or {}).items():
            product.extra.setdefault(key, []).append(value)
        return True

    def catalog(self, name: str, root: Path) -> Catalog:
        return Catalog(list(self.products.values()), self.errors, name, root)


def catalog_name(dataset: str, splits: Sequence[str], available: Sequence[str]) -> str:
    return dataset if list(splits) == list(available) else f"{dataset}-{'+'.join(splits)}"
