"""Thresholds with a guarantee: a one-sided 95% Clopper-Pearson lower bound of precision / NPV ≥ target.

The bound is recomputed here from scipy.stats.beta (independently of the code's betaincinv) and
checked by brute force over every cut of the calibration pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binom

from modalens.matching.calibration import Calibrator, choose_thresholds, clopper_pearson_lower, decision_metrics, min_pairs_for
from modalens.matching.evaluate import guarantee
from modalens.matching.offers import Offer
from modalens.matching.pipeline import Matcher, decide_pairs


def cp_lower(k: int, n: int, conf: float = 0.95) -> float:
    return 0.0 if k == 0 else float(beta.ppf(1 - conf, k, n - k + 1))


def noisy(n_pos: int, n_neg: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(0.8, 0.12, n_pos), rng.normal(0.3, 0.12, n_neg)]
    return scores, np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]


def test_clopper_pearson_lower_bound_is_exact():
    for k, n in [(299, 299), (298, 299), (997, 1000), (5, 10), (0, 10), (10, 10)]:
        lb = clopper_pearson_lower(k, n)
        assert lb == pytest.approx(cp_lower(k, n), abs=1e-9)
        if k:  # the definition: at p = lower bound, seeing k or more successes has probability 5%
            assert binom.sf(k - 1, n, lb) == pytest.approx(0.05, abs=1e-6)
    assert min_pairs_for(0.99) == 299 and 0.99 ** 299 <= 0.05 < 0.99 ** 298


def test_chosen_thresholds_have_a_lower_bound_at_least_the_target():
    scores, labels = noisy(3000, 12000)
    th = choose_thresholds(scores, labels, target_precision=0.99, target_npv=0.99, confidence=0.95)
    acc, rej = scores >= th.accept, scores < th.reject
    tp, na = int((acc & labels).sum()), int(acc.sum())
    tn, nr = int((rej & ~labels).sum()), int(rej.sum())
    assert na > 299 and nr > 299
    assert cp_lower(tp, na) >= 0.99 and th.fit_precision_lower == pytest.approx(cp_lower(tp, na))
    assert cp_lower(tn, nr) >= 0.99 and th.fit_npv_lower == pytest.approx(cp_lower(tn, nr))
    assert th.fit_precision == pytest.approx(tp / na) and th.fit_accepted == na and th.fit_rejected == nr
    # the accept threshold is the lowest qualifying cut: no lower cut has a bound ≥ target
    for t in np.unique(scores[scores < th.accept])[-200:]:
        sel = scores >= t
        assert cp_lower(int((sel & labels).sum()), int(sel.sum())) < 0.99
    # the bound demands a margin: the point-estimate rule accepts more (lower threshold) on the same pairs
    point = choose_thresholds(scores, labels, target_precision=0.99, target_npv=0.99, confidence=None)
    assert point.accept < th.accept and point.reject > th.reject
    assert not th.notes


def test_few_calibration_pairs_decide_nothing_and_say_so():
    # 200 perfectly separated pairs: precision 100% as a point estimate, but 100 correct accepts bound it only at 97.0%
    scores = np.r_[np.linspace(0.7, 1.0, 100), np.linspace(0.0, 0.3, 100)]
    labels = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    th = choose_thresholds(scores, labels, target_precision=0.99, target_npv=0.99)
    assert th.accept == math.inf and th.reject == -math.inf
    assert any("no accept threshold" in n and "299" in n for n in th.notes)
    assert any("no reject threshold" in n for n in th.notes)
    assert "warning: no accept threshold" in th.describe()
    # the point-estimate rule would have decided every pair: the bound is what stops it
    assert choose_thresholds(scores, labels, confidence=None).fit_share_auto == 1.0
    m = decision_metrics(scores, labels, th)
    assert m["accepted"] == 0 and m["rejected"] == 0 and m["review"] == 200
    # a matcher with these thresholds sends even an identical pair to review
    cal = Calibrator("isotonic").fit(scores, labels)
    emb = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    res = decide_pairs(Matcher(None, cal, th), [Offer("a", title="a")], [Offer("b", title="b")], emb[:1], emb[1:], [("new-catalogue", 0, 0, 1.0)])
    assert [p.decision for p in res.pairs] == ["review"]


def test_bound_is_saved_and_reloaded_with_the_matcher(tmp_path):
    scores, labels = noisy(2000, 8000, seed=1)
    th = choose_thresholds(scores, labels)
    matcher = Matcher(None, Calibrator().fit(scores, labels), th, info={"guarantee": guarantee(th)})
    matcher.save(tmp_path / "m")
    again = Matcher.load(tmp_path / "m")
    assert again.thresholds.confidence == 0.95
    assert again.thresholds.fit_precision_lower == pytest.approx(th.fit_precision_lower) and th.fit_precision_lower >= 0.99
    assert again.thresholds.fit_npv_lower == pytest.approx(th.fit_npv_lower) and th.fit_npv_lower >= 0.99
    assert again.thresholds.accept == th.accept and again.thresholds.reject == th.reject
    g = again.info["guarantee"]
    assert g["precision_lower_bound"] == pytest.approx(th.fit_precision_lower) and g["expected_precision"] == pytest.approx(th.fit_precision)
    assert g["confidence"] == 0.95 and "Clopper-Pearson" in g["method"]


def test_mutual_best_gate_marks_ambiguous_pairs():
    from modalens.matching.pipeline import mutual_best

    # new 0 scores 0.90 with catalogue 0 and 0.89 with catalogue 1 (a near duplicate); new 1 scores 0.95 with catalogue 1
    cands = [("new-catalogue", 0, 0, 0.90), ("new-catalogue", 0, 1, 0.89), ("new-catalogue", 1, 1, 0.95), ("new-new", 0, 1, 0.50),
             ("new-catalogue", 2, 2, 0.80), ("new-catalogue", 3, 2, 0.80)]  # a tie: both stay acceptable
    assert mutual_best(cands).tolist() == [True, False, True, False, True, True]


def test_accept_threshold_is_chosen_and_bounded_on_eligible_pairs_only():
    scores, labels = noisy(3000, 12000, seed=3)
    # the 40 highest-scoring non-matches are ambiguous (not eligible): without them the top is cleaner
    hard = np.flatnonzero(~labels)[np.argsort(-scores[~labels])[:40]]
    scores[hard] = 0.99
    eligible = np.ones(len(scores), bool)
    eligible[hard] = False
    gated = choose_thresholds(scores, labels, eligible=eligible)
    plain = choose_thresholds(scores, labels)
    assert gated.mutual_best_only and not plain.mutual_best_only
    assert plain.accept == math.inf  # 40 wrong pairs at the very top: no cut certifies 99%
    assert gated.accept < math.inf and not any("no accept" in n for n in gated.notes)
    acc = (scores >= gated.accept) & eligible
    assert cp_lower(int((acc & labels).sum()), int(acc.sum())) >= 0.99 and gated.fit_accepted == int(acc.sum())
    m = decision_metrics(scores, labels, gated, eligible=eligible)
    assert m["accepted"] == int(acc.sum()) and m["review"] >= 40  # the ambiguous pairs go to people
    # decide_pairs applies the same gate: an ambiguous pair above the threshold goes to review
    cal = Calibrator().fit(scores, labels)
    new = [Offer(f"n{i}", title="t") for i in range(2)]
    cat = [Offer(f"c{i}", title="t") for i in range(2)]
    emb = np.eye(2, dtype=np.float32)
    s = max(gated.accept, 0.995)
    res = decide_pairs(Matcher(None, cal, gated), new, cat, emb, emb, [("new-catalogue", 0, 0, s), ("new-catalogue", 0, 1, s - 1e-3),
                                                                       ("new-catalogue", 1, 1, s)])
    assert [p.decision for p in res.pairs] == ["accept", "review", "accept"]
    assert "another offer scores as high" in res.pairs[1].reason
