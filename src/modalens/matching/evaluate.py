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
import zlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..catalog.schema import Product
from .calibration import (
    BOUNDS,
    DEFAULT_NPV_BOUND,
    DEFAULT_PRECISION_BOUND,
    Calibrator,
    Thresholds,
    choose_thresholds,
    clopper_pearson_lower,
    plot_precision_recall,
    rule_metrics,
)
from .features import OfferFeatures, OfferFeaturizer
from .offer_model import OfferModelConfig
from .pairs import MatchingScenario, make_scenario
from .pipeline import SMALL_PHOTOS, Matcher, candidate_flags, decide_pairs, labelled_candidates, small_photo_pairs
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


#: A stratum (e.g. small-photo pairs) gets thresholds of its own only with at least this many calibration pairs:
#: ten times the fewest accepted pairs that can certify 99% at 95% (299); with fewer it could hardly certify anything.
MIN_STRATUM_PAIRS = 3000


def calibration_scenarios(products: Sequence[Product], size: int, featurizer: OfferFeaturizer, *, seed: str | int) -> list[Scenario]:
    """Generated scenarios of about ``size`` products each (a seeded split by product id).

    Thresholds depend on how crowded the catalogue is (more products, more near-duplicates among the
    candidates), so extra calibration products are cut into scenarios as big as the one the matcher is
    calibrated on, not pooled into one denser scenario."""
    products = [p for p in products if p.image]
    n = max(1, round(len(products) / max(size, 1)))
    chunks: list[list[Product]] = [[] for _ in range(n)]
    for p in products:
        chunks[zlib.crc32(p.id.encode()) % n].append(p)
    return [Scenario(chunk, featurizer, seed=seed) for chunk in chunks if chunk]


def calibration_pairs(matcher: Matcher, scenario: Scenario, *, k: int = 5, near_duplicates: bool = False) -> dict[str, np.ndarray]:
    """Scores and labels of a scenario's candidate pairs with what the rule needs of each: mutual best, nearest,
    small photos, and its cluster (the product of its new offer: a product's new offers share their candidates,
    and a hard product makes all its pairs hard, so its pairs are not independent evidence for the bound).
    ``near_duplicates``: plus :func:`near_duplicate_negatives` (counted as acceptable, not nearest)."""
    scores, labels, _, cands, *_ = scenario.candidates(matcher, k)
    mutual, nearest = candidate_flags(cands)
    small = small_photo_pairs(scenario.scenario.new, scenario.scenario.catalogue, cands)
    clusters = np.array([scenario.scenario.new[i].product_id or scenario.scenario.new[i].id for _, i, _, _ in cands], dtype=object)
    out = {"scores": scores, "labels": labels, "mutual": mutual, "nearest": nearest, "small": small, "clusters": clusters}
    if near_duplicates:  # harder: every pair of near-duplicate products as an extra non-match
        hard, products = _near_duplicate_pairs(matcher, scenario, k=k)
        more = {"scores": hard, "labels": np.zeros(len(hard), bool), "mutual": np.ones(len(hard), bool),
                "nearest": np.zeros(len(hard), bool), "small": np.full(len(hard), bool(small.mean() > 0.5) if len(small) else False),
                "clusters": np.array(products, dtype=object)}
        out = {key: np.concatenate([out[key], more[key]]) for key in out}
    return out


def calibrate(matcher: Matcher, val: Scenario, *, k: int = 5, target_precision: float = 0.99, target_npv: float = 0.99, method: str = "isotonic",
              extra: tuple[np.ndarray, np.ndarray] | None = None, confidence: float | None = 0.95,
              near_duplicates: bool = False, mutual_best_only: bool = True, more: Sequence[Scenario] = (),
              split_reject: bool = True, precision_bound: str = DEFAULT_PRECISION_BOUND, npv_bound: str = DEFAULT_NPV_BOUND) -> Matcher:
    """Fit the calibrator and choose thresholds on the candidate pairs of the validation scenario and of ``more``
    scenarios (plus ``extra`` labelled scores, e.g. reviewed pairs).

    The thresholds carry a one-sided Clopper-Pearson lower bound (``confidence``) of precision and NPV
    on these pairs; :func:`guarantee` copies them into ``matcher.info`` so the saved matcher states them.
    Small-photo pairs (``pipeline.SMALL_PHOTO_SIDE``) get thresholds of their own (``matcher.strata``) when
    there are at least ``MIN_STRATUM_PAIRS`` of them; the main thresholds are chosen on the other pairs (on
    all when those are too few). ``split_reject``: a reject cut of its own for pairs nearest to one of
    their offers (``Thresholds.reject_nearest``). ``near_duplicates``: also calibrate on
    :func:`near_duplicate_negatives` (harder, more conservative). ``precision_bound`` / ``npv_bound``: the lower
    bound each side's threshold must reach (``calibration.BOUNDS``): ``"clustered"`` counts each product's pairs
    as one cluster (:func:`calibration.cluster_effective_trials`), each reviewed pair as a cluster of its own;
    ``"prediction"`` bounds the rate of a new set the size of the val scenario (the deployment's size, which
    ``more`` scenarios are cut to; :func:`calibration.new_set_inflation`)."""
    parts = [calibration_pairs(matcher, sc, k=k, near_duplicates=near_duplicates) for sc in (val, *more)]
    for n_scenario, part in enumerate(parts):  # a product is a cluster within its scenario
        part["clusters"] = np.array([f"{n_scenario}:{c}" for c in part["clusters"]], dtype=object)
    if extra is not None and len(extra[0]):  # reviewed pairs: acceptable, and judged as strictly as nearest pairs
        n = len(extra[0])
        parts.append({"scores": np.asarray(extra[0], np.float64), "labels": np.asarray(extra[1], bool), "mutual": np.ones(n, bool),
                      "nearest": np.ones(n, bool), "small": np.zeros(n, bool),
                      "clusters": np.array([f"reviewed:{i}" for i in range(n)], dtype=object)})
    pairs = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    deployment_pairs = len(parts[0]["scores"])  # the val scenario is the deployment's size (``more`` are cut to it)

    def fit(sel: np.ndarray) -> tuple[Calibrator, Thresholds]:
        s, y = pairs["scores"][sel], pairs["labels"][sel]
        return Calibrator(method).fit(s, y), choose_thresholds(
            s, y, target_precision=target_precision, target_npv=target_npv, confidence=confidence,
            eligible=pairs["mutual"][sel] if mutual_best_only else None, nearest=pairs["nearest"][sel] if split_reject else None,
            precision_bound=precision_bound, npv_bound=npv_bound, clusters=pairs["clusters"][sel],
            new_set_share=deployment_pairs / max(int(sel.sum()), 1))

    small = pairs["small"]
    matcher.calibrator, matcher.thresholds = fit(~small if (~small).sum() >= MIN_STRATUM_PAIRS else np.ones(len(small), bool))
    matcher.strata = {SMALL_PHOTOS: fit(small)} if small.sum() >= MIN_STRATUM_PAIRS else {}
    if small.any() and not matcher.strata:
        matcher.thresholds.notes.append(f"only {int(small.sum())} calibration pairs have small photos (fewer than {MIN_STRATUM_PAIRS}): "
                                        "small-photo pairs use these thresholds, which were not calibrated on such photos")
    matcher.info["guarantee"] = guarantee(matcher.thresholds, {name: th for name, (_, th) in matcher.strata.items()})
    return matcher


def near_duplicate_negatives(matcher: Matcher, val: Scenario, *, k: int = 5, min_jaccard: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Scores of extra *non-matching* pairs for calibration: every new offer against every offer (catalogue or new)
    of a different product with the same type and colour and a near-identical title (:func:`pairs.near_duplicates`),
    left out when the candidate search already proposes the pair (so nothing is counted twice)."""
    scores, _ = _near_duplicate_pairs(matcher, val, k=k, min_jaccard=min_jaccard)
    return scores, np.zeros(len(scores), bool)


def _near_duplicate_pairs(matcher: Matcher, val: Scenario, *, k: int = 5, min_jaccard: float = 0.75) -> tuple[np.ndarray, list[str]]:
    """The scores of :func:`near_duplicate_negatives` and, per pair, the product of its new offer (its cluster)."""
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
    scores, clusters = [], []
    for a, b in near_duplicates(products, min_jaccard=min_jaccard):
        pa, pb = products[a].id, products[b].id
        for x_pid, y_pid in ((pa, pb), (pb, pa)):
            for x in new_of.get(x_pid, []):
                for j in cat_of.get(y_pid, []):
                    if ("new-catalogue", x, j) not in seen:
                        seen.add(("new-catalogue", x, j))
                        scores.append(float(new_emb[x] @ cat_emb[j]))
                        clusters.append(x_pid)
                for y in new_of.get(y_pid, []):
                    key = ("new-new", min(x, y), max(x, y))
                    if key not in seen:
                        seen.add(key)
                        scores.append(float(new_emb[x] @ new_emb[y]))
                        clusters.append(new[min(x, y)].product_id)
    return np.asarray(scores, np.float64), clusters


def guarantee(th, strata: dict | None = None) -> dict:
    """What the thresholds promise, as stored in a saved matcher's info (and printed by ``match eval``);
    ``strata``: the same for each stratum's thresholds."""
    out = {
        "method": (BOUNDS[th.precision_bound] if th.precision_bound == th.npv_bound
                   else f"precision: {BOUNDS[th.precision_bound]}; NPV: {BOUNDS[th.npv_bound]}"),
        "precision_bound": th.precision_bound,
        "npv_bound": th.npv_bound,
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
        "reject_nearest": th.reject_nearest,
        "precision_design_effect": th.fit_precision_design_effect,
        "npv_design_effect": th.fit_npv_design_effect,
        "new_set_share": th.new_set_share,
    }
    if strata:
        out["strata"] = {name: guarantee(s) for name, s in strata.items()}
    return out


def measure(matcher: Matcher, test: Scenario, *, k: int = 5) -> dict:
    scores, labels, total, cands, new_emb, cat_emb = test.candidates(matcher, k)
    mutual, nearest = candidate_flags(cands)
    strata = matcher.pair_strata(test.scenario.new, test.scenario.catalogue, cands)
    decided = matcher.decide_scores(scores, mutual, nearest, strata)
    pairwise = rule_metrics(decided == "accept", decided == "reject", labels, total_matches=total)
    pairwise["small_photo_pairs"] = int((strata == SMALL_PHOTOS).sum())
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
    more_val: Sequence[Product] = (),
    precision_bound: str = DEFAULT_PRECISION_BOUND,
    npv_bound: str = DEFAULT_NPV_BOUND,
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
    more = calibration_scenarios(more_val, len(split["val"]), featurizer, seed=f"val{seed}") if more_val else []
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
                            confidence=confidence, near_duplicates=near_duplicates, mutual_best_only=mutual_best_only, more=more,
                            precision_bound=precision_bound, npv_bound=npv_bound)
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
            "thresholds": matcher.thresholds.to_dict(),
            "strata": {name: th.to_dict() for name, (_, th) in matcher.strata.items()},
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
        "more_val_products": len(more_val),
        "more_val_scenarios": [len(sc.products) for sc in more],
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
        if "thresholds" not in r:  # results written before the rule was stored whole
            out.append(f"{r['variant']}: accept ≥ {r['accept_threshold']:.4f}, reject < {r['reject_threshold']:.4f}")
            out += [f"  warning: {n}" for n in r.get("notes") or []]
            continue
        out.append(f"{r['variant']}: {Thresholds.from_dict(r['thresholds']).describe()}".replace("\nwarning", "\n  warning"))
        for name, th in (r.get("strata") or {}).items():
            out.append(f"  {name}: {Thresholds.from_dict(th).describe()}".replace("\nwarning", "\n  warning"))
    return "\n".join(out) + "\n"
