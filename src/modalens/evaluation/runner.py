"""Run evaluation tasks for one model (or several, side by side) on one catalogue and collect the results.

``evaluate`` returns an :class:`Evaluation`: the JSON-ready results (what
``results.json`` holds and the report renders) and the bootstrap estimates
behind every headline metric; ``compare`` evaluates several models on the
same products and adds paired-bootstrap differences against the first one.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from .. import __version__
from ..catalog import Catalog, CatalogError, Product, read_catalog
from ..embedding import CachedEncoder
from ..models import load
from ..prompts import ZERO_SHOT_TEMPLATES
from . import tasks as task_functions
from .composition import CATEGORIES as COMPOSITION_CATEGORIES
from .composition import DEFAULT_PAIRS as COMPOSITION_PAIRS
from .composition import composition_output
from .instances import DEFAULT_SCENES as INSTANCE_SCENES
from .instances import instance_retrieval_output
from .bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Estimate,
    paired_difference,
)
from .templates import check_templates, template_ablation_output

TASKS = {
    "retrieval": task_functions.retrieval_output,
    "zero-shot": task_functions.zero_shot_output,
    "templates": template_ablation_output,  # 2T+1 zero-shot variants; asked for by name (see ALL_TASKS)
    "category-retrieval": task_functions.category_retrieval_output,
    "image-retrieval": task_functions.image_retrieval_output,
    "knn": task_functions.knn_output,
    "linear-probe": task_functions.linear_probe_output,
    "composition": composition_output,  # renders and encodes ~1,400 scenes; asked for by name (see ALL_TASKS)
    "instance-retrieval": instance_retrieval_output,  # needs the model's instance decoder; asked for by name
}
#: What ``--tasks all`` (the default) runs. ``templates`` is cheap (1.6 s on kagl:val, 4 s on fashion-mnist:test,
#: warm cache) but left out: it studies the prompts, not the model, and templates are chosen on a validation
#: split, so a default run on a test split should not invite choosing them there. ``composition`` is left out
#: for its cost (rendering and encoding its scenes: a minute or two the first time on a CPU), and so is
#: ``instance-retrieval`` (its scenes, and only a model with an instance decoder can run it).
ALL_TASKS = tuple(task for task in TASKS if task not in ("templates", "composition", "instance-retrieval"))
SCHEMA = "modalens-eval/1"

#: The metrics a report leads with, per task: (path inside the task's results, label).
HEADLINE: dict[str, list[tuple[str, str]]] = {
    "retrieval": [
        ("text_to_image/R@1", "text→image R@1"),
        ("text_to_image/R@5", "text→image R@5"),
        ("text_to_image/R@10", "text→image R@10"),
        ("text_to_image/MRR", "text→image MRR"),
        ("image_to_text/R@1", "image→text R@1"),
        ("image_to_text/R@10", "image→text R@10"),
    ],
    "zero-shot": [
        ("ensemble/accuracy", "zero-shot top-1 (ensemble)"),
        ("ensemble/top5_accuracy", "zero-shot top-5 (ensemble)"),
        ("ensemble/weighted_f1", "zero-shot weighted F1 (ensemble)"),
        ("single_prompt/weighted_f1", "zero-shot weighted F1 (single prompt)"),
    ],
    "category-retrieval": [
        ("{field}/P@1", "category→product P@1 ({field})"),
        ("{field}/P@10", "category→product P@10 ({field})"),
        ("{field}/MRR", "category→product MRR ({field})"),
    ],
    "image-retrieval": [("mAP@{k}", "image→image mAP@{k}"), ("R@1", "image→image R@1")],
    "knn": [("accuracy", "k-NN accuracy"), ("top5_accuracy", "k-NN top-5 accuracy"), ("weighted_f1", "k-NN weighted F1")],
    "linear-probe": [("accuracy", "linear probe accuracy"), ("weighted_f1", "linear probe weighted F1")],
    "composition": [
        ("mean/accuracy", "composition: mean over categories"),
        ("mean/blind_ngram", "composition: blind n-gram baseline (mean)"),
        *((f"categories/{c}/accuracy", f"composition: {c}") for c in COMPOSITION_CATEGORIES),
    ],
    "instance-retrieval": [
        *((f"{d}/{m}/R@{k}", f"{d.replace('_to_', '→').replace('_', ' ')} R@{k} ({m})") for d in ("scene_to_product", "product_to_scene", "text_to_scene") for k in (1, 5, 10) for m in ("instance", "global")),
        ("single_product/text_to_image_R@1", "single-product text→image R@1 (plain catalogue)"),
    ],
}


@dataclass
class EvalSettings:
    """Everything that decides the numbers (all of it is written into results.json)."""

    field: str = "article_type"
    labels_from: str | None = None
    image_view: str | None = None
    text_field: str = "title"
    query_fields: tuple[str, ...] | None = None  # category-retrieval fields (default: ``field``)
    category_template: str = "a photo of {label}"
    map_k: int = 10
    knn_k: int = 21
    knn_temperature: float | None = 0.07  # vote weight exp(cos / T); None: a plain majority (MCIP: T = 0.1)
    train_data: str | None = None  # reference / train set for knn and linear-probe (default: automatic)
    train_limit: int | None = 10_000
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    confidence: float = DEFAULT_LEVEL
    examples: int = 6  # successes and failures shown per task in the report (0: none)
    templates: tuple[str, ...] | None = None  # zero-shot prompt templates (default: prompts.ZERO_SHOT_TEMPLATES)
    templates_from: str | None = None  # the file they were read from, for the record
    composition_pairs: int = COMPOSITION_PAIRS  # symmetric pairs of cases per composition category
    instance_scenes: int = INSTANCE_SCENES  # seeded scenes of instance-retrieval (from the evaluated products)
    instance_decoder: str | None = None  # an instance decoder file (default: the model's own, see models.instance_decoder)

    def __post_init__(self) -> None:
        if self.templates is not None:  # a bad template fails here, not halfway through an evaluation
            self.templates = tuple(check_templates(self.templates))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["query_fields"] = list(self.query_fields or (self.field,))
        out["templates"] = list(self.zero_shot_templates)
        return out

    @property
    def zero_shot_templates(self) -> tuple[str, ...]:
        """The templates both zero-shot tasks use, so their ensembles are the same classifier."""
        return self.templates or ZERO_SHOT_TEMPLATES


@dataclass
class Evaluation:
    results: dict[str, Any]
    estimates: dict[str, Estimate] = field(default_factory=dict)  # "task/metric path" -> Estimate


def _train_set(data: str, catalog: Catalog, settings: EvalSettings) -> tuple[list[Product] | None, list[Product], str]:
    """(train products or None, products to classify, description) for the k-NN and linear-probe tasks.

    An explicit ``train_data`` wins; else ``SOURCE:test`` (or any split other
    than train) uses ``SOURCE:train``; else a catalogue whose own products
    carry a train split uses it against its other products; else None
    (k-NN: leave-one-out, linear probe: an id-hash split).
    """
    limit = settings.train_limit
    source = settings.train_data
    if source is None:
        name, _, split = data.partition(":")
        if split and split != "train":
            source = f"{name}:train"
    if source is not None:
        try:
            train = read_catalog(source, limit=limit).products
        except CatalogError:
            if settings.train_data:  # asked for explicitly: the user must hear about it
                raise
            train = []
        if train:
            capped = f", first {limit}" if limit is not None and len(train) >= limit else ""
            return train, catalog.products, f"{source} ({len(train)} products{capped})"
    splits = {p.split for p in catalog.products}
    if "train" in splits and len(splits - {"train"}) > 0:
        train = [p for p in catalog.products if p.split == "train"][:limit]
        rest = [p for p in catalog.products if p.split != "train"]
        return train, rest, f"this catalogue's train split ({len(train)}) → its other products ({len(rest)})"
    return None, catalog.products, "none"


def evaluate(
    model_name: str,
    data: str,
    tasks: Sequence[str] = ALL_TASKS,
    settings: EvalSettings | None = None,
    *,
    progress: bool = True,
    catalog: Catalog | None = None,
    onnx: bool | None = None,
) -> Evaluation:
    """Evaluate ``model_name`` on the catalogue ``data`` (e.g. ``kagl:test``).

    ``onnx``: None (the default) scores through the model's cached ONNX export when it has one
    (:mod:`modalens.export.cache`: no torch, vectors equal to 1e-5), else PyTorch; True makes the
    export first if missing; False always uses PyTorch.
    """
    from tqdm.auto import tqdm

    settings = settings or EvalSettings()
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
    started = time.time()
    catalog = catalog if catalog is not None else read_catalog(data)
    if not catalog.products:
        raise ValueError(f"{data}: no products to evaluate")
    encoder = CachedEncoder(_scoring_model(model_name, onnx), progress=progress, image_view=settings.image_view)
    _, failures = encoder.image_embeddings(catalog.products)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "model": str(model_name),
        "data": data,
        "products": len(catalog),
        "skipped_rows": len(catalog.errors),
        "image_failures": len(failures),
        "image_view": settings.image_view,
        "settings": settings.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "modalens": __version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "timings": {},
        "examples": {},
    }
    evaluation = Evaluation(results)
    common = {"resamples": settings.resamples, "seed": settings.seed, "details": True, "examples": settings.examples}
    cache: dict[str, Any] = {}
    bar = tqdm(list(tasks), desc=f"eval {model_name}", unit="task", disable=not progress, leave=False)
    for task in bar:
        bar.set_postfix_str(task)
        t0 = time.time()
        out = _run_task(task, encoder, catalog, data, settings, common, cache, model_name)
        results["timings"][task] = round(time.time() - t0, 2)
        results[task] = out.metrics
        if out.examples:
            results["examples"][task] = out.examples
        evaluation.estimates.update({f"{task}/{path}": est for path, est in out.estimates.items()})
    bar.close()
    results["seconds"] = round(time.time() - started, 1)
    # Reading order: what was run, the headline, each task's metrics, then timings and the report's examples.
    meta = (
        "schema",
        "model",
        "data",
        "products",
        "skipped_rows",
        "image_failures",
        "image_view",
        "seconds",
        "created",
        "modalens",
        "machine",
        "settings",
    )
    ordered = {key: results[key] for key in meta}
    ordered["headline"] = headline(results)
    ordered.update({task: results[task] for task in tasks})
    ordered.update(timings=results["timings"], examples=results["examples"])
    evaluation.results = ordered
    return evaluation


def _scoring_model(model_name: str, onnx: bool | None) -> Any:
    """What evaluation embeds with: the cached export's query encoder (numpy towers, ONNX Runtime heads), else the
    PyTorch model. Evaluation does not make an export unless asked (``onnx=True``): comparing training runs
    would export every one of them; ``modalens search``, ``tag`` and ``index`` make the export of a model they use."""
    if onnx is False:
        return load(model_name).model
    from ..export.cache import query_handle

    handle = query_handle(model_name, make=bool(onnx))
    return handle.query_encoder if handle.torch_free else handle.model


def _run_task(
    task: str, encoder: CachedEncoder, catalog: Catalog, data: str, settings: EvalSettings, common: dict, cache: dict,
    model_name: str = "",
) -> task_functions.TaskOutput:
    products = catalog.products
    if task == "instance-retrieval":
        from ..instances import InstanceEncoder

        instance_encoder = InstanceEncoder.for_model(model_name, decoder_file=settings.instance_decoder)
        instance_encoder.encoder.progress = encoder.progress
        return instance_retrieval_output(encoder, products, instance_encoder, scenes=settings.instance_scenes, **common)
    if task == "retrieval":
        return task_functions.retrieval_output(encoder, products, settings.text_field, **common)
    if task in ("zero-shot", "templates"):
        if "labels" not in cache:  # the two zero-shot tasks share one label set (read once)
            cache["labels"] = _zero_shot_labels(settings)
        run = task_functions.zero_shot_output if task == "zero-shot" else template_ablation_output
        return run(encoder, products, settings.field, cache["labels"], settings.zero_shot_templates, **common)
    if task == "category-retrieval":
        fields_ = settings.query_fields or (settings.field,)
        return task_functions.category_retrieval_output(encoder, products, fields_, settings.category_template, **common)
    if task == "image-retrieval":
        return task_functions.image_retrieval_output(encoder, products, settings.field, settings.map_k, **common)
    if "train_set" not in cache:  # k-NN, the linear probe and composition's blind baseline share one train set (read once)
        cache["train_set"] = _train_set(data, catalog, settings)
    train, test, described = cache["train_set"]
    if task == "composition":
        out = composition_output(encoder, test, train, pairs=settings.composition_pairs, **common)
        out.metrics["blind_fitted_on"] = (
            f"grounded captions of {described}" if train else "grounded captions of the evaluated products (no train set)"
        )
        return out
    if task == "knn":
        out = task_functions.knn_output(encoder, test, settings.field, settings.knn_k, train, settings.knn_temperature, **common)
    else:
        out = task_functions.linear_probe_output(encoder, test, settings.field, train, **common)
    out.metrics["train_set"] = described
    return out


def _zero_shot_labels(settings: EvalSettings) -> list[str] | None:
    """The zero-shot label set: ``labels_from``'s values of the field, or None (the evaluated products' own values)."""
    if not settings.labels_from:
        return None
    return sorted({p.get(settings.field) for p in read_catalog(settings.labels_from)} - {""})


def _lookup(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def headline(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's lead table: one row per headline metric with its interval and sample sizes."""
    rows = []
    settings = results.get("settings", {})
    for task, entries in HEADLINE.items():
        if task not in results:
            continue
        fields_ = (
            settings.get("query_fields") or [settings.get("field", "article_type")] if task == "category-retrieval" else [None]
        )
        for field_name in fields_:
            for path, label in entries:
                fmt = {"field": field_name, "k": _lookup(results, f"{task}/k") or settings.get("map_k", 10)}
                path, label = path.format(**fmt), label.format(**fmt)
                metric = path.rsplit("/", 1)[-1]
                group = _lookup(results, f"{task}/{path.rsplit('/', 1)[0]}") if "/" in path else results[task]
                if not isinstance(group, dict) or metric not in group:
                    continue
                rows.append(
                    {
                        "task": task,
                        "metric": f"{task}/{path}",
                        "label": label,
                        "value": group[metric],
                        "ci": (group.get("ci") or {}).get(metric),
                        "n": group.get("queries") or group.get("n"),
                        "gallery": group.get("gallery"),
                    }
                )
    return rows


def run_evaluation(
    model_name: str,
    data: str,
    tasks: Sequence[str] = ("retrieval", "zero-shot"),
    *,
    field: str = "article_type",
    labels_from: str | None = None,
    image_view: str | None = None,
    progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate ``model_name`` on ``data``; returns the JSON-ready results dict (see :func:`evaluate`)."""
    chosen = EvalSettings(field=field, labels_from=labels_from, image_view=image_view, **settings)
    return evaluate(model_name, data, tasks, chosen, progress=progress).results


def compare(
    model_names: Sequence[str],
    data: str,
    tasks: Sequence[str] = ALL_TASKS,
    settings: EvalSettings | None = None,
    *,
    progress: bool = True,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """Evaluate several models on the same products; differences (each model − the first) by paired bootstrap."""
    if len(model_names) < 2:
        raise ValueError("--compare needs at least two models")
    settings = settings or EvalSettings()
    started = time.time()
    catalog = catalog if catalog is not None else read_catalog(data)
    runs = [evaluate(name, data, tasks, settings, progress=progress, catalog=catalog) for name in model_names]
    base = runs[0]
    differences = []
    for run in runs[1:]:
        for row in base.results["headline"]:
            a, b = base.estimates.get(row["metric"]), run.estimates.get(row["metric"])
            if a is None or b is None:
                continue
            entry = {"metric": row["metric"], "label": row["label"], "a": base.results["model"], "b": run.results["model"],
                     "value_a": a.value, "value_b": b.value, "n": a.n, "gallery": row.get("gallery")}  # fmt: skip
            try:
                entry.update(paired_difference(a, b, settings.resamples, settings.seed, settings.confidence))
                entry["paired"] = True
            except ValueError:  # not the same examples (e.g. different image failures): no paired interval
                entry.update(difference=b.value - a.value, ci=None, significant=None, paired=False)
            differences.append(entry)
    return {
        "schema": SCHEMA,
        "comparison": {
            "models": [str(m) for m in model_names],
            "data": data,
            "baseline": str(model_names[0]),
            "differences": differences,
        },
        "runs": [run.results for run in runs],
        "seconds": round(time.time() - started, 1),
    }
