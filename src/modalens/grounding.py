"""Where in a photo a text label matches: a grounding heat map over the image tower's feature-map cells.

``modalens tag --explain PHOTO --labels shoes,belt`` draws, per label, how
strongly each part of the photo matches it, the view FashionCLIP's demos made
familiar. Each of the tower's 7×7 cells (1280-d) goes through the model's own
image head, as the pooled map does for the global embedding, and the label
(its prompt-ensemble text embedding, as zero-shot tagging builds it) scores it
by cosine; a softmax over the cells at the model's learned temperature makes
the map a distribution over where the label is.

Why cells through the head rather than the instance decoder's attention (the
query whose instance best matches the label, as ``search --look`` draws): on
200 seeded val scenes, the two put the same share of their mass on the
labelled product's box (0.484 and 0.475 over 598 products whose article type
appears once in its scene; the box's share of the photo, chance, is 0.118),
and the cell map needs no decoder: it works for every model with a feature
map, and says "where does this label match" directly rather than "where did
the query that matched it look". Its caveat: the head was trained on pooled
maps, so a single cell's score is read out of the head's training
distribution; the maps are relative (where the label matches most), not
calibrated probabilities of presence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:
    from PIL import Image

    from .query_encoder import QueryEncoder
    from .zeroshot import ZeroShotClassifier


def photo_grids(encoder: QueryEncoder, images: Sequence[Image.Image]) -> np.ndarray:
    """Photos → the image tower's feature maps (n, h·w, C) float32, cells in reading order, letterboxed as the tower
    sees them: from an export's tower (no torch) or the PyTorch model's."""
    exported = getattr(encoder, "exported", None)
    if exported is not None:
        return exported.image_grids(exported.preprocess(list(images)))
    import torch

    tower = encoder.model.image_tower  # type: ignore[attr-defined]
    pixels = torch.stack([tower.preprocess(image) for image in images])
    with torch.inference_mode():
        maps = tower.forward_features(pixels).float()
    return maps.flatten(2).transpose(1, 2).numpy()


def _project_cells(encoder: QueryEncoder, cells: np.ndarray) -> np.ndarray:
    """(m, C) cell features → (m, D) unit vectors through the model's image head (the export's graph, or PyTorch's)."""
    project = getattr(encoder, "project_features", None) or encoder.model.project_features  # type: ignore[attr-defined]
    return np.asarray(project(np.ascontiguousarray(cells, np.float32), "image"))


def cell_padding(tower: Any, channels: int, what: str) -> int:
    """How many zeros follow a feature-map cell's channels so the image head can read it (grounding maps and
    instance queries push single cells, or attention-pooled maps, through the head).

    ``mean`` heads read cells as they are. ``mean+colour`` heads read the map's channels and then a colour
    histogram of the whole photo, which a cell does not have: its slot is left at zero, what a head trained with
    ``colour_dropout`` reads as "no colour" (a head trained without it reads such cells poorly). Heads on other
    poolings (``mean+quadrants``: 5 × the channels) cannot read cells at all.
    """
    from .encoders.pooling import POOLINGS, pooling_of

    pooling = pooling_of(str(tower.preprocess_id))
    multiple, extra = POOLINGS[pooling]
    if multiple != 1 or int(channels) + extra != int(tower.output_dim):
        raise InvalidInputError(
            f"{what} needs a model whose image head reads {channels}-d feature-map cells; this model's head reads "
            f"{tower.output_dim}-d vectors pooled as {pooling}"
        )
    return extra


def _image_tower(encoder: QueryEncoder) -> Any:
    """The image tower the model's head was trained on (the export's tower, or PyTorch's)."""
    return getattr(encoder, "image_tower", None) or encoder.model.image_tower  # type: ignore[attr-defined]


def label_maps(encoder: QueryEncoder, classifier: ZeroShotClassifier, grids: np.ndarray) -> np.ndarray:
    """(n, cells, C) maps → (n, labels, cells): per label, a softmax over the cells of its cosine with each cell
    (through the image head), at the classifier's temperature (the model's learned logit scale)."""
    n, cells, channels = grids.shape
    padding = cell_padding(_image_tower(encoder), channels, "a grounding map (tag --explain)")
    flat = np.pad(grids.reshape(n * cells, channels), ((0, 0), (0, padding)))
    vectors = _project_cells(encoder, flat).reshape(n, cells, -1)
    logits = np.einsum("ncd,ld->nlc", vectors, classifier.weights) * classifier.temperature
    weights = np.exp(logits - logits.max(axis=2, keepdims=True))
    return weights / weights.sum(axis=2, keepdims=True)


def explain_labels(encoder: QueryEncoder, photo: Image.Image, labels: Sequence[str], templates: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """For one photo: each label's zero-shot probability, its map over the cells, and the box holding most of it."""
    from .instances import attention_box
    from .prompts import ZERO_SHOT_TEMPLATES
    from .zeroshot import build_classifier

    classifier = build_classifier(encoder, labels, templates or ZERO_SHOT_TEMPLATES)
    probabilities = dict(classifier.top_k(encoder.encode_image([photo]), k=len(classifier.labels))[0])
    maps = label_maps(encoder, classifier, photo_grids(encoder, [photo]))[0]
    side = int(round(maps.shape[1] ** 0.5))
    return [
        {"label": label, "score": probabilities[label], "map": maps[j], "box": attention_box(maps[j], side, photo.size)}
        for j, label in enumerate(classifier.labels)
    ]
