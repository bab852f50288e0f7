"""An offer: what one seller lists for one product (photos, title, description, price, sizes).

Offers are what matching compares. A catalogue product becomes an offer with
:meth:`Offer.from_product`; generated "other seller" offers (``pairs.py``)
carry, per image, the name of the deterministic image change applied to it
(``views``), so their tower features are cached like any photo's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..catalog.schema import Catalog, CatalogError, Product


@dataclass
class Offer:
    """One listing. ``product_id`` is the ground truth of generated offers; the model never reads it."""

    id: str
    images: list[str] = field(default_factory=list)
    title: str = ""
    description: str = ""
    price: float | None = None
    n_sizes: int | None = None
    #: Parallel to ``images``: the matching image change applied to each (None: the photo as it is).
    views: list[str | None] = field(default_factory=list)
    product_id: str | None = None
    seller: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = str(self.id).strip()
        if not self.id:
            raise CatalogError("offer id is empty")
        self.images = [str(p) for p in self.images]
        if not self.views:
            self.views = [None] * len(self.images)
        if len(self.views) != len(self.images):
            raise CatalogError(f"offer {self.id}: {len(self.views)} views for {len(self.images)} images")
        if self.price is not None:
            price = float(self.price)
            if not math.isfinite(price) or price < 0:
                raise CatalogError(f"offer {self.id}: price {self.price!r} is not a non-negative number")
            self.price = price
        if self.n_sizes is not None:
            self.n_sizes = int(self.n_sizes)

    @property
    def image_refs(self) -> list[tuple[str, str | None]]:
        return list(zip(self.images, self.views))

    @classmethod
    def from_product(cls, product: Product, *, seller: str = "catalogue") -> Offer:
        """A catalogue product as an offer: its photos, title, description, price and size count.

        The size count comes from an extra field ``n_sizes`` (a number) or ``sizes`` (``|``- or ``,``-separated list).
        """
        return cls(
            id=product.id,
            images=list(product.images),
            title=product.title,
            description=product.description,
            price=product.price,
            n_sizes=_size_count(product.extra),
            product_id=str(product.extra.get("product_id", "")) or None,
            seller=str(product.extra.get("seller", seller)),
            attributes=dict(product.attributes),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Offer:
        return cls(**data)

    def display(self) -> dict[str, Any]:
        """What a reviewer sees (no ground truth)."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "price": self.price,
            "n_sizes": self.n_sizes,
            "seller": self.seller,
            "n_images": len(self.images),
            "attributes": self.attributes,
        }


def _size_count(extra: dict[str, Any]) -> int | None:
    if extra.get("n_sizes") not in (None, ""):
        try:
            return int(float(extra["n_sizes"]))
        except (TypeError, ValueError):
            raise CatalogError(f"n_sizes {extra['n_sizes']!r} is not a number") from None
    sizes = extra.get("sizes")
    if sizes in (None, ""):
        return None
    if isinstance(sizes, (list, tuple)):
        return len(sizes)
    parts = [s for s in str(sizes).replace(",", "|").split("|") if s.strip()]
    return len(parts)


def offers_from_catalog(catalog: Catalog | Iterable[Product], *, seller: str = "catalogue") -> list[Offer]:
    return [Offer.from_product(p, seller=seller) for p in catalog]


def read_offers(source: str | Path, *, seller: str = "catalogue") -> list[Offer]:
    """Offers from a JSONL file written by :func:`write_offers` (has ``views``), else any catalogue ``read_catalog`` reads
    (``seller`` names where its offers come from, unless a ``seller`` column says otherwise)."""
    path = Path(str(source))
    if path.suffix.lower() in (".jsonl", ".ndjson") and path.is_file():
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        if first.strip() and "views" in json.loads(first):
            offers = []
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            record = json.loads(line)
                            record["images"] = [_resolve(p, path.parent) for p in record.get("images", [])]
                            offers.append(Offer.from_dict(record))
                        except (TypeError, ValueError) as e:
                            raise CatalogError(f"{path}:{n}: {e}") from None
            return offers
    from ..catalog import read_catalog

    return offers_from_catalog(read_catalog(str(source)), seller=seller)


def _resolve(image: str, base: Path) -> str:
    p = Path(image)
    return str(p if p.is_absolute() else (base / p).resolve())


def write_offers(offers: Sequence[Offer], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(offer.to_dict(), ensure_ascii=False) + "\n" for offer in offers)
    tmp.replace(path)
    return path
