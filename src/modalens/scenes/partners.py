"""A scene's hard-negative partner: the same picture with the colours of two garments swapped, or their places.

Contrastive training with random in-batch negatives never has to tell "red
shirt above blue jeans" from "blue shirt above red jeans": no batch holds both.
A partner scene holds the other one, so a training source can put each scene
and its partner in one batch (``data.sources[].scene_partners``) and the loss
must bind each colour to its garment and each garment to its place. The
partner is built the way the composition benchmark builds its symmetric pairs
(same backdrop, same places and jitter), from the training products only.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from ..catalog.schema import Product
from .captions import garment
from .generator import Placement, Scene, _aspect, usable


class ColourIndex:
    """Products by (type, colour), to find a garment of one type in another colour."""

    def __init__(self, products: Sequence[Product]) -> None:
        self.by_kind: dict[tuple[str, str], list[Product]] = defaultdict(list)
        for product in products:
            g = garment(product)
            if product.image and g.colour:
                self.by_kind[(g.article, g.colour)].append(product)

    def find(self, like: Product, colour: str, rng: np.random.Generator) -> Product | None:
        pool = self.by_kind.get((garment(like).article, colour), [])
        for _ in range(4):
            if not pool:
                return None
            product = pool[int(rng.integers(len(pool)))]
            if usable(product):
                return product
        return None


def _refit(placement: Placement, product: Product) -> Placement:
    """``placement`` for another product's cut-out: same centre, angle and area, that product's aspect."""
    aspect = _aspect(product.image)
    area = placement.width * placement.height
    width = max(1, round(math.sqrt(area * aspect)))
    return dataclasses.replace(placement, width=width, height=max(1, round(width / aspect)))


def swapped_colours(scene: Scene, index: ColourIndex, rng: np.random.Generator) -> Scene | None:
    """The scene with its first two garments' colours exchanged (each replaced by a product of its own type in
    the other's colour, in its place); None when the colours are equal or no such products exist."""
    a, b = scene.products[:2]
    colour_a, colour_b = garment(a).colour, garment(b).colour
    if not colour_a or not colour_b or colour_a == colour_b:
        return None
    new_a, new_b = index.find(a, colour_b, rng), index.find(b, colour_a, rng)
    if new_a is None or new_b is None:
        return None
    products = (new_a, new_b, *scene.products[2:])
    placements = (_refit(scene.placements[0], new_a), _refit(scene.placements[1], new_b), *scene.placements[2:])
    return dataclasses.replace(scene, products=products, placements=placements)  # same seed: same backdrop


def swapped_places(scene: Scene) -> Scene | None:
    """The scene with its first two garments in each other's places (sizes and tilts kept); None when the
    swap would not change any relation a caption states."""
    first, second = scene.placements[:2]
    placements = (
        dataclasses.replace(first, x=second.x, y=second.y), dataclasses.replace(second, x=first.x, y=first.y), *scene.placements[2:]
    )
    partner = dataclasses.replace(scene, placements=placements)
    return partner if partner.relation(0, 1) is not None else None


def partner_scene(scene: Scene, index: ColourIndex, rng: np.random.Generator) -> Scene | None:
    """A hard-negative partner: colours swapped where the catalogue has the garments for it (the rarer and
    harder case for a text tower that reads a bag of words), else places swapped; None when neither works."""
    return swapped_colours(scene, index, rng) or swapped_places(scene)
