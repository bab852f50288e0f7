"""Pretrained towers, created by name: ``create_image_tower("efficientnet-lite0")``, ``create_text_tower("minilm-l6")``.

Names are imported on first use (PEP 562): the towers import torch, and a module of this package that
does not (``features``' cache, ``pipeline``'s decoders, ``views``) must be importable without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .base import ImageTower, TextTower, letterbox
    from .registry import (
        UnknownTowerError,
        create_image_tower,
        create_text_tower,
        list_image_towers,
        list_text_towers,
        register_image_tower,
        register_text_tower,
    )

_NAMES = {
    **dict.fromkeys(("ImageTower", "TextTower", "letterbox"), ".base"),
    **dict.fromkeys(
        ("UnknownTowerError", "create_image_tower", "create_text_tower", "list_image_towers", "list_text_towers",
         "register_image_tower", "register_text_tower"),
        ".registry",
    ),
}


__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, globals())


__all__ = [
    "ImageTower",
    "TextTower",
    "letterbox",
    "UnknownTowerError",
    "create_image_tower",
    "create_text_tower",
    "list_image_towers",
    "list_text_towers",
    "register_image_tower",
    "register_text_tower",
]
