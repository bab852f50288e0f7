"""Catalogue readers: every source becomes the same ``Catalog`` of ``Product`` records.

Readers never stop at the first bad row: a shop export with a few broken
lines should still load, and the user should see exactly which rows were
dropped and why (``Catalog.errors``).  That holds for a byte that is not
UTF-8 (its row is reported) and for a quote that is never closed (its row is
reported and the lines it would have swallowed are read again as rows).
Problems with the file as a whole (missing, not a regular file, empty,
UTF-16, a header that is not UTF-8, unsupported format) raise ``CatalogError``.

Row numbers in ``RowError.row`` are 1-based *line numbers* of the file, for
every table format: in a CSV the header is line 1, so the first data row is
line 2 (a quoted field spanning lines is reported at the line it starts on);
in JSONL the first record is line 1.  For an image folder, ``row`` is the
1-based position of the file in the sorted listing.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..paths import cache_dir, shared_data_dir
from .images import file_kind, open_regular_file
from .schema import ATTRIBUTE_ALIASES, Catalog, CatalogError, Product, RowError, normalise_column

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_SUFFIXES",
    "TABLE_SUFFIXES",
    "default_cache_dir",
    "read_catalog",
    "read_fashion_mnist",
    "read_image_folder",
    "read_kagl",
    "read_kagl_all",
    "read_table",
    "write_jsonl",
]

#: Table formats by suffix; the value is the CSV delimiter, or None for JSON lines.
TABLE_SUFFIXES: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

_IMAGE_KEYS = ("image", "images")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_REPO_ROOT = Path(__file__).resolve().parents[3]


def default_cache_dir() -> Path:
    """Where derived files (e.g. Fashion-MNIST PNGs) go: ``$MODALENS_CACHE`` or ``~/.cache/modalens``."""
    return cache_dir()


# ---------------------------------------------------------------- tables


#: The columns a catalogue may name otherwise (``read_table(columns=...)``, ``modalens index --id-col`` ...).
MAPPABLE_COLUMNS = ("id", "image", "title", "description", "price", "split")


def read_table(
    path: str | Path, images_root: str | Path | None = None, *, limit: int | None = None, columns: dict[str, str] | None = None
) -> Catalog:
    """Read a CSV/TSV/JSONL catalogue; bad rows go to ``Catalog.errors`` and are skipped.

    Relative image paths resolve against ``images_root`` (default: the
    table's folder) and must exist; URLs are kept as they are, unchecked.
    ``limit`` stops after that many good products. ``columns`` maps a role
    (``id``, ``image``, ``title``, ``description``, ``price``, ``split``) to the
    catalogue's own column for it, e.g. ``{"id": "sku", "image": "picture_url"}``;
    a column that already has the role's name is then kept as ``source_<name>``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise CatalogError(f"{path}: unsupported catalogue format {suffix or '(no suffix)'!r}; supported: {', '.join(TABLE_SUFFIXES)}")
    text = _read_text(path)
    delimiter = TABLE_SUFFIXES[suffix]
    mapping = _column_mapping(columns)
    if delimiter is None:
        records = _renamed_records(_jsonl_records(text), mapping)
    else:
        records = _csv_records(text, path, delimiter, mapping)
    base = Path(os.path.abspath(images_root if images_root is not None else path.parent))
    return _collect(records, str(path), base, limit, name=path.stem)


def _read_text(path: Path) -> str:
    """The whole file as text, with clear errors for missing, empty and UTF-16 files (other bad bytes are the rows')."""
    text = read_utf8_rows(path)
    if not text.strip():
        raise CatalogError(f"{path}: file is empty")
    return text


def read_utf8(path: Path) -> str:
    """A whole text file (UTF-8, BOM allowed); missing, unreadable or undecodable files are CatalogErrors."""
    data = _file_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise CatalogError(
            f"{path}: not UTF-8 text{hint}: invalid byte 0x{data[exc.start]:02x} on line {line}; re-save the file as UTF-8"
        ) from exc


def read_utf8_rows(path: Path) -> str:
    """A table file's text, where a byte that is not UTF-8 costs only the row holding it, not the file.

    Such bytes decode to lone surrogates (``surrogateescape``: U+DC80-U+DCFF,
    which no valid UTF-8 text contains); the row readers report the row that
    holds one (:func:`undecodable`). A UTF-16 file (byte-order mark) is
    refused whole, with a hint, as by :func:`read_utf8`.
    """
    data = _file_bytes(path)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return read_utf8(path)  # raises with the UTF-16 hint
    return data.decode("utf-8-sig", errors="surrogateescape")


def _file_bytes(path: Path) -> bytes:
    """A catalogue file's bytes; a FIFO, a device or a link to one is refused, never read (it could block or never end)."""
    with open_regular_file(path) as handle:
        return handle.read()


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def undecodable(text: str) -> str | None:
    """'invalid byte 0x..' when ``text`` holds a byte that was not UTF-8 (see :func:`read_utf8_rows`), else None."""
    found = _UNDECODABLE.search(text)
    return None if found is None else f"invalid byte 0x{ord(found.group()) - 0xDC00:02x}"


def _column_mapping(columns: dict[str, str] | None) -> dict[str, str]:
    """``columns`` (role → the catalogue's column) checked: known roles, non-empty names."""
    mapping = {}
    for role, column in (columns or {}).items():
        if role not in MAPPABLE_COLUMNS:
            raise CatalogError(f"cannot map a column to {role!r}; roles: {', '.join(MAPPABLE_COLUMNS)}")
        if column is not None and str(column).strip():
            mapping[role] = str(column).strip()
    return mapping


def _rename(names: Iterable[str], mapping: dict[str, str]) -> list[str]:
    """Column names with the mapped ones given their role's name (and any column already called so moved aside)."""
    roles = {column: role for role, column in mapping.items()}
    taken = {_norm(role) for role in mapping}
    return [roles.get(name) or (f"source_{name}" if _norm(name) in taken else name) for name in names]


def _renamed_records(records: Iterable[tuple[int, dict[str, Any] | str]], mapping: dict[str, str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, record in records:
        if mapping and isinstance(record, dict):
            record = dict(zip(_rename(record, mapping), record.values()))
        yield line, record


def _csv_records(text: str, source: Path, delimiter: str, mapping: dict[str, str] | None = None) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line, row dict) per data row, or (line, reason) for a row that cannot be split into the header's columns."""
    lines = CsvLines(io.StringIO(text, newline=""))
    reader = csv.reader(lines, delimiter=delimiter)
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        lines.record = []
        header = next(reader, None)
    if header is None:
        raise CatalogError(f"{source}: no header row")
    names = [cell.strip() for cell in header]
    missing = [f"{column!r} (for {role})" for role, column in (mapping or {}).items() if column not in names]
    if missing:
        raise CatalogError(f"{source}: no column {', '.join(missing)} in the header (columns: {', '.join(names)})")
    if mapping:
        header = _rename(names, mapping)
    yield from csv_rows(lines, _header_names(header, source, lines.record[0][0]), delimiter)


class CsvLines:
    """A CSV file's physical lines for ``csv.reader``: numbered, and the lines of the record being read kept.

    ``csv.reader`` pulls exactly the lines of one record per row, so after a
    row :attr:`record` holds its ``(line number, text)`` pairs; :meth:`read_again`
    puts lines back to be parsed once more (after an unterminated quote).
    Iterate a file opened with ``newline=""`` (or ``io.StringIO(text, newline="")``).
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._source = iter(lines)
        self._again: deque[tuple[int, str]] = deque()
        self._taken = 0
        self.record: list[tuple[int, str]] = []

    def __iter__(self) -> "CsvLines":
        return self

    def __next__(self) -> str:
        if self._again:
            item = self._again.popleft()
        else:
            text = next(self._source)
            self._taken += 1
            item = (self._taken, text)
        self.record.append(item)
        return item[1]

    def read_again(self, items: list[tuple[int, str]]) -> None:
        self._again.extendleft(reversed(items))


def csv_rows(lines: CsvLines, names: list[str], delimiter: str = ",") -> Iterator[tuple[int, dict[str, str] | str]]:
    """After the header: (line, row dict) per data row, or (line, reason) for a row that cannot be used.

    Line numbers are the file's (a quoted field spanning lines is reported at
    its first line); blank rows are skipped silently. Shared by every
    CSV-based reader.  No row is lost without a word: a record spanning
    several lines that looks like an unterminated quote (see
    :func:`_unterminated`) is reported at its first line, and the lines after
    that one are read again as rows of their own; a row holding a byte that is
    not UTF-8 is reported, and the rows around it still load.
    """
    reader = csv.reader(lines, delimiter=delimiter)
    id_column = next((i for i, name in enumerate(names) if _norm(name) == "id"), 0)
    while True:
        lines.record = []
        fields: list[str] | None = None
        problem = None
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem = f"unreadable CSV row ({exc})"
            reader = csv.reader(lines, delimiter=delimiter)  # a fresh parser: the old one stopped mid-record
        taken = lines.record
        line = taken[0][0] if taken else 0
        if len(taken) > 1:
            why = _unterminated(taken, fields, names, id_column, delimiter)
            if why:
                lines.read_again(taken[1:])
                reader = csv.reader(lines, delimiter=delimiter)
                end = taken[-1][0]
                yield line, (
                    f"unterminated quote: a quoted field opened on this line runs on to line {end} ({problem or why}); "
                    f"row skipped, lines {line + 1}-{end} read again as rows"
                )
                continue
        if problem is not None or fields is None:
            yield line, problem or "unreadable CSV row"
            continue
        if not any(cell.strip() for cell in fields):
            continue  # blank line, or an all-empty row from a spreadsheet export
        if any('"' in text for _, text in taken) and _open_quote_at_end(taken, delimiter):
            yield line, "unterminated quote: a quoted field opened on this line is never closed (the file ends inside it)"
            continue
        if len(fields) != len(names):
            yield line, f"expected {len(names)} columns, got {len(fields)}"
            continue
        row = dict(zip(names, fields))
        bad = next(((name, reason) for name, value in row.items() if (reason := undecodable(value))), None)
        if bad is not None:
            yield line, f"not UTF-8 text: {bad[1]} in column {bad[0]!r}; re-save the file as UTF-8"
            continue
        yield line, row


def _unterminated(
    taken: list[tuple[int, str]], fields: list[str] | None, names: list[str], id_column: int, delimiter: str
) -> str | None:
    """Why a record spanning several lines looks like a quote that was never closed, or None for a genuine one.

    A quoted field may hold newlines, so a quote that is never closed swallows
    the following rows into one field, until some later quote ends it (or the
    file does). The signs, any of which marks the record: it does not have the
    header's number of columns; its quotes are malformed (a closing quote
    followed by more text, or no closing quote at all); or one of its later
    lines, read alone, is a complete row (the header's number of columns and an
    id without spaces), i.e. a swallowed row (the last line only counts when the
    multi-line field is not the first column, since otherwise it is a complete row). A genuine multi-line text whose
    inner line happens to look like a complete row is reported too: reported,
    never silently lost.
    """
    if fields is None:
        return "the row cannot be read"
    if len(fields) != len(names):
        return f"the row has {len(fields)} columns, not {len(names)}"
    try:
        list(csv.reader(io.StringIO("".join(text for _, text in taken), newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return f"malformed quotes: {exc}"
    # The last line holds the end of the multi-line field and the fields after it, so in a genuine record it
    # reads as a complete row only when the multi-line field is the first one.
    first_multiline = next((i for i, field in enumerate(fields) if "\n" in field or "\r" in field), 0)
    suspects = taken[1:] if first_multiline > 0 else taken[1:-1]
    for number, text in suspects:
        cells = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
        if len(cells) == len(names) and cells[id_column].strip() and not any(c.isspace() for c in cells[id_column].strip()):
            return f"line {number} reads as a complete row"
    return None


def _open_quote_at_end(taken: list[tuple[int, str]], delimiter: str) -> bool:
    """Whether the record ends inside a quoted field (the file ended before the quote closed)."""
    try:
        list(csv.reader(io.StringIO("".join(text for _, text in taken), newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _header_names(header: list[str], source: Path, line: int = 1) -> list[str]:
    """Column names, checked once so no row fails for a reason that is really the header's."""
    names = [cell.strip() or f"column_{i + 1}" for i, cell in enumerate(header)]
    check_header_text(names, source, line)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CatalogError(f"{source}: column {name!r} appears twice in the header")
        seen.add(name)
    if "id" not in {_norm(name) for name in names}:
        raise CatalogError(f"{source}: no 'id' column in the header (columns: {', '.join(names)})")
    return names


def check_header_text(names: list[str], source: Path, line: int = 1) -> None:
    """A header with a byte that is not UTF-8 makes every column name doubtful: the file as a whole is refused."""
    for name in names:
        reason = undecodable(name)
        if reason:
            raise CatalogError(f"{source}: not UTF-8 text: {reason} on line {line} (the header); re-save the file as UTF-8")


def _jsonl_records(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, object) per non-blank line, or (line, reason) when the line is not a JSON object."""
    # split on '\n' only: str.splitlines would also break on U+2028, which is legal inside JSON strings
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        found = _UNDECODABLE.search(line)
        if found:
            yield number, f"not UTF-8 text: {undecodable(found.group())} at column {found.start() + 1}; re-save the file as UTF-8"
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"malformed JSON: {exc.msg} at column {exc.colno}"
            continue
        if not isinstance(record, dict):
            yield number, f"expected a JSON object, got {type(record).__name__}"
            continue
        yield number, record


def _collect(
    records: Iterable[tuple[int, dict[str, Any] | str]], source: str, base: Path, limit: int | None, name: str
) -> Catalog:
    """Turn records into products, recording each bad or duplicate row instead of stopping."""
    products: list[Product] = []
    errors: list[RowError] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        if limit is not None and len(products) >= limit:
            break
        try:
            if isinstance(record, str):
                raise CatalogError(record)
            product = _product_from_record(record, base)
        except CatalogError as exc:
            errors.append(RowError(source, line, str(exc)))
            continue
        if product.id in first_line:
            errors.append(RowError(source, line, f"duplicate id {product.id!r} (first on line {first_line[product.id]})"))
            continue
        first_line[product.id] = line
        products.append(product)
    return Catalog(products, errors, name, base)


def _product_from_record(record: dict[str, Any], base: Path) -> Product:
    """Map one row's columns onto the Product fields; raise CatalogError with the reason."""
    fields: dict[str, Any] = {"images": [], "attributes": {}, "extra": {}}
    for key, value in record.items():
        _assign(fields, key, value, base)
    if "id" not in fields:
        raise CatalogError("missing id")
    return Product(**fields)


def _assign(fields: dict[str, Any], key: str, value: Any, base: Path) -> None:
    """Put one column where it belongs: a Product field, a known attribute, or ``extra``."""
    role = _norm(key)
    if role == "id":
        identifier = _scalar_text(value, key)
        if not identifier:
            raise CatalogError("missing id")
        fields["id"] = identifier
    elif role in _IMAGE_KEYS:
        fields["images"] += _resolve_images(_image_list(value), base)
    elif role in ("title", "description"):
        fields[role] = _scalar_text(value, key)
    elif role == "price":
        fields["price"] = _price(value)
    elif role == "split":
        fields["split"] = _scalar_text(value, key).lower() or None
    elif role == "attributes" and isinstance(value, dict):  # the nested form write_jsonl produces
        fields["attributes"].update({str(k): _scalar_text(v, k) for k, v in value.items()})
    elif role == "extra" and isinstance(value, dict):
        fields["extra"].update(value)
    elif role in ATTRIBUTE_ALIASES and ATTRIBUTE_ALIASES[role] not in fields["attributes"] and _present(value):
        fields["attributes"][ATTRIBUTE_ALIASES[role]] = _scalar_text(value, key)
    elif _present(value):
        fields["extra"][key] = value


def _norm(name: str) -> str:
    return normalise_column(name)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _scalar_text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CatalogError(f"column {key!r} must be text or a number, got {type(value).__name__}")
    return str(value).strip()


def _price(value: Any) -> float | None:
    if not _present(value):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        price = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise CatalogError(f"bad price {value!r}: not a number") from None
    if not math.isfinite(price) or price < 0:
        raise CatalogError(f"bad price {value!r}: not a non-negative number")
    return price


def _image_list(value: Any) -> list[str]:
    """One path, several joined by '|', or (JSON) a list of paths."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise CatalogError(f"image paths must be a string or a list of strings, got {value!r}")


def _resolve_images(paths: list[str], base: Path) -> list[str]:
    """Absolute paths of regular files (checked, not opened); URLs pass through for the user to fetch."""
    resolved = [p if _URL.match(p) else os.path.normpath(os.path.join(base, p)) for p in paths]
    local = [p for p in resolved if not _URL.match(p)]
    problems = {p: _not_a_photo_file(p) for p in local}
    missing = [p for p in local if problems[p] == "no such file"]
    if missing:
        raise CatalogError(f"image not found: {', '.join(missing)}")
    special = [f"{p} ({problems[p]})" for p in local if problems[p]]
    if special:
        raise CatalogError(f"image is not usable: {', '.join(special)}")
    return resolved


def _not_a_photo_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be a photo file (a link counts as its target), or None for a regular file.

    Only stats, never opens: a FIFO or a device named ``*.jpg`` is reported
    here instead of blocking (or never ending) when it is read.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file" if not os.path.islink(path) else "a link to a missing file"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return f"not a regular file ({file_kind(info.st_mode)})"
    return None


# ---------------------------------------------------------------- image folders


def read_image_folder(folder: str | Path) -> Catalog:
    """One product per image file under ``folder`` (recursively): for a pile of photos with no table.

    The id is the relative path without suffix; the title comes from the file
    name; a nested file gets ``category`` = its parent folder's name.
    """
    root = Path(os.path.abspath(folder))
    if not root.is_dir():
        raise CatalogError(f"{folder}: not a folder")
    products: list[Product] = []
    errors: list[RowError] = []
    seen: dict[str, Path] = {}
    for row, relative in enumerate(_image_files(root), 1):
        problem = _not_a_photo_file(root / relative)
        if problem:
            errors.append(RowError(str(root), row, f"{relative.as_posix()}: {problem}"))
            continue
        product_id = relative.with_suffix("").as_posix()
        if product_id in seen:
            errors.append(RowError(str(root), row, f"duplicate id {product_id!r}: {relative} and {seen[product_id]}"))
            continue
        attributes = {"category": relative.parent.name} if relative.parent != Path(".") else {}
        try:
            product = Product(product_id, [str(root / relative)], _title_from_name(relative.stem), attributes=attributes)
        except CatalogError as exc:  # e.g. a file name with a newline in it
            errors.append(RowError(str(root), row, f"{relative.as_posix()!r}: {exc}"))
            continue
        seen[product_id] = relative
        products.append(product)
    if not products:
        skipped = f"; {len(errors)} skipped, e.g. {errors[0].reason}" if errors else ""
        raise CatalogError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}){skipped}")
    return Catalog(products, errors, root.name, root)


def _image_files(root: Path) -> list[Path]:
    """Image files under root as sorted relative paths, skipping hidden files and folders."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(folder, name).relative_to(root))
    return sorted(found, key=lambda p: p.as_posix())


def _title_from_name(stem: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", stem).split())


# ---------------------------------------------------------------- KAGL


#: The KAGL catalogues by name: the folder under ../shared/data (or $MODALENS_SHARED_DATA) and its env override.
KAGL_CATALOGUES: dict[str, tuple[str, str]] = {
    "kagl": ("kagl-fashion", "MODALENS_KAGL"),  # 8.6k products, 224 px photos
    "kagl-full": ("kagl-full", "MODALENS_KAGL_FULL"),  # 39.7k products of the same catalogue, 60×80 px photos
}


def read_kagl(root: str | Path | None = None, *, limit: int | None = None, name: str = "kagl") -> Catalog:
    """A KAGL catalogue: ``root/products.csv`` (image paths relative to root, a split column).

    With no root, ``name`` (a ``KAGL_CATALOGUES`` key) picks the folder: ``$MODALENS_KAGL``
    (``$MODALENS_KAGL_FULL`` for kagl-full), then ``../shared/data/<folder>`` relative to
    the working directory, then beside this source checkout.
    """
    found = _find_kagl(root, name)
    catalog = read_table(found / "products.csv", images_root=found, limit=limit)
    catalog.name = name
    return catalog


def read_kagl_all(*, limit: int | None = None) -> Catalog:
    """Every KAGL product once, each with its best photo first: 224 px where kagl-fashion has it, else 60×80.

    A product in both folders keeps both photos (``images[1]`` is the small one);
    training, indexing and evaluation use the first. Both folders share one split
    rule, so no product changes split; rows either folder skipped stay in ``errors``.
    """
    sharp_catalog, full_catalog = read_kagl(name="kagl"), read_kagl(name="kagl-full")
    sharp = {p.id: p for p in sharp_catalog}
    products = []
    for product in full_catalog:
        big = sharp.pop(product.id, None)
        if big is not None:
            product.images = big.images + product.images
        products.append(product)
    products += sharp.values()  # the few kagl-fashion products that kagl-full lacks
    errors = sharp_catalog.errors + full_catalog.errors
    return Catalog(products[:limit] if limit is not None else products, errors, "kagl-all", None)


def _find_kagl(root: str | Path | None, name: str = "kagl") -> Path:
    folder, env = KAGL_CATALOGUES[name]
    if root is not None:
        candidates = [Path(root)]
    else:
        candidates = [Path(os.environ[env])] if os.environ.get(env) else []
        shared = shared_data_dir()
        candidates += [Path("../shared/data") / folder, _REPO_ROOT.parent / "shared" / "data" / folder]
        if shared is not None:
            candidates.insert(len(candidates) - 2, shared / folder)
    for candidate in candidates:
        if (candidate / "products.csv").is_file():
            return Path(os.path.abspath(candidate))
    raise CatalogError(f"KAGL dataset not found ({name}): no products.csv in {', '.join(map(str, candidates))}")


def _is_kagl(folder: Path) -> bool:
    return (folder / "products.csv").is_file() and (folder / "images").is_dir()


# ---------------------------------------------------------------- Fashion-MNIST


def read_fashion_mnist(
    split: str = "test",
    root: str | Path = FASHION_MNIST_ROOT,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> Catalog:
    """Fashion-MNIST from its IDX files, each image written once as a PNG so it is a normal catalogue.

    PNGs go to ``cache_dir`` (default ``default_cache_dir()/fashion-mnist/<split>``);
    existing ones are reused, new ones appear atomically.  Pixels are stored
    as in the dataset (light garment on black).
    """
    if split not in ("train", "test"):
        raise CatalogError(f"Fashion-MNIST split must be 'train' or 'test', not {split!r}")
    prefix = "t10k" if split == "test" else "train"
    images = _read_idx(_idx_file(Path(root), f"{prefix}-images-idx3-ubyte"), ndim=3)
    labels = _read_idx(_idx_file(Path(root), f"{prefix}-labels-idx1-ubyte"), ndim=1)
    if len(images) != len(labels):
        raise CatalogError(f"{root}: {len(images)} Fashion-MNIST {split} images but {len(labels)} labels")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise CatalogError(f"{root}: Fashion-MNIST {split} label {int(labels.max())} is not a class index 0-9")
    out = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "fashion-mnist" / split
    out.mkdir(parents=True, exist_ok=True)
    count = len(images) if limit is None else min(limit, len(images))
    products = [_fmnist_product(split, i, int(labels[i]), _write_png_once(out / f"{i:05d}.png", images[i])) for i in range(count)]
    return Catalog(products, [], f"fashion-mnist-{split}", out)


def _idx_file(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise CatalogError(
        f"Fashion-MNIST file {stem}(.gz) not found in {root}; install it with "
        f"`apt-get install dataset-fashion-mnist` or pass root= the folder holding the IDX files"
    )


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array, with its magic number and size checked against the data."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise CatalogError(f"{path}: cannot read IDX file ({exc})") from exc
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CatalogError(f"{path}: IDX header truncated ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != 0x0800 + ndim:
        raise CatalogError(f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{0x0800 + ndim:08x} (unsigned bytes, {ndim}-D)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape)
    if len(data) - header != expected:
        raise CatalogError(f"{path}: header says shape {shape} ({expected} bytes) but {len(data) - header} bytes follow")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _write_png_once(path: Path, pixels: np.ndarray) -> Path:
    """Write via a temporary file + rename, so an interrupted run never leaves a half PNG behind."""
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(np.ascontiguousarray(pixels)).save(handle, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fmnist_product(split: str, index: int, label: int, image: Path) -> Product:
    name = FASHION_MNIST_CLASSES[label]
    return Product(
        f"fmnist-{split}-{index:05d}",
        [str(image.absolute())],
        title=name,
        attributes={"article_type": name},
        split=split,
        extra={"label": label},
    )


# ---------------------------------------------------------------- one entry point and writing


def read_catalog(source: str | Path, *, limit: int | None = None, columns: dict[str, str] | None = None) -> Catalog:
    """Any catalogue by one name: 'kagl', 'kagl-full', 'kagl-all', 'fashion-mnist[:train|:test]', a KAGL-style folder,
    a table or an image folder.

    ``SOURCE:SPLIT`` (e.g. ``kagl:test``) keeps one split of a catalogue that has splits.
    ``NAME=ROOT[:SPLIT]`` (e.g. ``fashion200k=/data/fashion200k:train``) reads an open
    dataset from its published layout (names: ``modalens.catalog.datasets.DATASETS``).
    ``columns`` names a table's columns for id, image, title... (see :func:`read_table`).
    """
    text = str(source)
    if columns and any(columns.values()):
        path = Path(text).expanduser()
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise CatalogError(f"{text}: column names can be given only for a table catalogue ({', '.join(TABLE_SUFFIXES)})")
        return read_table(path, limit=limit, columns=columns)
    from .datasets import parse_dataset_spec, read_dataset  # lazy: the dataset readers are optional weight

    spec = parse_dataset_spec(text)
    if spec is not None:
        return read_dataset(*spec, limit=limit)
    name, _, split = text.partition(":")
    if name == "fashion-mnist":
        return read_fashion_mnist(split or "test", limit=limit)
    if name == "fashion-gpr":
        from .general_retrieval import read_fashion_gpr

        return read_fashion_gpr(split or "test", limit=limit)
    if split and not Path(text).exists():
        whole = read_catalog(name)
        part = whole.split(split)
        if not part.products:
            present = sorted({p.split for p in whole.products if p.split})
            raise CatalogError(f"{name} has no products in split {split!r}; splits present: {present or 'none'}")
        return _limited(part, limit)
    if text in KAGL_CATALOGUES:
        return read_kagl(limit=limit, name=text)
    if text == "kagl-all":
        return read_kagl_all(limit=limit)
    path = Path(text).expanduser()
    if path.is_dir():
        return read_kagl(path, limit=limit) if _is_kagl(path) else _limited(read_image_folder(path), limit)
    if path.exists() or path.suffix.lower() in TABLE_SUFFIXES:
        return read_table(path, limit=limit)
    raise CatalogError(
        f"{text}: no such file or folder, and not a named catalogue (kagl, kagl-full, kagl-all, fashion-mnist, fashion-mnist:train, fashion-gpr)"
    )


def _limited(catalog: Catalog, limit: int | None) -> Catalog:
    if limit is not None:
        catalog.products = catalog.products[:limit]
    return catalog


def write_jsonl(catalog: Catalog | Iterable[Product], path: str | Path) -> Path:
    """Save products as JSON lines that ``read_table`` reads back to equal products.

    Images under the output file's folder are written relative to it, so the
    folder can be moved as a whole; others stay absolute.  The file appears
    atomically.
    """
    path = Path(path)
    folder = Path(os.path.abspath(path.parent))
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(_portable_record(product, folder), ensure_ascii=False, default=_json_default) for product in catalog]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _portable_record(product: Product, folder: Path) -> dict[str, Any]:
    record = product.to_dict()
    record["images"] = [_relative_if_inside(image, folder) for image in product.images]
    return record


def _relative_if_inside(image: str, folder: Path) -> str:
    if _URL.match(image) or not os.path.isabs(image):
        return image
    try:
        relative = os.path.relpath(image, folder)
    except ValueError:  # another drive on Windows
        return image
    outside = relative == os.pardir or relative.startswith(os.pardir + os.sep)
    return image if outside else Path(relative).as_posix()


def _json_default(value: Any) -> Any:
    """numpy scalars and other plain values that json does not know."""
    return value.item() if hasattr(value, "item") else str(value)
