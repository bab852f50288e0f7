"""Run a list of evaluation tasks for one model on one catalogue and collect the results."""

from __future__ import annotations

import platform
import time
from typing import Any, Sequence

from ..catalog import read_catalog
from ..embedding import CachedEncoder
from ..models import create_model
from . import tasks as task_functions

TASKS = {"retrieval": task_functions.retrieval, "zero-shot": task_functions.zero_shot}


def run_evaluation(
    model_name: str,
    data: str,
    tasks: Sequence[str] = ("retrieval", "zero-shot"),
    *,
    field: str = "article_type",
    labels_from: str | None = None,
    image_view: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model_name`` on the catalogue ``data`` (e.g. ``kagl:test``); returns a JSON-ready dict."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {sorted(TASKS)}")
    started = time.time()
    catalog = read_catalog(data)
    encoder = CachedEncoder(create_model(model_name), progress=progress, image_view=image_view)
    results: dict[str, Any] = {
        "model": model_name,
        "data": data,
        "products": len(catalog),
        "skipped_rows": len(catalog.errors),
        "image_view": image_view,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    for task in tasks:
        if task == "zero-shot":
            labels = sorted({p.get(field) for p in read_catalog(labels_from)} - {""}) if labels_from else None
            results[task] = TASKS[task](encoder, catalog.products, field=field, labels=labels)
        else:
            results[task] = TASKS[task](encoder, catalog.products)
    results["seconds"] = round(time.time() - started, 1)
    return results
