"""Train, calibrate and measure matchers on generated offers of a catalogue's splits (KAGL by default).

* train: offer model on generated pairs of the *train* products;
* calibrate: thresholds and calibrator on a generated scenario of the *val* products;
* measure: a generated scenario of the *test* products (never trained or calibrated on):
  precision / recall / F1 of automatic acceptance, NPV of automatic rejection,
  the share decided automatically and the share sent to review, before and after
  the grouping guard; the frozen-image baseline and part ablations in the same run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..catalog.schema import Product
from .calibration import (
    Calibrator,
    choose_thresholds,
    clopper_pearson_lower,
    decision_metrics,
    plot_precision_recall,
)
from .features import OfferFeatures, OfferFeaturizer
from .offer_model import OfferModelConfig
from .pairs import MatchingScenario, make_scenario
from .pipeline import Matcher, decide_pairs, labelled_candidates, mutual_best
from .train import (
    TrainConfig,
    featurize_training_data,
    train_offer_model,
    training_data,
)

log = logging.getLogger(__name__)


class Scenario:
    """A generated scenario with its features computed once."""

    def __init__(self, products: Sequence[Product], featurizer: OfferFeaturizer, *, seed: str | int, **scenario_options) -> None:
        self.products = [p for p in products if p.image]
        self.scenario: MatchingScenario = make_scenario(products, seed, **scenario_options)
        self.new_feats: OfferFeatures = featurizer(self.scenario.new)
        self.cat_feats: OfferFeatures = featurizer(self.scenario.catalogue)

    def candidates(self, matcher: Matcher, k: int):
        return labelled_candidates(
            matcher, self.scenario.new, self.scenario.catalogue, k=k, features=(self.new_feats, self.cat_feats)
        )


def calibrate(matcher: Matcher, val: Scenario, *, k: int = 5, target_precision: float = 0.99, target_npv: float = 0.99, method: str = "isotonic",
              extra: tuple[np.ndarray, np.ndarray] | None = None, confidence: float | None = 0.95,
              near_duplicates: bool = False, mutual_best_only: bool = True) -> Matcher:
    """Fit the calibrator and choose thresholds on the validation scenario's candidate pairs (plus ``extra`` labelled scores).

    The thresholds carry a one-sided Clopper-Pearson lower bound (``confidence``) of precision and NPV
    on these pairs; :func:`guarantee` copies them into ``matcher.info`` so the saved matcher states them.
    ``near_duplicates``: also calibrate on :func:`near_duplicate_negatives` (harder, more conservative)."""
    scores, labels, _, cands, *_ = val.candidates(matcher, k)
    eligible = mutual_best(cands)
    if near_duplicates:  # harder: every pair of near-duplicate products as an extra non-match
        hard = near_duplicate_negatives(matcher, val, k=k)
        scores, labels = np.concatenate([scores, hard[0]]), np.concatenate([labels, hard[1]])
        eligible = np.concatenate([eligible, np.ones(len(hard[0]), bool)])  # counted as acceptable: the harder side
    if extra is not None and len(extra[0]):
        scores, labels = np.concatenate([scores, extra[0]]), np.concatenate([labels, extra[1]])
        eligible = np.concatenate([eligible, np.ones(len(extra[0]), bool)])
    matcher.calibrator = Calibrator(method).fit(scores, labels)
    matcher.thresholds = choose_thresholds(scores, labels, target_precision=target_precision, target_npv=target_npv, confidence=confidence,
                                           eligible=eligible if mutual_best_only else None)
    matcher.info["guarantee"] = guarantee(matcher.thresholds)
    return matcher


def near_duplicate_negatives(matcher: Matcher, val: Scenario, *, k: int = 5, min_jaccard: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Scores of extra *non-matching* pairs for calibration: every new offer against every offer (catalogue or new)
    of a different product with the same type and colour and a near-identical title (:func:`pairs.near_duplicates`),
    left out when the candidate search already proposes the pair (so nothing is counted twice)."""
    from .pairs import near_duplicates

    _, _, _, cands, new_emb, cat_emb = val.candidates(matcher, k)
    seen = {(kind, i, j) for kind, i, j, _ in cands}
    new, cat = val.scenario.new, val.scenario.catalogue
    new_of: dict[str, list[int]] = {}
    cat_of: dict[str, list[int]] = {}
    for i, o in enumerate(new):
        new_of.setdefault(o.product_id, []).append(i)
    for j, o in enumerate(cat):
        cat_of.setdefault(o.product_id, []).append(j)
    products = val.products
    scores = []
    for a, b in near_duplicates(products, min_jaccard=min_jaccard):
        pa, pb = products[a].id, products[b].id
        for x_pid, y_pid in ((pa, pb), (pb, pa)):
            for x in new_of.get(x_pid, []):
                for j in cat_of.get(y_pid, []):
                    if ("new-catalogue", x, j) not in seen:
                        seen.add(("new-catalogue", x, j))
                        scores.append(float(new_emb[x] @ cat_emb[j]))
                for y in new_of.get(y_pid, []):
                    key = ("new-new", min(x, y), max(x, y))
                    if key not in seen:
                        seen.add(key)
                        scores.append(float(new_emb[x] @ new_emb[y]))
    return np.asarray(scores, np.float64), np.zeros(len(scores), bool)


def guarantee(th) -> dict:
    """What the thresholds promise, as stored in a saved matcher's info (and printed by ``match eval``)."""
    return {
        "method": "one-sided Clopper-Pearson lower confidence bound on the calibration pairs",
        "confidence": th.confidence,
        "target_precision": th.target_precision,
        "expected_precision": th.fit_precision,
        "precision_lower_bound": th.fit_precision_lower,
        "accepted_calibration_pairs": th.fit_accepted,
        "target_npv": th.target_npv,
        "expected_npv": th.fit_npv,
        "npv_lower_bound": th.fit_npv_lower,
        "rejected_calibration_pairs": th.fit_rejected,
        "calibration_pairs": th.fit_pairs,
        "share_auto_on_calibration": th.fit_share_auto,
        "notes": list(th.notes),
        "mutual_best_only": th.mutual_best_only,
    }


def measure(matcher: Matcher, test: Scenario, *, k: int = 5) -> dict:
    scores, labels, total, cands, new_emb, cat_emb = test.candidates(matcher, k)
    eligible = mutual_best(cands) if matcher.thresholds.mutual_best_only else None
    pairwise = decision_metrics(scores, labels, matcher.thresholds, total_matches=total, eligible=eligible)
    result = decide_pairs(matcher, test.scenario.new, test.scenario.catalogue, new_emb, cat_emb, cands)
    decisions = np.array([p.decision for p in result.pairs])
    acc, rev = decisions == "accept", decisions == "review"
    tp = int((acc & labels).sum())
    grouped = {
        "precision": tp / max(int(acc.sum()), 1),
        "recall": tp / max(total, 1),
        "share_review": float(rev.mean()) if len(rev) else float("nan"),
        "chain_guard_to_review": sum("chain guard" in p.reason for p in result.pairs),
        "groups": len(result.groups),
        "pure_groups": _pure_groups(result.groups, test.scenario),
    }
    grouped["f1"] = 2 * grouped["precision"] * grouped["recall"] / max(grouped["precision"] + grouped["recall"], 1e-12)
    return {"pairwise": pairwise, "grouped": grouped, "candidate_recall": float(labels.sum() / max(total, 1)),
            "scores": scores, "labels": labels}


def _pure_groups(groups: list[list[str]], scenario: MatchingScenario) -> float:
    truth = {o.id: o.product_id for o in scenario.new + scenario.catalogue}
    if not groups:
        return float("nan")
    return sum(len({truth[i] for i in g}) == 1 for g in groups) / len(groups)


#: The rows of the measured table: the baseline, then models over different offer parts.
VARIANTS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("frozen image features (baseline)", None),
    ("offer model: images", ("images",)),
    ("offer model: title", ("title",)),
    ("offer model: images + title", ("images", "title")),
    ("offer model: images + title + numbers", ("images", "title", "numbers")),
    ("offer model: images + title + frozen image features", ("images", "frozen_images", "title")),
)


def run(
    products: Sequence[Product],
    *,
    out_dir: str | Path,
    variants: Sequence[tuple[str, tuple[str, ...] | None]] | None = None,
    train_config: TrainConfig | None = None,
    featurizer: OfferFeaturizer | None = None,
    k: int = 5,
    target_precision: float = 0.99,
    target_npv: float = 0.99,
    seed: int = 0,
    save_best: str | Path | None = None,
    confidence: float | None = 0.95,
    near_duplicates: bool = False,
    mutual_best_only: bool = True,
) -> dict:
    """The whole measurement: one table row per variant; PR curve PNG; results JSON; optionally save the full model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    featurizer = featurizer or OfferFeaturizer()
    variants = VARIANTS if variants is None else variants
    train_config = train_config or TrainConfig(seed=seed)
    split = {s: [p for p in products if p.split == s and p.image] for s in ("train", "val", "test")}
    t0 = time.time()
    data = training_data(split["train"], seed=seed, copies=train_config.copies)
    train_feats = featurize_training_data(data, featurizer)
    val = Scenario(split["val"], featurizer, seed=f"val{seed}")
    test = Scenario(split["test"], featurizer, seed=f"test{seed}")
    log.info("features ready in %.0fs", time.time() - t0)
    rows, curves, points = [], {}, {}
    best: tuple[float, str, Matcher] | None = None
    for name, parts in variants:
        t = time.time()
        model = None
        if parts is not None:
            model, _ = train_offer_model(data, featurizer, model_config=OfferModelConfig(parts=parts), config=train_config, features=train_feats)
        matcher = calibrate(Matcher(model, featurizer=featurizer), val, k=k, target_precision=target_precision, target_npv=target_npv,
                            confidence=confidence, near_duplicates=near_duplicates, mutual_best_only=mutual_best_only)
        m = measure(matcher, test, k=k)
        pw, gr = m["pairwise"], m["grouped"]
        row = {
            "variant": name,
            "parts": list(parts) if parts else ["frozen image"],
            "accept_threshold": matcher.thresholds.accept,
            "reject_threshold": matcher.thresholds.reject,
            "val_share_auto": matcher.thresholds.fit_share_auto,
            "val_pairs": matcher.thresholds.fit_pairs,
            "val_precision": matcher.thresholds.fit_precision,
            "val_precision_lower": matcher.thresholds.fit_precision_lower,
            "val_npv": matcher.thresholds.fit_npv,
            "val_npv_lower": matcher.thresholds.fit_npv_lower,
            "test_precision_lower": _lower(pw["precision"], pw["accepted"]),
            "test_npv_lower": _lower(pw["npv"], pw["rejected"]),
            "notes": list(matcher.thresholds.notes),
            **{f"test_{key}": value for key, value in pw.items()},
            "grouped_precision": gr["precision"],
            "grouped_recall": gr["recall"],
            "grouped_f1": gr["f1"],
            "grouped_share_review": gr["share_review"],
            "chain_guard_to_review": gr["chain_guard_to_review"],
            "groups": gr["groups"],
            "pure_groups": gr["pure_groups"],
            "candidate_recall": m["candidate_recall"],
            "part_weights": model.part_weights() if model else None,
            "seconds": round(time.time() - t, 1),
        }
        rows.append(row)
        log.info("%s: %s", name, {k_: row[k_] for k_ in ("test_precision", "test_recall", "test_share_auto")})
        curves[name] = (m["scores"], m["labels"])
        points[name] = _candidate_recall(m), pw["precision"]
        if model is not None and (best is None or row["val_share_auto"] > best[0]):
            best = (row["val_share_auto"], name, matcher)
    # the matcher to ship is chosen on validation alone (share decided automatically at the target precision)
    chosen = best[1] if best else None
    for row in rows:
        row["chosen_on_val"] = row["variant"] == chosen
    marked = {n: pt for n, pt in points.items() if n == chosen or n.startswith("frozen")}
    np.savez_compressed(out_dir / "curves.npz", **{f"{i}_{kind}": c[j] for i, c in enumerate(curves.values()) for j, kind in enumerate(("scores", "labels"))})
    labels_for_points = {n: ("baseline at its thresholds" if n.startswith("frozen") else "chosen model at its thresholds") for n in marked}
    plot_precision_recall(curves, out_dir / "precision-recall.png", operating_points={labels_for_points[n]: pt for n, pt in marked.items()},
                          target_precision=target_precision,
                          title=f"Generated offers of KAGL test products: automatic acceptance (k={k})")
    summary = {
        "products": {s: len(v) for s, v in split.items()},
        "test_scenario": {"new_offers": len(test.scenario.new), "catalogue_offers": len(test.scenario.catalogue)},
        "val_scenario": {"new_offers": len(val.scenario.new), "catalogue_offers": len(val.scenario.catalogue)},
        "k": k,
        "target_precision": target_precision,
        "target_npv": target_npv,
        "confidence": confidence,
        "near_duplicate_negatives": near_duplicates,
        "mutual_best_only": mutual_best_only,
        "train_config": asdict(train_config),
        "chosen_on_val": chosen,
        "rows": rows,
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, default=_json))
    (out_dir / "table.md").write_text(markdown_table(rows))
    if save_best and best is not None:
        best[2].info.update({"trained_on": "kagl train (generated pairs)", "calibrated_on": "kagl val (generated scenario)",
                             "train_source": "kagl", "seed": seed, "chosen_on_val": chosen})
        best[2].save(save_best)
    return summary


def _lower(rate: float, n: int, confidence: float = 0.95) -> float:
    """Clopper-Pearson lower bound of a measured rate over n pairs (NaN when n = 0)."""
    if not n:
        return float("nan")
    return clopper_pearson_lower(round(rate * n), n, confidence)


def _candidate_recall(m: dict) -> float:
    """Recall among candidate pairs at the operating point (the curve's x axis)."""
    pw = m["pairwise"]
    return (pw["precision"] * pw["accepted"]) / max(pw["matching_pairs"], 1) if pw["accepted"] else 0.0


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _fmt(v, pct: bool = True, digits: int = 1) -> str:
    if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.{digits}f}%" if pct else f"{v:.3f}"


def markdown_table(rows: list[dict]) -> str:
    """Measured on test, with each rate's 95% Clopper-Pearson lower bound and the val (calibration) promise."""
    head = ("| matcher | auto-accept precision (95% lower bound) | recall | F1 | auto-reject NPV (95% lower bound) | decided automatically | sent to review "
            "| after grouping: precision / recall / to review | on val (calibration): precision / NPV lower bounds |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        lines.append(
            f"| {r['variant']}{' (chosen on val)' if r.get('chosen_on_val') else ''} "
            f"| {_fmt(r['test_precision'])} ({_fmt(r.get('test_precision_lower'), digits=2)}, {r.get('test_accepted', '–')} pairs) "
            f"| {_fmt(r['test_recall'])} | {_fmt(r['test_f1'])} | {_fmt(r['test_npv'])} ({_fmt(r.get('test_npv_lower'), digits=2)}) "
            f"| {_fmt(r['test_share_auto'])} | {_fmt(r['test_share_review'])} "
            f"| {_fmt(r['grouped_precision'])} / {_fmt(r['grouped_recall'])} / {_fmt(r['grouped_share_review'])} "
            f"| {_fmt(r.get('val_precision_lower'), digits=2)} / {_fmt(r.get('val_npv_lower'), digits=2)} |"
        )
    return head + "\n".join(lines) + "\n"


def guarantee_lines(rows: list[dict]) -> str:
    """Per matcher: thresholds, expected precision / NPV on val and their lower bounds, and any warning."""
    out = []
    for r in rows:
        out.append(f"{r['variant']}: accept ≥ {r['accept_threshold']:.4f}, reject < {r['reject_threshold']:.4f}; on {r.get('val_pairs', '?')} val pairs "
                   f"expected precision {_fmt(r.get('val_precision'), digits=2)} (95% lower bound {_fmt(r.get('val_precision_lower'), digits=2)}), "
                   f"NPV {_fmt(r.get('val_npv'), digits=2)} (95% lower bound {_fmt(r.get('val_npv_lower'), digits=2)})")
        out += [f"  warning: {n}" for n in r.get("notes") or []]
    return "\n".join(out) + "\n"
