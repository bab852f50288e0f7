"""Why composition swaps stay at chance: how far apart the two sides of a swap are, and whether training partners are learnt.

    PYTHONPATH=src .venv/bin/python benchmarks/composition_diagnosis.py [--runs runs/recaptioned runs/recaptioned-partners] [--scenes 3000]
        [--poolings mean mean+quadrants]

* **Distances** (raw tower features, no heads): for each symmetric pair of the composition benchmark on
  ``kagl:val`` (100 pairs per category, seed 0), 1 − cosine between the two pictures (EfficientNet-Lite0,
  under each of ``--poolings``; for ``mean+quadrants`` also its quadrant part alone) and between the case's two
  captions (MiniLM-L6 and e5-small-multilingual). A category whose two sides are one point for a tower cannot be
  learnt by heads on it without a push to separate them.
* **After the heads** (with ``--runs``): the same val pairs' two captions and two pictures, 1 − cosine in each
  run's embedding space.
* **Training partners** (with ``--runs``): the first ``--scenes`` train scenes of configs/experiments/composition/
  (3,000: every scene of recaptioned-partners; scene i is the same whatever the count, so they are also the
  first 3,000 of scenes-12k's 12,000) with their partners (``scenes.partners``), each picture scored with its
  own first grounded caption against its partner's; accuracy for colour swaps and place swaps. Against the val numbers of
  docs/composition.md this separates "not learnt" from "learnt and memorised".
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from modalens.catalog import read_catalog
from modalens.embedding import CachedEncoder
from modalens.encoders import create_image_tower, create_text_tower
from modalens.encoders.features import default_store, image_features, text_features
from modalens.evaluation.composition import build_cases
from modalens.models.handle import load
from modalens.recipes.data import _with_partners
from modalens.scenes import build_scenes, scene_products


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pooled_images(cases: list, pooling: str) -> dict[str, np.ndarray]:
    """Unit raw features of each case's picture under ``pooling`` (and, for ``mean+quadrants``, its quadrant part)."""
    tower = create_image_tower("efficientnet-lite0", pooling=pooling)
    sources = [p.image for p in scene_products([c.scene for c in cases])]
    feats, failures = image_features(tower, sources, store=default_store(tower, "image"), progress=False)
    assert not failures, failures
    out = {f"images, {pooling}": _unit(feats)}
    if pooling == "mean+quadrants":
        out["images, quadrants only"] = _unit(feats[:, feats.shape[1] // 5 :])
    return out


def distances(poolings: list[str]) -> None:
    cases, _ = build_cases(read_catalog("kagl:val").products, pairs=100, seed=0)
    image_sets = {name: x for pooling in poolings for name, x in _pooled_images(cases, pooling).items()}
    text = {}
    for name in ("minilm-l6", "e5-small-multilingual"):
        tower = create_text_tower(name, max_length=64)
        store = default_store(tower, "text")
        text[name] = (_unit(text_features(tower, [c.positive for c in cases], store=store)),
                      _unit(text_features(tower, [c.negative for c in cases], store=store)))
    pairs = defaultdict(list)
    for i, case in enumerate(cases):
        pairs[(case.category, case.pair)].append(i)
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (category, _), members in pairs.items():
        if len(members) == 2:
            i, j = members
            for name, images in image_sets.items():
                rows[category][name].append(1 - float(images[i] @ images[j]))
            for name, (pos, neg) in text.items():
                rows[category][f"captions, {name}"].append(1 - float(pos[i] @ neg[i]))
    columns = [*image_sets, *(f"captions, {name}" for name in text)]
    print(f"{'category':<16}" + "".join(f"{c:>33}" for c in columns) + "   (1 − cosine between a pair's two sides)")
    for category, r in rows.items():
        print(f"{category:<16}" + "".join(f"{np.mean(r[c]):33.4f}" for c in columns))


def head_distances(runs: list[str]) -> None:
    """1 − cosine between each val case's two captions, and between each val pair's two pictures, in each run's
    embedding space (its heads on the towers)."""
    cases, _ = build_cases(read_catalog("kagl:val").products, pairs=100, seed=0)
    categories = sorted({c.category for c in cases})
    members = defaultdict(list)
    for i, case in enumerate(cases):
        members[(case.category, case.pair)].append(i)
    pairs = [(k[0], *m) for k, m in members.items() if len(m) == 2]
    for side in ("captions", "images"):
        print(f"{'run':<40}" + "".join(f"{c:>16}" for c in categories) + f"   ({side}, 1 − cosine after the {side[:-1]} head)")
        for run in runs:
            encoder = CachedEncoder(load(run).model, progress=False)
            if side == "captions":
                pos, neg = encoder.text_embeddings([c.positive for c in cases]), encoder.text_embeddings([c.negative for c in cases])
                gaps = [(c.category, 1 - float(pos[i] @ neg[i])) for i, c in enumerate(cases)]
            else:
                images, _ = encoder.image_embeddings(scene_products([c.scene for c in cases]))
                gaps = [(category, 1 - float(images[i] @ images[j])) for category, i, j in pairs]
            print(f"{Path(run).name:<40}" + "".join(f"{np.mean([g for c, g in gaps if c == k]):16.4f}" for k in categories))


def training_partners(runs: list[str], count: int) -> None:
    products = read_catalog("kagl").split("train").products
    scenes, partner = _with_partners(build_scenes(products, count, 0, kind="mixed", min_products=2, max_products=3), products, 0)
    pairs = [(i, j) for i, j in enumerate(partner) if j > i]
    items = scene_products(scenes)
    captions = [s.captions("grounded", 1)[0] for s in scenes]
    for run in runs:
        encoder = CachedEncoder(load(run).model, progress=False)
        images, _ = encoder.image_embeddings(items)
        texts = encoder.text_embeddings(captions)
        right, total = Counter(), Counter()
        for i, j in pairs:
            kind = "colour swaps" if scenes[i].products[0].id != scenes[j].products[0].id else "place swaps"
            total[kind] += 2
            right[kind] += int(images[i] @ texts[i] > images[i] @ texts[j]) + int(images[j] @ texts[j] > images[j] @ texts[i])
        print(f"{run}: " + ", ".join(f"{k} {right[k] / total[k]:.3f} (n = {total[k]})" for k in sorted(total)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], help="trained models to score on their training partners")
    parser.add_argument("--scenes", type=int, default=3000, help="how many of the seeded train scenes (with partners) to score")
    parser.add_argument("--no-distances", action="store_true", help="only what the runs give (no raw tower distances)")
    parser.add_argument("--poolings", nargs="+", default=["mean"], help="image tower poolings for the raw distances (encoders/pooling.py)")
    args = parser.parse_args()
    if not args.no_distances:
        distances(args.poolings)
    if args.runs:
        head_distances(args.runs)
        training_partners(args.runs, args.scenes)


if __name__ == "__main__":
    main()
