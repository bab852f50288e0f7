"""Evaluation tasks: a model and a list of products in, a dict of metrics out.

Every task shares one call shape (``task(encoder, products, **options)``), so
training validation, ``modalens eval`` and the benchmarks all run the same code.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..prompts import ZERO_SHOT_TEMPLATES
from ..zeroshot import build_classifier
from .metrics import classification_metrics, retrieval_metrics


def _usable(encoder: CachedEncoder, products: Sequence[Product]) -> tuple[list[Product], np.ndarray]:
    """Products whose image could be embedded, with their image embeddings."""
    embeds, failures = encoder.image_embeddings(products)
    keep = [i for i in range(len(products)) if i not in failures]
    return [products[i] for i in keep], embeds[keep]


def retrieval(encoder: CachedEncoder, products: Sequence[Product], text_field: str = "title") -> dict[str, dict[str, float]]:
    """Text→image and image→text Recall@1/5/10, MRR and median rank over the products' own texts.

    Products with the same text (the same title listed twice) are all relevant
    to that text, so a duplicate title is not counted as a miss.
    """
    products, image_embeds = _usable(encoder, products)
    texts = [p.get(text_field).strip() for p in products]
    keep = [i for i, t in enumerate(texts) if t]
    products, image_embeds, texts = [products[i] for i in keep], image_embeds[keep], [texts[i] for i in keep]
    text_embeds = encoder.text_embeddings(texts)
    norm = np.array([" ".join(t.lower().split()) for t in texts])
    relevant = norm[:, None] == norm[None, :]
    scores = text_embeds @ image_embeds.T
    return {"text_to_image": retrieval_metrics(scores, relevant), "image_to_text": retrieval_metrics(scores.T, relevant.T)}


def zero_shot(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    labels: Sequence[str] | None = None,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
) -> dict[str, dict[str, float]]:
    """Zero-shot classification of ``field``: with the full prompt ensemble and with its first template alone."""
    products, image_embeds = _usable(encoder, products)
    truth = [p.get(field) for p in products]
    keep = [i for i, t in enumerate(truth) if t]
    image_embeds, truth = image_embeds[keep], [truth[i] for i in keep]
    labels = sorted(set(truth)) if labels is None else list(labels)
    results = {}
    for name, chosen in (("ensemble", templates), ("single_prompt", templates[:1])):
        classifier = build_classifier(encoder.model, labels, chosen, text_features=encoder.text_features)
        results[name] = classification_metrics(truth, classifier.predict(image_embeds))
        results[name]["labels"] = len(labels)
        results[name]["templates"] = len(chosen)
    return results
