"""Shared for the matching tests: the mini catalogue, one featurizer (session feature cache) and one small trained matcher."""

from __future__ import annotations

import pytest

from modalens.catalog import read_catalog
from modalens.matching.evaluate import Scenario, calibrate
from modalens.matching.features import OfferFeaturizer
from modalens.matching.pipeline import Matcher
from modalens.matching.train import TrainConfig, train_offer_model, training_data

VIEWS = ("seller-1", "seller-2")  # two of the three seller views keep the tower work small


@pytest.fixture(scope="session")
def featurizer():
    return OfferFeaturizer(progress=False)


@pytest.fixture(scope="session")
def mini_products(mini_catalog):
    return read_catalog(mini_catalog).products


@pytest.fixture(scope="session")
def trained(mini_products, featurizer):
    """An offer model trained on generated pairs of the 27 train products, and its loss history."""
    train = [p for p in mini_products if p.split == "train"]
    data = training_data(train, seed=0, copies=2, views=VIEWS)
    return train_offer_model(data, featurizer, config=TrainConfig(epochs=40, batch_size=16, mine_every=10))


@pytest.fixture(scope="session")
def matcher_dir(trained, mini_products, featurizer, tmp_path_factory):
    """That model calibrated on a generated scenario of the 13 held-out products, saved as a matcher folder."""
    held_out = [p for p in mini_products if p.split == "val"]
    val = Scenario(held_out, featurizer, seed="calib", catalogue_share=1.0, second_copy=1.0, views=VIEWS)
    # ~200 calibration pairs (39 matching): a 90% precision target can be certified at 80% confidence
    # (16 correct accepts, none wrong), not at the default 95% (29 correct accepts, none wrong). Every product has three
    # offers here (catalogue + two copies), so a pair's best rival is mostly the same product: no mutual-best gate
    matcher = calibrate(Matcher(trained[0], featurizer=featurizer), val, k=3, target_precision=0.9, target_npv=0.9, confidence=0.8,
                        mutual_best_only=False)
    folder = tmp_path_factory.mktemp("matcher")
    matcher.save(folder)
    return folder
