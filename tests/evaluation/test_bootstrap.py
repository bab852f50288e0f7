"""Bootstrap intervals: deterministic, containing the point estimate, shrinking with n, paired differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from modalens.evaluation.bootstrap import (
    Estimate,
    Resamples,
    classification_statistics,
    mean_of,
    median_of,
    paired_difference,
    percentile_interval,
    resamples_for,
)


def _bernoulli(n: int, p: float, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_resamples_are_fixed_by_seed_and_counts_match_indices() -> None:
    a, b = Resamples(50, 20, seed=3), Resamples(50, 20, seed=3)
    np.testing.assert_array_equal(a.idx, b.idx)
    assert not np.array_equal(a.idx, Resamples(50, 20, seed=4).idx)
    assert a.counts.shape == (20, 50) and np.all(a.counts.sum(axis=1) == 50)
    np.testing.assert_array_equal(a.counts[5], np.bincount(a.idx[5], minlength=50))
    assert resamples_for(50, 20, 3) is resamples_for(50, 20, 3)  # shared across metrics and models
    with pytest.raises(ValueError):
        Resamples(0)


def test_mean_interval_contains_the_estimate_and_shrinks_with_n() -> None:
    widths = []
    for n in (100, 10_000):
        values = _bernoulli(n, 0.3)
        est = Estimate(float(values.mean()), mean_of(values), n)
        lo, hi = est.interval()
        assert lo <= est.value <= hi
        assert est.interval() == [lo, hi]  # deterministic
        widths.append(hi - lo)
        # the mean of every resample equals the mean of the indexed values
        r = resamples_for(n)
        np.testing.assert_allclose(est.resampled()[:5], values[r.idx[:5]].mean(axis=1))
    # the 95% interval of a proportion is about 2 * 1.96 * sqrt(p(1-p)/n): 0.18 at n=100, 0.018 at n=10,000
    assert widths[0] == pytest.approx(2 * 1.96 * math.sqrt(0.21 / 100), rel=0.25)
    assert widths[1] < widths[0] / 7


def test_mean_of_ignores_nan_values() -> None:
    values = np.array([1.0, np.nan, 0.0, 1.0])
    r = Resamples(4, 200)
    stats = mean_of(values)(r)
    # each resample's statistic is the mean of its non-nan values, computed here by hand
    checked = 0
    for b in range(r.resamples):
        kept = [values[i] for i in r.idx[b] if not math.isnan(values[i])]
        if kept:
            assert stats[b] == pytest.approx(sum(kept) / len(kept))
            checked += 1
        else:
            assert math.isnan(stats[b])
    assert checked > 150
    # a sample of 1s and nans has mean exactly 1 in every resample (nan counted as 0 would pull it below 1)
    only_ones = mean_of(np.array([1.0, np.nan, 1.0, np.nan]))(r)
    assert np.all(only_ones[np.isfinite(only_ones)] == 1.0) and np.isfinite(only_ones).sum() > 150


def test_median_ignores_queries_without_a_relevant_item() -> None:
    ranks = np.array([1.0, 2.0, np.inf, 4.0, 5.0])
    r = Resamples(5, 50)
    stats = median_of(ranks)(r)
    for b in range(50):
        finite = ranks[r.idx[b]][np.isfinite(ranks[r.idx[b]])]
        expected = np.median(finite) if len(finite) else np.nan
        assert (math.isnan(expected) and math.isnan(stats[b])) or stats[b] == expected


def test_classification_statistics_match_scikit_learn_on_each_resample() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.choice(list("abcde"), size=60, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    y_pred = np.where(rng.random(60) < 0.6, y_true, rng.choice(list("abcdef"), size=60))
    stats = classification_statistics(y_true, y_pred)
    r = Resamples(60, 30, seed=7)
    values = {name: fn(r) for name, fn in stats.items()}
    for b in range(30):
        t, p = y_true[r.idx[b]], y_pred[r.idx[b]]
        assert values["accuracy"][b] == pytest.approx(np.mean(t == p))
        assert values["weighted_f1"][b] == pytest.approx(f1_score(t, p, average="weighted", zero_division=0))
        assert values["macro_f1"][b] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))


def test_percentile_interval_by_hand() -> None:
    values = np.arange(1, 1001, dtype=float)
    lo, hi = percentile_interval(values, 0.95)
    assert lo == pytest.approx(np.percentile(values, 2.5)) and hi == pytest.approx(np.percentile(values, 97.5))
    assert all(math.isnan(x) for x in percentile_interval(np.array([np.nan])))


def test_paired_difference() -> None:
    n = 400
    rng = np.random.default_rng(2)
    a_values = rng.random(n)
    a = Estimate(float(a_values.mean()), mean_of(a_values), n, "same")
    # the same model: difference exactly zero on every resample
    same = paired_difference(a, a)
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0] and not same["significant"]
    # a constant improvement of 0.01 per example: every resample shows exactly +0.01
    b_values = a_values + 0.01
    b = Estimate(float(b_values.mean()), mean_of(b_values), n, "same")
    shifted = paired_difference(a, b)
    assert shifted["difference"] == pytest.approx(0.01)
    assert shifted["ci"] == pytest.approx([0.01, 0.01]) and shifted["significant"]
    # pairing removes the shared per-example variance: the paired interval is far narrower than either model's own
    noisy = a_values + 0.01 + rng.normal(0, 0.01, n)
    c = Estimate(float(noisy.mean()), mean_of(noisy), n, "same")
    lo, hi = paired_difference(a, c)["ci"]
    own_lo, own_hi = a.interval()
    assert lo <= c.value - a.value <= hi
    assert hi - lo < (own_hi - own_lo) / 5
    # estimates over different examples cannot be paired
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(a, Estimate(0.5, mean_of(rng.random(n + 1)), n + 1))
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(a, Estimate(c.value, c.statistic, n, "other"))
