"""Does the matcher keep its promise on products it never saw? Thresholds with and without a lower bound.

    .venv/bin/python benchmarks/matching_unseen.py [--model DIR] [--unseen 1000] [--out docs/matching/unseen.json]

The matcher's model (default: the shipped one, trained on KAGL *train*) is re-calibrated on
generated scenarios of *val* products and measured on generated scenarios of *test* products,
which were never trained or calibrated on:

* calibration sets: KAGL val (944 products, 224 px photos; what ships), and kagl-all val
  (4,352 products: the same 944 plus 3,408 kagl-full products with 60×80 photos), whole and in
  product subsets of 1/8, 1/4, 1/2, to show how the threshold and its bound move with size;
* the same two sets plus every pair of near-duplicate products (same type and colour, near-identical
  titles) that the candidate search did not propose, as extra non-matches;
* rules: the point estimate reaching 99% (the old rule), the one-sided 95% Clopper-Pearson
  lower bound reaching 99%, and the same bound with only mutual-best pairs acceptable (the new default);
* test sets: KAGL test (946 products, the `match eval` scenario) and *unseen*: a seeded sample of
  kagl-full test products that are not in KAGL at all (60×80 photos);
* the rule that ships since (``evaluate.calibrate`` with ``more=``): KAGL val plus the kagl-full val products
  that are not in KAGL, cut into scenarios of KAGL val's size; small-photo pairs get thresholds of their own,
  and the reject side a separate cut for pairs nearest to one of their offers; with 1 to 4 of those scenarios
  (how the small-photo thresholds and bounds move with calibration size), and without the split reject cut.

Every test row gives precision / NPV with their own 95% lower bounds, recall and the share decided.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np

from modalens.catalog import read_catalog
from modalens.matching.calibration import Calibrator, choose_thresholds, clopper_pearson_lower, decision_metrics
from modalens.matching.evaluate import Scenario, calibrate, calibration_scenarios, measure, near_duplicate_negatives
from modalens.matching.features import OfferFeaturizer, fast_image_tower
from modalens.matching.pipeline import SMALL_PHOTOS, Matcher, mutual_best


def lower(rate: float, n: int) -> float:
    return clopper_pearson_lower(round(rate * n), n) if n else float("nan")


def pct(v: float, d: int = 1) -> str:
    return "–" if v is None or v != v else f"{100 * v:.{d}f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--unseen", type=int, default=1000, help="how many unseen kagl-full test products (0: skip)")
    parser.add_argument("--big-val", action=argparse.BooleanOptionalAction, default=True, help="also calibrate on kagl-all val")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/matching/unseen.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    featurizer = OfferFeaturizer(fast_image_tower(), progress=True)
    matcher = Matcher.load(args.model, featurizer=featurizer)
    kagl = read_catalog("kagl").products
    kagl_ids = {p.id for p in kagl}
    t0 = time.time()
    tests = {"KAGL test (946 products)": Scenario([p for p in kagl if p.split == "test" and p.image], featurizer, seed="test0")}
    if args.unseen:
        pool = sorted((p for p in read_catalog("kagl-full").products if p.split == "test" and p.id not in kagl_ids and p.image), key=lambda p: p.id)
        unseen = random.Random(16).sample(pool, min(args.unseen, len(pool)))
        tests[f"unseen: kagl-full test products not in KAGL ({len(unseen)})"] = Scenario(unseen, featurizer, seed="unseen16")
    calib: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    val = Scenario([p for p in kagl if p.split == "val" and p.image], featurizer, seed="val0")
    vs, vl, _, vc, *_ = val.candidates(matcher, args.k)
    calib["KAGL val (944 products)"] = vs, vl, mutual_best(vc)
    hard = near_duplicate_negatives(matcher, val, k=args.k)
    calib["KAGL val + near-duplicate negatives"] = (np.concatenate([vs, hard[0]]), np.concatenate([vl, hard[1]]),
                                                    np.concatenate([mutual_best(vc), np.ones(len(hard[0]), bool)]))
    if args.big_val:
        big = [p for p in read_catalog("kagl-all").products if p.split == "val" and p.image]
        bigs = Scenario(big, featurizer, seed="val0")
        scores, labels, _, cands, *_ = bigs.candidates(matcher, args.k)
        new_pid = np.array([bigs.scenario.new[i].product_id for _, i, _, _ in cands])
        best = mutual_best(cands)
        ids = sorted({p.id for p in big})
        rng = random.Random(2)
        rng.shuffle(ids)
        for frac in (8, 4, 2, 1):
            keep = set(ids[: len(ids) // frac])
            sel = np.isin(new_pid, list(keep))
            calib[f"kagl-all val ({len(keep)} products{', all' if frac == 1 else ''})"] = scores[sel], labels[sel], best[sel]
        hard = near_duplicate_negatives(matcher, bigs, k=args.k)
        calib["kagl-all val + near-duplicate negatives"] = (np.concatenate([scores, hard[0]]), np.concatenate([labels, hard[1]]),
                                                            np.concatenate([best, np.ones(len(hard[0]), bool)]))
    logging.info("features ready in %.0fs", time.time() - t0)
    test_pairs = {}
    for name, sc in tests.items():
        ts, tl, total, cands, *_ = sc.candidates(matcher, args.k)
        test_pairs[name] = ts, tl, total, mutual_best(cands)
    rows = []
    for cname, (cs, cl, ce) in calib.items():
        for rule, conf, gate in (("point estimate ≥ 99%", None, False), ("95% lower bound ≥ 99%", 0.95, False),
                                 ("95% lower bound ≥ 99%, mutual best only", 0.95, True)):
            th = choose_thresholds(cs, cl, target_precision=0.99, target_npv=0.99, confidence=conf, eligible=ce if gate else None)
            for tname, (ts, tl, total, te) in test_pairs.items():
                m = decision_metrics(ts, tl, th, total_matches=total, eligible=te if gate else None)
                rows.append({
                    "calibration": cname, "calibration_pairs": len(cs), "calibration_matches": int(cl.sum()), "rule": rule,
                    "accept": th.accept, "reject": th.reject, "val_precision": th.fit_precision, "val_precision_lower": th.fit_precision_lower,
                    "val_npv": th.fit_npv, "val_npv_lower": th.fit_npv_lower, "val_share_auto": th.fit_share_auto,
                    "test": tname, "test_pairs": m["pairs"], "test_matches": total, "accepted": m["accepted"], "rejected": m["rejected"],
                    "precision": m["precision"], "precision_lower": lower(m["precision"], m["accepted"]),
                    "recall": m["recall"], "npv": m["npv"], "npv_lower": lower(m["npv"], m["rejected"]), "share_auto": m["share_auto"],
                    "wrong_accepts": m["accepted"] - round(m["precision"] * m["accepted"]) if m["accepted"] else 0,
                    "notes": th.notes,
                })
    rows += stratified_rows(args, matcher, featurizer, kagl, kagl_ids, val, tests)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model or "shipped"), "k": args.k, "rows": rows}, indent=2, default=float))
    print("| calibrated on (pairs) | rule | accept ≥ | on val: precision (lower bound) | measured on | auto-accept precision (95% lower bound) | wrong accepts | recall | auto-reject NPV (lower bound) | decided automatically |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['calibration']} ({r['calibration_pairs']}) | {r['rule']} | {r['accept']:.4f} | {pct(r['val_precision'], 2)} ({pct(r['val_precision_lower'], 2)}) "
              f"| {r['test']} | {pct(r['precision'], 2)} ({pct(r['precision_lower'], 2)}; {r['accepted']} pairs) | {r['wrong_accepts']} | {pct(r['recall'])} "
              f"| {pct(r['npv'], 2)} ({pct(r['npv_lower'], 2)}) | {pct(r['share_auto'])} |")
    print("\n| calibrated on | rule | small photos: accept ≥ / reject < (nearest <) | on val, small photos: precision / NPV lower bounds, decided "
          "| measured on | auto-accept precision (95% lower bound; accepted) | wrong accepts | recall | auto-reject NPV (lower bound; rejected) | decided automatically |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "small_accept" not in r:
            continue
        cuts = "none (main thresholds)" if r["small_accept"] is None else (
            f"{r['small_accept']:.3f} / {r['small_reject']:.3f}" + (f" ({r['small_reject_nearest']:.3f})" if r["small_reject_nearest"] is not None else ""))
        bounds = "–" if r["small_accept"] is None else f"{pct(r['small_val_precision_lower'], 2)} / {pct(r['small_val_npv_lower'], 2)}, {pct(r['small_val_share_auto'])}"
        print(f"| {r['calibration']} | {r['rule']} | {cuts} | {bounds} | {r['test']} | {pct(r['precision'], 2)} ({pct(r['precision_lower'], 2)}; {r['accepted']}) "
              f"| {r['wrong_accepts']} | {pct(r['recall'])} | {pct(r['npv'], 2)} ({pct(r['npv_lower'], 2)}; {r['rejected']}) | {pct(r['share_auto'])} |")


def stratified_rows(args, matcher: Matcher, featurizer, kagl, kagl_ids, val: Scenario, tests: dict) -> list[dict]:
    """The shipped rule: KAGL val + kagl-full val (not in KAGL) in scenarios of KAGL val's size, small-photo strata, split reject."""
    small_val = [p for p in read_catalog("kagl-full").products if p.split == "val" and p.id not in kagl_ids and p.image]
    chunks = calibration_scenarios(small_val, len(val.products), featurizer, seed="val0")
    rows = []
    for n_chunks, split in [(n, True) for n in range(len(chunks) + 1)] + [(len(chunks), False)]:
        m = Matcher(matcher.model, featurizer=featurizer)
        calibrate(m, val, k=args.k, more=chunks[:n_chunks], split_reject=split)
        small = m.strata.get(SMALL_PHOTOS, (None, None))[1]
        products = sum(len(c.products) for c in chunks[:n_chunks])
        for tname, sc in tests.items():
            pw = measure(m, sc, k=args.k)["pairwise"]
            rows.append({
                "calibration": f"KAGL val + {products} kagl-full val products ({n_chunks} scenarios)", "rule": "strata" + (", split reject" if split else ""),
                "calibration_pairs": m.thresholds.fit_pairs + (small.fit_pairs if small else 0),
                "accept": m.thresholds.accept, "reject": m.thresholds.reject, "reject_nearest": m.thresholds.reject_nearest,
                "val_precision": m.thresholds.fit_precision, "val_precision_lower": m.thresholds.fit_precision_lower,
                "val_npv": m.thresholds.fit_npv, "val_npv_lower": m.thresholds.fit_npv_lower,
                "small_pairs": small.fit_pairs if small else 0, "small_accept": small.accept if small else None,
                "small_reject": small.reject if small else None, "small_reject_nearest": small.reject_nearest if small else None,
                "small_val_precision_lower": small.fit_precision_lower if small else None, "small_val_npv_lower": small.fit_npv_lower if small else None,
                "small_val_share_auto": small.fit_share_auto if small else None,
                "test": tname, "test_pairs": pw["pairs"], "accepted": pw["accepted"], "rejected": pw["rejected"],
                "precision": pw["precision"], "precision_lower": lower(pw["precision"], pw["accepted"]), "recall": pw["recall"],
                "npv": pw["npv"], "npv_lower": lower(pw["npv"], pw["rejected"]), "share_auto": pw["share_auto"],
                "wrong_accepts": pw["accepted"] - round(pw["precision"] * pw["accepted"]) if pw["accepted"] else 0,
                "wrong_rejects": pw["rejected"] - round(pw["npv"] * pw["rejected"]) if pw["rejected"] else 0,
                "small_photo_test_pairs": pw["small_photo_pairs"], "notes": m.thresholds.notes,
            })
            r = rows[-1]
            logging.info("%s | %s | %s: precision %s (%s; %d) NPV %s (%s; %d) decided %s; small accept %s reject %s/%s (val bounds %s / %s)",
                         r["calibration"], r["rule"], tname, pct(r["precision"], 2), pct(r["precision_lower"], 2), r["accepted"], pct(r["npv"], 2),
                         pct(r["npv_lower"], 2), r["rejected"], pct(r["share_auto"]), r["small_accept"], r["small_reject"], r["small_reject_nearest"],
                         pct(r["small_val_precision_lower"] or float("nan"), 2), pct(r["small_val_npv_lower"] or float("nan"), 2))
    return rows


if __name__ == "__main__":
    main()
