"""Training and evaluation offers without labels we lack: the same product as another seller would list it.

Every change is a deterministic function of a seed, so the same call gives the
same offers on every machine, and changed photos are cached like any other:

* image changes (``apply_view``): random crop, rescale (down and back up),
  padding onto a coloured background (the white packshot background replaced),
  a slight colour shift, JPEG re-compression. A *view name* (``seller-1`` ...)
  plus the photo's bytes fix the recipe, so ``view`` + file content is a cache key.
* title changes (``perturb_title``): reorder words, abbreviate, drop the brand, typos.
* price noise and a different number of sizes.
* hard negatives (``hard_negatives``): the same brand and type in another colour,
  and the same type and colour from another brand; ``near_duplicates``: different products
  of the same type and colour with near-identical titles (for harder calibration sets).

KAGL has no price or size columns; :func:`list_price` and :func:`size_count`
give each product a *synthetic* one derived from its brand and type (colour
variants of one brand and type get nearly the same price, as in real shops),
so numbers carry little identity: results that use them say so.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageEnhance

from ..catalog.schema import Product
from .offers import Offer

#: Bump when a transform changes, so cached features of the old version are never reused.
VIEW_VERSION = 1
SELLER_VIEWS = ("seller-1", "seller-2", "seller-3")
IMAGE_CHANGES = ("crop", "rescale", "pad_background", "colour_shift", "jpeg")
TITLE_CHANGES = ("reorder", "abbreviate", "drop_brand", "typo")


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


# ----------------------------------------------------------------- image changes


def random_crop(image: Image.Image, rng: random.Random, min_keep: float = 0.78) -> Image.Image:
    """Keep 78-97% of each side at a random position (another seller's framing)."""
    w, h = image.size
    kw, kh = rng.uniform(min_keep, 0.97), rng.uniform(min_keep, 0.97)
    cw, ch = max(1, round(w * kw)), max(1, round(h * kh))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return image.crop((x, y, x + cw, y + ch))


def rescale(image: Image.Image, rng: random.Random) -> Image.Image:
    """Down to 35-75% and back up: a low-resolution upload."""
    w, h = image.size
    s = rng.uniform(0.35, 0.75)
    small = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BICUBIC)


def pad_background(image: Image.Image, rng: random.Random) -> Image.Image:
    """Near-white background replaced by a light colour, plus a border of 4-15%: another studio."""
    colour = tuple(rng.randint(190, 245) for _ in range(3))
    rgb = image.convert("RGB")
    mask = rgb.convert("L").point(lambda v: 255 if v >= 242 else 0)
    background = Image.new("RGB", rgb.size, colour)
    rgb = Image.composite(background, rgb, mask)
    w, h = rgb.size
    pad_x, pad_y = round(w * rng.uniform(0.04, 0.15)), round(h * rng.uniform(0.04, 0.15))
    canvas = Image.new("RGB", (w + 2 * pad_x, h + 2 * pad_y), colour)
    canvas.paste(rgb, (pad_x, pad_y))
    return canvas


def colour_shift(image: Image.Image, rng: random.Random) -> Image.Image:
    """Slight brightness / saturation / white-balance change (another camera): never a different colour."""
    out = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.85, 1.15))
    gains = [rng.uniform(0.95, 1.05) for _ in range(3)]
    bands = [b.point(lambda v, g=g: min(255, round(v * g))) for b, g in zip(out.convert("RGB").split(), gains)]
    return Image.merge("RGB", bands)


def jpeg_recompress(image: Image.Image, rng: random.Random) -> Image.Image:
    """Re-encoded at JPEG quality 25-75."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=rng.randint(25, 75))
    buffer.seek(0)
    out = Image.open(buffer)
    out.load()
    return out.convert("RGB")


_IMAGE_FUNCS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "crop": random_crop,
    "rescale": rescale,
    "pad_background": pad_background,
    "colour_shift": colour_shift,
    "jpeg": jpeg_recompress,
}
_CHANGE_PROBABILITY = {"crop": 0.75, "rescale": 0.5, "pad_background": 0.5, "colour_shift": 0.6, "jpeg": 1.0}


def view_recipe(view: str, key: str) -> list[str]:
    """The changes ``view`` applies to the photo whose content key is ``key``, in order (always at least crop or JPEG)."""
    if not view.startswith("seller-"):
        raise ValueError(f"unknown matching view {view!r}; known: {', '.join(SELLER_VIEWS)} (any seller-N)")
    rng = _rng("recipe", VIEW_VERSION, view, key)
    return [name for name in IMAGE_CHANGES if rng.random() < _CHANGE_PROBABILITY[name]]


def apply_view(image: Image.Image, view: str, key: str) -> Image.Image:
    """Apply ``view``'s recipe to ``image``; the same (view, key) always gives the same pixels."""
    out = image.convert("RGB")
    for name in view_recipe(view, key):
        out = _IMAGE_FUNCS[name](out, _rng("change", VIEW_VERSION, view, key, name))
    return out


def view_namespace(view: str) -> str:
    """Feature-cache namespace suffix of a matching view (kept apart from encoders.views names)."""
    return f"matching-view={view}|v{VIEW_VERSION}"


# ----------------------------------------------------------------- title changes

_GENDER_WORDS = {"men", "women", "boys", "girls", "unisex", "kids", "men's", "women's"}
_ABBREVIATIONS = {
    "men": "M", "women": "W", "tshirts": "Tee", "tshirt": "Tee", "t-shirt": "Tee", "shirts": "Shirt",
    "shoes": "Shoe", "casual": "Csl", "sports": "Sprt", "formal": "Frml", "printed": "Prntd",
    "striped": "Strpd", "black": "Blk", "white": "Wht", "blue": "Blu", "navy": "Nvy", "green": "Grn",
    "brown": "Brn", "purple": "Prpl", "yellow": "Ylw", "silver": "Slvr", "watch": "Wtch",
    "watches": "Wtch", "jeans": "Jns", "trousers": "Trsrs", "handbag": "Bag", "handbags": "Bag",
    "sunglasses": "Shades", "unisex": "U", "girls": "G", "boys": "B", "and": "&", "with": "w/",
}  # fmt: skip


def brand_of(product: Product | Offer) -> str:
    """The product's brand: its ``brand`` attribute, else the title words before the first gender or colour word."""
    attrs = product.attributes
    if attrs.get("brand"):
        return attrs["brand"]
    colour = attrs.get("colour", "").lower()
    words = product.title.split()
    brand: list[str] = []
    for word in words[:5]:
        low = word.lower()
        if low in _GENDER_WORDS or (colour and low == colour.split()[0]):
            break
        brand.append(word)
    if len(brand) == len(words[:5]):  # no gender/colour word found: take the first word only
        brand = words[:1]
    return " ".join(brand)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def perturb_title(title: str, rng: random.Random, brand: str = "", changes: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """Another seller's title for the same product; returns (title, the changes applied, in order).

    ``changes`` forces a set; by default each change applies with probability 0.4
    (at least one is applied). The meaning stays: no word of another colour or type is added.
    """
    if changes is None:
        changes = [c for c in TITLE_CHANGES if rng.random() < 0.4] or [rng.choice(TITLE_CHANGES)]
    words = title.split()
    applied: list[str] = []
    for change in TITLE_CHANGES:
        if change not in changes:
            continue
        if change == "drop_brand" and brand and " ".join(words[: len(brand.split())]).lower() == brand.lower() and len(words) > len(brand.split()):
            words = words[len(brand.split()) :]
            applied.append(change)
        elif change == "abbreviate":
            new = [_ABBREVIATIONS.get(w.lower(), w) for w in words]
            if new == words:  # nothing in the table: shorten the longest word
                j = max(range(len(words)), key=lambda k: len(words[k])) if words else 0
                if words and len(words[j]) > 5:
                    new[j] = words[j][:4] + "."
            if new != words:
                words = new
                applied.append(change)
        elif change == "reorder" and len(words) > 2:
            new = words[:]
            while new == words:
                rng.shuffle(new)
            words = new
            applied.append(change)
        elif change == "typo" and words:
            candidates = [k for k, w in enumerate(words) if len(w) >= 4]
            if candidates:
                k = rng.choice(candidates)
                new_word = _typo(words[k], rng)
                if new_word != words[k]:
                    words[k] = new_word
                    applied.append(change)
    return " ".join(words), applied


# ----------------------------------------------------------------- numbers


def list_price(product: Product | Offer) -> float:
    """The product's price, or a synthetic one from its brand and type (colour variants within ±5%)."""
    if product.price is not None:
        return float(product.price)
    article = product.attributes.get("article_type", "") or product.attributes.get("category", "")
    base = _rng("price-base", article).uniform(6.0, 8.5) + _rng("price-brand", brand_of(product)).uniform(-0.4, 0.4)
    price = math.exp(base) * _rng("price-item", product.id).uniform(0.95, 1.05)
    return float(max(99, round(price / 50) * 50 - 1))


def size_count(product: Product | Offer) -> int:
    """How many sizes the product comes in (synthetic from type when the source has none)."""
    n = getattr(product, "n_sizes", None)
    if n is not None:
        return int(n)
    master = product.attributes.get("master_category", "")
    rng = _rng("sizes", product.attributes.get("article_type", ""), brand_of(product))
    if master == "Footwear":
        return rng.randint(5, 9)
    if master == "Apparel":
        return rng.randint(3, 6)
    return 1


# ----------------------------------------------------------------- offers


def catalogue_offer(product: Product) -> Offer:
    """The product as the catalogue lists it: its own photos and title, its (list) price and sizes."""
    offer = Offer.from_product(product)
    offer.price = list_price(product)
    offer.n_sizes = offer.n_sizes if offer.n_sizes is not None else size_count(product)
    offer.product_id = product.id
    return offer


@dataclass(frozen=True)
class SellerCopy:
    """What changed in a generated offer (kept for tests and reports)."""

    views: tuple[str, ...]
    title_changes: tuple[str, ...]
    price_factor: float


def seller_offer(product: Product | Offer, seed: int | str, copy: int = 0, *, views: Sequence[str] = SELLER_VIEWS, max_images: int = 2) -> tuple[Offer, SellerCopy]:
    """The same product as another seller would list it; deterministic in (product, seed, copy).

    Photos: one or two changed versions of the product's main photo (several images get average-pooled).
    Works on an :class:`Offer` too (e.g. a reviewed one), whose truth is then the offer itself.
    """
    rng = _rng("seller", seed, product.id, copy)
    n_images = 1 if max_images <= 1 or rng.random() < 0.6 else 2
    chosen = rng.sample(list(views), k=min(n_images, len(views)))
    image = product.images[0] if product.images else None
    title, changes = perturb_title(product.title, rng, brand_of(product))
    factor = rng.uniform(0.88, 1.12)
    price = float(round(list_price(product) * factor))
    sizes = max(1, size_count(product) - (1 if rng.random() < 0.3 else 0))
    offer = Offer(
        id="offer-" + hashlib.sha1(f"{product.id}|{seed}|{copy}".encode()).hexdigest()[:12],  # opaque: a reviewer must not read the answer off it
        images=[image] * len(chosen) if image else [],
        views=list(chosen) if image else [],
        title=title,
        description="",
        price=price,
        n_sizes=sizes,
        product_id=getattr(product, "product_id", None) or product.id,
        seller=f"seller-{rng.randint(1, 50)}",
        attributes=dict(product.attributes),
    )
    return offer, SellerCopy(tuple(chosen), tuple(changes), factor)


def hard_negatives(products: Sequence[Product], limit: int = 10) -> dict[int, list[int]]:
    """For each product (by position), others that are easy to confuse with it.

    Same brand and type in another colour, and same type and colour from another
    brand; at most ``limit`` each, deterministic order.
    """
    by_brand_type: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_type_colour: dict[tuple[str, str], list[int]] = defaultdict(list)
    info = []
    for i, p in enumerate(products):
        brand, kind, colour = brand_of(p).lower(), p.attributes.get("article_type", "").lower(), p.attributes.get("colour", "").lower()
        info.append((brand, kind, colour))
        by_brand_type[(brand, kind)].append(i)
        by_type_colour[(kind, colour)].append(i)
    out: dict[int, list[int]] = {}
    for i, (brand, kind, colour) in enumerate(info):
        other_colour = [j for j in by_brand_type[(brand, kind)] if info[j][2] != colour][:limit]
        other_brand = [j for j in by_type_colour[(kind, colour)] if info[j][0] != brand]
        other_brand = _rng("hn", products[i].id).sample(other_brand, k=min(limit, len(other_brand)))
        out[i] = other_colour + other_brand
    return out


def hard_negative_kind(a: Product | Offer, b: Product | Offer) -> str | None:
    """'other-colour', 'other-brand' or None: why ``b`` is a hard negative for ``a``."""
    same_type = a.attributes.get("article_type", "").lower() == b.attributes.get("article_type", "").lower()
    if not same_type:
        return None
    same_brand = brand_of(a).lower() == brand_of(b).lower()
    same_colour = a.attributes.get("colour", "").lower() == b.attributes.get("colour", "").lower()
    if same_brand and not same_colour:
        return "other-colour"
    if same_colour and not same_brand:
        return "other-brand"
    return None


@dataclass
class MatchingScenario:
    """A catalogue and new offers to match against it, with the truth."""

    catalogue: list[Offer]
    new: list[Offer]

    def truth(self, a: Offer, b: Offer) -> bool:
        return a.product_id is not None and a.product_id == b.product_id


def title_tokens(title: str) -> frozenset[str]:
    return frozenset(w for w in "".join(c.lower() if c.isalnum() else " " for c in title).split())


def near_duplicates(products: Sequence[Product | Offer], *, min_jaccard: float = 0.75) -> list[tuple[int, int]]:
    """Pairs (i < j, by position) of *different* products with the same article type and colour whose titles
    are near-identical (word-set Jaccard ≥ ``min_jaccard``, case and punctuation ignored): the hardest
    negatives a calibration set can hold (KAGL has many, e.g. two "Gini and Jony Kids Girls Printed Pink Tops")."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, p in enumerate(products):
        kind, colour = p.attributes.get("article_type", "").lower(), p.attributes.get("colour", "").lower()
        if kind:
            groups[(kind, colour)].append(i)
    tokens = [title_tokens(p.title) for p in products]
    ids = [getattr(p, "product_id", None) or p.id for p in products]
    out = []
    for members in groups.values():
        for a_pos, i in enumerate(members):
            for j in members[a_pos + 1:]:
                if ids[i] == ids[j] or not tokens[i] or not tokens[j]:
                    continue
                if len(tokens[i] & tokens[j]) / len(tokens[i] | tokens[j]) >= min_jaccard:
                    out.append((i, j))
    return out


def make_scenario(
    products: Sequence[Product], seed: int | str = 0, *, catalogue_share: float = 0.7, second_copy: float = 0.3, views: Sequence[str] = SELLER_VIEWS
) -> MatchingScenario:
    """Catalogue = ``catalogue_share`` of the products as listed; new offers = a seller copy of every product
    (so ``1 - catalogue_share`` of them have no match in the catalogue), and a second copy from another
    seller for ``second_copy`` of them (so new offers must also be grouped among themselves)."""
    products = [p for p in products if p.image]
    rng = _rng("scenario", seed)
    in_catalogue = {p.id for p in products if rng.random() < catalogue_share}
    catalogue = [catalogue_offer(p) for p in products if p.id in in_catalogue]
    new: list[Offer] = []
    for p in products:
        new.append(seller_offer(p, seed, 0, views=views)[0])
        if rng.random() < second_copy:
            new.append(seller_offer(p, seed, 1, views=views)[0])
    return MatchingScenario(catalogue, new)

