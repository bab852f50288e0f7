"""Thresholds for a target precision on a score distribution whose answer is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from modalens.matching.calibration import (
    Calibrator,
    choose_thresholds,
    decision_metrics,
    plot_precision_recall,
)


def hand_made():
    """Matches score 0.50, 0.51, ..., 0.99 (50); non-matches 0.00, ..., 0.59 (60)."""
    pos = np.arange(50, 100) / 100
    neg = np.arange(0, 60) / 100
    return np.r_[pos, neg], np.r_[np.ones(50, bool), np.zeros(60, bool)]


def test_thresholds_reach_the_target_precision():
    scores, labels = hand_made()
    th = choose_thresholds(scores, labels, target_precision=0.99, target_npv=0.99, confidence=None)
    # s >= 0.60: 40 matches, no non-match (precision 1); s >= 0.59: 41 matches + 1 non-match = 0.976 < 0.99
    assert th.accept == pytest.approx(0.60)
    # s <= 0.49: 50 non-matches (NPV 1); s <= 0.50: 51 non-matches + 1 match = 0.981 < 0.99
    assert 0.49 < th.reject <= 0.50 + 1e-12 and th.decide(0.50) != "reject" and th.decide(0.49) == "reject"
    m = decision_metrics(scores, labels, th)
    assert m["precision"] == 1.0 and m["accepted"] == 40 and m["rejected"] == 50 and m["review"] == 20
    assert m["share_auto"] == pytest.approx(90 / 110)
    assert m["recall"] == pytest.approx(40 / 50)
    assert th.fit_precision == 1.0 and th.fit_share_auto == pytest.approx(90 / 110)


def test_a_looser_target_accepts_more():
    scores, labels = hand_made()
    # s >= 0.58: 42 matches + 2 non-matches = 0.955 >= 0.95; s >= 0.57: 43 / 46 = 0.935 < 0.95
    th = choose_thresholds(scores, labels, target_precision=0.95, target_npv=0.99, confidence=None)
    assert th.accept == pytest.approx(0.58)
    assert decision_metrics(scores, labels, th)["precision"] == pytest.approx(42 / 44)


def test_unreachable_target_accepts_nothing():
    scores = np.array([0.9, 0.8, 0.7])
    labels = np.array([False, True, True])  # the top score is a non-match: no cut reaches precision 1
    th = choose_thresholds(scores, labels, target_precision=1.0, target_npv=1.0, confidence=None)
    assert th.accept == float("inf") and th.decide(0.99) != "accept"


def test_calibrators_are_monotone_probabilities(tmp_path):
    scores, labels = hand_made()
    for method in ("isotonic", "platt"):
        cal = Calibrator(method).fit(scores, labels)
        p = cal(np.linspace(0, 1, 21))
        assert np.all(np.diff(p) >= -1e-12) and p[0] < 0.1 and p[-1] > 0.9
        again = Calibrator.from_dict(cal.to_dict())
        assert np.allclose(again(scores), cal(scores))
    with pytest.raises(ValueError):
        Calibrator().fit([0.1, 0.2], [True, True])
    png = plot_precision_recall({"hand": (scores, labels)}, tmp_path / "pr.png", operating_points={"99%": (0.8, 1.0)})
    assert png.read_bytes()[:4] == b"\x89PNG"
