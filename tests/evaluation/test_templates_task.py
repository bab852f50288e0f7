"""The `templates` task (which zero-shot prompt templates help), on the 40-photo fixture."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.cli import eval_cmd
from modalens.embedding import CachedEncoder
from modalens.evaluation import files, tasks
from modalens.evaluation.report import render_report
from modalens.evaluation.runner import ALL_TASKS, TASKS, EvalSettings, evaluate
from modalens.evaluation.templates import check_templates, read_templates, rows_of, template_ablation_output
from modalens.models import create_model
from modalens.prompts import ZERO_SHOT_TEMPLATES

RESAMPLES = 200


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


@pytest.fixture(scope="module")
def encoder():
    return CachedEncoder(create_model("modalens-lite"), progress=False)


@pytest.fixture(scope="module")
def ablation(encoder, products):
    return template_ablation_output(encoder, products, resamples=RESAMPLES)


@pytest.fixture(scope="module")
def evaluation(mini_catalog):
    """zero-shot and templates through the runner, as `modalens eval --tasks zero-shot,templates` runs them."""
    settings = EvalSettings(resamples=RESAMPLES, examples=0)
    return evaluate("modalens-lite", str(mini_catalog), ["zero-shot", "templates"], settings, progress=False)


def test_one_row_per_template_plus_the_ensemble_and_each_leave_one_out(ablation):
    rows = ablation.metrics["rows"]
    count = len(ZERO_SHOT_TEMPLATES)
    assert [row["kind"] for row in rows] == ["ensemble"] + ["single"] * count + ["leave-one-out"] * count
    assert [row["template"] for row in rows_of(ablation.metrics, "single")] == list(ZERO_SHOT_TEMPLATES)
    assert [row["template"] for row in rows_of(ablation.metrics, "leave-one-out")] == list(ZERO_SHOT_TEMPLATES)
    assert [row["templates"] for row in rows] == [count] + [1] * count + [count - 1] * count
    ensemble = rows[0]
    for row in rows:
        for metric in ("accuracy", "weighted_f1", "macro_f1"):
            lo, hi = row["ci"][metric]
            assert 0 <= lo <= row[metric] <= hi <= 1, (row, metric)
        if row is not ensemble:
            d = row["minus_ensemble"]["accuracy"]
            assert d["difference"] == pytest.approx(row["accuracy"] - ensemble["accuracy"])
            assert d["ci"][0] <= d["difference"] <= d["ci"][1]
    assert ablation.metrics["n"] == 40 and ablation.metrics["labels"] == 20
    assert "ensemble/accuracy" in ablation.estimates and f"leave_one_out/{count - 1}/weighted_f1" in ablation.estimates


def test_the_ensemble_row_is_the_zero_shot_tasks_ensemble(evaluation):
    """Same photos, labels, templates and resamples: the same numbers and intervals as the zero-shot task."""
    zero_shot, ensemble = evaluation.results["zero-shot"]["ensemble"], rows_of(evaluation.results["templates"], "ensemble")[0]
    for metric in ("accuracy", "weighted_f1", "macro_f1"):
        assert ensemble[metric] == pytest.approx(zero_shot[metric], abs=1e-12)
        assert ensemble["ci"][metric] == pytest.approx(zero_shot["ci"][metric], abs=1e-12)


def test_each_template_alone_is_zero_shot_with_only_that_template(ablation, encoder, products):
    for row in rows_of(ablation.metrics, "single"):
        alone = tasks.zero_shot(encoder, products, templates=[row["template"]], resamples=0)["ensemble"]
        assert (row["accuracy"], row["weighted_f1"]) == pytest.approx((alone["accuracy"], alone["weighted_f1"]), abs=1e-12)


def test_one_template_has_no_leave_one_out_and_no_intervals_without_resamples(encoder, products):
    out = template_ablation_output(encoder, products, templates=["{label}"], resamples=0)
    assert [row["kind"] for row in out.metrics["rows"]] == ["ensemble", "single"]
    assert all("ci" not in row and "minus_ensemble" not in row for row in out.metrics["rows"])


def test_templates_is_a_named_task_and_the_report_has_its_section_and_chart(evaluation):
    assert "templates" in TASKS and "templates" not in ALL_TASKS  # cheap, but about the prompts: run when asked
    page = render_report(files.jsonable(evaluation.results))
    section = re.search(r'<section id="templates">.*?</section>', page, re.S)
    assert section and "Which prompt templates help" in section.group(0)
    assert len(re.findall(r'src="data:image/png', section.group(0))) == 2  # bars with whiskers, paired differences
    assert "ensemble without" in section.group(0) and "a product photo of {label}" in section.group(0)
    assert 'href="#templates"' in page


# ---------------------------------------------------------------- user templates


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("# only a comment\n\n   \n", "is empty"),
        ("a photo of {label}\na photo of a dress\n", "line 2: 'a photo of a dress': no {label} placeholder"),
        ("a {colour} {label}\n", "unknown placeholder {colour}"),
        ("{label} and {}\n", "unknown placeholder {}"),
        ("a photo of {label\n", "unbalanced braces"),
        ("{label}\n# twice\n{label}\n", "line 3: '{label}' repeats line 1"),
    ],
)
def test_a_bad_templates_file_is_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "templates.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(expected)):
        read_templates(path)


def test_a_templates_file_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("# mine\n  a photo of {label}  \n\n{label}, {{literal braces}}\n")
    assert read_templates(path) == ["a photo of {label}", "{label}, {{literal braces}}"]
    with pytest.raises(ValueError, match="does not exist"):
        read_templates(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="no templates"):
        check_templates([])
    with pytest.raises(ValueError, match=re.escape("template 2: 'a dress': no {label}")):
        EvalSettings(templates=("{label}", "a dress"))  # checked when set, not halfway through a run


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command("eval")(eval_cmd.evaluate)
    app.command()(eval_cmd.leaderboard)  # two commands, so "eval" is a subcommand as in cli/main.py
    return app


def test_eval_command_with_a_templates_file(mini_catalog, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("a photo of {label}\n{label}\n")
    args = ["eval", "--data", str(mini_catalog), "--tasks", "zero-shot,templates", "--templates-file", str(path),
            "--resamples", "100", "--no-progress", "--no-report", "-o", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "alone: '{label}'" in result.output and "without: 'a photo of {label}'" in result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["templates"] == ["a photo of {label}", "{label}"]
    assert results["zero-shot"]["ensemble"]["templates"] == 2  # the zero-shot task uses the user's templates too
    assert len(results["templates"]["rows"]) == 5


def test_eval_command_rejects_a_bad_templates_file_in_one_line(mini_catalog, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("a photo of {labels}\n")
    args = ["eval", "--data", str(mini_catalog), "--tasks", "templates", "--templates-file", str(path)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 2
    assert "line 1" in result.output and "unknown placeholder {labels}" in result.output
