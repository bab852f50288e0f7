"""Evaluation tasks on real photos: the shipped model must beat its own untrained heads by a wide margin."""

from __future__ import annotations

import pytest

from modalens.catalog import read_catalog
from modalens.embedding import CachedEncoder
from modalens.evaluation import tasks
from modalens.evaluation.runner import run_evaluation
from modalens.models import create_model


@pytest.fixture(scope="module")
def trained():
    return CachedEncoder(create_model("modalens-lite"), progress=False)


@pytest.fixture(scope="module")
def untrained():
    return CachedEncoder(create_model("modalens-lite", pretrained=False), progress=False)


def test_retrieval_reports_both_directions_with_gallery_size(trained, mini_catalog):
    products = read_catalog(mini_catalog).products
    result = tasks.retrieval(trained, products)
    for direction in ("text_to_image", "image_to_text"):
        metrics = result[direction]
        assert metrics["gallery"] == metrics["queries"] == 40
        assert 0 <= metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= 1


def test_trained_heads_beat_untrained_heads(trained, untrained, mini_catalog):
    products = read_catalog(mini_catalog).products
    good = tasks.retrieval(trained, products)["text_to_image"]["R@5"]
    random_heads = tasks.retrieval(untrained, products)["text_to_image"]["R@5"]
    assert good > random_heads + 0.3
    zero_shot = tasks.zero_shot(trained, products)
    assert zero_shot["ensemble"]["accuracy"] > 0.6  # 20 labels: chance is 0.05
    assert zero_shot["ensemble"]["templates"] > 1 and zero_shot["single_prompt"]["templates"] == 1


@pytest.mark.shared
def test_kagl_test_slice_quality(trained, kagl_root):
    """On 300 real KAGL test products (never trained on), retrieval and zero-shot are far above chance."""
    products = read_catalog("kagl:test", limit=300).products
    result = tasks.retrieval(trained, products)
    assert result["text_to_image"]["R@10"] > 0.5  # chance: 10/300
    assert tasks.zero_shot(trained, products)["ensemble"]["weighted_f1"] > 0.6


def test_runner_rejects_unknown_tasks():
    with pytest.raises(ValueError, match="unknown tasks"):
        run_evaluation("modalens-lite", "kagl:test", ["nonsense"])
