"""Seeded multi-product scenes from catalogue photos: outfit flat-lays and lookbook collages.

A scene is decided in full when it is built (which products, where, how big,
how tilted, which backdrop), from a generator seeded by the set's seed and the
scene's position in the set; rendering only draws what was decided. So the
same products, count and seed give the same scenes bit for bit, scene ``i`` is
the same whatever ``count`` is, and a scene can be rendered again later (or in
another process) from its record alone.

Garments are cut from their studio white with :func:`~modalens.encoders.photo_like.garment_mask`
and set on :func:`~modalens.encoders.photo_like.background` backdrops, the
same cut-out and backdrops the photo-like training views use.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from ..catalog.images import load_image
from ..catalog.schema import Product
from ..encoders.photo_like import PHOTO_LIKE_VERSION, background, garment_mask
from ..errors import InvalidInputError
from .layouts import GRIDS, JITTER, Slot, column, grid, side
from .roles import product_role

if TYPE_CHECKING:
    from .captions import Captioner

#: Bump when what a scene record draws changes (part of :attr:`Scene.key`, so rendered files and their cached
#: features are never mistaken for the old drawing).
SCENE_VERSION = 1

#: Scene kinds :func:`build_scenes` makes; ``mixed`` draws one of the two per scene.
KINDS = ("outfit", "collage", "mixed")

#: Default canvas side in pixels (models letterbox to 224; a little more keeps small garments legible).
DEFAULT_SIZE = 384

#: A relation is named only when one axis clearly dominates the other (centre offsets), so "above" is never a diagonal.
DOMINANCE = 1.3


class SceneError(InvalidInputError):
    """Scenes that cannot be built from the given products (too few, no photos, no distinct garments)."""


@dataclass(frozen=True)
class Placement:
    """One garment on the canvas: its cut-out scaled to ``width`` × ``height`` pixels, turned ``angle`` degrees
    (counter-clockwise) about its centre ``(x, y)``, mirrored or not. ``box`` is the turned cut-out's extent
    (x0, y0, x1, y1) on the canvas: ground truth for evaluation, never a model input."""

    role: str
    x: float
    y: float
    width: int
    height: int
    angle: float
    mirror: bool

    @property
    def box(self) -> tuple[int, int, int, int]:
        theta = math.radians(self.angle)
        w = abs(self.width * math.cos(theta)) + abs(self.height * math.sin(theta))
        h = abs(self.width * math.sin(theta)) + abs(self.height * math.cos(theta))
        return (round(self.x - w / 2), round(self.y - h / 2), round(self.x + w / 2), round(self.y + h / 2))


@dataclass(frozen=True)
class Scene:
    """Several products on one canvas: what is where, and everything needed to draw it again.

    ``products[i]`` is drawn by ``placements[i]``, in that order (later ones on top).
    """

    kind: str
    seed: tuple[int, ...]
    size: int
    products: tuple[Product, ...]
    placements: tuple[Placement, ...]
    backdrop: str = "scene"  # "scene": a photo-like backdrop; "paper": a plain light surface

    def __post_init__(self) -> None:
        if len(self.products) != len(self.placements):
            raise SceneError("a scene needs one placement per product")

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Each product's box (x0, y0, x1, y1) in pixels, clipped to the canvas (for evaluation only)."""
        s = self.size
        return [(max(0, x0), max(0, y0), min(s, x1), min(s, y1)) for x0, y0, x1, y1 in (p.box for p in self.placements)]

    @property
    def key(self) -> str:
        """A digest of everything the rendering depends on: equal keys, equal pixels (file names use it)."""
        parts = [f"v{SCENE_VERSION}", f"photo-like{PHOTO_LIKE_VERSION}", self.kind, repr(self.seed), str(self.size), self.backdrop]
        parts += [f"{p.id}|{p.image}|{q}" for p, q in zip(self.products, self.placements)]
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]

    def relation(self, i: int, j: int) -> str | None:
        """Where product ``i`` is from product ``j``: "above", "below", "left of", "right of", or None when
        neither axis clearly dominates (a diagonal neighbour)."""
        a, b = self.placements[i], self.placements[j]
        dx, dy = a.x - b.x, a.y - b.y
        if abs(dy) > DOMINANCE * abs(dx):
            return "above" if dy < 0 else "below"
        if abs(dx) > DOMINANCE * abs(dy):
            return "left of" if dx < 0 else "right of"
        return None

    def position(self, i: int) -> str | None:
        """Where product ``i`` is in the picture: "left", "top", "top left" ..., or None near the middle."""
        p = self.placements[i]
        x, y = p.x / self.size, p.y / self.size
        across = "left" if x < 0.35 else "right" if x > 0.65 else None
        down = "top" if y < 0.35 else "bottom" if y > 0.65 else None
        return f"{down} {across}" if down and across else across or down

    def render(self) -> Image.Image:
        """The scene as an RGB image of ``size`` × ``size`` pixels (the same pixels every time)."""
        rng = np.random.default_rng([*self.seed, 0xBAC])
        if self.backdrop == "paper":
            tone = rng.uniform(225, 250) + rng.uniform(-8, 8, 3)
            canvas = Image.new("RGB", (self.size, self.size), tuple(int(v) for v in np.clip(tone, 0, 255)))
        else:
            canvas = background((self.size, self.size), rng)
        for product, placement in zip(self.products, self.placements):
            piece = cutout(product.image)
            if placement.mirror:
                piece = ImageOps.mirror(piece)
            piece = piece.resize((placement.width, placement.height), Image.Resampling.BILINEAR)
            piece = piece.rotate(placement.angle, Image.Resampling.BILINEAR, expand=True)
            corner = (round(placement.x - piece.width / 2), round(placement.y - piece.height / 2))
            canvas.paste(piece, corner, piece)
        return canvas

    def captions(self, captioner: "str | Captioner" = "grounded", count: int | None = None) -> list[str]:
        """Captions of this scene that bind each attribute to its garment and place (see :mod:`.captions`)."""
        from .captions import scene_captions

        return scene_captions(self, captioner, count)


@lru_cache(maxsize=256)
def cutout(path: str) -> Image.Image:
    """A product photo's garment as RGBA, cropped to the garment (alpha: :func:`garment_mask`)."""
    image = load_image(path)
    mask = garment_mask(image)
    box = mask.point(lambda v: 255 if v > 127 else 0).getbbox() or (0, 0, *image.size)
    piece = image.convert("RGBA")
    piece.putalpha(mask)
    return piece.crop(box)


@lru_cache(maxsize=65536)
def _aspect(path: str) -> float:
    piece = cutout(path)
    return piece.width / max(1, piece.height)


def usable(product: Product) -> bool:
    """Whether a product's photo can be cut out (decoded, with a garment in it)."""
    if not product.image:
        return False
    try:
        _aspect(product.image)
    except (OSError, ValueError):
        return False
    return True


def place(product: Product, slot: Slot, size: int, rng: np.random.Generator, kind: str = "outfit") -> Placement:
    """Fit ``product``'s cut-out in ``slot`` on a ``size`` canvas, with ``kind``'s jitter drawn from ``rng``."""
    jitter = JITTER[kind]
    aspect = _aspect(product.image)
    fill = rng.uniform(*jitter.scale)
    width = min(slot.width, slot.height * aspect) * fill
    height = width / aspect
    x = slot.x + rng.uniform(-jitter.shift, jitter.shift) * slot.width
    y = slot.y + rng.uniform(-jitter.shift, jitter.shift) * slot.height
    angle = float(rng.uniform(-jitter.angle, jitter.angle))
    mirror = bool(rng.random() < jitter.mirror)
    return Placement(product_role(product), x * size, y * size, max(1, round(width * size)), max(1, round(height * size)), angle, mirror)


def arrange(
    products: Sequence[Product], slots: Sequence[Slot], seed: Sequence[int] | int, *, kind: str = "outfit",
    size: int = DEFAULT_SIZE, backdrop: str | None = None,
) -> Scene:
    """A scene with ``products[i]`` in ``slots[i]`` (the layout chosen by the caller, e.g. a benchmark's)."""
    if len(products) != len(slots):
        raise SceneError(f"{len(products)} products for {len(slots)} slots")
    seed = (seed,) if isinstance(seed, int) else tuple(int(s) for s in seed)
    rng = np.random.default_rng([*seed, 0x5CE])
    if backdrop is None:
        backdrop = "paper" if rng.random() < 0.25 else "scene"
    placements = tuple(place(p, s, size, rng, "outfit" if kind == "outfit" else "collage") for p, s in zip(products, slots))
    return Scene(kind, seed, size, tuple(products), placements, backdrop)


# ---------------------------------------------------------------- choosing products


class _Pools:
    """The products by role, in the order given; products whose photo fails are dropped when first drawn."""

    def __init__(self, products: Sequence[Product]) -> None:
        self.by_role: dict[str, list[Product]] = defaultdict(list)
        for product in products:
            if product.image:
                self.by_role[product_role(product)].append(product)

    def has(self, role: str) -> bool:
        return bool(self.by_role.get(role))

    def draw(self, role: str, rng: np.random.Generator, taken: set[str]) -> Product | None:
        """A usable product of ``role`` whose type is not in ``taken`` (two garments of one type would read as one)."""
        pool = self.by_role.get(role, [])
        for _ in range(8):
            if not pool:
                return None
            product = pool[int(rng.integers(len(pool)))]
            if not usable(product):
                pool.remove(product)
                continue
            if _type_of(product) not in taken:
                taken.add(_type_of(product))
                return product
        return None


def _type_of(product: Product) -> str:
    return (product.get("article_type") or product.get("category") or product.title or product.id).lower()


def _outfit(pools: _Pools, count: int, rng: np.random.Generator, size: int, seed: tuple[int, ...]) -> Scene | None:
    """A flat-lay: a dress or topwear over bottomwear, then maybe shoes, accessories at the side; None if the
    catalogue has no such core."""
    if pools.has("dress") and (rng.random() < 0.25 or not (pools.has("topwear") and pools.has("bottomwear"))):
        core = ["dress"]
    elif pools.has("topwear") and pools.has("bottomwear"):
        core = ["topwear", "bottomwear"]
    else:
        return None
    taken: set[str] = set()
    chosen = [(role, pools.draw(role, rng, taken)) for role in core]
    if any(p is None for _, p in chosen):
        return None
    if len(chosen) < count and pools.has("footwear") and rng.random() < 0.8:
        shoes = pools.draw("footwear", rng, taken)
        if shoes is not None:
            chosen.append(("footwear", shoes))
    sides = [str(s) for s in rng.permutation(["left-high", "left-low", "right-high", "right-low"])]
    extras = []
    while len(chosen) + len(extras) < count and pools.has("accessory") and sides:
        accessory = pools.draw("accessory", rng, taken)
        if accessory is None:
            break
        extras.append((sides.pop(), accessory))
    slots = column([role for role, _ in chosen]) + [side(s) for s, _ in extras]
    products = [p for _, p in chosen] + [p for _, p in extras]
    return arrange(products, slots, seed, kind="outfit", size=size)


def _collage(pools: _Pools, count: int, rng: np.random.Generator, size: int, seed: tuple[int, ...]) -> Scene | None:
    """A lookbook collage: ``count`` garments of different types in the cells of a grid, in random cells."""
    roles = [r for r in pools.by_role if pools.has(r)]
    if not roles:
        return None
    order = [roles[i] for i in rng.permutation(len(roles))]  # every role once before any twice
    taken: set[str] = set()
    products = []
    for attempt in range(4 * count):
        if len(products) == count:
            break
        product = pools.draw(order[attempt % len(order)], rng, taken)
        if product is not None:
            products.append(product)
    if len(products) < 2:
        return None
    shapes = GRIDS[len(products)]
    rows, cols = shapes[int(rng.integers(len(shapes)))]
    cells = grid(rows, cols)
    order = rng.permutation(len(cells))[: len(products)]
    return arrange(products, [cells[i] for i in order], seed, kind="collage", size=size)


_BUILDERS: dict[str, Callable[..., Scene | None]] = {"outfit": _outfit, "collage": _collage}


def build_scenes(
    products: Sequence[Product], count: int, seed: int = 0, *, kind: str = "mixed", split: str | None = None,
    size: int = DEFAULT_SIZE, min_products: int = 2, max_products: int = 5,
) -> list[Scene]:
    """``count`` seeded scenes of ``min_products``-``max_products`` distinct garments from ``products``.

    ``split`` keeps only that split's products (train scenes from train products, evaluation scenes from
    test products). ``kind``: ``outfit`` (flat-lays; a catalogue with no topwear + bottomwear or dress
    falls back to collages), ``collage``, or ``mixed`` (a coin per scene).
    """
    if kind not in KINDS:
        raise SceneError(f"unknown scene kind {kind!r}; known: {', '.join(KINDS)}")
    if not 1 <= min_products <= max_products <= max(GRIDS):
        raise SceneError(f"a scene holds 1 to {max(GRIDS)} products; asked for {min_products}-{max_products}")
    if split is not None:
        products = [p for p in products if p.split == split]
    pools = _Pools(products)
    if not pools.by_role:
        raise SceneError(f"no product{' of split ' + repr(split) if split else ''} has a photo to build scenes from")
    scenes = []
    for index in range(count):
        scene_seed = (int(seed), index)
        rng = np.random.default_rng(list(scene_seed))
        wanted = int(rng.integers(min_products, max_products + 1))
        chosen = kind if kind != "mixed" else ("outfit" if rng.random() < 0.5 else "collage")
        scene = _BUILDERS[chosen](pools, wanted, rng, size, scene_seed)
        if scene is None or len(scene.products) < min_products:
            scene = _collage(pools, wanted, rng, size, scene_seed)
        if scene is None or len(scene.products) < min_products:
            raise SceneError(f"cannot find {min_products} products of different types with usable photos for a scene")
        scenes.append(scene)
    return scenes
