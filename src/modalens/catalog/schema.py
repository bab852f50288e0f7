"""The product record every part of modalens reads and writes.

One schema for all sources (CSV/JSONL catalogues, KAGL, Fashion-MNIST, the
open datasets of later recipes), so encoders, captions, indexes and matching
never need to know where a product came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError


#: Attribute names with a fixed meaning across modalens (captions and filters use them).
KNOWN_ATTRIBUTES = (
    "gender",
    "master_category",
    "sub_category",
    "category",
    "article_type",
    "colour",
    "season",
    "usage",
    "year",
    "brand",
    "material",
    "pattern",
)


#: Column names (normalised by :func:`normalise_column`: lower case, no '_', '-' or spaces) that carry a
#: known attribute: a catalogue's ``articleType`` is ``article_type``, its ``baseColour`` is ``colour``.
#: The readers map columns with it, and the filters of the CLI, the REST API and the page accept the same names.
ATTRIBUTE_ALIASES: dict[str, str] = {
    **{name.replace("_", ""): name for name in KNOWN_ATTRIBUTES},
    "type": "article_type",
    "basecolour": "colour",
    "basecolor": "colour",
    "color": "colour",
}


def normalise_column(name: str) -> str:
    """A column name as :data:`ATTRIBUTE_ALIASES` keys it: lower case, without spaces, '_' or '-'."""
    return re.sub(r"[\s_\-]", "", str(name).lower())


def attribute_name(column: str) -> str | None:
    """The known attribute a catalogue column (or filter field) names, e.g. ``baseColour`` → ``colour``; else None."""
    return ATTRIBUTE_ALIASES.get(normalise_column(column))


#: The longest product id accepted, in characters (ids travel in URLs, file names and log lines).
MAX_ID_LENGTH = 512


class CatalogError(InvalidInputError):
    """A product, row or file that cannot be read: says where and why (a ``ValueError`` too, as it always was)."""


def check_id(identifier: str) -> str:
    """``identifier`` if it can be a product id, else a CatalogError saying why.

    An id is one line of printable text of at most :data:`MAX_ID_LENGTH`
    characters: no NUL, newline, tab or other control character (Unicode Cc,
    the line and paragraph separators, and lone surrogates, which are bytes a
    reader could not decode).
    """
    if len(identifier) > MAX_ID_LENGTH:
        raise CatalogError(
            f"product id {_shown(identifier)} is {len(identifier)} characters, over the limit of {MAX_ID_LENGTH}"
        )
    for char in identifier:
        if unicodedata.category(char) in _REFUSED_IN_IDS:
            raise CatalogError(
                f"product id {_shown(identifier)} contains U+{ord(char):04X} ({_char_name(char)}); "
                "an id must be one line of printable text"
            )
    return identifier


#: Unicode categories refused in ids: controls, line/paragraph separators, surrogates (undecodable bytes).
_REFUSED_IN_IDS = frozenset({"Cc", "Zl", "Zp", "Cs"})


def _shown(identifier: str, limit: int = 40) -> str:
    """The id for an error message: repr'd (control characters visible), cut short if long."""
    return repr(identifier) if len(identifier) <= limit else repr(identifier[:limit]) + "..."


def _char_name(char: str) -> str:
    if unicodedata.category(char) == "Cs":
        return "a byte that is not UTF-8"
    return unicodedata.name(char, "a control character").lower()


@dataclass
class Product:
    """One catalogue item.

    ``images`` holds paths (or URLs the user resolves) in display order; an
    offer with several photos keeps them all so they can be pooled later.
    ``attributes`` carries the known fields above as strings; ``extra`` keeps
    whatever else the source had, so nothing a user supplied is dropped.
    """

    id: str
    images: list[str] = field(default_factory=list)
    title: str = ""
    description: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    price: float | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = str(self.id).strip()
        if not self.id:
            raise CatalogError("product id is empty")
        check_id(self.id)
        if isinstance(self.images, (str, Path)):
            self.images = [str(self.images)]
        self.images = [str(p) for p in self.images if str(p).strip()]
        if self.price is not None:
            price = float(self.price)
            if not math.isfinite(price) or price < 0:
                raise CatalogError(f"product {self.id}: price {self.price!r} is not a non-negative number")
            self.price = price
        self.attributes = {str(k): str(v).strip() for k, v in self.attributes.items() if v is not None and str(v).strip()}

    @property
    def image(self) -> str | None:
        """The first (main) image, or None for a text-only product."""
        return self.images[0] if self.images else None

    def get(self, name: str, default: str = "") -> str:
        """An attribute by name (``title`` and ``description`` too), '' when absent."""
        if name in ("title", "description"):
            return getattr(self, name) or default
        return self.attributes.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Product":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise CatalogError(f"unknown product fields {sorted(unknown)}")
        return cls(**data)


@dataclass
class RowError:
    """A row that was skipped, kept so the user sees exactly what was lost and why."""

    source: str
    row: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.row}: {self.reason}"


@dataclass
class Catalog:
    """An ordered list of products plus the rows that could not be read."""

    products: list[Product]
    errors: list[RowError] = field(default_factory=list)
    name: str = "catalog"
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.products)

    def __iter__(self):
        return iter(self.products)

    def __getitem__(self, i: int) -> Product:
        return self.products[i]

    def split(self, name: str) -> "Catalog":
        """The products of one split (train/val/test); products without a split belong to none."""
        chosen = [p for p in self.products if p.split == name]
        return Catalog(chosen, list(self.errors), f"{self.name}[{name}]", self.root)

    def values(self, attribute: str) -> list[str]:
        return [p.get(attribute) for p in self.products]
