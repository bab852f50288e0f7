"""The instances recipe: Hungarian assignment, and a tiny run that finds products in scenes better than before training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from modalens.catalog import read_catalog
from modalens.embedding import CachedEncoder
from modalens.models import load
from modalens.models.instance_decoder import DECODER_FILE, InstanceDecoder, load_decoder
from modalens.prompts import load_caption_set
from modalens.recipes import ConfigError, load_train_config
from modalens.recipes.instances import SceneData, assign, scene_recall
from modalens.scenes import build_scenes


def test_assign_maximises_total_similarity_with_distinct_queries():
    similarity = np.array([[0.9, 0.8, 0.1], [0.85, 0.2, 0.1]])  # greedy would give both products query 0
    assert assign(similarity).tolist() == [1, 0]
    assert assign(np.array([[0.1, 0.2, 0.7]])).tolist() == [2]
    with pytest.raises(ValueError, match="cannot each get"):
        assign(np.zeros((3, 2)))


def _config(tmp_path, catalog, **instances):
    config = {
        "recipe": "instances",
        "output": str(tmp_path / "run"),
        "data": {"catalog": str(catalog)},
        "tune": {"init": "modalens-photo"},
        "instances": instances,
    }
    path = tmp_path / "instances.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_train_config(path)


def test_config_checks_name_the_instances_key(tmp_path, mini_catalog):
    with pytest.raises(ConfigError, match="instances.decoder"):
        _config(tmp_path, mini_catalog, decoder={"queries": 2})  # fewer queries than max_products
    with pytest.raises(ConfigError, match="instances.kind"):
        _config(tmp_path, mini_catalog, kind="street")


def test_a_tiny_run_finds_products_in_unseen_scenes_better_than_an_untrained_decoder(tiny_instance_model, mini_catalog):
    trained, metadata = load_decoder(tiny_instance_model / DECODER_FILE)
    history = json.loads((tiny_instance_model / "history.json").read_text())
    assert int(metadata["best_epoch"]) > 0 and history[-1]["loss"] < history[1]["loss"]
    products = read_catalog(str(mini_catalog)).products
    model = load("modalens-photo").model
    encoder = CachedEncoder(model, progress=False)
    fresh = SceneData(encoder, build_scenes(products, 32, seed=99, split="train", max_products=4), load_caption_set("basic"))
    gallery = torch.from_numpy(encoder.image_embeddings(products)[0])
    ids = [p.id for p in products]
    torch.manual_seed(0)
    untrained = InstanceDecoder(trained.config)
    before = scene_recall(untrained, model.image_head, fresh, gallery, ids, k=5)
    after = scene_recall(trained, model.image_head, fresh, gallery, ids, k=5)
    assert after > before + 0.08, (before, after)
