"""Bounds that count correlated calibration pairs honestly: the clustered bound (Clopper-Pearson on the
design-effect-corrected number of pairs) and the prediction bound (the rate of a new set of a given size).

The design effect is recomputed here by brute force from per-cluster sums and the bounds from scipy.stats.beta,
independently of the code's running sums and betaincinv."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import beta

from modalens.matching.calibration import (
    DEFAULT_NPV_BOUND,
    DEFAULT_PRECISION_BOUND,
    Calibrator,
    choose_thresholds,
    cluster_effective_trials,
    decision_masks,
    set_lower_bound,
)
from modalens.matching.evaluate import guarantee
from modalens.matching.pipeline import CALIBRATION_FILE, Matcher


def cp_lower(k: float, n: float, conf: float = 0.95) -> float:
    return 0.0 if k <= 0 else float(beta.ppf(1 - conf, k, n - k + 1))


def design_effect(correct: np.ndarray, clusters: np.ndarray) -> float:
    """Variance of the error rate over clusters / its binomial variance, from per-cluster sums (at least 1)."""
    codes = np.unique(clusters, return_inverse=True)[1]
    m = np.bincount(codes).astype(float)
    e = np.bincount(codes, weights=~correct)
    n, k, r = m.sum(), len(m), e.sum() / m.sum()
    return max(1.0, k / (k - 1) * ((e - r * m) ** 2).sum() / (n * r * (1 - r)))


def noisy(n_pos: int, n_neg: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(0.8, 0.12, n_pos), rng.normal(0.3, 0.12, n_neg)]
    return scores, np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]


def test_running_design_effect_matches_brute_force_on_every_prefix():
    rng = np.random.default_rng(1)
    errors, clusters = rng.random(400) < 0.15, rng.integers(0, 50, 400)
    n, e, n_eff = cluster_effective_trials(errors, clusters)
    for k in (20, 97, 250, 400):
        assert n[k] == k and e[k] == errors[:k].sum()
        assert n[k] / n_eff[k] == pytest.approx(design_effect(~errors[:k], clusters[:k]), rel=1e-9)
    # on top of pairs already in the set (the other half of a union of two cuts): the same as the whole sequence
    base_m = np.bincount(clusters[:150], minlength=50).astype(float)
    base_e = np.bincount(clusters[:150], weights=errors[:150], minlength=50)
    _, _, rest = cluster_effective_trials(errors[150:], clusters[150:], base_m=base_m, base_e=base_e)
    assert rest == pytest.approx(n_eff[150:])


def test_clustered_bound_is_plain_for_independent_pairs_and_wider_for_repeated_ones():
    rng = np.random.default_rng(0)
    correct = rng.random(6000) > 0.01
    plain, _ = set_lower_bound(correct, None)
    independent, deff = set_lower_bound(correct, np.arange(len(correct)))
    assert deff == pytest.approx(1.0, abs=1e-3) and independent == pytest.approx(plain, abs=1e-5)
    # every pair three times, each triple one cluster: three times the pairs, no more evidence
    copies, clusters = np.repeat(correct, 3), np.repeat(np.arange(len(correct)), 3)
    fooled, _ = set_lower_bound(copies, None)
    honest, deff = set_lower_bound(copies, clusters)
    assert deff == pytest.approx(design_effect(copies, clusters)) and deff == pytest.approx(3.0, rel=0.01)
    assert fooled > plain + 1e-4  # Clopper-Pearson takes the copies for new evidence
    assert honest < fooled and honest == pytest.approx(plain, abs=2e-5)
    assert honest == pytest.approx(cp_lower(correct.mean() * len(copies) / deff, len(copies) / deff), abs=1e-9)


def test_clustered_rule_on_repeated_pairs_chooses_the_cuts_of_the_originals():
    scores, labels = noisy(3000, 12000)
    nearest = np.random.default_rng(2).random(len(scores)) < 0.3
    original = choose_thresholds(scores, labels, nearest=nearest)
    tripled = {"scores": np.repeat(scores, 3), "labels": np.repeat(labels, 3), "nearest": np.repeat(nearest, 3)}
    clusters = np.repeat(np.arange(len(scores)), 3)
    fooled = choose_thresholds(tripled["scores"], tripled["labels"], nearest=tripled["nearest"])
    honest = choose_thresholds(tripled["scores"], tripled["labels"], nearest=tripled["nearest"], precision_bound="clustered",
                               npv_bound="clustered", clusters=clusters)
    assert fooled.accept < original.accept and fooled.fit_rejected > 3 * original.fit_rejected  # decides more on no new evidence
    assert honest.accept == original.accept and honest.fit_accepted == 3 * original.fit_accepted
    assert abs(honest.fit_rejected - 3 * original.fit_rejected) <= 0.002 * honest.fit_rejected  # the nearest cut's grid may differ
    assert honest.fit_npv_design_effect == pytest.approx(3.0, rel=0.01) and honest.fit_npv_lower >= 0.99
    assert (honest.precision_bound, honest.npv_bound) == ("clustered", "clustered") and "clustered by product" in honest.describe()


def test_prediction_bound_leaves_room_for_the_new_sets_own_noise():
    scores, labels = noisy(3000, 40000, seed=4)
    clusters = np.arange(len(scores)) // 4  # four pairs per product
    rate = choose_thresholds(scores, labels, precision_bound="clustered", npv_bound="clustered", clusters=clusters)
    new_set = choose_thresholds(scores, labels, precision_bound="clustered", npv_bound="prediction", clusters=clusters, new_set_share=0.25)
    assert new_set.accept == rate.accept and new_set.reject < rate.reject and new_set.fit_npv > rate.fit_npv
    # its bound is Clopper-Pearson on n / (design effect · (1 + 1 / share)) pairs, recomputed here
    _, rej = decision_masks(scores, new_set)
    correct, n = ~labels[rej], int(rej.sum())
    n_eff = n / (design_effect(correct, clusters[rej]) * (1 + 1 / 0.25))
    assert new_set.fit_npv_lower == pytest.approx(cp_lower(correct.mean() * n_eff, n_eff), abs=1e-6) and new_set.fit_npv_lower >= 0.99
    assert new_set.new_set_share == 0.25 and "new set" in new_set.describe()
    with pytest.raises(ValueError, match="share"):
        choose_thresholds(scores, labels, npv_bound="prediction", clusters=clusters)
    with pytest.raises(ValueError, match="cluster id"):
        choose_thresholds(scores, labels, npv_bound="clustered")
    with pytest.raises(ValueError, match="bound must be one of"):
        choose_thresholds(scores, labels, precision_bound="bootstrap")


def test_saved_matcher_records_the_bounds_it_used(matcher_dir, tmp_path):
    """The fixture matcher was calibrated by ``evaluate.calibrate`` on real fixture offers with the default bounds."""
    shipped_like = Matcher.load(matcher_dir)
    th, g = shipped_like.thresholds, shipped_like.info["guarantee"]
    assert (th.precision_bound, th.npv_bound) == (DEFAULT_PRECISION_BOUND, DEFAULT_NPV_BOUND)
    assert (g["precision_bound"], g["npv_bound"]) == (DEFAULT_PRECISION_BOUND, DEFAULT_NPV_BOUND) and "Clopper-Pearson" in g["method"]
    # a matcher saved before the bounds were recorded used plain Clopper-Pearson, and loads as such
    scores, labels = noisy(2000, 8000, seed=5)
    old = choose_thresholds(scores, labels)
    Matcher(None, Calibrator().fit(scores, labels), old, info={"guarantee": guarantee(old)}).save(tmp_path / "old")
    data = json.loads((tmp_path / "old" / CALIBRATION_FILE).read_text())
    for key in ("precision_bound", "npv_bound", "fit_precision_design_effect", "fit_npv_design_effect", "new_set_share"):
        del data["thresholds"][key]
    (tmp_path / "old" / CALIBRATION_FILE).write_text(json.dumps(data))
    again = Matcher.load(tmp_path / "old").thresholds
    assert (again.precision_bound, again.npv_bound) == ("clopper-pearson", "clopper-pearson") and again.accept == old.accept
