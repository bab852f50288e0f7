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
  wasteful for the second. The thresholds are cumulative (the precision of *all*
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
        acc = (f"accept ≥ {self.accept:.3f}: precision {_pct(self.fit_precision)} ({level} {_pct(self.fit_precision_lower)}, "
               f"{self.fit_accepted} pairs)") if math.isfinite(self.accept) else "accept: none"
        cut = f"{self.reject:.3f}" + ("" if self.reject_nearest is None else f" (a pair nearest for one of its offers: < {self.reject_nearest:.3f})")
        rej = (f"reject < {cut}: NPV {_pct(self.fit_npv)} ({level} {_pct(self.fit_npv_lower)}, {self.fit_rejected} pairs)"
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

    Why Clopper-Pearson: it is exact (never below its nominal coverage, unlike the normal or
    bootstrap intervals near 100%, which is where these proportions live), needs no
    resampling, and with few pairs it simply cannot certify 99% (at least
    ``min_pairs_for(0.99)`` = 299 pairs, all correct), which is the honest answer.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    if len(scores) == 0:
        raise ValueError("no labelled pairs to choose thresholds on")
    ok_pair = np.ones(len(scores), bool) if eligible is None else np.asarray(eligible, bool)
    acc_scores, acc_labels = scores[ok_pair], labels[ok_pair]
    order = np.argsort(-acc_scores, kind="stable")
    s, y = acc_scores[order], acc_labels[order]
    # accept: sets {s >= t} for each distinct t, from the top (of the eligible pairs)
    tp = np.cumsum(y)
    n_above = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a cut can only fall between distinct scores
    prec_stat = tp / n_above if confidence is None else clopper_pearson_lower(tp, n_above, confidence)
    ok = last_of_tie & (prec_stat >= target_precision)
    accept = float(s[np.flatnonzero(ok)[-1]]) if ok.any() else float("inf")
    # reject: sets {s <= t}, from the bottom (all pairs)
    order = np.argsort(-scores, kind="stable")
    s_up, y_up = scores[order][::-1], labels[order][::-1]
    tn = np.cumsum(~y_up)
    n_below = np.arange(1, len(s_up) + 1)
    last_up = np.r_[s_up[1:] != s_up[:-1], True]
    npv_stat = tn / n_below if confidence is None else clopper_pearson_lower(tn, n_below, confidence)
    ok_r = last_up & (npv_stat >= target_npv) & (s_up < accept)
    reject = float(np.nextafter(s_up[np.flatnonzero(ok_r)[-1]], np.inf)) if ok_r.any() else float("-inf")
    reject_nearest = None
    if nearest is not None:
        near = np.asarray(nearest, bool)
        below = scores < accept
        reject, reject_nearest = _joint_reject_cuts(scores[below & ~near], labels[below & ~near], scores[below & near],
                                                    labels[below & near], target_npv, confidence)
    th = Thresholds(accept, reject, target_precision, target_npv, confidence=confidence, mutual_best_only=eligible is not None,
                    reject_nearest=reject_nearest)
    m = decision_metrics(scores, labels, th, eligible=None if eligible is None else ok_pair, nearest=nearest)
    th.fit_precision, th.fit_npv, th.fit_share_auto, th.fit_pairs = m["precision"], m["npv"], m["share_auto"], len(scores)
    th.fit_accepted, th.fit_rejected = m["accepted"], m["rejected"]
    conf = confidence if confidence is not None else 0.95  # the bound is reported either way
    if m["accepted"]:
        th.fit_precision_lower = clopper_pearson_lower(round(m["precision"] * m["accepted"]), m["accepted"], conf)
    if m["rejected"]:
        th.fit_npv_lower = clopper_pearson_lower(round(m["npv"] * m["rejected"]), m["rejected"], conf)
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


def _joint_reject_cuts(other_s: np.ndarray, other_y: np.ndarray, near_s: np.ndarray, near_y: np.ndarray,
                       target: float, confidence: float | None, grid: int = 400) -> tuple[float, float]:
    """(cut for other pairs, cut for nearest pairs): the largest union of {other < cut} and {nearest < cut_nearest}
    whose NPV (its lower bound with ``confidence``) reaches ``target``. The nearest cut is searched on ``grid``
    quantile positions (and every position when there are fewer), the other cut exactly; ``-inf`` rejects none."""

    def cumulative(s: np.ndarray, y: np.ndarray):
        order = np.argsort(s, kind="stable")
        s, neg = s[order], ~y[order]
        n = np.arange(len(s) + 1)
        tn = np.r_[0, np.cumsum(neg)]
        valid = np.ones(len(s) + 1, bool)  # a cut after k pairs must not split tied scores
        valid[1:-1] = s[1:] != s[:-1]
        return s, n, tn, valid

    s0, n0, tn0, valid0 = cumulative(other_s, other_y)
    s1, n1, tn1, valid1 = cumulative(near_s, near_y)
    positions = np.flatnonzero(valid1)
    if len(positions) > grid:
        positions = np.unique(positions[np.linspace(0, len(positions) - 1, grid).round().astype(int)])
    best = (0, 0, 0)
    from scipy.special import betainc

    for k1 in positions:
        n, tn = n0 + n1[k1], tn0 + tn1[k1]
        ok = valid0 & (n > 0) & (tn >= target * n)  # the point estimate must reach the target; the bound is below it
        if confidence is not None:  # lower bound ≥ target ⟺ P(Beta(tn, n - tn + 1) ≤ target) ≤ 1 - confidence (no inverse needed)
            idx = np.flatnonzero(ok)
            ok[idx] = betainc(np.maximum(tn[idx], 1e-300), n[idx] - tn[idx] + 1, target) <= 1.0 - confidence
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
    scores = np.asarray(scores, np.float64)
    acc = scores >= th.accept
    if eligible is not None:  # pairs that may not be accepted (not mutual best) go to review instead
        acc &= np.asarray(eligible, bool)
    cut = np.where(np.asarray(nearest, bool), th.reject_cut(True), th.reject) if nearest is not None else th.reject
    rej = (scores < cut) & ~acc
    return rule_metrics(acc, rej, labels, total_matches=total_matches)


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
