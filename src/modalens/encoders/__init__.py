"""Pretrained towers, created by name: ``create_image_tower("efficientnet-lite0")``, ``create_text_tower("minilm-l6")``."""

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
