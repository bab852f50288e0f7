"""`modalens eval`: evaluate a model on a catalogue and write the results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import MODEL_OPTION, user_errors


@user_errors
def evaluate(
    data: str = typer.Option("kagl:test", "--data", "-d", help="Catalogue (with :split), e.g. kagl:test or fashion-mnist."),
    model: str = MODEL_OPTION,
    tasks: str = typer.Option("retrieval,zero-shot", help="Comma-separated: retrieval, zero-shot."),
    field: str = typer.Option("article_type", help="Label field for zero-shot classification."),
    labels_from: Optional[str] = typer.Option(None, help="Take the zero-shot label set from this catalogue (default: the evaluated products' labels)."),
    image_view: Optional[str] = typer.Option(None, help="Evaluate on a view of each image, e.g. invert (see encoders/views.py)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results.json here."),
) -> None:
    """Evaluate a model: retrieval Recall@K and zero-shot accuracy / weighted F1."""
    from ..evaluation.runner import run_evaluation

    task_list = [t.strip() for t in tasks.split(",")]
    results = run_evaluation(model, data, task_list, field=field, labels_from=labels_from, image_view=image_view)
    text = json.dumps(results, indent=2)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
    typer.echo(text)
