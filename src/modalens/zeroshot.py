"""Zero-shot tagging: score images against a label set through prompt ensembles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .prompts import ZERO_SHOT_TEMPLATES, zero_shot_prompts

if TYPE_CHECKING:
    from .models import DualEncoder
    from .query_encoder import QueryEncoder

#: The largest logit scale a model's temperature may use (CLIP's clamp: exp(4.6052) = 100).
MAX_LOGIT_SCALE = 4.6052


@dataclass
class ZeroShotClassifier:
    """One normalised text embedding per label (the mean over its prompts)."""

    labels: list[str]
    weights: np.ndarray  # (n_labels, dim)
    #: Softmax temperature for probabilities: the model's own learned logit scale.
    temperature: float = 100.0

    def scores(self, image_embeds: np.ndarray) -> np.ndarray:
        return np.asarray(image_embeds, dtype=np.float32) @ self.weights.T

    def predict(self, image_embeds: np.ndarray) -> list[str]:
        return [self.labels[i] for i in self.scores(image_embeds).argmax(axis=1)]

    def top_k(self, image_embeds: np.ndarray, k: int = 3, temperature: float | None = None) -> list[list[tuple[str, float]]]:
        """Top-k labels per image with softmax probabilities over the label set (at the model's temperature by default)."""
        logits = self.scores(image_embeds) * (self.temperature if temperature is None else temperature)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.labels[j], float(p[j])) for j in row] for row, p in zip(order, probs)]


def model_temperature(model: DualEncoder | QueryEncoder | Any) -> float:
    """``exp(min(logit_scale, MAX_LOGIT_SCALE))`` in float32, from a ``DualEncoder`` (a tensor) or a query encoder (a float)."""
    scale = model.logit_scale
    if hasattr(scale, "detach"):  # the PyTorch parameter: float32, as the export records it
        scale = scale.detach().cpu().numpy()
    return float(np.exp(np.minimum(np.float32(scale), np.float32(MAX_LOGIT_SCALE))))


def build_classifier(
    model: DualEncoder | QueryEncoder,
    labels: Sequence[str],
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    text_features=None,
) -> ZeroShotClassifier:
    """Average the prompt embeddings of each label; ``text_features(texts) -> array`` lets callers use a cache.

    ``model`` is a ``DualEncoder`` or a query encoder (``ModelHandle.query_encoder``: the PyTorch model or an
    ONNX export, no torch): ``encode_text`` and ``logit_scale`` are all it needs, and ``project_features``
    with ``text_features``.
    """
    labels = list(dict.fromkeys(str(label) for label in labels if str(label).strip()))
    if not labels:
        raise ValueError("the label set is empty")
    prompts = zero_shot_prompts(labels, templates)
    flat = [p for group in prompts for p in group]
    if text_features is None:
        embeds = model.encode_text(flat)
    else:
        embeds = model.project_features(text_features(flat), "text")
    embeds = embeds.reshape(len(labels), len(templates), -1).mean(axis=1)
    embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
    return ZeroShotClassifier(labels, embeds.astype(np.float32), model_temperature(model))
