"""results.json, the HTML report, the leaderboard and the `eval` / `leaderboard` commands, on the 40-photo fixture."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from modalens.cli import eval_cmd
from modalens.evaluation import files
from modalens.evaluation.leaderboard import leaderboard_markdown
from modalens.evaluation.report import render_report
from modalens.models.factory import DEFAULT_MODEL

runner = CliRunner()


def _app() -> typer.Typer:
    """The two commands as cli/main.py registers them."""
    app = typer.Typer(add_completion=False)
    app.command("eval")(eval_cmd.evaluate)
    app.command()(eval_cmd.leaderboard)
    return app


def _strict(text: str) -> dict:
    def no_nan(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=no_nan)


def test_every_headline_metric_has_an_interval_around_it_and_retrieval_a_gallery(mini_evaluation):
    results = mini_evaluation.results
    rows = results["headline"]
    assert {r["task"] for r in rows} == {"retrieval", "zero-shot", "category-retrieval", "image-retrieval", "knn", "linear-probe"}
    for row in rows:
        lo, hi = row["ci"]
        assert lo - 1e-9 <= row["value"] <= hi + 1e-9, row
        if "retrieval" in row["task"]:
            assert row["gallery"] and row["n"], row
    # the estimates behind the headline are kept for paired comparisons
    assert {r["metric"] for r in rows} <= set(mini_evaluation.estimates)


def test_results_file_is_strict_json_with_settings(mini_report):
    results = _strict((mini_report.parent / "results.json").read_text())
    assert results["schema"] == "modalens-eval/1"
    assert results["settings"]["resamples"] == 300 and results["settings"]["seed"] == 0
    assert results["zero-shot"]["ensemble"]["confusion"]["matrix"]
    assert list(results)[:3] == ["schema", "model", "data"]


def test_report_is_one_self_contained_file_with_tables_plots_and_photos(mini_report):
    page = mini_report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r'(href|src)="(https?:)?//', page)  # nothing fetched from anywhere
    photos = [s for s in sources if s.startswith("data:image/jpeg")]
    charts = [s for s in sources if s.startswith("data:image/png")]
    assert len(photos) >= 20 and len(charts) >= 5
    for heading in ("At a glance", "Zero-shot classification", "Text ↔ image retrieval", "Category → product retrieval",
                    "Image → image retrieval", "k-NN classification", "Linear probe"):  # fmt: skip
        assert heading in page
    assert page.count("<table") >= 7
    assert "gallery 40" in page and "gallery 39" in page
    assert len(page.encode()) < 3_000_000


def test_report_survives_missing_photos_and_a_thumbnail_budget(mini_evaluation):
    results = files.jsonable(mini_evaluation.results)
    for ex in results["examples"]["zero-shot"]["ensemble"]:
        ex["image"] = "/nonexistent/photo.jpg"
    page = render_report(results, thumbnail_budget=0)
    assert "no image" in page and "data:image/jpeg" not in page


def test_leaderboard_markdown(mini_evaluation):
    results = files.jsonable(mini_evaluation.results)
    text = leaderboard_markdown([results, {**results, "model": "other-model"}], ["a.json", "b.json"])
    lines = text.splitlines()
    assert lines[0].startswith("### tests") or "products" in lines[0]
    header = next(line for line in lines if line.startswith("| model"))
    assert "text→image R@1 (gallery 40)" in header
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 2 and rows[1].startswith("| `other-model`")
    r1 = results["retrieval"]["text_to_image"]
    assert f"{r1['R@1']:.3f} [{r1['ci']['R@1'][0]:.3f}, {r1['ci']['R@1'][1]:.3f}]" in rows[0]
    with pytest.raises(ValueError):
        leaderboard_markdown([])


def test_eval_and_leaderboard_commands(mini_catalog, tmp_path):
    app = _app()
    out = tmp_path / "run"
    result = runner.invoke(app, ["eval", "--data", str(mini_catalog), "--tasks", "zero-shot,image-retrieval", "--resamples", "100",
                                 "--examples", "2", "--no-progress", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "gallery 39" in result.output and "zero-shot top-1" in result.output
    results = _strict((out / "results.json").read_text())
    assert set(results["headline"][0]) >= {"metric", "value", "ci"}
    assert (out / "report.html").stat().st_size > 10_000
    board = runner.invoke(app, ["leaderboard", str(out / "results.json"), "-o", str(tmp_path / "board.md")])
    assert board.exit_code == 0, board.output
    assert DEFAULT_MODEL in board.output and (tmp_path / "board.md").read_text() == board.output


def test_compare_reports_paired_differences(mini_catalog, tmp_path):
    import torch

    from modalens.models import create_model, save_model

    torch.manual_seed(0)
    other = save_model(create_model(DEFAULT_MODEL, pretrained=False), tmp_path / "untrained")
    result = runner.invoke(_app(), ["eval", "--compare", DEFAULT_MODEL, str(other), "--data", str(mini_catalog), "--tasks", "zero-shot",
                                    "--resamples", "200", "--examples", "1", "--no-progress", "-o", str(tmp_path / "cmp.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = _strict((tmp_path / "cmp.json").read_text())
    assert [r["model"] for r in results["runs"]] == [DEFAULT_MODEL, str(other)]
    diffs = {d["metric"]: d for d in results["comparison"]["differences"]}
    top1 = diffs["zero-shot/ensemble/accuracy"]
    assert top1["paired"] and top1["significant"] and top1["ci"][1] < 0  # untrained heads are far worse
    assert top1["difference"] == pytest.approx(top1["value_b"] - top1["value_a"])
    page = (tmp_path / "cmp.html").read_text()
    assert "Side by side" in page and "worse" in page


def test_eval_user_errors_are_one_line(mini_catalog, tmp_path):
    app = _app()
    for args, expected in [
        (["eval", "--data", str(mini_catalog), "--tasks", "nonsense"], "unknown tasks"),
        (["eval", "--data", str(mini_catalog), "other-model"], "--compare"),
        (["eval", "--data", str(mini_catalog), "--compare", DEFAULT_MODEL], "two or more"),
        (["eval", "--data", f"{mini_catalog}:nosuchsplit"], "nosuchsplit"),
        (["leaderboard", str(tmp_path / "missing.json")], "missing.json"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output
