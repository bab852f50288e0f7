"""Multi-product scenes from catalogue photos, with ground truth: outfit flat-lays and lookbook collages.

``build_scenes(products, count, seed, kind=...)`` decides seeded scenes (which
products, where, how big, how tilted); ``Scene.render()`` draws one;
``Scene.captions()`` describes it with every attribute bound to its garment
and place; ``write_scenes`` renders a set to files once and returns them as
products, so the feature cache, training and evaluation take them like photos.
"""

from .captions import (
    Captioner,
    Garment,
    get_captioner,
    garment,
    load_scene_captions,
    product_captions,
    register_captioner,
    scene_captions,
)
from .files import scene_products, write_scenes
from .generator import DEFAULT_SIZE, KINDS, Placement, Scene, SceneError, arrange, build_scenes, cutout, usable
from .layouts import Slot, column, grid, side
from .roles import ROLES, product_role

__all__ = [
    "Captioner", "DEFAULT_SIZE", "Garment", "KINDS", "Placement", "ROLES", "Scene", "SceneError", "Slot", "arrange",
    "build_scenes", "column", "cutout", "garment", "get_captioner", "grid", "load_scene_captions", "product_captions",
    "product_role", "register_captioner", "scene_captions", "scene_products", "side", "usable", "write_scenes",
]  # fmt: skip
