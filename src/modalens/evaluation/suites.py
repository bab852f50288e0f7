"""Evaluation suites: several catalogues, one table, every model side by side with paired differences.

A model that only knows one catalogue's packshots looks good on that
catalogue's test split. Users meet it on other photos, so what decides which
model ships is a scoreboard of out-of-domain sets next to the in-domain one.
``generalisation`` is that scoreboard, on test splits, to report; its twin
``generalisation-val`` uses validation data only (Fashion-MNIST *train*, KAGL
val) and is the one to choose with, so no test set is ever tuned on.

``image-retrieval`` (and ``image-retrieval-val``) is MCIP's scoreboard: image→image
mAP@10 and R@1, weighted k-NN (k = 21, T = 0.1) top-1 and top-5, the mixed
``fashion-gpr`` set (mAP over the whole gallery), and the text side (zero-shot,
text→image R@1/5/10) that image fine-tuning must not lose.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

from ..catalog import Product, read_catalog
from .report import fmt_ci
from .runner import SCHEMA, EvalSettings, compare, evaluate


@dataclass(frozen=True)
class SuiteItem:
    """One row group of a scoreboard: a catalogue, the tasks run on it, and how it is looked at."""

    data: str
    label: str
    tasks: tuple[str, ...] = ("zero-shot", "retrieval")
    image_view: str | None = None  # evaluate on a view of every photo (a shift the model must survive)
    labels_from: str | None = None  # zero-shot label set (default: the evaluated products' own labels)
    limit: int | None = None  # the first N products only
    field: str | None = None  # the label field (default: the settings', article_type)
    map_k: int | None = None  # image→image mAP@k; 0: the whole gallery (GPR's mAP)


#: The scoreboard's metrics, in order: (metric key in the evaluation's headline, a pattern, and a short name).
SCOREBOARD_METRICS: tuple[tuple[str, str], ...] = (
    ("zero-shot/ensemble/weighted_f1", "zero-shot wF1"),
    ("zero-shot/ensemble/accuracy", "zero-shot top-1"),
    ("retrieval/text_to_image/R@1", "title→image R@1"),
    ("retrieval/text_to_image/R@10", "title→image R@10"),
)

#: MCIP's scoreboard: the image side first, then what the text side must keep.
IMAGE_RETRIEVAL_METRICS: tuple[tuple[str, str], ...] = (
    ("image-retrieval/mAP@*", "image→image mAP@k"),
    ("image-retrieval/R@1", "image→image R@1"),
    ("knn/accuracy", "k-NN top-1"),
    ("knn/top5_accuracy", "k-NN top-5"),
    ("zero-shot/ensemble/accuracy", "zero-shot top-1"),
    ("retrieval/text_to_image/R@1", "title→image R@1"),
    ("retrieval/text_to_image/R@5", "title→image R@5"),
    ("retrieval/text_to_image/R@10", "title→image R@10"),
)


@dataclass(frozen=True)
class Suite:
    """A named scoreboard: its items, the metrics its table shows, and settings it fixes (``EvalSettings`` fields)."""

    items: tuple[SuiteItem, ...]
    metrics: tuple[tuple[str, str], ...] = SCOREBOARD_METRICS
    settings: dict[str, Any] = field(default_factory=dict)

_PHOTO_LIKE_TEST = "photo-like:2000"  # seeds no training config uses (training draws from 0 up)
_PHOTO_LIKE_VAL = "photo-like:1000"

_IMAGE_TASKS = ("image-retrieval", "knn", "zero-shot", "retrieval")
_MCIP_SETTINGS = {"knn_k": 21, "knn_temperature": 0.1}

SUITES: dict[str, Suite] = {
    "generalisation": Suite((
        SuiteItem("fashion-mnist:test", "Fashion-MNIST test (28 px grey, 10 classes)", ("zero-shot",)),
        SuiteItem("kagl:test", "KAGL test (224 px packshots)"),
        SuiteItem("kagl-full:test", "kagl-full test (60×80 px, every type)", labels_from="kagl-full"),
        SuiteItem("kagl:test", "KAGL test as photo-like views", image_view=_PHOTO_LIKE_TEST),
    )),
    "generalisation-val": Suite((
        SuiteItem("fashion-mnist:train", "Fashion-MNIST train, first 10k", ("zero-shot",), limit=10_000),
        SuiteItem("kagl:val", "KAGL val (224 px packshots)"),
        SuiteItem("kagl-full:val", "kagl-full val (60×80 px, every type)", labels_from="kagl-full"),
        SuiteItem("kagl:val", "KAGL val as photo-like views", image_view=_PHOTO_LIKE_VAL),
    )),
    "image-retrieval": Suite((
        SuiteItem("kagl:test", "KAGL test (224 px packshots)", _IMAGE_TASKS),
        SuiteItem("kagl-full:test", "kagl-full test (60×80 px, every type)", _IMAGE_TASKS, labels_from="kagl-full"),
        SuiteItem("fashion-mnist:test", "Fashion-MNIST test (28 px grey)", ("image-retrieval", "knn", "zero-shot")),
        SuiteItem("fashion-gpr:test", "fashion-gpr test (GPR-style mix, mAP over all)", ("image-retrieval",), field="retrieval_class", map_k=0),
    ), IMAGE_RETRIEVAL_METRICS, _MCIP_SETTINGS),
    "image-retrieval-val": Suite((
        SuiteItem("kagl:val", "KAGL val (224 px packshots)", _IMAGE_TASKS),
        SuiteItem("kagl-full:val", "kagl-full val (60×80 px, every type)", _IMAGE_TASKS, labels_from="kagl-full"),
        SuiteItem("fashion-mnist:train", "Fashion-MNIST train, first 10k", ("image-retrieval", "zero-shot"), limit=10_000),
        SuiteItem("fashion-gpr:val", "fashion-gpr val (GPR-style mix, mAP over all)", ("image-retrieval",), field="retrieval_class", map_k=0),
    ), IMAGE_RETRIEVAL_METRICS, _MCIP_SETTINGS),
}  # fmt: skip


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]


def suite_items(name: str, extra: Sequence[str | SuiteItem] = ()) -> list[SuiteItem]:
    """A named suite's items, plus any catalogue the user adds (a name: zero-shot and title→image on it)."""
    return list(get_suite(name).items) + [item if isinstance(item, SuiteItem) else SuiteItem(item, item) for item in extra]


def extra_item(data: str, products: Sequence[Product], field: str = "article_type") -> SuiteItem:
    """A user's catalogue as a suite item, with the tasks its products can be scored on (known before
    minutes of evaluation, not after): zero-shot needs ``field`` labels, title→image needs titles."""
    with_photo = [p for p in products if p.image]
    tasks = tuple(task for task, needed in (("zero-shot", field), ("retrieval", "title")) if any(p.get(needed) for p in with_photo))
    if not tasks:
        raise ValueError(f"{data}: no product has both a photo and a {field!r} label or a title, so nothing can be scored")
    return SuiteItem(data, data, tasks)


def run_suite(
    models: Sequence[str],
    items: Sequence[SuiteItem],
    settings: EvalSettings | None = None,
    *,
    metrics: Sequence[tuple[str, str]] = SCOREBOARD_METRICS,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every model on every item; each model after the first is compared with the first (paired)."""
    settings = settings or EvalSettings()
    started = time.time()
    groups = []
    for item in items:
        catalog = read_catalog(item.data, limit=item.limit)
        chosen = replace(settings, image_view=item.image_view, labels_from=item.labels_from, field=item.field or settings.field)
        if item.map_k is not None:
            chosen = replace(chosen, map_k=item.map_k or max(1, len(catalog) - 1))
        if len(models) > 1:
            result = compare(models, item.data, item.tasks, chosen, progress=progress, catalog=catalog)
            runs, differences = result["runs"], result["comparison"]["differences"]
        else:
            runs, differences = [evaluate(models[0], item.data, item.tasks, chosen, progress=progress, catalog=catalog).results], []
        groups.append({"item": asdict(item), "products": len(catalog), "rows": _rows(runs, differences, metrics)})
    return {"schema": SCHEMA, "suite": [g["item"] for g in groups], "models": [str(m) for m in models],
            "groups": groups, "seconds": round(time.time() - started, 1)}  # fmt: skip


def _rows(runs: list[dict[str, Any]], differences: list[dict[str, Any]], metrics: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per scoreboard metric (a headline key or pattern): each model's value and interval, and each later model's
    paired difference."""
    rows = []
    for pattern, name in metrics:
        keys = [r["metric"] for r in runs[0]["headline"] if fnmatch.fnmatchcase(r["metric"], pattern)]
        for metric in keys:
            cells = []
            for run in runs:
                found = next((r for r in run["headline"] if r["metric"] == metric), None)
                cells.append(None if found is None else {"value": found["value"], "ci": found.get("ci"), "n": found.get("n"), "gallery": found.get("gallery")})
            diffs = [
                {"model": d["b"], "difference": d["difference"], "ci": d.get("ci"), "significant": d.get("significant")}
                for d in differences
                if d["metric"] == metric
            ]
            shown = name.replace("@k", "@" + metric.rsplit("@", 1)[-1]) if "@k" in name else name
            rows.append({"metric": metric, "name": shown, "values": cells, "differences": diffs})
    return rows


def scoreboard_markdown(results: dict[str, Any]) -> str:
    """The scoreboard as one Markdown table: a row per set and metric, a column per model, then the differences."""
    models = results["models"]
    short = [m.rstrip("/").rsplit("/", 1)[-1] for m in models]
    head = ["set", "metric", *short, *[f"{s} − {short[0]}" for s in short[1:]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in results["groups"]:
        item = group["item"]
        label = f"{item['label']} (n = {group['products']})"
        for row in group["rows"]:
            cells = [label, row["name"]]
            for value in row["values"]:
                cells.append("–" if value is None else f"{value['value']:.3f} {fmt_ci(value.get('ci'))}".strip())
            for diff in row["differences"]:
                mark = " *" if diff.get("significant") else ""
                cells.append(f"{diff['difference']:+.3f} {fmt_ci(diff.get('ci'))}{mark}".strip())
            cells += [""] * (len(head) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
            label = ""
    if len(models) > 1:
        lines.append("")
        lines.append("Intervals: 95% bootstrap; differences are paired on the same products (* the interval excludes 0).")
    return "\n".join(lines) + "\n"


__all__ = ["SUITES", "Suite", "SuiteItem", "SCOREBOARD_METRICS", "IMAGE_RETRIEVAL_METRICS", "extra_item", "get_suite", "run_suite", "scoreboard_markdown", "suite_items"]
