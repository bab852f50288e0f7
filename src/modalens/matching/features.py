"""Frozen-tower features of offers: average-pooled photo features, title features, scaled numbers.

Photos go through ``encoders.features.image_features`` with the shared on-disk
cache. A photo changed by a matching view (``pairs.apply_view``) is cached in a
store of its own whose namespace names the view and its version, keyed by the
photo's bytes like any other, so no change to ``encoders/views.py`` is needed
and the changed photo is encoded once per machine.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..encoders.features import (
    FeatureStore,
    default_store,
    file_key,
    image_features,
    text_features,
)
from ..paths import cache_dir
from .offers import Offer
from .pairs import apply_view, view_namespace

if TYPE_CHECKING:
    from ..encoders.base import ImageTower, TextTower

IMAGE_TOWER = "efficientnet-lite0"
TEXT_TOWER = "minilm-l6"
#: The options the featurizer builds its towers with: none, so their defaults (MiniLM-L6 truncates at 64 tokens).
TOWER_OPTIONS: dict[str, dict[str, Any]] = {"image": {}, "text": {"max_length": 64}}
#: A shipped model built on exactly these towers, whose cached ONNX export lends them to the featurizer (the default
#: model's image tower also hands its heads a colour histogram, so its export's pooled output is not these features).
TOWER_SOURCE_MODEL = "modalens-photo"
NUMBER_DIM = 4  # log price, sizes, price missing, sizes missing


@dataclass
class OfferFeatures:
    """Per offer: pooled image features (zeros + ``has_image`` False when none could be read), title, numbers."""

    image: np.ndarray
    has_image: np.ndarray
    title: np.ndarray
    description: np.ndarray
    numbers: np.ndarray  # raw: log1p(price), sizes, missing flags; scaled by the model's stored statistics
    failures: dict[int, str]

    def __len__(self) -> int:
        return len(self.image)

    def take(self, rows: Sequence[int] | np.ndarray) -> OfferFeatures:
        rows = np.asarray(rows, dtype=np.int64)
        return OfferFeatures(self.image[rows], self.has_image[rows], self.title[rows], self.description[rows], self.numbers[rows], {})

    @staticmethod
    def concat(parts: Sequence[OfferFeatures]) -> OfferFeatures:
        return OfferFeatures(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in ("image", "has_image", "title", "description", "numbers")),
            {},
        )


def raw_numbers(offers: Sequence[Offer]) -> np.ndarray:
    out = np.zeros((len(offers), NUMBER_DIM), np.float32)
    for i, o in enumerate(offers):
        if o.price is not None:
            out[i, 0] = math.log1p(o.price)
        else:
            out[i, 2] = 1.0
        if o.n_sizes is not None:
            out[i, 1] = float(o.n_sizes)
        else:
            out[i, 3] = 1.0
    return out


def photo_side(path: str) -> int:
    """Short side in pixels of a photo (its header only; 0 when it cannot be read)."""
    return _photo_side(str(path))


@functools.lru_cache(maxsize=200_000)
def _photo_side(path: str) -> int:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(min(image.size))
    except Exception:  # unreadable photos are reported by the featurizer; here they just have no size
        return 0


def offer_photo_sides(offers: Sequence[Offer]) -> np.ndarray:
    """Per offer: the short side of its largest photo (0 when it has none readable). A seller's changed copy of a
    photo (``views``) is about the size of the photo, so the file's size stands for it."""
    return np.array([max((photo_side(p) for p in o.images), default=0) for o in offers], np.int64)


def fast_image_tower(name: str = IMAGE_TOWER) -> ImageTower:
    """The image tower in ONNX Runtime when that back-end is available (same features and cache keys, ~5x faster), else torch."""
    from ..encoders import create_image_tower

    tower = create_image_tower(name)
    try:
        from ..backends.onnx import OnnxImageTower

        return OnnxImageTower.from_torch(tower)
    except Exception:  # no back-end, or the export failed: the torch tower gives the same features
        return tower


def export_towers(*, make: bool = True) -> tuple[Any, Any] | None:
    """The featurizer's two towers on numpy (no torch), from :data:`TOWER_SOURCE_MODEL`'s cached ONNX export when that
    model is built on exactly these towers with these options (:data:`TOWER_OPTIONS`); else None (the PyTorch towers).

    Its towers are the very graphs the PyTorch path runs (copied from the tower-export cache), named as the
    PyTorch towers are, so features are equal to 1e-5 and share the feature cache. With ``make`` the
    export is made first if missing (once per machine, as ``modalens search`` does).
    """
    from ..backends import tower_options
    from ..export.cache import query_handle
    from ..models import model_config

    config = model_config(TOWER_SOURCE_MODEL)
    wanted = {"image": (IMAGE_TOWER, TOWER_OPTIONS["image"]), "text": (TEXT_TOWER, TOWER_OPTIONS["text"])}
    for kind, spec in (("image", config.image_tower), ("text", config.text_tower)):
        name, options = wanted[kind]
        defaults = dict(options)
        if spec.get("name") != name or {**defaults, **tower_options(spec)} != defaults:
            return None
    handle = query_handle(TOWER_SOURCE_MODEL, make=make)
    if not handle.torch_free:
        return None
    encoder = handle.query_encoder
    image, text = encoder.image_tower, encoder.text_tower
    if image.name != IMAGE_TOWER or text.name != TEXT_TOWER or text.max_length != TOWER_OPTIONS["text"]["max_length"]:
        return None
    return image, text


class OfferFeaturizer:
    """Offers → :class:`OfferFeatures` through the frozen towers and the feature cache."""

    def __init__(
        self,
        image_tower: ImageTower | None = None,
        text_tower: TextTower | None = None,
        *,
        use_cache: bool = True,
        progress: bool = False,
        batch_size: int = 32,
    ) -> None:
        self._image_tower = image_tower
        self._text_tower = text_tower
        self.use_cache = use_cache
        self.progress = progress
        self.batch_size = batch_size
        self._stores: dict[str, FeatureStore] = {}

    @property
    def image_tower(self) -> ImageTower:
        if self._image_tower is None:
            from ..encoders import create_image_tower

            self._image_tower = create_image_tower(IMAGE_TOWER, **TOWER_OPTIONS["image"])
        return self._image_tower

    @property
    def text_tower(self) -> TextTower:
        if self._text_tower is None:
            from ..encoders import create_text_tower

            self._text_tower = create_text_tower(TEXT_TOWER, **TOWER_OPTIONS["text"])
        return self._text_tower

    def _store(self, view: str | None) -> FeatureStore | None:
        if not self.use_cache:
            return None
        key = view or ""
        if key not in self._stores:
            if view is None:
                self._stores[key] = default_store(self.image_tower, "image")
            else:
                self._stores[key] = FeatureStore(cache_dir(), f"image|{self.image_tower.preprocess_id}|{view_namespace(view)}")
        return self._stores[key]

    def _text_store(self) -> FeatureStore | None:
        if not self.use_cache:
            return None
        if "text" not in self._stores:
            self._stores["text"] = default_store(self.text_tower, "text")
        return self._stores["text"]

    def image_ref_features(self, refs: Sequence[tuple[str, str | None]]) -> tuple[dict[tuple[str, str | None], np.ndarray], dict[tuple[str, str | None], str]]:
        """Tower features of distinct (path, view) photos; failures say why a photo could not be used."""
        by_view: dict[str | None, list[str]] = defaultdict(list)
        for path, view in dict.fromkeys(refs):
            by_view[view].append(path)
        feats: dict[tuple[str, str | None], np.ndarray] = {}
        failed: dict[tuple[str, str | None], str] = {}
        from ..catalog.images import load_image

        def changed(view: str):
            return lambda path: apply_view(load_image(path), view, file_key(path))

        for view, paths in by_view.items():
            loader = load_image if view is None else changed(view)
            out, failures = image_features(
                self.image_tower, paths, store=self._store(view), batch_size=self.batch_size, progress=self.progress, load_image=loader
            )
            for j, path in enumerate(paths):
                if j in failures:
                    failed[(path, view)] = failures[j]
                else:
                    feats[(path, view)] = out[j]
        return feats, failed

    def __call__(self, offers: Sequence[Offer]) -> OfferFeatures:
        refs = [ref for o in offers for ref in o.image_refs]
        feats, failed = self.image_ref_features(refs)
        dim = self.image_tower.output_dim
        image = np.zeros((len(offers), dim), np.float32)
        has_image = np.zeros(len(offers), bool)
        failures: dict[int, str] = {}
        for i, offer in enumerate(offers):
            rows = [feats[r] for r in offer.image_refs if r in feats]
            if rows:
                image[i] = np.mean(rows, axis=0)  # several photos of one offer: average-pooled
                has_image[i] = True
            else:
                reasons = [failed[r] for r in offer.image_refs if r in failed]
                failures[i] = reasons[0] if reasons else "offer has no image"
        titles = text_features(self.text_tower, [o.title or "" for o in offers], store=self._text_store(), progress=self.progress)
        descriptions = np.zeros((len(offers), self.text_tower.output_dim), np.float32)
        with_desc = [i for i, o in enumerate(offers) if o.description]
        if with_desc:
            descriptions[with_desc] = text_features(
                self.text_tower, [offers[i].description[:1000] for i in with_desc], store=self._text_store(), progress=self.progress
            )
        return OfferFeatures(image, has_image, titles, descriptions, raw_numbers(offers), failures)
