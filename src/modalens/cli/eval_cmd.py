"""`modalens eval` (evaluate a model, or several side by side, and write results.json + an HTML report)
and `modalens leaderboard` (a Markdown table from results files)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import MODEL_OPTION, PROGRESS_OPTION, user_errors

TASKS_HELP = (
    "Comma-separated, or 'all': retrieval, zero-shot, category-retrieval, image-retrieval, knn, linear-probe; "
    "templates (which zero-shot prompt templates help), composition (attribute binding and layout on seeded "
    "scenes, see docs/composition.md) and instance-retrieval (products inside multi-product scenes: the model's "
    "instance decoder against its global embedding, see docs/instances.md) run only when named."
)


def _task_list(tasks: str) -> list[str]:
    from ..evaluation.runner import ALL_TASKS, TASKS

    chosen = [t.strip() for t in tasks.split(",") if t.strip()]
    if not chosen or chosen == ["all"]:
        return list(ALL_TASKS)
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {', '.join(TASKS)} (or all)")
    return chosen


def _summary_lines(results: dict) -> list[str]:
    from ..evaluation.report import fmt_ci

    lines = [f"{results['model']} on {results['data']}: {results['products']} products, {results['seconds']} s"]
    width = max((len(r["label"]) for r in results.get("headline", [])), default=10)
    for row in results.get("headline", []):
        sizes = ""
        if row.get("gallery") is not None:
            sizes = f"{row['n']} queries, gallery {row['gallery']}"
        elif row.get("n") is not None:
            sizes = f"n = {row['n']}"
        value = "–" if row["value"] is None else f"{row['value']:.3f}"
        lines.append(f"  {row['label']:<{width}}  {value}  {fmt_ci(row.get('ci')):<16}  {sizes}")
    if "templates" in results:
        from ..evaluation.templates import summary_lines

        lines += summary_lines(results["templates"], indent="  ")
    return lines


def _comparison_lines(comparison: dict) -> list[str]:
    from ..evaluation.report import fmt_ci

    lines = []
    width = max((len(d["label"]) for d in comparison["differences"]), default=10)
    for d in comparison["differences"]:
        mark = "" if d.get("significant") is None else ("  *" if d["significant"] else "")
        lines.append(f"  {d['label']:<{width}}  {d['b']} − {d['a']}: {d['difference']:+.3f} {fmt_ci(d.get('ci'))}{mark}")
    if any(d.get("significant") for d in comparison["differences"]):
        lines.append("  (* the paired 95% interval excludes zero)")
    return lines


@user_errors
def evaluate(
    models: Optional[List[str]] = typer.Argument(None, help="With --compare: the models to evaluate side by side (two or more)."),
    data: Optional[List[str]] = typer.Option(
        None, "--data", "-d", help="Catalogue (with :split), e.g. kagl:test (the default), fashion-mnist:test or a .csv/.jsonl. "
        "With --suite: catalogues added to the suite (repeat the option)."
    ),
    suite: Optional[str] = typer.Option(
        None, "--suite", help="Run a named suite of catalogues and print one scoreboard for the MODELS (or --model): "
        "generalisation (test sets: report) or generalisation-val (validation sets: choose with)."
    ),
    model: str = MODEL_OPTION,
    compare: bool = typer.Option(
        False, "--compare", help="Evaluate the MODELS given as arguments on the same products and report their differences."
    ),
    tasks: str = typer.Option("all", "--tasks", "-t", help=TASKS_HELP),
    field: str = typer.Option(
        "article_type",
        help="Label field for zero-shot, category retrieval, image retrieval relevance, k-NN and the linear probe.",
    ),
    labels_from: Optional[str] = typer.Option(
        None, help="Take the zero-shot label set from this catalogue (default: the evaluated products' labels)."
    ),
    query_fields: Optional[str] = typer.Option(
        None, help="Comma-separated fields for category→product retrieval (default: --field)."
    ),
    text_field: str = typer.Option("title", help="The text that queries text→image retrieval."),
    image_view: Optional[str] = typer.Option(None, help="Evaluate on a view of each image, e.g. invert (see encoders/views.py)."),
    knn_k: int = typer.Option(21, "--knn-k", help="k for k-NN classification."),
    map_k: int = typer.Option(10, "--map-k", help="K for image→image mAP@K."),
    train_data: Optional[str] = typer.Option(
        None, help="Train/reference set for k-NN and the linear probe (default: SOURCE:train when --data is SOURCE:test)."
    ),
    train_limit: int = typer.Option(10_000, help="Use at most this many train products (the first ones)."),
    composition_pairs: int = typer.Option(
        100, "--composition-pairs", min=1, help="composition: symmetric pairs of cases per category (two cases each)."
    ),
    instance_scenes: int = typer.Option(
        500, "--instance-scenes", min=1, help="instance-retrieval: seeded scenes built from the evaluated products."
    ),
    instance_decoder: Optional[Path] = typer.Option(
        None, "--instance-decoder", help="instance-retrieval: an instance decoder file (default: the model's own)."
    ),
    resamples: int = typer.Option(1000, help="Bootstrap resamples for the 95% intervals (0: no intervals)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap resamples and the example choice."),
    examples: int = typer.Option(6, help="Successes and failures shown per task in the report."),
    templates_file: Optional[Path] = typer.Option(
        None,
        "--templates-file",
        help="Zero-shot prompt templates, one per line with {label} (# comments): used by zero-shot and templates.",
    ),
    output: Optional[Path] = typer.Option(
        None,
        "--output",
        "-o",
        help="results.json path, or a folder for results.json + report.html (default: runs/eval/<model>-<data>).",
    ),
    report: Optional[Path] = typer.Option(None, "--report", help="HTML report path (default: beside the results)."),
    no_report: bool = typer.Option(False, "--no-report", help="Write results.json only."),
    as_json: bool = typer.Option(False, "--json", help="Print the results JSON instead of the summary."),
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Evaluate a model (or --compare several) on a catalogue: results.json plus a self-contained HTML report."""
    from ..catalog import read_catalog
    from ..evaluation import files
    from ..evaluation.runner import EvalSettings
    from ..evaluation.runner import compare as compare_models
    from ..evaluation.runner import evaluate as evaluate_model
    from ..evaluation.templates import read_templates
    from ..progress import show_progress

    progress = show_progress(progress)  # bars on a terminal, none in logs, unless asked
    if suite:
        fixed = {"--compare": compare, "--tasks": tasks != "all", "--field": field != "article_type", "--labels-from": labels_from,
                 "--query-fields": query_fields, "--text-field": text_field != "title", "--image-view": image_view,
                 "--train-data": train_data, "--templates-file": templates_file, "--report": report,
                 "--knn-k": knn_k != 21, "--composition-pairs": composition_pairs != 100}  # fmt: skip
        ignored = [name for name, given in fixed.items() if given]
        if ignored:
            raise ValueError(f"--suite fixes each set's tasks, labels and views; drop {', '.join(ignored)} (or run without --suite)")
        _run_suite(suite, models or [model], data or [], output, resamples, seed, progress, as_json)
        return
    if data and len(data) > 1:
        raise ValueError("--data names one catalogue (several only with --suite)")
    data = data[0] if data else "kagl:test"
    task_list = _task_list(tasks)
    if models and not compare:
        raise ValueError(f"unexpected arguments {models}: to evaluate several models side by side, add --compare")
    if compare and len(models or []) < 2:
        raise ValueError("--compare needs two or more models, e.g. modalens eval --compare modalens-lite runs/my-model")
    catalog = read_catalog(data)  # a wrong catalogue or split fails here, in one line, before any model loads
    if "composition" in task_list:  # so does one that lacks what composition cases are built from
        from ..evaluation.composition import check_catalogue

        check_catalogue(catalog.products)
    if "instance-retrieval" in task_list:  # and a model without an instance decoder
        from ..instances import decoder_file_for

        for name in models if compare else [model]:
            decoder_file_for(name, instance_decoder)
    templates = read_templates(templates_file) if templates_file else None  # so does a bad templates file
    settings = EvalSettings(
        field=field,
        labels_from=labels_from,
        image_view=image_view,
        text_field=text_field,
        query_fields=tuple(f.strip() for f in query_fields.split(",") if f.strip()) if query_fields else None,
        map_k=map_k,
        knn_k=knn_k,
        train_data=train_data,
        train_limit=train_limit,
        resamples=resamples,
        seed=seed,
        examples=examples,
        composition_pairs=composition_pairs,
        instance_scenes=instance_scenes,
        instance_decoder=str(instance_decoder) if instance_decoder else None,
        templates=tuple(templates) if templates else None,
        templates_from=str(templates_file) if templates_file else None,
    )
    if compare:
        results = compare_models(models, data, task_list, settings, progress=progress)
        name = "compare-" + "-vs-".join(Path(m).name for m in models) + f"-{data}"
    else:
        results = evaluate_model(model, data, task_list, settings, progress=progress, catalog=catalog).results
        name = f"{Path(model).name}-{data}"
    results_path, report_path = files.output_paths(output, name, report)
    files.write_text_atomic(results_path, files.dumps(results) + "\n")
    if not no_report:
        from ..evaluation.report import render_report

        files.write_text_atomic(report_path, render_report(files.jsonable(results)))
    if as_json:
        typer.echo(files.dumps(results))
        return
    if compare:
        for run in results["runs"]:
            typer.echo("\n".join(_summary_lines(run)))
        typer.echo("differences (paired bootstrap, 95%):")
        typer.echo("\n".join(_comparison_lines(results["comparison"])))
    else:
        typer.echo("\n".join(_summary_lines(results)))
    typer.echo(f"results: {results_path}")
    if not no_report:
        typer.echo(f"report:  {report_path}")


def _run_suite(
    suite: str, models: list[str], extra_data: list[str], output: Optional[Path], resamples: int, seed: int, progress: bool, as_json: bool
) -> None:
    """`modalens eval --suite NAME [MODELS...]`: every model on every set of the suite, one Markdown scoreboard."""
    from ..catalog import read_catalog
    from ..evaluation import files
    from ..evaluation.runner import EvalSettings
    from ..evaluation.suites import extra_item, get_suite, run_suite, scoreboard_markdown, suite_items
    from ..models.factory import model_config

    for model_name in models:  # an unknown model or catalogue fails here, in one line, before minutes of evaluation
        model_config(model_name)
    named = get_suite(suite)
    items = suite_items(suite, [extra_item(extra, read_catalog(extra).products) for extra in extra_data])
    settings = EvalSettings(resamples=resamples, seed=seed, examples=0, **named.settings)
    results = run_suite(models, items, settings, metrics=named.metrics, progress=progress)
    table = scoreboard_markdown(results)
    results_path, _ = files.output_paths(output, f"suite-{suite}-" + "-vs-".join(Path(m).name for m in models), None)
    files.write_text_atomic(results_path, files.dumps(results) + "\n")
    files.write_text_atomic(results_path.with_suffix(".md"), table)
    typer.echo(files.dumps(results) if as_json else table.rstrip())
    if not as_json:
        typer.echo(f"results: {results_path}\nscoreboard: {results_path.with_suffix('.md')}")


@user_errors
def leaderboard(
    results: List[Path] = typer.Argument(
        ..., help="results.json files written by `modalens eval` (single runs or --compare runs)."
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the Markdown here as well as printing it."),
    metrics: Optional[str] = typer.Option(
        None, help="Comma-separated metric names or fragments to keep, e.g. 'R@1,weighted_f1'."
    ),
) -> None:
    """A Markdown leaderboard (headline metrics with 95% intervals) from results files."""
    from ..evaluation.files import write_text_atomic
    from ..evaluation.leaderboard import leaderboard_from_files

    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    text = leaderboard_from_files(results, chosen)
    if output:
        write_text_atomic(output, text)
    typer.echo(text, nl=False)
