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


# ---------------------------------------------------------------- the other tasks, on the fixture


def test_public_task_shapes_keep_what_training_reads(trained, mini_catalog):
    """contrastive_heads reads text_to_image/image_to_text R@1/5/10 and zero-shot ensemble accuracy."""
    products = read_catalog(mini_catalog).products
    result = tasks.retrieval(trained, products, resamples=100)
    for direction in ("text_to_image", "image_to_text"):
        assert {"R@1", "R@5", "R@10", "MRR", "median_rank", "ci"} <= set(result[direction])
        lo, hi = result[direction]["ci"]["R@1"]
        assert lo <= result[direction]["R@1"] <= hi
    zero_shot = tasks.zero_shot(trained, products, resamples=100)
    for variant in ("ensemble", "single_prompt"):
        assert {"accuracy", "top5_accuracy", "weighted_f1", "macro_f1", "ci"} <= set(zero_shot[variant])
        assert zero_shot[variant]["accuracy"] <= zero_shot[variant]["top5_accuracy"]
        assert "confusion" not in zero_shot[variant]  # details only when asked (keeps training logs small)
    paired = zero_shot["ensemble_minus_single"]["accuracy"]
    assert paired["difference"] == pytest.approx(zero_shot["ensemble"]["accuracy"] - zero_shot["single_prompt"]["accuracy"])
    assert paired["ci"][0] <= paired["difference"] <= paired["ci"][1]


def test_category_retrieval_relevance_is_every_product_of_the_category(trained, mini_catalog):
    products = read_catalog(mini_catalog).products
    out = tasks.category_retrieval_output(trained, products, ["article_type", "gender"], resamples=100, details=True, examples=2)
    types = out.metrics["article_type"]
    assert types["queries"] == 20 and types["gallery"] == 40 and types["mean_relevant"] == 2
    assert types["P@10"] <= 0.2 + 1e-9  # only 2 relevant products per type: P@10 is at most 2/10
    assert types["P@1"] > 0.5  # chance: 1/20
    assert set(types["per_query"]) == {p.get("article_type") for p in products}
    gender = out.metrics["gender"]
    assert gender["queries"] == len({p.get("gender") for p in products})
    assert "article_type/P@1" in out.estimates and "gender/MRR" in out.estimates
    example = out.examples["article_type"][0]
    assert len(example["results"]) == 8 and all({"image", "relevant", "label"} <= set(r) for r in example["results"])


def test_image_retrieval_excludes_the_query_and_skips_classes_of_one(trained, mini_catalog):
    products = read_catalog(mini_catalog).products
    out = tasks.image_retrieval_output(trained, products, "article_type", k=10, resamples=100, details=True, examples=2)
    m = out.metrics
    assert m["gallery"] == 39 and m["queries"] == 40 and m["skipped_queries"] == 0
    assert 0 <= m["mAP@10"] <= 1 and 0 <= m["R@1"] <= 1
    for ex in out.examples["queries"]:
        assert ex["query"]["id"] not in {r["id"] for r in ex["results"]}
    # a photo whose class has no other member cannot be answered: skipped, and counted
    tshirts = [p for p in products if p.get("article_type") == "Tshirts"]
    shirt = next(p for p in products if p.get("article_type") == "Shirts")
    m = tasks.image_retrieval(trained, tshirts + [shirt], "article_type", k=2, resamples=0)
    assert m["queries"] == 2 and m["skipped_queries"] == 1 and m["gallery"] == 2
    with pytest.raises(ValueError, match="nothing to retrieve"):
        tasks.image_retrieval(trained, products[:6], "title")  # every title is unique
    # a single product cannot query anything
    with pytest.raises(ValueError):
        tasks.image_retrieval(trained, products[:1])


def test_knn_and_linear_probe_modes(trained, mini_catalog):
    catalog = read_catalog(mini_catalog)
    train = [p for p in catalog.products if p.split == "train"]
    val = [p for p in catalog.products if p.split != "train"]
    loo = tasks.knn(trained, catalog.products, k=3, resamples=100)
    assert loo["mode"] == "leave-one-out" and loo["reference"] == 40 and loo["n"] == 40
    split = tasks.knn(trained, val, k=3, reference=train, resamples=100)
    assert split["mode"] == "train→test" and split["reference"] == len(train) and split["n"] == len(val)
    probe = tasks.linear_probe(trained, val, train=train, resamples=100)
    assert probe["train"] == len(train) and probe["n"] == len(val) and 0 <= probe["accuracy"] <= 1
    # without a train set: the same id-hash split on every call, whatever the order
    first = tasks.linear_probe(trained, catalog.products, resamples=0)
    again = tasks.linear_probe(trained, catalog.products[::-1], resamples=0)
    assert first["split"] == "id-hash 50/50" and first["n"] == again["n"] and first["accuracy"] == again["accuracy"]
    assert first["n"] + first["train"] == 40


def test_runner_finds_the_train_split_and_reports_it(mini_evaluation):
    results = mini_evaluation.results
    for task in ("knn", "linear-probe"):
        assert "train split" in results[task]["train_set"]
        assert results[task]["n"] == 13  # the fixture's val products
    assert list(results["timings"]) == ["retrieval", "zero-shot", "category-retrieval", "image-retrieval", "knn", "linear-probe"]
