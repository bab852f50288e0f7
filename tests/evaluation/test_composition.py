"""The composition benchmark: symmetric cases, scoring direction, blind baselines at one half, clear refusals."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import pytest
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.catalog.schema import Product
from modalens.cli.main import app
from modalens.evaluation.blind import BigramLM
from modalens.evaluation.composition import CATEGORIES, build_cases, composition_output
from modalens.scenes.files import scene_path


@pytest.fixture(scope="module")
def products(mini_catalog) -> list[Product]:
    return read_catalog(str(mini_catalog)).products


@pytest.fixture(scope="module")
def cases(products):
    return build_cases(products, 3, seed=0)


def _pairs(cases):
    pairs = defaultdict(list)
    for case in cases:
        pairs[(case.category, case.pair)].append(case)
    return pairs


def test_every_case_has_a_partner_whose_true_caption_is_its_negative(cases):
    built, skipped = cases
    assert not skipped and {c.category for c in built} == set(CATEGORIES)
    for (category, _), (one, two) in _pairs(built).items():
        assert one.positive == two.negative and two.positive == one.negative and one.positive != one.negative
        ids_one, ids_two = [p.id for p in one.scene.products], [p.id for p in two.scene.products]
        if category == "swap-object":
            assert ids_two == ids_one[::-1]
        elif category == "add-object":
            assert ids_two[:2] == ids_one and len(ids_two) == 3
        elif category == "swap-attribute":
            assert len(set(ids_one) | set(ids_two)) == 4
        else:  # replace-*: one product changed, everything else in the same place
            assert len(ids_one) == len(ids_two) and sum(a != b for a, b in zip(ids_one, ids_two)) == 1
            same = [i for i, (a, b) in enumerate(zip(ids_one, ids_two)) if a == b]
            assert all(one.scene.placements[i] == two.scene.placements[i] for i in same)


def test_true_captions_name_the_garments_in_the_picture_in_their_places(cases):
    for case in cases[0]:
        if len(case.scene.products) >= 2:
            relation = case.scene.relation(0, 1)
            assert f" {'to the left of' if relation == 'left of' else relation} " in case.positive


def test_same_seed_same_cases(products, cases):
    again, _ = build_cases(products, 3, seed=0)
    assert [(c.scene.key, c.positive, c.negative) for c in again] == [(c.scene.key, c.positive, c.negative) for c in cases[0]]
    other, _ = build_cases(products, 3, seed=1)
    assert [c.scene.key for c in other] != [c.scene.key for c in cases[0]]


class _Oracle:
    """Texts as fixed random unit vectors; each scene's image as the vector of the caption ``truth`` gives its file."""

    def __init__(self, truth: dict[str, str]) -> None:
        self.truth = truth

    def text_embeddings(self, texts):
        rows = [np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)).normal(size=32) for t in texts]
        return np.array([r / np.linalg.norm(r) for r in rows], np.float32)

    def image_embeddings(self, products):
        return self.text_embeddings([self.truth[p.image] for p in products]), {}


@pytest.mark.parametrize("caption", ["positive", "negative"])
def test_scoring_direction_and_blind_baselines_at_one_half(products, cases, tmp_path, caption):
    truth = {str(scene_path(c.scene, tmp_path)): getattr(c, caption) for c in cases[0]}
    out = composition_output(_Oracle(truth), products, pairs=3, scene_dir=str(tmp_path), resamples=200, examples=2)
    expected = 1.0 if caption == "positive" else 0.0
    assert out.metrics["mean"]["accuracy"] == expected
    for name, group in out.metrics["categories"].items():
        assert group["accuracy"] == expected and group["pairs"] == 3, name
        assert group["blind_ngram"] == 0.5 and group["ci"]["blind_ngram"] == [0.5, 0.5]
        assert group["blind_text_tower"] == 0.5
    assert out.estimates["mean/accuracy"].value == expected
    assert {e["passed"] for e in out.examples["cases"]} == {caption == "positive"}


def test_the_blind_language_model_prefers_word_orders_it_has_seen():
    lm = BigramLM().fit(["red shirt above blue jeans", "white t-shirt above black trousers"] * 5)
    assert lm.logprob("red shirt above blue jeans") > lm.logprob("jeans blue above shirt red")
    assert np.isfinite(lm.logprob("a never seen word"))


def test_missing_fields_skip_their_categories_with_a_reason(products):
    plain = [Product(id=p.id, images=p.images, title="x", attributes={"article_type": p.get("article_type")}) for p in products]
    built, skipped = build_cases(plain, 2, seed=0)
    assert set(skipped) == {"replace-colour", "replace-pattern", "replace-usage", "swap-attribute"}
    assert "colour" in skipped["replace-colour"] and "pattern" in skipped["replace-pattern"]
    assert {c.category for c in built} == {"replace-object", "swap-object", "add-object"}
    assert all(c.positive.split(" ", 1)[0] not in ("black", "blue", "white") for c in built)  # no colour invented


def test_cli_refuses_a_catalogue_without_types_in_one_line(mini_catalog, tmp_path):
    rows = [line.split(",")[:3] for line in mini_catalog.read_text().splitlines()[1:4]]
    (tmp_path / "images").symlink_to(mini_catalog.parent / "images")
    csv = tmp_path / "plain.csv"
    csv.write_text("id,image,title\n" + "".join(",".join(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["eval", "--tasks", "composition", "--data", str(csv), "--no-report", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "composition needs products with a photo and a type" in result.output and "Traceback" not in result.output


def test_modalens_eval_runs_composition_with_the_real_model(mini_catalog):
    from modalens.evaluation.runner import EvalSettings, evaluate

    settings = EvalSettings(resamples=100, examples=1, composition_pairs=2)
    results = evaluate("modalens-lite", str(mini_catalog), ["composition"], settings, progress=False).results
    task = results["composition"]
    assert "train split" in task["blind_fitted_on"]  # the blind LM learns from the fixture's train products only
    assert task["mean"]["blind_ngram"] == 0.5 and 0 <= task["mean"]["accuracy"] <= 1
    labels = {row["label"] for row in results["headline"]}
    assert "composition: mean over categories" in labels
    assert all(f"composition: {c}" in labels for c in task["categories"])
