"""The report's figures: matplotlib (Agg) drawn to PNG and returned as ``data:`` URIs, so the HTML stays one file.

Each function takes the plain numbers from ``results.json`` and returns a
data URI, or None when matplotlib is not installed (the report then says so
and shows its tables alone).
"""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np

BLUE, LIGHT, GREEN, RED, GREY = "#2563eb", "#93c5fd", "#16a34a", "#dc2626", "#6b7280"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "figure.dpi": 100,
            "svg.fonttype": "none",
        }
    )
    return plt


def _encode(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short(label: str, width: int = 22) -> str:
    label = str(label)
    return label if len(label) <= width else label[: width - 1] + "…"


def confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]], max_classes: int = 25, title: str = "") -> str | None:
    """Row-normalised confusion matrix of the ``max_classes`` first labels (the caller orders them by support)."""
    if not available() or not labels:
        return None
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)[:max_classes, :max_classes]
    labels = list(labels)[:max_classes]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(3.6, 0.2 * len(labels) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), [_short(x) for x in labels], rotation=90)
    ax.set_yticks(range(len(labels)), [_short(x) for x in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 12:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        int(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    total = len(list(matrix))
    subset = f"\n({len(labels)} largest of {total} classes)" if total > len(labels) else ""
    ax.set_title((title or "confusion matrix (row-normalised)") + subset)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _encode(fig)


def class_bars(
    per_class: dict[str, dict[str, float]], metric: str = "accuracy", title: str = "", max_classes: int = 40
) -> str | None:
    """Horizontal bars of a per-class metric (the ``max_classes`` largest classes), worst at the bottom, with class sizes."""
    if not available() or not per_class:
        return None
    plt = _pyplot()
    items = sorted(per_class.items(), key=lambda kv: -kv[1].get("n", 0))[:max_classes]
    items.sort(key=lambda kv: kv[1][metric])
    names = [f"{_short(k)} ({v.get('n', '?')})" for k, v in items]
    values = [v[metric] for _, v in items]
    fig, ax = plt.subplots(figsize=(6.2, max(2.0, 0.22 * len(items) + 0.8)))
    colours = [plt.cm.RdYlGn(0.15 + 0.7 * v) for v in values]
    ax.barh(range(len(items)), values, color=colours, height=0.75)
    ax.set_yticks(range(len(items)), names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(metric)
    ax.axvline(float(np.mean(values)), color=GREY, lw=1, ls="--", label="mean of these classes")
    ax.legend(loc="lower right", frameon=False, fontsize=7)
    more = len(per_class) - len(items)
    ax.set_title((title or f"per-class {metric}") + (f"  ({len(items)} largest of {len(per_class)} classes)" if more > 0 else ""))
    return _encode(fig)


def recall_curves(curves: dict[str, Sequence[float]], gallery: int | None = None) -> str | None:
    """Recall@k against k (log scale) for each direction."""
    curves = {k: v for k, v in curves.items() if v}
    if not available() or not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 3.2))
    for (name, values), colour in zip(curves.items(), (BLUE, GREEN, RED, GREY)):
        ks = np.arange(1, len(values) + 1)
        ax.plot(ks, values, color=colour, lw=2, label=name)
        for k in (1, 5, 10):
            if k <= len(values):
                ax.plot([k], [values[k - 1]], "o", color=colour, ms=4)
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 20, 50], ["1", "2", "5", "10", "20", "50"])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    ax.set_title("Recall@k" + (f" (gallery {gallery})" if gallery else ""))
    return _encode(fig)


def intervals(rows: Sequence[dict[str, Any]], title: str = "", zero_line: bool = False, xlabel: str = "") -> str | None:
    """Dot-and-whisker chart: one row per metric (``label``, ``value``, ``ci``); a zero line for differences."""
    rows = [r for r in rows if r.get("value") is not None and np.isfinite(r["value"])]
    if not available() or not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 0.32 * len(rows) + 1.0))
    for i, row in enumerate(reversed(rows)):
        lo, hi = row.get("ci") or (row["value"], row["value"])
        colour = BLUE
        if zero_line:
            colour = GREEN if lo > 0 else RED if hi < 0 else GREY
        ax.plot([lo, hi], [i, i], color=colour, lw=2.5, alpha=0.6, solid_capstyle="round")
        ax.plot([row["value"]], [i], "o", color=colour, ms=5)
    ax.set_yticks(range(len(rows)), [_short(r["label"], 40) for r in reversed(rows)])
    if zero_line:
        ax.axvline(0, color="black", lw=0.8)
    else:
        ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _encode(fig)



def _interval(row: dict[str, Any], metric: str) -> tuple[float, float]:
    """A row's interval for ``metric``, or the point itself when there is none (no resamples)."""
    ci = (row.get("ci") or {}).get(metric)
    return (ci[0], ci[1]) if ci else (row[metric], row[metric])


def _bars_with_whiskers(ax, positions: Sequence[float], rows: Sequence[dict[str, Any]], metric: str, **bar) -> None:
    values = np.array([row[metric] for row in rows])
    cis = np.array([_interval(row, metric) for row in rows]).reshape(-1, 2)
    whiskers = np.clip(np.stack([values - cis[:, 0], cis[:, 1] - values]), 0, None)
    ax.barh(positions, values, xerr=whiskers, error_kw={"ecolor": "#374151", "capsize": 2.5, "lw": 1}, **bar)


def template_bars(
    singles: Sequence[dict[str, Any]],
    leave_one_out: Sequence[dict[str, Any]],
    ensemble: dict[str, Any],
    metric: str = "accuracy",
    title: str = "",
) -> str | None:
    """Per template, its ``metric`` alone (and the ensemble's without it), with 95% whiskers; the full ensemble as a line.

    Rows pair up by their ``template`` text; the best template alone is at the top.
    """
    if not available() or not singles:
        return None
    plt = _pyplot()
    rows = sorted(singles, key=lambda row: row[metric])  # barh draws bottom-up: best on top
    without = {row["template"]: row for row in leave_one_out}
    paired = [without[row["template"]] for row in rows] if without and all(r["template"] in without for r in rows) else []
    height = 0.38 if paired else 0.7
    ys = np.arange(len(rows), dtype=float)
    fig, ax = plt.subplots(figsize=(7.2, (0.5 if paired else 0.3) * len(rows) + 1.4))
    alone_at = ys + height / 2 if paired else ys
    _bars_with_whiskers(ax, alone_at, rows, metric, height=height, color=BLUE, label="this template alone")
    if paired:
        _bars_with_whiskers(ax, ys - height / 2, paired, metric, height=height, color=LIGHT, label="ensemble without it")
    lo, hi = _interval(ensemble, metric)
    ax.axvspan(lo, hi, color=GREY, alpha=0.15, lw=0)
    ax.axvline(ensemble[metric], color=GREY, ls="--", lw=1.2, label=f"full ensemble {ensemble[metric]:.3f} (shaded: 95% CI)")
    ax.set_yticks(ys, [_short(row["template"], 64) for row in rows], fontsize=8)
    bounds = [lo, hi] + [bound for row in [*rows, *paired] for bound in _interval(row, metric)]
    start = max(0.0, float(np.floor((min(bounds) - 0.05) * 20) / 20))  # zoom in: the differences are a few points
    ax.set_xlim(start, min(1.0, float(np.ceil((max(bounds) + 0.02) * 20) / 20)))
    ax.set_xlabel(metric.replace("_", " ") + (f" (axis starts at {start:.2f})" if start else ""))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=7)  # above the bars, clear of them
    ax.set_title(title or f"zero-shot {metric.replace('_', ' ')} by prompt template", pad=22)
    return _encode(fig)
