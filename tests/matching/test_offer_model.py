"""The offer model trains on a small slice and beats the frozen-image baseline on held-out generated offers."""

from __future__ import annotations

import numpy as np
import pytest

from modalens.matching.evaluate import Scenario
from modalens.matching.offer_model import (
    OfferModel,
    OfferModelConfig,
    frozen_image_embeddings,
)
from modalens.matching.offers import Offer
from modalens.matching.pipeline import Matcher
from modalens.matching.train import merge, reviewed_data, training_data

VIEWS = ("seller-1", "seller-2")  # two of the three seller views keep the tower work small


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_training_lowers_the_loss(trained):
    model, history = trained
    assert history[-1] < 0.7 * history[0]
    weights = model.part_weights()
    assert set(weights) == {"images", "title"} and abs(sum(weights.values()) - 1) < 1e-5


def test_model_beats_the_frozen_image_baseline_on_held_out_offers(trained, mini_products, featurizer):
    model, _ = trained
    held_out = [p for p in mini_products if p.split == "val"]  # never trained on
    scenario = Scenario(held_out, featurizer, seed="heldout", catalogue_share=1.0, second_copy=1.0, views=VIEWS)
    new, cat = scenario.scenario.new, scenario.scenario.catalogue
    labels = np.array([[a.product_id == b.product_id for b in cat] for a in new])
    results = {}
    for name, embed in (("baseline", frozen_image_embeddings), ("model", model.embed)):
        sims = embed(scenario.new_feats) @ embed(scenario.cat_feats).T
        top1 = float(np.mean([labels[i, int(np.argmax(sims[i]))] for i in range(len(new))]))
        results[name] = (auc(sims.ravel(), labels.ravel()), top1)
    assert results["model"][0] > results["baseline"][0], results
    assert results["model"][1] >= results["baseline"][1], results


def test_parts_are_configurable_and_saved(tmp_path, trained, mini_products, featurizer):
    model, _ = trained
    offers = [Offer("a", images=[mini_products[0].image], title="Red shoe", price=10.0, n_sizes=3), Offer("b", title="no photo")]
    feats = featurizer(offers)
    assert feats.has_image.tolist() == [True, False] and 1 in feats.failures
    emb = model.embed(feats)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    model.save(tmp_path)
    again = OfferModel.load(tmp_path)
    assert np.allclose(again.embed(feats), emb, atol=1e-6)
    title_only = OfferModel(OfferModelConfig(parts=("title",)))
    assert title_only.embed(feats).shape == (2, 256)
    with pytest.raises(ValueError):
        OfferModelConfig(parts=("colour",))


def test_reviewed_pairs_become_training_rows(mini_products):
    a, b, c = (Offer(p.id, images=[p.image], title=p.title) for p in mini_products[:3])
    data = reviewed_data([(a, b, True), (a, c, False)])
    assert len(data.anchors) == 3 and data.positives[0] == [b]
    assert data.families == [[1, 2]]  # the non-matching pair always shares a batch
    both = merge(training_data(mini_products[:4], copies=1, views=VIEWS), data)
    assert len(both.anchors) == 7 and len(set(both.groups)) == 7


def test_calibrated_matcher_reaches_its_target_on_its_calibration_pairs(matcher_dir):
    matcher = Matcher.load(matcher_dir)
    th = matcher.thresholds
    assert th.target_precision == 0.9 and (th.fit_precision >= 0.9 or th.accept == float("inf"))
    assert 0 < th.fit_share_auto <= 1 and matcher.model is not None
