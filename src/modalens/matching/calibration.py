"""From match scores to decisions at a target precision.

* :class:`Calibrator` maps a raw score (a cosine) to a match probability:
  isotonic regression (default) or Platt scaling, fitted on labelled pairs.
* :func:`choose_thresholds` picks two score thresholds on labelled pairs:
  ``accept`` is the lowest score whose accepted set (score ≥ accept) reaches the
  target precision (default 99%); ``reject`` is the highest score whose rejected
  set (score < reject) reaches the target negative predictive value. Pairs in
  between go to people. The thresholds are cumulative (the precision of *all*
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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

    def decide(self, score: float) -> str:
        if score >= self.accept:
            return "accept"
        if score < self.reject:
            return "reject"
        return "review"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Thresholds:
        return cls(**data)


def choose_thresholds(
    scores: Sequence[float],
    labels: Sequence[bool],
    *,
    target_precision: float = 0.99,
    target_npv: float = 0.99,
) -> Thresholds:
    """The widest automatic regions that meet both targets on these labelled pairs.

    ``accept`` = the lowest observed score t such that precision({s ≥ t}) ≥ target;
    when no such t exists, nothing is accepted automatically (accept = +inf).
    ``reject`` = the highest observed score t (a cut just above it) such that NPV({s ≤ t}) ≥ target;
    when none exists nothing is rejected automatically (reject = -inf). If the two regions
    would overlap, the accept threshold wins and reject is capped at it.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    if len(scores) == 0:
        raise ValueError("no labelled pairs to choose thresholds on")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    # accept: sets {s >= t} for each distinct t, from the top
    tp = np.cumsum(y)
    n_above = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a cut can only fall between distinct scores
    precision = tp / n_above
    ok = last_of_tie & (precision >= target_precision)
    accept = float(s[np.flatnonzero(ok)[-1]]) if ok.any() else float("inf")
    # reject: sets {s <= t}, from the bottom
    s_up, y_up = s[::-1], y[::-1]
    tn = np.cumsum(~y_up)
    n_below = np.arange(1, len(s_up) + 1)
    last_up = np.r_[s_up[1:] != s_up[:-1], True]
    npv = tn / n_below
    ok_r = last_up & (npv >= target_npv) & (s_up < accept)
    reject = float(np.nextafter(s_up[np.flatnonzero(ok_r)[-1]], np.inf)) if ok_r.any() else float("-inf")
    th = Thresholds(accept, reject, target_precision, target_npv)
    m = decision_metrics(scores, labels, th)
    th.fit_precision, th.fit_npv, th.fit_share_auto, th.fit_pairs = m["precision"], m["npv"], m["share_auto"], len(scores)
    return th


def decision_metrics(scores: Sequence[float], labels: Sequence[bool], th: Thresholds, *, total_matches: int | None = None) -> dict:
    """How the rule does on labelled pairs.

    ``recall`` = matches accepted automatically / all matching pairs (``total_matches``
    when given, e.g. including true matches the candidate search missed).
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    acc = scores >= th.accept
    rej = scores < th.reject
    rev = ~acc & ~rej
    tp, fp = int((acc & labels).sum()), int((acc & ~labels).sum())
    tn, fn_auto = int((rej & ~labels).sum()), int((rej & labels).sum())
    matches = int(labels.sum()) if total_matches is None else int(total_matches)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / matches if matches else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    n = max(len(scores), 1)
    return {
        "pairs": len(scores),
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
