"""The fixes for products with small photos: a separate reject cut for nearest pairs, thresholds of their own for
small-photo pairs, and thresholds tightened when audits alarm."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.stats import beta

from modalens.matching.calibration import Calibrator, Thresholds, audit_status, choose_thresholds, decision_metrics, tighten_for_audits
from modalens.matching.offers import Offer
from modalens.matching.pipeline import SMALL_PHOTOS, Matcher, candidate_flags, decide_pairs


def cp_lower(k: int, n: int, conf: float = 0.95) -> float:
    return 0.0 if k == 0 else float(beta.ppf(1 - conf, k, n - k + 1))


def nearest_heavy(seed: int = 0):
    """Pairs where the low-scoring matches are nearest pairs (as with small photos): 3,000 nearest pairs, 35% of them
    matches scoring about 0.62; 17,000 other pairs, 0.3% matches."""
    rng = np.random.default_rng(seed)
    near_y = rng.random(3000) < 0.35
    near_s = np.where(near_y, rng.normal(0.62, 0.1, 3000), rng.normal(0.45, 0.1, 3000))
    other_y = rng.random(17000) < 0.003
    other_s = np.where(other_y, rng.normal(0.5, 0.1, 17000), rng.normal(0.4, 0.1, 17000))
    return np.r_[near_s, other_s], np.r_[near_y, other_y], np.r_[np.ones(3000, bool), np.zeros(17000, bool)]


def test_split_reject_keeps_the_bound_over_all_rejections_and_rejects_more():
    scores, labels, nearest = nearest_heavy()
    one = choose_thresholds(scores, labels)
    split = choose_thresholds(scores, labels, nearest=nearest)
    assert split.reject_nearest is not None and split.reject_nearest < split.reject  # nearest pairs are judged more strictly
    rej = np.where(nearest, scores < split.reject_nearest, scores < split.reject) & (scores < split.accept)
    assert cp_lower(int((rej & ~labels).sum()), int(rej.sum())) >= 0.99  # the union of both cuts keeps the bound
    assert split.fit_rejected == int(rej.sum()) and split.fit_npv_lower == pytest.approx(cp_lower(int((rej & ~labels).sum()), int(rej.sum())))
    assert split.fit_rejected > one.fit_rejected * 1.1  # and decides clearly more than one cut for both kinds
    # decide() and decision_metrics() apply the cut of the pair's kind
    assert split.decide(split.reject_nearest - 1e-6, nearest=True) == "reject"
    assert split.decide(split.reject_nearest + 1e-6, nearest=True) == "review"
    assert split.decide(split.reject_nearest + 1e-6) == "reject"
    assert decision_metrics(scores, labels, split, nearest=nearest)["rejected"] == split.fit_rejected
    assert "nearest for one of its offers" in split.describe()


def test_candidate_flags_mark_mutual_and_one_sided_best_pairs():
    # new 0's best is catalogue 0 (0.9), but catalogue 0's best is new 1 (0.95): nearest for new 0 only
    cands = [("new-catalogue", 0, 0, 0.90), ("new-catalogue", 1, 0, 0.95), ("new-catalogue", 0, 1, 0.40), ("new-catalogue", 1, 1, 0.30)]
    mutual, nearest = candidate_flags(cands)
    assert mutual.tolist() == [False, True, False, False]
    assert nearest.tolist() == [True, True, True, False]  # (0, 1) is catalogue 1's best; (1, 1) is nobody's


def photo(path, size):
    Image.new("RGB", size, (200, 120, 90)).save(path)
    return str(path)


def test_small_photo_pairs_use_their_own_thresholds_and_the_matcher_keeps_them(tmp_path):
    small, large = photo(tmp_path / "s.jpg", (60, 80)), photo(tmp_path / "l.jpg", (224, 224))
    new = [Offer("n-small", images=[small], title="a"), Offer("n-large", images=[large], title="b")]
    cat = [Offer("c-large", images=[large], title="c"), Offer("c-large2", images=[large], title="d")]
    scores, labels = np.r_[np.linspace(0.6, 1, 500), np.linspace(0, 0.4, 2000)], np.r_[np.ones(500, bool), np.zeros(2000, bool)]
    cal = Calibrator().fit(scores, labels)
    main = Thresholds(accept=0.65, reject=0.5)
    strict = Thresholds(accept=0.75, reject=0.3)
    matcher = Matcher(None, cal, main, strata={SMALL_PHOTOS: (cal, strict)})
    emb = np.eye(2, dtype=np.float32)  # new i and catalogue i alike (what the grouping guard looks at)
    cands = [("new-catalogue", 0, 0, 0.70), ("new-catalogue", 1, 1, 0.70), ("new-catalogue", 0, 1, 0.40), ("new-catalogue", 1, 0, 0.40)]
    res = decide_pairs(matcher, new, cat, emb, emb, cands)
    # a 60×80 photo on one side: the small-photo thresholds decide (0.70 < 0.75: review; 0.40 ≥ 0.3: review)
    assert [p.decision for p in res.pairs] == ["review", "accept", "review", "reject"]
    assert "small-photos thresholds" in res.pairs[0].reason and "small-photos" not in res.pairs[1].reason
    assert Matcher(None, cal, main).pair_strata(new, cat, cands).tolist() == ["", "", "", ""]  # no stratum: all main
    matcher.save(tmp_path / "m")
    again = Matcher.load(tmp_path / "m")
    assert again.strata[SMALL_PHOTOS][1].accept == 0.75 and again.thresholds.accept == 0.65
    assert [p.decision for p in decide_pairs(again, new, cat, emb, emb, cands).pairs] == ["review", "accept", "review", "reject"]


def test_tightening_moves_only_an_alarmed_cut_past_the_audited_wrong_decisions():
    th = Thresholds(accept=0.70, reject=0.50, reject_nearest=0.40)
    # 200 audited accepts, 8 wrong, all scoring below 0.74; 100 audited rejects, none wrong
    accepts = [(0.70 + 0.0002 * i, i >= 8) for i in range(200)]
    rejects = [(0.2 + 0.002 * i, True) for i in range(100)]
    assert audit_status(192, 200, 0.99)["status"] == "alarm"
    new, changes = tighten_for_audits(th, accepts, rejects)
    wrong = sorted(s for s, ok in accepts if not ok)
    assert len(changes) == 1 and new.accept in [float(np.nextafter(s, np.inf)) for s in wrong]  # just above an audited wrong merge
    kept = [ok for s, ok in accepts if s >= new.accept]
    assert audit_status(sum(kept), len(kept), 0.99)["status"] != "alarm"  # what is still accepted is no longer in alarm...
    lower = max(float(np.nextafter(s, np.inf)) for s in wrong if np.nextafter(s, np.inf) < new.accept)
    more = [ok for s, ok in accepts if s >= lower]
    assert audit_status(sum(more), len(more), 0.99)["status"] == "alarm"  # ...and the cut moved no further than that needs
    assert (new.reject, new.reject_nearest) == (0.50, 0.40)  # NPV not in alarm: reject cuts untouched
    assert "tightened after audits" in new.notes[-1] and th.accept == 0.70  # the old thresholds are not changed
    same, none = tighten_for_audits(th, [(0.8, True)] * 50, rejects)
    assert none == [] and same.accept == th.accept
    # missed matches among the audited rejects (2 of 32: an alarm): the reject cuts are capped below the highest one,
    # which leaves 1 of 31 (no alarm); the nearest cut was already lower and stays
    audits = [(0.47, False), (0.3, False)] + [(0.1, True)] * 30
    assert audit_status(30, 32, 0.99)["status"] == "alarm" and audit_status(30, 31, 0.99)["status"] != "alarm"
    low, lines = tighten_for_audits(th, [], audits)
    assert (low.reject, low.reject_nearest) == (0.47, 0.40) and "missed matches" in lines[0] and low.accept == th.accept
