"""People in the loop, measured: queue the doubtful pairs, answer them, retrain and re-calibrate, measure again.

    .venv/bin/python benchmarks/matching_review_loop.py [--model src/modalens/matching/pretrained]

1. The matcher runs on a fresh generated scenario of KAGL *val* products (seed val1);
   its doubtful pairs go to a review queue (SQLite).
2. A simulated reviewer answers each queued pair with the truth (as a careful person would),
   through the same queue API the web page uses (lease → decide).
3. `retrain` continues training on generated KAGL train pairs plus the reviewed pairs and
   re-calibrates on the val scenario plus the reviewed labels.
4. Old and new matcher are measured on the generated KAGL *test* scenario (never trained or
   calibrated on), as in benchmarks/matching_eval.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from modalens.catalog import read_catalog
from modalens.matching.evaluate import Scenario, measure
from modalens.matching.features import OfferFeaturizer, fast_image_tower
from modalens.matching.pipeline import Matcher
from modalens.matching.retrain import retrain
from modalens.matching.review import ReviewQueue
from modalens.matching.train import TrainConfig


def row(name: str, m: dict) -> str:
    pw = m["pairwise"]
    return (f"| {name} | {100 * pw['precision']:.1f}% | {100 * pw['recall']:.1f}% | {100 * pw['f1']:.1f}% | {100 * pw['npv']:.1f}% "
            f"| {100 * pw['share_auto']:.1f}% | {100 * pw['share_review']:.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--out", type=Path, default=Path("docs/matching/review-loop.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    products = read_catalog("kagl").products
    split = {s: [p for p in products if p.split == s and p.image] for s in ("train", "val", "test")}
    featurizer = OfferFeaturizer(fast_image_tower())
    old = Matcher.load(args.model, featurizer=featurizer)
    work = Path(tempfile.mkdtemp(prefix="modalens-review-loop-"))
    db = work / "reviews.sqlite"

    fresh = Scenario(split["val"], featurizer, seed="val1").scenario
    result = old.match(fresh.new, fresh.catalogue)
    by_id = {o.id: o for o in fresh.new + fresh.catalogue}
    queued = [(by_id[p.left], by_id[p.right], p.score, p.probability, p.reason) for p in result.pairs if p.decision == "review"]
    with ReviewQueue(db) as q:
        q.add_pairs(queued, source="kagl val (seed val1)")
        while (pair := q.lease("simulated-reviewer")) is not None:
            same = pair.left.product_id == pair.right.product_id
            q.decide(pair.id, "simulated-reviewer", "match" if same else "no-match")
        stats = q.stats()

    new, report = retrain(args.model, db, work / "retrained", train_products=split["train"], val_products=split["val"],
                          config=TrainConfig(epochs=args.epochs, lr=args.lr), featurizer=featurizer)
    test = Scenario(split["test"], featurizer, seed="test0")
    before, after = measure(old, test), measure(new, test)
    lines = [
        "| matcher | auto-accept precision | recall | F1 | auto-reject NPV | decided automatically | sent to review |",
        "|---|---|---|---|---|---|---|",
        row("before review (shipped)", before),
        row(f"after {stats['decided']} reviewed pairs (retrained + re-calibrated)", after),
    ]
    print("\n".join(lines))
    summary = {"queued": len(queued), "reviewed": stats, "retrain": report,
               "before": before["pairwise"], "after": after["pairwise"], "table": lines}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
