"""Which zero-shot prompt templates help? Each template alone, against the full ensemble, in one run.

    .venv/bin/python benchmarks/prompt_templates.py [--data kagl:val fashion-mnist:test] [--model modalens-lite]

Baseline: the first template alone ("a photo of {label}"). Reports top-1 accuracy and weighted F1 per
template and for the ensemble, with the ratio to the baseline. Choose templates on a validation split
(kagl:val), not on the test split you report. Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from modalens.catalog import read_catalog
from modalens.embedding import CachedEncoder
from modalens.evaluation.metrics import classification_metrics
from modalens.models import create_model
from modalens.prompts import ZERO_SHOT_TEMPLATES
from modalens.zeroshot import build_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["kagl:val", "fashion-mnist:test"])
    parser.add_argument("--model", default="modalens-lite")
    parser.add_argument("--field", default="article_type")
    args = parser.parse_args()
    encoder = CachedEncoder(create_model(args.model), progress=True)
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; model {args.model}")
    record: dict[str, dict] = {}
    for data in args.data:
        products = read_catalog(data).products
        embeds, failures = encoder.image_embeddings(products)
        keep = [i for i, p in enumerate(products) if i not in failures and p.get(args.field)]
        truth = [products[i].get(args.field) for i in keep]
        labels = sorted(set(truth))
        rows = {t: list(ZERO_SHOT_TEMPLATES).index(t) for t in ZERO_SHOT_TEMPLATES}
        scores = {}
        for name, templates in [(t, [t]) for t in rows] + [("ensemble of all", list(ZERO_SHOT_TEMPLATES))]:
            classifier = build_classifier(encoder.model, labels, templates, text_features=encoder.text_features)
            scores[name] = classification_metrics(truth, classifier.predict(embeds[keep]))
        baseline = scores[ZERO_SHOT_TEMPLATES[0]]["accuracy"]
        print(f"\n{data}: {len(keep)} products, {len(labels)} labels (baseline: the first template alone)")
        for name, m in sorted(scores.items(), key=lambda kv: -kv[1]["accuracy"]):
            print(f"  {m['accuracy']:.3f} acc  {m['weighted_f1']:.3f} wF1  ×{m['accuracy'] / baseline:.3f}  {name}")
        record[data] = scores
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "prompt_templates.json").write_text(json.dumps({"model": args.model, "cpu": cpu_model(), "results": record}, indent=2) + "\n")


if __name__ == "__main__":
    main()
