"""Product matching on KAGL: the offer model against the frozen-image baseline, with part ablations, in one run.

    .venv/bin/python benchmarks/matching_eval.py [--epochs 30] [--out docs/matching]

The same as `modalens match eval`. Trains on generated offers of KAGL *train*
products, chooses thresholds on a generated scenario of *val* products, and
measures on a generated scenario of *test* products (never trained or
calibrated on). Writes results.json, table.md and precision-recall.png.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from modalens.catalog import read_catalog
from modalens.matching import evaluate
from modalens.matching.features import OfferFeaturizer, fast_image_tower
from modalens.matching.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="kagl")
    parser.add_argument("--out", type=Path, default=Path("docs/matching"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--save-model", type=Path, default=None, help="also save the full matcher here")
    parser.add_argument("--confidence", type=float, default=0.95, help="one-sided Clopper-Pearson confidence (0: point estimate)")
    parser.add_argument("--near-duplicates", action="store_true", help="also calibrate on near-duplicate product pairs as non-matches")
    parser.add_argument("--no-mutual-best", action="store_true", help="accept any pair above the threshold, not only mutual-best ones")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = evaluate.run(
        read_catalog(args.data).products, out_dir=args.out, train_config=TrainConfig(epochs=args.epochs, seed=args.seed),
        featurizer=OfferFeaturizer(fast_image_tower(), progress=True), k=args.k, target_precision=args.target_precision,
        seed=args.seed, save_best=args.save_model, confidence=args.confidence or None, near_duplicates=args.near_duplicates,
        mutual_best_only=not args.no_mutual_best,
    )
    print(evaluate.markdown_table(summary["rows"]))
    print(evaluate.guarantee_lines(summary["rows"]))


if __name__ == "__main__":
    main()
