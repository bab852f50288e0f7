"""Two training-free ways to help zero-shot tagging off the catalogue, probed before building either.

    PYTHONPATH=src OMP_NUM_THREADS=2 .venv/bin/python benchmarks/zero_shot_adaptation.py [MODEL]

1. *Image prototypes* (a support set, as in SuS-X / Tip-Adapter): each article type of the model's own
   training catalogue (kagl-all train) gets the mean embedding of its photos and their cached training views;
   a label's prototype mixes the types its text embedding points at (softmax over label·prototype at
   temperature ``tau``), and the score is ``(1 - beta) · image·text + beta · image·prototype``.
2. *Feature centring* (AdaBN-like): the tower features of the evaluated set are shifted by ``alpha`` × (their
   mean − the training mean) before the image head: the head then sees the new domain where it saw its own.

Read on the validation sets of ``--suite generalisation-val`` (Fashion-MNIST train's first 10k, KAGL val,
KAGL val as photo-like views, kagl-full val); never on a test split. Zero-shot weighted F1, labels = the
set's own types (Fashion-MNIST: its 10 classes). Tower features come from the feature cache (computed and
cached when missing: minutes per set).
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import f1_score

import modalens
from modalens.catalog import read_catalog
from modalens.catalog.readers import FASHION_MNIST_CLASSES, read_fashion_mnist
from modalens.encoders.features import default_store, image_features

TRAIN_VIEWS = [None, "photo-like:0", "photo-like:1", "photo-like:2", "photo-like:3", "thumbnail-grey"]
BETAS, TAUS, ALPHAS = (0.0, 0.25, 0.5, 0.75), (30.0, 100.0), (0.0, 0.5, 1.0)


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def validation_sets() -> dict[str, tuple[list[str], str | None, list[str], list[str]]]:
    """name → (photo paths, view, true labels, label set)."""
    fmnist = read_fashion_mnist("train", limit=10_000).products
    kagl = [p for p in read_catalog("kagl:val").products if p.attributes.get("article_type")]
    full = [p for p in read_catalog("kagl-full:val").products if p.attributes.get("article_type")]
    kagl_types = [p.attributes["article_type"] for p in kagl]
    full_types = [p.attributes["article_type"] for p in full]
    return {
        "Fashion-MNIST train 10k": ([p.images[0] for p in fmnist], None, [FASHION_MNIST_CLASSES[p.extra["label"]] for p in fmnist], list(FASHION_MNIST_CLASSES)),
        "KAGL val": ([p.images[0] for p in kagl], None, kagl_types, sorted(set(kagl_types))),
        "KAGL val, photo-like views": ([p.images[0] for p in kagl], "photo-like:1000", kagl_types, sorted(set(kagl_types))),
        "kagl-full val": ([p.images[0] for p in full], None, full_types, sorted(set(full_types))),
    }


def main(model_name: str = "modalens-photo") -> None:
    handle = modalens.load(model_name)
    model = handle.handle.model
    tower, store = model.image_tower, default_store(model.image_tower, "image")
    train = [p for p in read_catalog("kagl-all:train").products if p.attributes.get("article_type")]
    types = np.array([p.attributes["article_type"] for p in train])
    embeds, features = [], {}
    for view in TRAIN_VIEWS:
        features[view], _ = image_features(tower, [p.images[0] for p in train], store=store, view=view)
        embeds.append(normalise(model.project_features(features[view], "image")))
    names = sorted(set(types))
    stacked, stacked_types = np.concatenate(embeds), np.concatenate([types] * len(TRAIN_VIEWS))
    prototypes = normalise(np.stack([stacked[stacked_types == n].mean(0) for n in names]))
    train_mean = 0.65 * features[None].mean(0) + 0.35 * np.mean([features[v].mean(0) for v in TRAIN_VIEWS[1:]], axis=0)

    print(f"| set | prototypes: beta {', '.join(map(str, BETAS))} (tau {TAUS[0]:g} / {TAUS[1]:g}) | centring: alpha {', '.join(map(str, ALPHAS))} |")
    print("|---|---|---|")
    for name, (paths, view, truth, labels) in validation_sets().items():
        feats, _ = image_features(tower, paths, store=store, view=view)
        text = handle.classifier(labels).weights
        index = {label: i for i, label in enumerate(labels)}
        y = np.array([index[t] for t in truth])
        images = model.project_features(feats, "image")
        cells = []
        for tau in TAUS:
            sims = text @ prototypes.T
            weights = np.exp(tau * (sims - sims.max(1, keepdims=True)))
            label_protos = normalise((weights / weights.sum(1, keepdims=True)) @ prototypes)
            cells.append(" / ".join(f"{f1_score(y, ((1 - b) * images @ text.T + b * images @ label_protos.T).argmax(1), average='weighted'):.3f}" for b in BETAS))
        centred = []
        for alpha in ALPHAS:
            shifted = model.project_features(feats - alpha * (feats.mean(0) - train_mean), "image")
            centred.append(f"{f1_score(y, (shifted @ text.T).argmax(1), average='weighted'):.3f}")
        print(f"| {name} | {' ; '.join(cells)} | {' / '.join(centred)} |", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:2])
