"""`modalens train CONFIG`: run a training recipe from a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import PROGRESS_OPTION, user_errors


@user_errors
def train(
    config: Path = typer.Argument(..., help="Training config (YAML or JSON), e.g. configs/modalens-photo.yaml."),
    output: Optional[Path] = typer.Option(None, help="Override the config's output folder."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from its checkpoint, exactly."),
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Train a model from a config file."""
    from ..progress import show_progress
    from ..recipes import load_train_config, run_recipe

    cfg = load_train_config(config)
    if output:
        cfg.output = str(output)
    result = run_recipe(cfg, progress=show_progress(progress), resume=resume)
    typer.echo(f"best epoch {result.best_epoch} (val score {result.best_score:.4f}) in {result.seconds:.0f}s → {result.output}")
