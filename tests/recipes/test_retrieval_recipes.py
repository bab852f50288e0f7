"""MCIP's recipes through the one training loop: the image side moves alone, image retrieval improves, and the
text side stays exactly where the start left it (or, in the second stage of two-stage, moves alone)."""

from __future__ import annotations

import pytest
import torch

from modalens.catalog import read_catalog
from modalens.embedding import CachedEncoder
from modalens.evaluation import tasks
from modalens.models import create_model
from modalens.recipes import ConfigError, run_recipe

from recipe_testkit import saved_weights, small_config


@pytest.fixture(scope="module")
def start(tmp_path_factory, mini_catalog):
    """A small contrastive model to fine-tune from (what ``tune.init`` names)."""
    folder = tmp_path_factory.mktemp("start")
    return run_recipe(small_config(folder, mini_catalog, optim={"epochs": 4}), progress=False).output


def _heads(folder):
    weights = saved_weights(folder)
    return {side: {k: v for k, v in weights.items() if f"{side}_head" in k} for side in ("image", "text")}


def _image_map(folder, products):
    return tasks.image_retrieval(CachedEncoder(create_model(folder), progress=False), products, k=10, resamples=0)["mAP@10"]


@pytest.mark.parametrize("loss, options", [("mcip", {}), ("arcmargin", {}), ("multi-caption-arcmargin", {"captions_per_image": 2})])
def test_image_side_recipes_lift_image_retrieval_and_leave_the_text_head_alone(tmp_path, mini_catalog, start, loss, options):
    # chosen on image retrieval over the train products themselves: the mini catalogue's val split has no type twice
    config = small_config(
        tmp_path, mini_catalog, optim={"epochs": 15, "lr": 0.003}, loss=loss, loss_options=options, classes="article-type",
        tune={"init": str(start), "heads": ["image"]}, data={"catalog": str(mini_catalog), "val_split": "train"},
        validation=["image-retrieval"],
    )  # fmt: skip
    result = run_recipe(config, progress=False)
    before, after = _heads(start), _heads(result.output)
    assert all(torch.equal(before["text"][k], after["text"][k]) for k in before["text"])
    assert any(not torch.equal(before["image"][k], after["image"][k]) for k in before["image"])
    train = read_catalog(mini_catalog).split("train").products
    assert _image_map(result.output, train) > _image_map(start, train) + 0.05


def test_validating_image_retrieval_needs_val_products_that_share_a_type(tmp_path, mini_catalog, start):
    config = small_config(tmp_path, mini_catalog, tune={"init": str(start), "heads": ["image"]}, validation=["image-retrieval"])
    with pytest.raises(ConfigError, match="sharing an article type"):
        run_recipe(config, progress=False)


def test_second_stage_realigns_the_text_side_alone(tmp_path, mini_catalog, start):
    config = small_config(tmp_path, mini_catalog, optim={"epochs": 3}, tune={"init": str(start), "heads": ["text"]})
    result = run_recipe(config, progress=False)
    before, after = _heads(start), _heads(result.output)
    assert all(torch.equal(before["image"][k], after["image"][k]) for k in before["image"])
    assert any(not torch.equal(before["text"][k], after["text"][k]) for k in before["text"])


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"loss": "arcmargin"}, "needs classes"),
        ({"loss": "mcip", "classes": "colourway"}, "unknown classes"),
        ({"loss": "mcip", "classes": "product", "loss_options": {"scale": -1}}, "scale must be"),
        ({"loss": "clip", "loss_options": {"scale": 30}}, "loss_options are for"),
        ({"tune": {"heads": ["image"]}}, "set tune.init"),
        ({"tune": {"heads": ["image", "image"]}}, "each once"),
        ({"validation": ["recall"]}, "validation lists"),
    ],
)
def test_bad_retrieval_configs_are_refused_by_name(tmp_path, mini_catalog, extra, message):
    with pytest.raises(ConfigError, match=message):
        small_config(tmp_path, mini_catalog, **extra)
