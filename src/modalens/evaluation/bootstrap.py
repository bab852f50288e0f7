"""Bootstrap confidence intervals for every headline metric, and paired differences between models.

A metric is an :class:`Estimate`: its point value plus a vectorised statistic
that recomputes it on many resamples of the examples (queries, images) at
once. Resamples depend only on ``(n, resamples, seed)``, so two models scored
on the same examples see exactly the same resamples: the paired bootstrap of
their difference is the difference of their statistics, resample by resample.

Everything is numpy: 1000 resamples of 10,000 examples take well under a
second per metric (a resample is a row of example counts, and a mean is a
matrix-vector product with those counts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95


class Resamples:
    """``resamples`` bootstrap draws of ``n`` examples: as indices (B, n) and as per-example counts (B, n)."""

    def __init__(self, n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
        if n < 1:
            raise ValueError("cannot resample an empty set of examples")
        self.n, self.resamples, self.seed = n, resamples, seed
        self._idx: np.ndarray | None = None
        self._counts: np.ndarray | None = None

    @property
    def idx(self) -> np.ndarray:
        if self._idx is None:
            rng = np.random.default_rng([self.seed, self.n])
            self._idx = rng.integers(0, self.n, size=(self.resamples, self.n), dtype=np.int32 if self.n < 2**31 else np.int64)
        return self._idx

    @property
    def counts(self) -> np.ndarray:
        """counts[b, i]: how often example i appears in resample b (float64; rows sum to n)."""
        if self._counts is None:
            offsets = (np.arange(self.resamples, dtype=np.int64) * self.n)[:, None]
            flat = np.bincount((self.idx + offsets).ravel(), minlength=self.resamples * self.n)
            self._counts = flat.reshape(self.resamples, self.n).astype(np.float64)
        return self._counts


@lru_cache(maxsize=4)
def resamples_for(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> Resamples:
    """The shared resamples for ``n`` examples (cached, so all metrics and all models reuse them)."""
    return Resamples(n, resamples, seed)


Statistic = Callable[[Resamples], np.ndarray]  # -> (resamples,) values


@dataclass
class Estimate:
    """A metric's point value and how to recompute it on resamples of its ``n`` examples.

    ``examples`` fingerprints which examples (and in which order) were scored,
    so only estimates over the same examples are compared pairwise.
    """

    value: float
    statistic: Statistic
    n: int
    examples: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    def resampled(self, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
        key = (resamples, seed)
        if key not in self._cache:
            self._cache[key] = np.asarray(self.statistic(resamples_for(self.n, resamples, seed)), dtype=np.float64)
        return self._cache[key]

    def interval(self, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> list[float]:
        return percentile_interval(self.resampled(resamples, seed), level)


def fingerprint(ids: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def percentile_interval(values: np.ndarray, level: float = DEFAULT_LEVEL) -> list[float]:
    """The central ``level`` percentile interval of bootstrap values (``nan`` ones ignored)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def paired_difference(
    a: Estimate, b: Estimate, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL
) -> dict[str, float | list[float] | bool]:
    """b − a with the percentile interval of the paired bootstrap (same resamples for both)."""
    if a.n != b.n or (a.examples and b.examples and a.examples != b.examples):
        raise ValueError("a paired difference needs both estimates on the same examples")
    diffs = b.resampled(resamples, seed) - a.resampled(resamples, seed)
    lo, hi = percentile_interval(diffs, level)
    return {"difference": b.value - a.value, "ci": [lo, hi], "significant": bool(lo > 0 or hi < 0)}


# ---------------------------------------------------------------- statistics


def mean_of(values: np.ndarray) -> Statistic:
    """The mean of per-example values (``nan`` values are left out of the mean in each resample)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return lambda r: r.counts @ values / r.n
    clean = np.where(finite, values, 0.0)

    def statistic(r: Resamples) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (r.counts @ clean) / (r.counts @ finite.astype(np.float64))

    return statistic


def median_of(values: np.ndarray) -> Statistic:
    """The median of per-example values, ignoring non-finite ones (e.g. rank ``inf`` for a query with no relevant item)."""
    values = np.asarray(values, dtype=np.float64)
    clean = np.where(np.isfinite(values), values, np.nan)

    def statistic(r: Resamples) -> np.ndarray:
        sample = clean[r.idx]
        if np.isnan(sample).any():
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return np.nanmedian(sample, axis=1)
        return np.median(sample, axis=1)

    return statistic


def classification_statistics(y_true: Sequence, y_pred: Sequence) -> dict[str, Statistic]:
    """Accuracy, weighted F1 and macro F1 on resamples, matching scikit-learn's ``f1_score`` on each resample.

    Macro F1 averages over the labels present in the resample's truth or
    predictions (scikit-learn's label set); weighted F1 weights by true support.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = codes[: len(y_true)], codes[len(y_true) :]
    n_classes = len(labels)
    true_onehot = np.zeros((len(t), n_classes), np.float64)
    true_onehot[np.arange(len(t)), t] = 1
    pred_onehot = np.zeros((len(p), n_classes))
    pred_onehot[np.arange(len(p)), p] = 1
    correct = (t == p).astype(np.float64)

    def per_class(r: Resamples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        support = r.counts @ true_onehot
        predicted = r.counts @ pred_onehot
        tp = r.counts @ (true_onehot * correct[:, None])
        denominator = support + predicted
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-12), 0.0)
        return f1, support, denominator > 0

    def weighted(r: Resamples) -> np.ndarray:
        f1, support, _ = per_class(r)
        return (f1 * support).sum(axis=1) / support.sum(axis=1)

    def macro(r: Resamples) -> np.ndarray:
        f1, _, present = per_class(r)
        return (f1 * present).sum(axis=1) / present.sum(axis=1)

    return {"accuracy": mean_of(correct), "weighted_f1": weighted, "macro_f1": macro}
