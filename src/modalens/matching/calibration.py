"""From match scores to decisions at a target precision.

* :class:`Calibrator` maps a raw score (a cosine) to a match probability:
  isotonic regression (default) or Platt scaling, fitted on labelled pairs.
* :func:`choose_thresholds` picks two score thresholds on labelled pairs:
  ``accept`` is the lowest score whose accepted set (score ≥ accept) has a
  one-sided 95% Clopper-Pearson *lower confidence bound* of precision at least
  the target (default 99%); ``reject`` is the highest score whose rejected set
  (score < reject) has a lower bound of NPV at least the target. With too few
  calibration pairs no cut qualifies and nothing is decided automatically on
  that side (everything goes to review); ``Thresholds.notes`` says so. Pairs in
  between go to people. ``confidence=None`` gives the old point-estimate rule. With ``nearest`` (pairs that
  are the nearest candidate of one of their offers) the reject side gets two cuts, one for such pairs and
  one for the others, chosen together so that the *union* of rejected pairs keeps its bound: a pair that is
  some offer's nearest candidate is about ten times likelier to be a match than one that is not (on KAGL
  val 57 of 59 wrongly rejected matches were), so one cut for both is either unsafe for the first kind or
  wasteful for the second. ``precision_bound`` / ``npv_bound`` say which lower bound each side must reach
  (``BOUNDS``): ``"clopper-pearson"`` treats the calibration pairs as independent; ``"clustered"``
  (:func:`cluster_effective_trials`) counts them in clusters (all pairs of one product's new offers), so
  repeated and related pairs do not pass for independent evidence where errors show the clustering (with no
  error in a set, its design effect is 1: Clopper-Pearson; docs/matching.md); ``"prediction"`` bounds the rate a *new*
  set of a deployment's size will show, which has sampling noise of its own (:func:`new_set_inflation`).
  The thresholds are cumulative (the precision of *all*
  pairs accepted), which is what a target precision promises; a calibrated
  probability is local (the precision *at* that score) and is reported per pair.
* :func:`decision_metrics` measures a set of thresholds on other labelled pairs:
  precision, recall and F1 of automatic acceptance, NPV of automatic rejection,
  and the shares decided automatically and sent to review.
* :func:`plot_precision_recall` draws the precision/recall curve with the
  operating point (PNG, matplotlib).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np


class Calibrator:
    """Score → probability of a match."""

    def __init__(self, method: str = "isotonic") -> None:
        if method not in ("isotonic", "platt"):
            raise ValueError(f"calibration method must be 'isotonic' or 'platt', not {method!r}")
        self.method = method
        self.x: list[float] = []
        self.y: list[float] = []
        self.a = 1.0
        self.b = 0.0

    def fit(self, scores: Sequence[float], labels: Sequence[bool]) -> Calibrator:
        scores = np.asarray(scores, np.float64)
        labels = np.asarray(labels, bool)
        if len(scores) == 0 or labels.all() or not labels.any():
            raise ValueError(f"calibration needs both matching and non-matching pairs (got {int(labels.sum())} of {len(labels)} matching)")
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels.astype(float))
            self.x = [float(v) for v in iso.X_thresholds_]
            self.y = [float(v) for v in iso.y_thresholds_]
        else:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e4).fit(scores[:, None], labels)
            self.a, self.b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def __call__(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, np.float64)
        if self.method == "isotonic":
            if not self.x:
                raise ValueError("calibrator is not fitted")
            return np.interp(scores, self.x, self.y)
        return 1.0 / (1.0 + np.exp(-(self.a * scores + self.b)))

    def to_dict(self) -> dict:
        return {"method": self.method, "x": self.x, "y": self.y, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        c = cls(data["method"])
        c.x, c.y, c.a, c.b = list(data.get("x", [])), list(data.get("y", [])), float(data.get("a", 1.0)), float(data.get("b", 0.0))
        return c


@dataclass
class Thresholds:
    """Decision rule on the raw score: accept ≥ ``accept``, reject < ``reject``, review in between."""

    accept: float
    reject: float
    target_precision: float = 0.99
    target_npv: float = 0.99
    #: What the rule achieved on the pairs it was chosen on.
    fit_precision: float = float("nan")
    fit_npv: float = float("nan")
    fit_share_auto: float = float("nan")
    fit_pairs: int = 0
    #: One-sided confidence level of the bounds (None: thresholds chosen on point estimates).
    confidence: float | None = None
    #: Clopper-Pearson lower confidence bounds of precision / NPV on the pairs the rule was chosen on.
    fit_precision_lower: float = float("nan")
    fit_npv_lower: float = float("nan")
    fit_accepted: int = 0
    fit_rejected: int = 0
    #: Why a side decides nothing automatically (e.g. too few calibration pairs to bound it).
    notes: list[str] = field(default_factory=list)
    #: Accept only pairs that are their offers' mutual best candidate (``pipeline.mutual_best``); the accept
    #: threshold and its bound were chosen on such pairs.
    mutual_best_only: bool = False
    #: Reject cut for pairs that are the nearest candidate of one of their offers (``pipeline.candidate_flags``);
    #: ``reject`` is then the cut for the other pairs. None: one cut for all pairs.
    reject_nearest: float | None = None
    #: Which lower bound each side demanded (``BOUNDS``); matchers saved before the choice existed used Clopper-Pearson.
    precision_bound: str = "clopper-pearson"
    npv_bound: str = "clopper-pearson"
    #: Design effects of the accepted / rejected calibration pairs (variance over clusters / binomial variance,
    #: at least 1); the clustered bound is Clopper-Pearson on pairs / design effect. 1 under plain Clopper-Pearson.
    fit_precision_design_effect: float = 1.0
    fit_npv_design_effect: float = 1.0
    #: With a prediction bound: the size of the new set it bounds the rate of, as a share of the calibration pairs.
    new_set_share: float | None = None

    def reject_cut(self, nearest: bool = False) -> float:
        return self.reject_nearest if nearest and self.reject_nearest is not None else self.reject

    def decide(self, score: float, *, nearest: bool = False) -> str:
        if score >= self.accept:
            return "accept"
        if score < self.reject_cut(nearest):
            return "reject"
        return "review"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Thresholds:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """One line: thresholds, expected precision / NPV on the calibration pairs and their lower bounds."""
        level = f"{self.confidence:.0%} lower bound" if self.confidence else "chosen on point estimates; 95% lower bound"
        kinds = {"clopper-pearson": "", "clustered": " clustered by product", "prediction": " of a new set's rate, clustered by product"}
        acc = (f"accept ≥ {self.accept:.3f}: precision {_pct(self.fit_precision)} ({level}{kinds.get(self.precision_bound, '')} {_pct(self.fit_precision_lower)}, "
               f"{self.fit_accepted} pairs{_deff(self.fit_precision_design_effect)})") if math.isfinite(self.accept) else "accept: none"
        cut = f"{self.reject:.3f}" + ("" if self.reject_nearest is None else f" (a pair nearest for one of its offers: < {self.reject_nearest:.3f})")
        rej = (f"reject < {cut}: NPV {_pct(self.fit_npv)} ({level}{kinds.get(self.npv_bound, '')} {_pct(self.fit_npv_lower)}, {self.fit_rejected} pairs{_deff(self.fit_npv_design_effect)})"
               if math.isfinite(self.reject) or (self.reject_nearest is not None and math.isfinite(self.reject_nearest)) else "reject: none")
        text = f"{acc}; {rej}; targets {self.target_precision:.0%} / {self.target_npv:.0%}, on {self.fit_pairs} calibration pairs"
        return text + "".join(f"\nwarning: {n}" for n in self.notes)


def clopper_pearson_lower(successes, trials, confidence: float = 0.95):
    """One-sided exact (Clopper-Pearson) lower confidence bound of a binomial proportion.

    The largest p with P(X ≥ successes | trials, p) ≤ 1 - confidence, i.e. the
    (1 - confidence) quantile of Beta(successes, trials - successes + 1); 0 when
    there are no successes. Works elementwise on arrays.
    """
    from scipy.special import betaincinv

    k = np.asarray(successes, np.float64)
    n = np.asarray(trials, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = betaincinv(np.maximum(k, 1e-300), n - k + 1, 1.0 - confidence)
    out = np.where((k <= 0) | (n <= 0), 0.0, out)
    return float(out) if out.ndim == 0 else out


def clopper_pearson_upper(successes, trials, confidence: float = 0.95) -> float:
    """One-sided exact upper confidence bound of a binomial proportion (1 when all trials succeeded)."""
    from scipy.special import betaincinv

    if trials <= 0 or successes >= trials:
        return 1.0
    return float(betaincinv(successes + 1, trials - successes, confidence))


#: The lower bounds the threshold rule can demand (``choose_thresholds(precision_bound=..., npv_bound=...)``), in the words a saved matcher
#: states them with.
BOUNDS = {
    "clopper-pearson": "one-sided Clopper-Pearson lower confidence bound on the calibration pairs",
    "clustered": ("one-sided Clopper-Pearson lower confidence bound on the calibration pairs' effective number, "
                  "clustered by the product of the new offer (pairs / design effect, Korn-Graubard)"),
    "prediction": ("one-sided Clopper-Pearson lower prediction bound of the rate on a new set of pairs the size of one calibration "
                   "scenario: the clustered bound with the new set's own sampling noise added (effective pairs / (1 + 1 / new set share))"),
}
#: The bounds ``evaluate.calibrate`` (and so ``match train / eval / calibrate``) demands, chosen by leave-one-scenario-out
#: on the 4 kagl-full val scenarios (``benchmarks/matching_bound_loso.py``; docs/matching.md, "Correlated pairs"):
#: clustered ≡ Clopper-Pearson on the accept side there (design effect 1.00) and never narrower; the prediction
#: bound on the reject side raised the held-out NPV floor from 98.93% to 99.06% at 91.3-92.0% decided. (A
#: prediction bound on the accept side certified no small-photo accept cut: 86% decided.)
DEFAULT_PRECISION_BOUND = "clustered"
DEFAULT_NPV_BOUND = "prediction"


def cluster_effective_trials(errors: np.ndarray, clusters: np.ndarray, *, base_m: np.ndarray | None = None,
                             base_e: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design-effect-corrected sample sizes of the growing sets made of the first k pairs of a sequence (k = 0..n).

    ``errors``: per pair in sequence order, is it a wrong decision (a non-match accepted, a match rejected);
    ``clusters``: its cluster code (0..C-1). ``base_m`` / ``base_e``: pairs and errors per cluster already in
    the set before the sequence starts (the other half of a union of two cuts). Returns (pairs, errors,
    effective pairs), each of length n + 1.

    The error rate r = E / N of a set of clustered pairs is a ratio estimator; its variance over clusters
    (linearised, with K clusters holding m_c pairs and e_c errors) is K/(K-1) · Σ(e_c - r m_c)² / N². The design
    effect is that variance over the binomial one, r(1-r)/N, and the effective number of pairs is N / design
    effect (Korn & Graubard 1998: Clopper-Pearson on the effective sample size). Independent pairs (one per
    cluster) give a design effect of K/(K-1) ≈ 1; each pair repeated m times gives m. The design effect is
    floored at 1 (the bound is never narrower than plain Clopper-Pearson) and is 1 where it cannot be
    estimated (no error, or no correct pair, or fewer than two clusters). The sums Σm², Σe², Σem are updated
    pair by pair (adding a pair to a cluster holding m pairs and e errors adds 2m+1, δ(2e+1) and e+δm+δ),
    so every prefix costs O(1)."""
    errors = np.asarray(errors, np.float64)
    clusters = np.asarray(clusters, np.int64)
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    if base_m is None:
        base_m = np.zeros(n_clusters)
        base_e = np.zeros(n_clusters)
    base_m, base_e = np.asarray(base_m, np.float64), np.asarray(base_e, np.float64)
    m_before = base_m[clusters] + _prior_within(clusters, np.ones(len(clusters)))
    e_before = base_e[clusters] + _prior_within(clusters, errors)

    def running(start: float, step: np.ndarray) -> np.ndarray:
        return start + np.r_[0.0, np.cumsum(step)]

    n = running(base_m.sum(), np.ones(len(errors)))
    e = running(base_e.sum(), errors)
    smm = running(float(base_m @ base_m), 2 * m_before + 1)
    see = running(float(base_e @ base_e), errors * (2 * e_before + 1))
    sem = running(float(base_e @ base_m), e_before + errors * m_before + errors)
    k = running(float((base_m > 0).sum()), (m_before == 0).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = e / n
        deff = k / (k - 1) * (see - 2 * r * sem + r * r * smm) / (n * r * (1 - r))
    deff = np.where((e > 0) & (e < n) & (k >= 2) & np.isfinite(deff), np.maximum(deff, 1.0), 1.0)
    return n, e, n / deff


def _prior_within(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per position: the sum of ``values`` at the earlier positions of the same group."""
    out = np.zeros(len(groups))
    if not len(groups):
        return out
    order = np.argsort(groups, kind="stable")
    v = values[order]
    before = np.cumsum(v) - v
    start = np.r_[True, groups[order][1:] != groups[order][:-1]]
    out[order] = before - before[np.flatnonzero(start)][np.cumsum(start) - 1]
    return out


def set_lower_bound(correct: np.ndarray, clusters: np.ndarray | None, confidence: float = 0.95, *,
                    inflation: float = 1.0) -> tuple[float, float]:
    """(lower bound, design effect) of the share of correct decisions in one set of pairs: Clopper-Pearson when
    ``clusters`` is None, else Clopper-Pearson on the design-effect-corrected sample (:func:`cluster_effective_trials`),
    divided further by ``inflation`` (:func:`new_set_inflation`)."""
    correct = np.asarray(correct, bool)
    if not len(correct):
        return float("nan"), 1.0
    if clusters is None:
        return clopper_pearson_lower(int(correct.sum()) / inflation, len(correct) / inflation, confidence), 1.0
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    n, e, n_eff = cluster_effective_trials(~correct, codes)
    rate, deff = 1.0 - e[-1] / n[-1], float(n[-1] / n_eff[-1])
    n_eff = n_eff[-1] / inflation
    return clopper_pearson_lower(rate * n_eff, n_eff, confidence), deff


def new_set_inflation(new_set_share: float) -> float:
    """How much fewer effective pairs a bound on a *new set's* rate has: the new set (``new_set_share`` times the
    calibration pairs) has sampling noise of its own, so the variance of (its rate - the calibration rate) is
    deff · r(1-r) · (1/n + 1/(share · n)), i.e. that of n / (deff · (1 + 1/share)) pairs."""
    if not new_set_share or new_set_share <= 0:
        raise ValueError(f"the new set's share of the calibration pairs must be positive, not {new_set_share!r}")
    return 1.0 + 1.0 / new_set_share


def audit_status(correct: int, n: int, target: float, confidence: float = 0.95) -> dict:
    """What ``n`` audited automatic decisions (``correct`` of them confirmed by people) say about a target rate.

    ``ok``: the lower bound reaches the target; ``alarm``: the upper bound is below it (the automatic region
    is worse than promised, with ``confidence``); ``unproven``: neither (too few audits to tell).
    """
    lower = clopper_pearson_lower(correct, n, confidence) if n else 0.0
    upper = clopper_pearson_upper(correct, n, confidence)
    status = "ok" if n and lower >= target else "alarm" if upper < target else "unproven"
    return {"audited": n, "confirmed": correct, "rate": correct / n if n else float("nan"), "lower_bound": lower,
            "upper_bound": upper, "target": target, "confidence": confidence, "status": status}


def tighten_for_audits(th: Thresholds, accepts: Sequence[tuple[float, bool]], rejects: Sequence[tuple[float, bool]], *,
                       confidence: float = 0.95) -> tuple[Thresholds, list[str]]:
    """Thresholds moved just far enough that the audited automatic decisions they still make are no longer in alarm.

    ``accepts`` / ``rejects``: (score, confirmed by people) of audited automatic accepts / rejects. When the
    audited accepts are in alarm (:func:`audit_status`: precision below target with ``confidence``), the accept
    threshold rises to the lowest cut (just above an audited wrong accept) at which the audited accepts
    still above it are no longer in alarm; likewise the reject cuts fall for rejects. A cut only ever moves
    towards review, and no further than ending the alarm needs: the audits are few, so moving past every
    wrong one would chase noise. The lower bound is then restored as audits at the new cut accumulate
    (``match audit`` says ``ok`` once it reaches the target), or at once by re-calibrating on more labelled
    pairs (``match retrain``).
    Returns the new thresholds and one line per change."""
    from dataclasses import replace

    new, changes = replace(th, notes=list(th.notes)), []

    def alarmed(pairs: list[tuple[float, bool]], target: float) -> bool:
        return audit_status(sum(ok for _, ok in pairs), len(pairs), target, confidence)["status"] == "alarm"

    if alarmed(list(accepts), th.target_precision):
        cuts = sorted({th.accept, *(float(np.nextafter(s, np.inf)) for s, ok in accepts if not ok and s >= th.accept)})
        cut = next(c for c in cuts if not alarmed([a for a in accepts if a[0] >= c], th.target_precision))
        if cut > th.accept:
            changes.append(f"accept threshold {th.accept:.4f} → {cut:.4f}: the {sum(s < cut for s, _ in accepts)} audited accepts below it held "
                           f"{sum(not ok for s, ok in accepts if s < cut)} wrong merges")
            new.accept = cut
    if alarmed(list(rejects), th.target_npv):
        top = max(th.reject, th.reject_nearest if th.reject_nearest is not None else -np.inf)
        cuts = sorted({top, *(float(s) for s, ok in rejects if not ok and s < top)}, reverse=True)
        cut = next(c for c in cuts if not alarmed([r for r in rejects if r[0] < c], th.target_npv))
        if cut < top:
            changes.append(f"reject thresholds capped at {cut:.4f} (were {th.reject:.4f}"
                           + (f" / nearest {th.reject_nearest:.4f}" if th.reject_nearest is not None else "")
                           + f"): the {sum(s >= cut for s, _ in rejects)} audited rejects above it held {sum(not ok for s, ok in rejects if s >= cut)} missed matches")
            new.reject = min(th.reject, cut)
            if th.reject_nearest is not None:
                new.reject_nearest = min(th.reject_nearest, cut)
    if changes:
        new.notes.append("tightened after audits: " + "; ".join(changes))
    return new, changes


def min_pairs_for(target: float, confidence: float = 0.95) -> int:
    """The fewest pairs, all correct, whose lower bound reaches ``target``: target^n ≤ 1 - confidence."""
    return int(math.ceil(math.log(1.0 - confidence) / math.log(target))) if target < 1 else 10**18


def _deff(design_effect: float) -> str:
    return f", design effect {design_effect:.2f}" if design_effect and design_effect > 1.0 else ""


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def choose_thresholds(
    scores: Sequence[float],
    labels: Sequence[bool],
    *,
    target_precision: float = 0.99,
    target_npv: float = 0.99,
    confidence: float | None = 0.95,
    eligible: Sequence[bool] | None = None,
    nearest: Sequence[bool] | None = None,
    precision_bound: str = "clopper-pearson",
    npv_bound: str = "clopper-pearson",
    clusters: Sequence | None = None,
    new_set_share: float | None = None,
) -> Thresholds:
    """The widest automatic regions whose precision / NPV is at least the target with ``confidence``.

    ``accept`` = the lowest observed score t such that the one-sided Clopper-Pearson lower
    bound (at ``confidence``) of precision({s ≥ t}) is ≥ the target; when no such t exists,
    nothing is accepted automatically (accept = +inf) and ``notes`` says why.
    ``reject`` = the highest observed score t (a cut just above it) such that the lower bound
    of NPV({s ≤ t}) is ≥ the target; when none exists nothing is rejected automatically
    (reject = -inf). If the two regions would overlap, the accept threshold wins and reject is
    capped at it. ``confidence=None``: the point estimates themselves must reach the targets
    (the rule before lower bounds). ``eligible``: only these pairs may be accepted (e.g. mutual best
    candidates); the accept cut and its bound are chosen on them, and the thresholds remember it.
    ``nearest``: pairs that are the nearest candidate of one of their offers get a reject cut of their own
    (``reject_nearest``), chosen together with ``reject`` so that the whole rejected set keeps the bound and
    is as large as possible (:func:`_joint_reject_cuts`).
    ``precision_bound`` / ``npv_bound`` (``BOUNDS``): ``"clustered"`` with ``clusters`` (one id per pair, e.g. the
    product of its new offer) is Clopper-Pearson on the design-effect-corrected number of pairs
    (:func:`cluster_effective_trials`), so pairs that share an offer or a product count as the evidence they are,
    not as independent draws. ``"prediction"`` with ``clusters`` and ``new_set_share`` (a deployment's pairs as a
    share of the calibration pairs, e.g. 1/4 for four calibration scenarios of the deployment's size) bounds the
    rate a *new* set of that size will show, not the population rate (:func:`new_set_inflation`).

    Why Clopper-Pearson: it is exact (never below its nominal coverage, unlike the normal or
    bootstrap intervals near 100%, which is where these proportions live), needs no
    resampling, and with few pairs it simply cannot certify 99% (at least
    ``min_pairs_for(0.99)`` = 299 pairs, all correct), which is the honest answer.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    if len(scores) == 0:
        raise ValueError("no labelled pairs to choose thresholds on")
    for bound in (precision_bound, npv_bound):
        if bound not in BOUNDS:
            raise ValueError(f"bound must be one of {', '.join(BOUNDS)}, not {bound!r}")
        if bound != "clopper-pearson" and (clusters is None or len(clusters) != len(scores)):
            raise ValueError(f"the {bound} bound needs a cluster id per calibration pair (e.g. the product of its new offer)")
    codes = None if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()

    def side(bound: str) -> tuple[np.ndarray | None, float]:  # (cluster codes, inflation) of a side's bound
        return (None if bound == "clopper-pearson" else codes), (new_set_inflation(new_set_share) if bound == "prediction" else 1.0)

    (acc_codes, acc_inflation), (rej_codes, rej_inflation) = side(precision_bound), side(npv_bound)
    ok_pair = np.ones(len(scores), bool) if eligible is None else np.asarray(eligible, bool)
    acc_scores, acc_labels = scores[ok_pair], labels[ok_pair]
    order = np.argsort(-acc_scores, kind="stable")
    s, y = acc_scores[order], acc_labels[order]
    # accept: sets {s >= t} for each distinct t, from the top (of the eligible pairs)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a cut can only fall between distinct scores
    prec_stat = _prefix_statistic(y, None if acc_codes is None else acc_codes[ok_pair][order], confidence, acc_inflation)
    ok = last_of_tie & (prec_stat >= target_precision)
    accept = float(s[np.flatnonzero(ok)[-1]]) if ok.any() else float("inf")
    # reject: sets {s <= t}, from the bottom (all pairs)
    order = np.argsort(-scores, kind="stable")[::-1]
    s_up, y_up = scores[order], labels[order]
    last_up = np.r_[s_up[1:] != s_up[:-1], True]
    npv_stat = _prefix_statistic(~y_up, None if rej_codes is None else rej_codes[order], confidence, rej_inflation)
    ok_r = last_up & (npv_stat >= target_npv) & (s_up < accept)
    reject = float(np.nextafter(s_up[np.flatnonzero(ok_r)[-1]], np.inf)) if ok_r.any() else float("-inf")
    reject_nearest = None
    if nearest is not None:
        near = np.asarray(nearest, bool)
        below = scores < accept
        part = (below & ~near, below & near)
        reject, reject_nearest = _joint_reject_cuts(scores[part[0]], labels[part[0]], scores[part[1]], labels[part[1]], target_npv, confidence,
                                                    clusters=None if rej_codes is None else (rej_codes[part[0]], rej_codes[part[1]]),
                                                    inflation=rej_inflation)
    th = Thresholds(accept, reject, target_precision, target_npv, confidence=confidence, mutual_best_only=eligible is not None,
                    reject_nearest=reject_nearest, precision_bound=precision_bound, npv_bound=npv_bound,
                    new_set_share=new_set_share if "prediction" in (precision_bound, npv_bound) else None)
    m = decision_metrics(scores, labels, th, eligible=None if eligible is None else ok_pair, nearest=nearest)
    th.fit_precision, th.fit_npv, th.fit_share_auto, th.fit_pairs = m["precision"], m["npv"], m["share_auto"], len(scores)
    th.fit_accepted, th.fit_rejected = m["accepted"], m["rejected"]
    conf = confidence if confidence is not None else 0.95  # the bound is reported either way
    acc, rej = decision_masks(scores, th, eligible=None if eligible is None else ok_pair, nearest=nearest)
    if m["accepted"]:
        th.fit_precision_lower, th.fit_precision_design_effect = set_lower_bound(labels[acc], None if acc_codes is None else acc_codes[acc], conf, inflation=acc_inflation)
    if m["rejected"]:
        th.fit_npv_lower, th.fit_npv_design_effect = set_lower_bound(~labels[rej], None if rej_codes is None else rej_codes[rej], conf, inflation=rej_inflation)
    why = f"at {confidence:.0%} confidence" if confidence is not None else "even as a point estimate"
    if not math.isfinite(accept):
        th.notes.append(f"no accept threshold: no set of the {len(scores)} calibration pairs ({int(labels.sum())} matching) "
                        f"reaches precision {target_precision:.0%} {why}"
                        + (f" (needs at least {min_pairs_for(target_precision, confidence)} accepted pairs, all correct)" if confidence else "")
                        + "; nothing is accepted automatically, every likely match goes to review")
    if not math.isfinite(reject) and not (reject_nearest is not None and math.isfinite(reject_nearest)):
        th.notes.append(f"no reject threshold: no set of the {len(scores)} calibration pairs reaches NPV {target_npv:.0%} {why}; "
                        "nothing is rejected automatically")
    return th


def _prefix_statistic(correct: np.ndarray, clusters: np.ndarray | None, confidence: float | None, inflation: float = 1.0) -> np.ndarray:
    """Per prefix of a sequence of pairs (the first 1, 2, ... n): the share correct (``confidence`` None), or its
    lower bound: Clopper-Pearson, on the design-effect-corrected number of pairs when ``clusters`` are given,
    divided by ``inflation``."""
    correct = np.asarray(correct, bool)
    if confidence is None:
        return np.cumsum(correct) / np.arange(1, len(correct) + 1)
    if clusters is None:
        return clopper_pearson_lower(np.cumsum(correct) / inflation, np.arange(1, len(correct) + 1) / inflation, confidence)
    n, e, n_eff = cluster_effective_trials(~correct, clusters)
    n_eff = n_eff[1:] / inflation
    return clopper_pearson_lower((1 - e[1:] / n[1:]) * n_eff, n_eff, confidence)


def _joint_reject_cuts(other_s: np.ndarray, other_y: np.ndarray, near_s: np.ndarray, near_y: np.ndarray,
                       target: float, confidence: float | None, grid: int = 400,
                       clusters: tuple[np.ndarray, np.ndarray] | None = None, inflation: float = 1.0) -> tuple[float, float]:
    """(cut for other pairs, cut for nearest pairs): the largest union of {other < cut} and {nearest < cut_nearest}
    whose NPV (its lower bound with ``confidence``) reaches ``target``. The nearest cut is searched on ``grid``
    quantile positions (and every position when there are fewer), the other cut exactly; ``-inf`` rejects none.
    ``clusters`` (cluster codes of the other and the nearest pairs): the bound is the clustered one, with the
    union's design effect (a cluster's pairs on both sides of the split count together); ``inflation`` divides the
    effective number further (:func:`new_set_inflation`)."""

    def cumulative(s: np.ndarray, y: np.ndarray):
        order = np.argsort(s, kind="stable")
        s, neg = s[order], ~y[order]
        n = np.arange(len(s) + 1)
        tn = np.r_[0, np.cumsum(neg)]
        valid = np.ones(len(s) + 1, bool)  # a cut after k pairs must not split tied scores
        valid[1:-1] = s[1:] != s[:-1]
        return s, n, tn, valid, order

    s0, n0, tn0, valid0, order0 = cumulative(other_s, other_y)
    s1, n1, tn1, valid1, order1 = cumulative(near_s, near_y)
    positions = np.flatnonzero(valid1)
    if len(positions) > grid:
        positions = np.unique(positions[np.linspace(0, len(positions) - 1, grid).round().astype(int)])
    best = (0, 0, 0)
    from scipy.special import betainc

    if clusters is not None:
        n_clusters = int(max(clusters[0].max(initial=-1), clusters[1].max(initial=-1))) + 1
        c0, c1 = clusters[0][order0], clusters[1][order1]
        err0, err1 = other_y[order0].astype(np.float64), near_y[order1].astype(np.float64)
    for k1 in positions:
        n, tn = n0 + n1[k1], tn0 + tn1[k1]
        ok = valid0 & (n > 0) & (tn >= target * n)  # the point estimate must reach the target; the bound is below it
        if confidence is not None:  # lower bound ≥ target ⟺ P(Beta(tn, n - tn + 1) ≤ target) ≤ 1 - confidence (no inverse needed)
            idx = np.flatnonzero(ok)
            if clusters is not None:  # the same on the effective sample: tn and n scaled by 1 / design effect
                base_m = np.bincount(c1[:k1], minlength=n_clusters).astype(np.float64)
                base_e = np.bincount(c1[:k1], weights=err1[:k1], minlength=n_clusters)
                _, _, n_eff = cluster_effective_trials(err0, c0, base_m=base_m, base_e=base_e)
                scale = n_eff[idx] / n[idx] / inflation
            else:
                scale = np.full(len(idx), 1.0 / inflation)
            tn_i, n_i = tn[idx] * scale, n[idx] * scale
            ok[idx] = betainc(np.maximum(tn_i, 1e-300), n_i - tn_i + 1, target) <= 1.0 - confidence
        ok = np.flatnonzero(ok)
        if len(ok) and ok[-1] + k1 > best[0]:
            best = (ok[-1] + k1, ok[-1], k1)
    _, k0, k1 = best

    def cut(s: np.ndarray, k: int) -> float:
        return float(np.nextafter(s[k - 1], np.inf)) if k else float("-inf")

    return cut(s0, k0), cut(s1, k1)


def decision_metrics(scores: Sequence[float], labels: Sequence[bool], th: Thresholds, *, total_matches: int | None = None,
                     eligible: Sequence[bool] | None = None, nearest: Sequence[bool] | None = None) -> dict:
    """How the rule does on labelled pairs.

    ``recall`` = matches accepted automatically / all matching pairs (``total_matches``
    when given, e.g. including true matches the candidate search missed).
    """
    acc, rej = decision_masks(scores, th, eligible=eligible, nearest=nearest)
    return rule_metrics(acc, rej, labels, total_matches=total_matches)


def decision_masks(scores: Sequence[float], th: Thresholds, *, eligible: Sequence[bool] | None = None,
                   nearest: Sequence[bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, rejected) per pair under the thresholds; pairs neither go to review."""
    scores = np.asarray(scores, np.float64)
    acc = scores >= th.accept
    if eligible is not None:  # pairs that may not be accepted (not mutual best) go to review instead
        acc &= np.asarray(eligible, bool)
    cut = np.where(np.asarray(nearest, bool), th.reject_cut(True), th.reject) if nearest is not None else th.reject
    return acc, (scores < cut) & ~acc


def rule_metrics(acc: np.ndarray, rej: np.ndarray, labels: Sequence[bool], *, total_matches: int | None = None) -> dict:
    """Precision / recall / F1 of the accepted pairs, NPV of the rejected ones, shares decided and reviewed."""
    labels = np.asarray(labels, bool)
    acc, rej = np.asarray(acc, bool), np.asarray(rej, bool) & ~np.asarray(acc, bool)
    rev = ~acc & ~rej
    tp, fp = int((acc & labels).sum()), int((acc & ~labels).sum())
    tn, fn_auto = int((rej & ~labels).sum()), int((rej & labels).sum())
    matches = int(labels.sum()) if total_matches is None else int(total_matches)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / matches if matches else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    n = max(len(labels), 1)
    return {
        "pairs": len(labels),
        "matching_pairs": int(labels.sum()),
        "accepted": int(acc.sum()),
        "rejected": int(rej.sum()),
        "review": int(rev.sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "npv": tn / (tn + fn_auto) if tn + fn_auto else float("nan"),
        "share_auto": float((acc | rej).sum() / n),
        "share_review": float(rev.sum() / n),
        "review_matches": int((rev & labels).sum()),
    }


def precision_recall_points(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) for every distinct score cut, highest threshold first."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    cut = np.r_[s[1:] != s[:-1], True]
    n = np.arange(1, len(s) + 1)
    total = max(int(labels.sum()), 1)
    return (tp / n)[cut], (tp / total)[cut], s[cut]


def plot_precision_recall(
    curves: dict[str, tuple[Sequence[float], Sequence[bool]]],
    path: str | Path,
    *,
    operating_points: dict[str, tuple[float, float]] | None = None,
    target_precision: float | None = 0.99,
    title: str = "Offer matching: precision / recall of automatic acceptance",
) -> Path:
    """One curve per name from (scores, labels); optional (recall, precision) points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 5.0), dpi=110)
    for name, (scores, labels) in curves.items():
        p, r, _ = precision_recall_points(scores, labels)
        ax.plot(r, p, label=name, lw=1.6)
    for name, (rec, prec) in (operating_points or {}).items():
        ax.plot([rec], [prec], "ko", ms=5)
        right = rec > 0.5
        ax.annotate(name, (rec, prec), textcoords="offset points", xytext=(-6 if right else 6, -14), fontsize=8,
                    ha="right" if right else "left")
    if target_precision is not None:
        ax.axhline(target_precision, color="grey", ls="--", lw=0.8, label=f"target precision {target_precision:.0%}")
    ax.set_xlabel("recall (matching pairs accepted)")
    ax.set_ylabel("precision")
    ax.set_ylim(0.5, 1.005)
    ax.set_xlim(0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_calibration(path: str | Path, calibrator: Calibrator, thresholds: Thresholds, extra: dict | None = None) -> Path:
    path = Path(path)
    data = {"calibrator": calibrator.to_dict(), "thresholds": thresholds.to_dict(), **(extra or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_float))
    tmp.replace(path)
    return path


def load_calibration(path: str | Path) -> tuple[Calibrator, Thresholds, dict]:
    data = json.loads(Path(path).read_text())
    return Calibrator.from_dict(data.pop("calibrator")), Thresholds.from_dict(data.pop("thresholds")), data


def _json_float(value):
    return float(value)
