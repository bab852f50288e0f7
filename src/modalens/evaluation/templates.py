"""Which zero-shot prompt templates help? Each template alone, the ensemble, and the ensemble without each one.

The ``templates`` task (``modalens eval --tasks templates``) classifies the
zero-shot field with many template subsets of one prompt ensemble:

* ``ensemble``: every template (the ``zero-shot`` task's ensemble, same numbers);
* ``single``: each template alone (is one prompt as good as the ensemble?);
* ``leave-one-out``: the ensemble minus each template (does that template pull its weight?).

Every variant gets accuracy and F1 with bootstrap intervals, and a paired
bootstrap interval of its difference from the ensemble (same images, same
resamples). The photos and all (template, label) prompts are embedded once; a
variant is then only a mean over some templates' prompt embeddings, so 2T+1
variants cost little more than one.

Templates can come from a file (:func:`read_templates`): one per line, each
with a ``{label}`` placeholder, so users can evaluate their own prompts.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..prompts import ZERO_SHOT_TEMPLATES, zero_shot_prompts
from ..zeroshot import ZeroShotClassifier
from .bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, Estimate, classification_statistics, fingerprint, paired_difference
from .metrics import classification_metrics
from .tasks import Bootstrap, TaskOutput, _labelled

#: Metrics of every variant (all get intervals); the paired differences from the ensemble cover ``COMPARED``.
METRICS = ("accuracy", "weighted_f1", "macro_f1")
COMPARED = ("accuracy", "weighted_f1")


# ---------------------------------------------------------------- templates: checking and reading


def template_problem(template: str) -> str | None:
    """What is wrong with one zero-shot template (None when it is usable): it must fill ``{label}`` and nothing else."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:  # "Single '}' encountered in format string" and the like
        return f"unbalanced braces ({error}); write {{{{ and }}}} for literal braces"
    unknown = sorted({f"{{{name}}}" for name in names if name != "label"})
    if unknown:
        return f"unknown placeholder{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: the only one is {{label}}"
    if "label" not in names:
        return "no {label} placeholder, so every label would get the same prompt"
    try:
        template.format(label="dress")
    except (ValueError, TypeError) as error:  # a format spec a string cannot take, e.g. {label:d}
        return f"cannot be filled in ({error})"
    return None


def _check_located(located: Sequence[tuple[str, str]], source: str) -> list[str]:
    """The templates of ``(where, template)`` pairs, or a ValueError saying where the first bad or repeated one is."""
    seen: dict[str, str] = {}
    for where, template in located:
        problem = template_problem(template)
        if problem:
            raise ValueError(f"{source}, {where}: {template!r}: {problem}")
        if template in seen:
            raise ValueError(f"{source}, {where}: {template!r} repeats {seen[template]}")
        seen[template] = where
    return [template for _, template in located]


def check_templates(templates: Sequence[str], source: str = "templates") -> list[str]:
    """The templates as a list, or a ValueError naming the first bad one (none at all, bad placeholder, duplicate)."""
    if isinstance(templates, str):  # one template passed bare would be checked letter by letter
        templates = [templates]
    if not templates:
        raise ValueError(f"{source}: no templates (each needs a {{label}} placeholder)")
    return _check_located([(f"template {i}", str(t)) for i, t in enumerate(templates, 1)], source)


def read_templates(path: str | Path) -> list[str]:
    """Zero-shot templates from a text file: one per line (surrounding spaces dropped); blank and ``#`` lines skipped.

    Errors name the file and line, so a typo in a user's prompt list is found
    before any model loads.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"templates file {path} does not exist")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    kept = [(n, line.strip()) for n, line in enumerate(lines, 1)]
    located = [(f"line {n}", text) for n, text in kept if text and not text.startswith("#")]
    if not located:
        raise ValueError(f"templates file {path} is empty: write one template per line, each with {{label}}")
    return _check_located(located, str(path))


# ---------------------------------------------------------------- scoring template subsets


def prompt_embeddings(encoder: CachedEncoder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(labels, templates, dim) text embeddings of every prompt, in one pass through the (cached) text tower."""
    prompts = [prompt for group in zero_shot_prompts(labels, templates) for prompt in group]
    return encoder.text_embeddings(prompts).reshape(len(labels), len(templates), -1)


def subset_classifier(prompt_embeds: np.ndarray, labels: Sequence[str], chosen: Sequence[int]) -> ZeroShotClassifier:
    """The zero-shot classifier of a template subset: as :func:`~modalens.zeroshot.build_classifier` makes it
    (the mean of the chosen prompts per label, normalised), without encoding anything again."""
    weights = prompt_embeds[:, list(chosen)].mean(axis=1)
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    return ZeroShotClassifier(list(labels), weights.astype(np.float32))


def template_variants(templates: Sequence[str]) -> list[dict[str, Any]]:
    """The subsets to score: the ensemble, each template alone, and (with 2+ templates) the ensemble minus each one."""
    everything = list(range(len(templates)))
    variants = [{"key": "ensemble", "kind": "ensemble", "template": None, "chosen": everything}]
    variants += [{"key": f"single/{i}", "kind": "single", "template": t, "chosen": [i]} for i, t in enumerate(templates)]
    if len(templates) > 1:
        variants += [
            {"key": f"leave_one_out/{i}", "kind": "leave-one-out", "template": t, "chosen": [j for j in everything if j != i]}
            for i, t in enumerate(templates)
        ]
    return variants


def _label_set(truth: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    """The zero-shot task's label set: the given labels (deduplicated, blanks dropped) or the truth's distinct values."""
    chosen = sorted(set(truth)) if labels is None else labels
    return list(dict.fromkeys(str(label) for label in chosen if str(label).strip()))


def _scored_row(
    variant: dict[str, Any], truth: list[str], predicted: list[str], ids: str, boot: Bootstrap
) -> tuple[dict[str, Any], dict[str, Estimate]]:
    """One variant's row (metrics with intervals) and the estimates behind its metrics."""
    metrics = classification_metrics(truth, predicted)
    statistics = classification_statistics(truth, predicted)
    estimates = {name: Estimate(metrics[name], statistics[name], len(truth), ids) for name in METRICS}
    row: dict[str, Any] = {"kind": variant["kind"], "template": variant["template"], "templates": len(variant["chosen"])}
    row.update({name: metrics[name] for name in METRICS})
    boot.annotate(row, estimates)
    return row, estimates


def _add_paired_differences(
    rows: list[dict[str, Any]], estimates: dict[str, Estimate], keys: list[str], boot: Bootstrap
) -> None:
    """``row["minus_ensemble"]``: each variant − the ensemble, with its paired bootstrap interval (same images and resamples)."""
    if boot.resamples <= 0:
        return
    for row, key in zip(rows, keys):
        if key != "ensemble":
            row["minus_ensemble"] = {
                name: paired_difference(
                    estimates[f"ensemble/{name}"], estimates[f"{key}/{name}"], boot.resamples, boot.seed, boot.level
                )
                for name in COMPARED
            }


def template_ablation_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    labels: Sequence[str] | None = None,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """Zero-shot classification of ``field`` by the template ensemble, each template alone and each leave-one-out ensemble.

    ``metrics["rows"]`` holds one row per variant (``kind``: ensemble, single,
    leave-one-out; ``template``: the template used alone or left out) with
    accuracy, weighted and macro F1 and their intervals, and for all but the
    ensemble ``minus_ensemble``: the paired difference from the ensemble.
    ``details`` and ``examples`` are accepted for the common task call shape; the rows are the details.
    """
    templates = check_templates(templates)
    products, image_embeds, truth = _labelled(encoder, products, field)
    if not products:
        raise ValueError(f"no product has both an image and a {field!r} label")
    label_set = _label_set(truth, labels)
    if not label_set:
        raise ValueError("the label set is empty")
    prompt_embeds = prompt_embeddings(encoder, label_set, templates)
    boot = Bootstrap(resamples, seed)
    ids = fingerprint([p.id for p in products])
    variants = template_variants(templates)
    out = TaskOutput(
        {"field": field, "labels": len(label_set), "n": len(truth), "classes": len(set(truth)), "templates": list(templates)}
    )
    rows = []
    for variant in variants:
        predicted = subset_classifier(prompt_embeds, label_set, variant["chosen"]).predict(image_embeds)
        row, estimates = _scored_row(variant, truth, predicted, ids, boot)
        rows.append(row)
        out.estimates.update({f"{variant['key']}/{name}": est for name, est in estimates.items()})
    _add_paired_differences(rows, out.estimates, [v["key"] for v in variants], boot)
    out.metrics["rows"] = rows
    return out


def template_ablation(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    labels: Sequence[str] | None = None,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    **options: Any,
) -> dict[str, Any]:
    """The template ablation's metrics (``rows``: ensemble, each template alone, each leave-one-out; with intervals)."""
    return template_ablation_output(encoder, products, field, labels, templates, **options).metrics


def rows_of(results: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The rows of one kind (``ensemble``, ``single``, ``leave-one-out``) from the task's results."""
    return [row for row in results.get("rows", []) if row.get("kind") == kind]


def summary_lines(ablation: dict[str, Any], indent: str = "") -> list[str]:
    """The task's rows as text (for the command line and the benchmark): top-1 of each variant, and its paired
    difference from the ensemble, starred when that interval excludes zero."""
    from .report import fmt_ci

    lines = [f"{indent}zero-shot templates ({ablation['field']}, {ablation['labels']} labels, n = {ablation['n']}): "
             "top-1 [95% CI], minus the ensemble [paired 95% CI]"]  # fmt: skip
    names = {"ensemble": "ensemble of {}", "single": "alone: {!r}", "leave-one-out": "without: {!r}"}
    for row in ablation["rows"]:
        name = names[row["kind"]].format(row["template"] if row["template"] is not None else row["templates"])
        line = f"{row['accuracy']:.3f} {fmt_ci((row.get('ci') or {}).get('accuracy')):<16}"
        d = (row.get("minus_ensemble") or {}).get("accuracy")
        line += f" {d['difference']:+.3f} {fmt_ci(d['ci']):<16}{' *' if d['significant'] else '  '}" if d else " " * 26
        lines.append(f"{indent}  {line}  {name}")
    lines.append(f"{indent}  (* the paired interval excludes zero)")
    return lines
