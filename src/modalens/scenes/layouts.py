"""Where garments go on a scene's canvas: slots as fractions of the canvas, and how placement jitters.

An outfit flat-lay is a column read from top to bottom (a dress, or topwear
over bottomwear, then shoes) with accessories at the sides; a lookbook collage
is a grid of cells. Both are only geometry here: which product fills a slot is
the generator's choice (:mod:`modalens.scenes.generator`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInputError


@dataclass(frozen=True)
class Slot:
    """A place on the canvas: the centre of the box a garment must fit in, and its size (fractions of the canvas)."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Jitter:
    """How far a placement may stray from its slot: mild overlap, tilt and size variation, never off the canvas."""

    scale: tuple[float, float]  # share of the slot the garment fills
    angle: float  # degrees either way
    shift: float  # share of the slot's size the centre may move
    mirror: float  # chance of a left-right flip


#: Flat-lays are tidy (garments laid straight); collages tilt and overlap more.
JITTER = {
    "outfit": Jitter(scale=(0.8, 1.0), angle=8.0, shift=0.05, mirror=0.5),
    "collage": Jitter(scale=(0.75, 1.08), angle=12.0, shift=0.08, mirror=0.5),
}

#: How much of the column each role takes, relative to the others (a dress is long, shoes are short).
COLUMN_WEIGHTS = {"dress": 1.7, "topwear": 1.0, "bottomwear": 1.05, "footwear": 0.45}

#: The column's extent (top, bottom) and width; side slots sit outside it.
COLUMN_SPAN = (0.03, 0.97)
COLUMN_WIDTH = 0.46
SIDE_SLOTS = {
    "left-high": Slot(0.135, 0.28, 0.23, 0.30),
    "left-low": Slot(0.135, 0.70, 0.23, 0.30),
    "right-high": Slot(0.865, 0.28, 0.23, 0.30),
    "right-low": Slot(0.865, 0.70, 0.23, 0.30),
}

#: Collage grids (rows, columns) that hold n products, cells left to right, top to bottom.
GRIDS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((1, 1),),
    2: ((1, 2), (2, 1)),
    3: ((1, 3), (3, 1), (2, 2)),
    4: ((2, 2),),
    5: ((2, 3), (3, 2)),
}


def column(roles: list[str]) -> list[Slot]:
    """Slots for the column of an outfit, one per role, top to bottom, each as tall as its weight's share."""
    unknown = [r for r in roles if r not in COLUMN_WEIGHTS]
    if unknown:
        raise InvalidInputError(f"roles {unknown} have no place in an outfit's column ({', '.join(COLUMN_WEIGHTS)})")
    top, bottom = COLUMN_SPAN
    total = sum(COLUMN_WEIGHTS[r] for r in roles)
    slots, y = [], top
    for role in roles:
        height = (bottom - top) * COLUMN_WEIGHTS[role] / total
        slots.append(Slot(0.5, y + height / 2, COLUMN_WIDTH, height * 0.96))
        y += height
    return slots


def side(position: str) -> Slot:
    """A slot beside the column: ``left-high``, ``left-low``, ``right-high`` or ``right-low``."""
    if position not in SIDE_SLOTS:
        raise InvalidInputError(f"unknown side slot {position!r}; known: {', '.join(SIDE_SLOTS)}")
    return SIDE_SLOTS[position]


def grid(rows: int, cols: int) -> list[Slot]:
    """The cells of a rows × cols grid with a small margin, left to right, top to bottom."""
    margin = 0.03
    width, height = (1 - 2 * margin) / cols, (1 - 2 * margin) / rows
    return [
        Slot(margin + (c + 0.5) * width, margin + (r + 0.5) * height, width * 0.94, height * 0.94)
        for r in range(rows)
        for c in range(cols)
    ]
