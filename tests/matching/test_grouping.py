"""Match groups: accepted pairs merge, but a chain A~B~C with A and C unrelated does not."""

from __future__ import annotations

import numpy as np

from modalens.matching.calibration import Calibrator, Thresholds
from modalens.matching.offers import Offer
from modalens.matching.pipeline import Matcher, decide_pairs


def unit(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a)], np.float32)


def matcher() -> Matcher:
    cal = Calibrator("platt")
    cal.a, cal.b = 20.0, -17.0
    return Matcher(None, cal, Thresholds(accept=0.85, reject=0.3))


def offers(names):
    return [Offer(n, title=n) for n in names]


def test_chain_of_unrelated_items_does_not_merge():
    # A at 0°, B at 25°, C at 50°: cos(A,B) = cos(B,C) = 0.906 (match), cos(A,C) = 0.643 (no match)
    new = offers(["A", "B", "C"])
    emb = np.stack([unit(0), unit(25), unit(50)])
    cands = [("new-new", 0, 1, float(emb[0] @ emb[1])), ("new-new", 1, 2, float(emb[1] @ emb[2])), ("new-new", 0, 2, float(emb[0] @ emb[2]))]
    result = decide_pairs(matcher(), new, [], emb, np.zeros((0, 2), np.float32), cands)
    assert len(result.groups) == 1 and len(result.groups[0]) == 2
    assert "C" not in result.groups[0]
    guarded = [p for p in result.pairs if "chain guard" in p.reason]
    assert len(guarded) == 1 and guarded[0].decision == "review"
    assert {p.decision for p in result.pairs if {p.left, p.right} == {"A", "C"}} == {"review"}


def test_items_that_all_match_form_one_group_with_the_catalogue_item():
    new = offers(["A", "B", "C"])
    cat = offers(["X"])
    emb = np.stack([unit(0), unit(8), unit(16)])
    cat_emb = np.stack([unit(4)])
    cands = [("new-catalogue", i, 0, float(emb[i] @ cat_emb[0])) for i in range(3)]
    cands += [("new-new", 0, 1, float(emb[0] @ emb[1])), ("new-new", 1, 2, float(emb[1] @ emb[2]))]
    result = decide_pairs(matcher(), new, cat, emb, cat_emb, cands)
    assert result.groups == [["A", "B", "C", "X"]]
    assert all(p.decision == "accept" for p in result.pairs)


def test_decisions_follow_the_thresholds():
    new, cat = offers(["A", "B", "C"]), offers(["X"])
    emb = np.stack([unit(0), unit(40), unit(90)])
    cat_emb = np.stack([unit(0)])
    cands = [("new-catalogue", i, 0, float(emb[i] @ cat_emb[0])) for i in range(3)]
    result = decide_pairs(matcher(), new, cat, emb, cat_emb, cands)
    assert [p.decision for p in result.pairs] == ["accept", "review", "reject"]
    assert all(0 <= p.probability <= 1 for p in result.pairs)
