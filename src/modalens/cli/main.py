"""The ``modalens`` command: index, search, tag, train, eval and the quickstart main job.

Each command is a thin shell over the library; errors a user can fix are
printed as one clear line (exit code 2), never as a traceback.
"""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Callable, Optional

import typer

from .. import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="modalens: fashion search, zero-shot tagging and product matching, offline on a CPU.",
)

INDEX_OPTION = typer.Option(None, "--index", "-i", help="Index folder (default: ~/.cache/modalens/indexes/default).")
MODEL_OPTION = typer.Option("modalens-lite", "--model", "-m", help="Model name or a folder saved by `modalens train`.")


def _user_errors(fn: Callable) -> Callable:
    """Turn the errors a user can act on into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from ..catalog import CatalogError
        from ..index.store import IndexStoreError
        from ..models import ModelNotFoundError
        from ..recipes import ConfigError

        try:
            return fn(*args, **kwargs)
        except (CatalogError, IndexStoreError, ModelNotFoundError, ConfigError, FileNotFoundError, KeyError, ValueError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _parse_filters(filters: list[str]) -> dict[str, list[str] | float] | None:
    where: dict[str, list[str] | float] = {}
    for item in filters:
        if "=" not in item:
            raise ValueError(f"filter {item!r} must look like field=value (for example colour=Blue)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in ("price_min", "price_max"):
            where[key] = float(value)
        else:
            where.setdefault(key, []).extend(v.strip() for v in value.split("|"))  # type: ignore[union-attr]
    return where or None


def _hit_record(hit) -> dict:
    p = hit.product
    return {"id": hit.id, "score": round(hit.score, 4), "title": p.title, "image": p.image, "attributes": p.attributes}


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([_hit_record(h) for h in hits], indent=2))
        return
    if not hits:
        typer.echo("no results")
    for rank, hit in enumerate(hits, 1):
        attrs = ", ".join(f"{v}" for k, v in hit.product.attributes.items() if k in ("colour", "article_type", "gender"))
        typer.echo(f"{rank:>2}. {hit.score:.3f}  {hit.id:<12} {hit.product.title[:60]:<60}  [{attrs}]")


@app.command()
@_user_errors
def index(
    catalogue: str = typer.Argument(..., help="kagl, kagl:test, fashion-mnist[:train], a .csv/.jsonl file, or an image folder."),
    index_dir: Optional[Path] = INDEX_OPTION,
    model: str = MODEL_OPTION,
    limit: Optional[int] = typer.Option(None, help="Index only the first N products."),
    batch_size: int = typer.Option(64, help="Products per committed batch."),
    prune: bool = typer.Option(False, help="Remove indexed products that are no longer in the catalogue."),
) -> None:
    """Embed a catalogue's images into an on-disk index (resumes after an interruption)."""
    from ..catalog import read_catalog
    from ..search import SearchEngine

    catalog = read_catalog(catalogue, limit=limit)
    for err in catalog.errors[:20]:
        typer.echo(f"skipped {err}", err=True)
    if len(catalog.errors) > 20:
        typer.echo(f"... and {len(catalog.errors) - 20} more skipped rows", err=True)
    engine = SearchEngine(index_dir, model)
    report = engine.build(catalog, batch_size=batch_size, prune=prune)
    for pid, reason in engine.index.failures()[:20]:
        typer.echo(f"not indexed {pid}: {reason}", err=True)
    typer.echo(f"{report}; index {engine.index_dir} holds {len(engine.index)} products")


@app.command()
@_user_errors
def search(
    query: Optional[str] = typer.Argument(None, help="Words to search for."),
    image: Optional[Path] = typer.Option(None, "--image", help="Search by a photo (with words too: both count)."),
    k: int = typer.Option(10, "-k", "--top", help="How many results."),
    filters: list[str] = typer.Option([], "--filter", "-f", help="field=value, e.g. gender=Men or colour=Blue|Navy Blue."),
    index_dir: Optional[Path] = INDEX_OPTION,
    model: str = MODEL_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Search the index by words, by a photo, or both."""
    from ..search import SearchEngine

    engine = SearchEngine(index_dir, model, progress=False)
    _print_hits(engine.search(query, image, k=k, where=_parse_filters(filters)), as_json)


@app.command()
@_user_errors
def tag(
    images: list[Path] = typer.Argument(..., help="Image files to tag."),
    labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated labels, e.g. 'dress,shirt,jeans'."),
    top: int = typer.Option(3, help="Labels to show per image."),
    model: str = MODEL_OPTION,
    no_ensemble: bool = typer.Option(False, help="Use one prompt per label instead of the ensemble."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Zero-shot tagging: rank a label set for each image (no labelled data needed)."""
    from ..catalog.images import load_image
    from ..models import create_model
    from ..prompts import ZERO_SHOT_TEMPLATES
    from ..zeroshot import build_classifier

    label_list = [s.strip() for s in labels.split(",") if s.strip()]
    model_ = create_model(model)
    templates = ZERO_SHOT_TEMPLATES[:1] if no_ensemble else ZERO_SHOT_TEMPLATES
    classifier = build_classifier(model_, label_list, templates)
    results = []
    for path in images:
        try:
            embeds = model_.encode_image([load_image(path)])
        except Exception as e:  # one bad file is reported, the others are still tagged
            results.append({"image": str(path), "error": str(e)})
            continue
        ranked = classifier.top_k(embeds, k=min(top, len(label_list)))[0]
        results.append({"image": str(path), "labels": [{"label": l, "score": round(s, 4)} for l, s in ranked]})
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            shown = r.get("error") or ", ".join(f"{x['label']} ({x['score']:.2f})" for x in r["labels"])
            typer.echo(f"{r['image']}: {shown}")
    if any("error" in r for r in results):
        raise typer.Exit(1)


@app.command()
@_user_errors
def train(
    config: Path = typer.Argument(..., help="Training config (YAML or JSON), e.g. configs/modalens-lite.yaml."),
    output: Optional[Path] = typer.Option(None, help="Override the config's output folder."),
) -> None:
    """Train a model from a config file."""
    from ..recipes import load_train_config, run_recipe

    cfg = load_train_config(config)
    if output:
        cfg.output = str(output)
    result = run_recipe(cfg)
    typer.echo(f"best epoch {result.best_epoch} (val score {result.best_score:.4f}) in {result.seconds:.0f}s → {result.output}")


@app.command("eval")
@_user_errors
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


@app.command()
@_user_errors
def quickstart(
    catalogue: Optional[str] = typer.Option(None, help="Catalogue to index (default: KAGL test split if ../shared is present, else Fashion-MNIST)."),
    index_dir: Optional[Path] = INDEX_OPTION,
    limit: Optional[int] = typer.Option(None, help="Index only the first N products."),
) -> None:
    """The main job: index a catalogue with the default model, then search and tag it."""
    from ..quickstart import run_quickstart

    run_quickstart(catalogue, index_dir, limit, echo=typer.echo)


@app.command()
def models() -> None:
    """List the models and towers this install can create."""
    from ..encoders import list_image_towers, list_text_towers
    from ..models import list_models

    typer.echo("models:       " + ", ".join(list_models()))
    typer.echo("image towers: " + ", ".join(list_image_towers()))
    typer.echo("text towers:  " + ", ".join(list_text_towers()))


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(f"modalens {__version__}")
        raise typer.Exit()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
