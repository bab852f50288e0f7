"""Which lower bound should the threshold rule demand? Leave-one-scenario-out on validation products only.

    .venv/bin/python benchmarks/matching_bound_loso.py [--model DIR] [--out docs/matching/bound-loso.json]

The calibration set of the shipped matcher is KAGL val plus the kagl-full val products that are not in KAGL,
cut into 4 scenarios of KAGL val's size (``evaluate.calibration_scenarios``, as ``match calibrate`` does).
For each of those 4 scenarios in turn the matcher's model (unchanged) is calibrated on KAGL val and the other
3, and measured on the held-out one (all of its pairs have 60×80 photos, so the small-photo thresholds decide
them); once per rule (``RULES``: which of ``calibration.BOUNDS`` each side must reach): Clopper-Pearson, which
counts every calibration pair as an independent draw, the clustered bound, which counts each product's pairs as
one cluster, and the prediction bound, which bounds the rate of a new scenario-sized set. No test
product is read. Each held-out row gives precision / NPV (with their plain and clustered 95% lower bounds),
the share decided, and the small-photo cuts with the design effects at them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from modalens.catalog import read_catalog
from modalens.matching.calibration import decision_masks, set_lower_bound
from modalens.matching.evaluate import Scenario, calibrate, calibration_pairs, calibration_scenarios
from modalens.matching.features import OfferFeaturizer, fast_image_tower
from modalens.matching.pipeline import SMALL_PHOTOS, Matcher


#: The rules compared: (precision bound, NPV bound), as ``calibration.BOUNDS`` names them.
RULES = {
    "clopper-pearson": ("clopper-pearson", "clopper-pearson"),
    "clustered": ("clustered", "clustered"),
    "prediction (both sides)": ("prediction", "prediction"),
    "clustered accept, prediction reject": ("clustered", "prediction"),
    "clopper-pearson accept, prediction reject": ("clopper-pearson", "prediction"),
}


def pct(v: float | None, d: int = 2) -> str:
    return "–" if v is None or v != v else f"{100 * v:.{d}f}%"


def held_out_row(matcher: Matcher, scenario: Scenario, k: int) -> dict:
    """The calibrated matcher's decisions on a held-out scenario, with plain and clustered lower bounds."""
    pairs = calibration_pairs(matcher, scenario, k=k)
    _, th = matcher.rule_for(SMALL_PHOTOS)
    small = pairs["small"]
    acc = np.zeros(len(small), bool)
    rej = np.zeros(len(small), bool)
    for stratum, sel in ((SMALL_PHOTOS, small), ("", ~small)):
        _, t = matcher.rule_for(stratum)
        a, r = decision_masks(pairs["scores"][sel], t, eligible=pairs["mutual"][sel] if t.mutual_best_only else None,
                              nearest=pairs["nearest"][sel])
        acc[sel], rej[sel] = a, r
    y, clusters = pairs["labels"], pairs["clusters"]
    row = {"pairs": len(y), "small_photo_pairs": int(small.sum()), "accepted": int(acc.sum()), "rejected": int(rej.sum()),
           "precision": float(y[acc].mean()) if acc.any() else float("nan"), "npv": float((~y[rej]).mean()) if rej.any() else float("nan"),
           "wrong_accepts": int((acc & ~y).sum()), "wrong_rejects": int((rej & y).sum()), "share_auto": float((acc | rej).mean())}
    row["precision_lower"], _ = set_lower_bound(y[acc], None)
    row["precision_lower_clustered"], row["precision_design_effect"] = set_lower_bound(y[acc], clusters[acc])
    row["npv_lower"], _ = set_lower_bound(~y[rej], None)
    row["npv_lower_clustered"], row["npv_design_effect"] = set_lower_bound(~y[rej], clusters[rej])
    row.update({"small_accept": th.accept, "small_reject": th.reject, "small_reject_nearest": th.reject_nearest,
                "small_val_precision_lower": th.fit_precision_lower, "small_val_npv_lower": th.fit_npv_lower,
                "small_val_share_auto": th.fit_share_auto, "small_val_precision_design_effect": th.fit_precision_design_effect,
                "small_val_npv_design_effect": th.fit_npv_design_effect})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/matching/bound-loso.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    featurizer = OfferFeaturizer(fast_image_tower(), progress=True)
    shipped = Matcher.load(args.model, featurizer=featurizer)
    kagl = read_catalog("kagl").products
    kagl_ids = {p.id for p in kagl}
    t0 = time.time()
    val = Scenario([p for p in kagl if p.split == "val" and p.image], featurizer, seed="val0")
    small_val = [p for p in read_catalog("kagl-full").products if p.split == "val" and p.id not in kagl_ids and p.image]
    chunks = calibration_scenarios(small_val, len(val.products), featurizer, seed="val0")
    logging.info("features ready in %.0fs (%d scenarios of %s products)", time.time() - t0, len(chunks), [len(c.products) for c in chunks])
    rows = []
    for bound in RULES:
        precision_bound, npv_bound = RULES[bound]
        for held in range(len(chunks)):
            m = calibrate(Matcher(shipped.model, featurizer=featurizer), val, k=args.k, precision_bound=precision_bound, npv_bound=npv_bound,
                          more=[c for i, c in enumerate(chunks) if i != held])
            row = {"bound": bound, "held_out": held, "held_out_products": len(chunks[held].products), **held_out_row(m, chunks[held], args.k)}
            rows.append(row)
            logging.info("%s, held out %d: precision %s NPV %s decided %s", bound, held, pct(row["precision"]), pct(row["npv"]), pct(row["share_auto"], 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model or "shipped"), "k": args.k, "rows": rows}, indent=2, default=float))
    print("| bound | held-out scenario (products, pairs) | small photos: accept ≥ / reject < (nearest <) | on the 3 + KAGL val: NPV lower bound (design effect), decided "
          "| held out: precision (accepted; wrong) | held out: NPV (rejected; wrong) | NPV lower bound: plain / clustered (design effect) | decided automatically |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bound']} | {r['held_out'] + 1} ({r['held_out_products']}, {r['pairs']}) "
              f"| {r['small_accept']:.3f} / {r['small_reject']:.3f} ({r['small_reject_nearest']:.3f}) "
              f"| {pct(r['small_val_npv_lower'])} ({r['small_val_npv_design_effect']:.2f}), {pct(r['small_val_share_auto'], 1)} "
              f"| {pct(r['precision'])} ({r['accepted']}; {r['wrong_accepts']}) | {pct(r['npv'])} ({r['rejected']}; {r['wrong_rejects']}) "
              f"| {pct(r['npv_lower'])} / {pct(r['npv_lower_clustered'])} ({r['npv_design_effect']:.2f}) | {pct(r['share_auto'], 1)} |")
    for bound in RULES:
        mine = [r for r in rows if r["bound"] == bound]
        print(f"{bound}: held-out NPV {pct(min(r['npv'] for r in mine))} – {pct(max(r['npv'] for r in mine))}, "
              f"precision {pct(min(r['precision'] for r in mine))} – {pct(max(r['precision'] for r in mine))}, "
              f"decided {pct(min(r['share_auto'] for r in mine), 1)} – {pct(max(r['share_auto'] for r in mine), 1)}")


if __name__ == "__main__":
    main()
