"""Evaluation suites: several catalogues, every model side by side, one scoreboard with paired differences."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from modalens.evaluation.runner import EvalSettings
from modalens.evaluation.suites import SUITES, SuiteItem, run_suite, scoreboard_markdown, suite_items
from modalens.models import create_model, save_model


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    """The default architecture with random heads: what a scoreboard must tell apart from the trained default."""
    torch.manual_seed(0)
    return str(save_model(create_model("modalens-lite", pretrained=False), tmp_path_factory.mktemp("untrained")))


def test_scoreboard_puts_models_side_by_side_with_paired_differences(mini_catalog, untrained_model):
    items = [SuiteItem(str(mini_catalog), "mini catalogue"), SuiteItem(str(mini_catalog), "mini, greyscale", ("zero-shot",), image_view="greyscale")]
    results = run_suite(["modalens-lite", untrained_model], items, EvalSettings(resamples=200, examples=0), progress=False)
    assert [g["item"]["label"] for g in results["groups"]] == ["mini catalogue", "mini, greyscale"]
    first = {row["name"]: row for row in results["groups"][0]["rows"]}
    assert set(first) == {"zero-shot wF1", "zero-shot top-1", "title→image R@1", "title→image R@10"}
    trained, untrained = (v["value"] for v in first["zero-shot top-1"]["values"])
    assert trained > 0.5 and untrained < 0.25
    diff = first["zero-shot top-1"]["differences"][0]
    assert diff["difference"] == pytest.approx(untrained - trained)
    assert diff["significant"] and diff["ci"][1] < 0
    assert [row["name"] for row in results["groups"][1]["rows"]] == ["zero-shot wF1", "zero-shot top-1"]
    table = scoreboard_markdown(results)
    assert table.count("\n| mini") == 2 and "paired" in table
    assert f"{diff['difference']:+.3f}" in table


def test_named_suites_keep_test_and_validation_apart():
    for name in ("generalisation", "image-retrieval"):
        report, choose = SUITES[name].items, SUITES[f"{name}-val"].items
        assert all(item.data.endswith(":test") for item in report)
        assert not any(item.data.endswith(":test") for item in choose)
        assert {item.image_view for item in report if item.image_view}.isdisjoint({item.image_view for item in choose if item.image_view})
    extra = suite_items("generalisation", ["shop.csv"])
    assert extra[-1] == SuiteItem("shop.csv", "shop.csv")
    with pytest.raises(ValueError, match="unknown suite"):
        suite_items("nosuch")


def test_eval_suite_command_writes_results_and_a_scoreboard(tmp_path, mini_catalog):
    out = tmp_path / "board.json"
    run = subprocess.run(
        [sys.executable, "-m", "modalens", "eval", "--suite", "generalisation-val", "--no-progress", "--resamples", "50",
         "-o", str(out), "--data", "nosuch.csv"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and "nosuch.csv" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "modalens", "eval", "--suite", "nosuch", "--no-progress"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2 and "unknown suite" in run.stderr
    assert not out.exists()


def test_a_users_catalogue_is_scored_on_what_its_products_carry(tmp_path, mini_catalog):
    from modalens.catalog import read_catalog
    from modalens.evaluation.suites import extra_item

    products = read_catalog(mini_catalog).products
    assert extra_item("mini", products).tasks == ("zero-shot", "retrieval")
    for p in products:
        p.attributes.pop("article_type", None)
    assert extra_item("mini", products).tasks == ("retrieval",)  # no labels: title→image only, known up front
    for p in products:
        p.title = ""
    with pytest.raises(ValueError, match="nothing can be scored"):
        extra_item("mini", products)


def test_eval_suite_refuses_options_it_would_ignore():
    run = subprocess.run(
        [sys.executable, "-m", "modalens", "eval", "--suite", "generalisation-val", "--field", "colour", "--tasks", "knn", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and "--tasks" in run.stderr and "--field" in run.stderr and "Traceback" not in run.stderr


def test_image_retrieval_scoreboard_rows_follow_the_suites_metrics(mini_catalog, untrained_model):
    from modalens.catalog import read_catalog
    from modalens.evaluation.suites import IMAGE_RETRIEVAL_METRICS

    named = SUITES["image-retrieval"]
    assert named.settings == {"knn_k": 21, "knn_temperature": 0.1} and named.metrics == IMAGE_RETRIEVAL_METRICS
    item = SuiteItem(str(mini_catalog), "mini", ("image-retrieval", "knn", "retrieval"), map_k=0)
    settings = EvalSettings(resamples=100, examples=0, **named.settings)
    results = run_suite(["modalens-lite", untrained_model], [item], settings, metrics=named.metrics, progress=False)
    names = [row["name"] for row in results["groups"][0]["rows"]]
    whole = len(read_catalog(mini_catalog)) - 1  # map_k=0: mAP over the whole gallery, named by its k
    assert names == [f"image→image mAP@{whole}", "image→image R@1", "k-NN top-1", "k-NN top-5",
                     "title→image R@1", "title→image R@5", "title→image R@10"]  # fmt: skip
    rows = {row["name"]: row for row in results["groups"][0]["rows"]}
    top1, top5 = rows["k-NN top-1"]["values"][0]["value"], rows["k-NN top-5"]["values"][0]["value"]
    assert 0 < top1 <= top5 <= 1
    assert rows["k-NN top-5"]["differences"][0]["ci"] is not None
