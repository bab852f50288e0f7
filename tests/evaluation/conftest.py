"""One evaluation of the shipped model on the 40-photo fixture, shared by the report, CLI and browser tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalens.evaluation import files
from modalens.evaluation.report import render_report
from modalens.evaluation.runner import ALL_TASKS, EvalSettings, Evaluation, evaluate


@pytest.fixture(scope="session")
def mini_evaluation(mini_catalog) -> Evaluation:
    """Every task on the fixture catalogue (its train split feeds k-NN and the linear probe)."""
    return evaluate("modalens-lite", str(mini_catalog), ALL_TASKS, EvalSettings(resamples=300, examples=3), progress=False)


@pytest.fixture(scope="session")
def mini_report(mini_evaluation, tmp_path_factory) -> Path:
    """results.json and report.html for the fixture, as ``modalens eval`` writes them; returns the report path."""
    folder = tmp_path_factory.mktemp("mini-report")
    files.write_text_atomic(folder / "results.json", files.dumps(mini_evaluation.results) + "\n")
    return files.write_text_atomic(folder / "report.html", render_report(files.jsonable(mini_evaluation.results)))
