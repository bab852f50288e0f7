"""Rendered scenes as a training source: seeded scenes of a catalogue's products, captioned by a scene captioner."""

from __future__ import annotations

import pytest
import torch
import yaml

from modalens.catalog import read_catalog
from modalens.embedding import CachedEncoder
from modalens.prompts import load_caption_set
from modalens.recipes import ConfigError, load_train_config
from modalens.recipes.contrastive import build_model
from modalens.recipes.data import caption_table, partners_together, prepare, read_sources
from modalens.scenes import build_scenes, product_captions, register_captioner


def _config(tmp_path, mini_catalog, **scene_source):
    config = {
        "model": "modalens-lite",
        "output": str(tmp_path / "run"),
        "data": {
            "catalog": str(mini_catalog),
            "sources": [
                {"catalog": str(mini_catalog), "split": "train", "captioner": "grounded", "caption_count": 2},
                {"catalog": str(mini_catalog), "split": "train", "weight": 0.5, "scenes": 5, "caption_count": 3, **scene_source},
            ],
        },
        "caption_set": "basic",
        "image_views": ["thumbnail-grey"],
        "model_overrides": {"embed_dim": 32, "head": {"kind": "linear"}},
        "optim": {"epochs": 1, "batch_size": 8},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_scene_source_gives_seeded_scenes_with_their_grounded_captions_only(tmp_path, mini_catalog):
    config = load_train_config(_config(tmp_path, mini_catalog))
    items = read_sources(config)
    train = read_catalog(mini_catalog).split("train").products
    scenes = build_scenes(train, 5, 0, kind="mixed", min_products=2, max_products=3)

    assert items.source_of == [0] * len(train) + [1] * 5
    assert items.scene == [False] * len(train) + [True] * 5
    assert [p.id for p in items.products[len(train):]] == [f"scene-{s.key}" for s in scenes]
    assert all(2 <= len(p.extra["products"]) <= 3 for p in items.products[len(train):])
    assert items.given[len(train):] == [s.captions("grounded", 3) for s in scenes]
    assert items.given[0] == product_captions(train[0], count=2)

    texts, choices = caption_table(items.products, load_caption_set(config.caption_set), items.given, [not s for s in items.scene])
    scene_texts = [{texts[i] for i in c} for c in choices[len(train):]]
    assert scene_texts == [set(s.captions("grounded", 3)) for s in scenes]  # no template caption from a scene's joined titles
    assert set(product_captions(train[0], count=2)) < {texts[i] for i in choices[0]}  # beside the caption set's


def test_scenes_train_on_their_own_features_in_every_view(tmp_path, mini_catalog):
    config = load_train_config(_config(tmp_path, mini_catalog))
    data = prepare(config, CachedEncoder(build_model(config), progress=False))
    scene = torch.tensor([p.id.startswith("scene-") for p in data.products])
    assert scene.sum() == 5
    assert torch.equal(data.images[1][scene], data.images[0][scene])  # a scene is its own view
    assert not torch.equal(data.images[1][~scene], data.images[0][~scene])  # photos get the grey thumbnail


def test_a_registered_captioner_captions_the_scenes(tmp_path, mini_catalog):
    register_captioner("test-shouting", lambda scene, count: [c.upper() for c in scene.captions("grounded", count)])
    items = read_sources(load_train_config(_config(tmp_path, mini_catalog, captioner="test-shouting")))
    scene_captions = [c for given, s in zip(items.given, items.scene) if s for c in given]
    assert scene_captions and all(c == c.upper() and any(ch.isalpha() for ch in c) for c in scene_captions)


@pytest.mark.parametrize(
    ("change", "named"),
    [({"scenes": -1}, "scenes"), ({"scene_kind": "runway"}, "scene_kind"), ({"scene_products": [3, 2]}, "scene_products"),
     ({"scene_products": [2, 9]}, "scene_products"), ({"caption_count": 0}, "caption_count"),
     ({"captioner": "no-such-vlm"}, "captioner"), ({"scene_count": 3}, "scene_count"), ({"scenes": 0, "scene_partners": True}, "scene_partners")],
)
def test_bad_scene_source_keys_are_refused_by_name(tmp_path, mini_catalog, change, named):
    with pytest.raises(ConfigError, match=rf"sources\[1\].*{named}"):
        load_train_config(_config(tmp_path, mini_catalog, **change))


def test_scene_partners_swap_places_or_colours_and_share_a_batch(tmp_path, mini_catalog):
    config = load_train_config(_config(tmp_path, mini_catalog, scene_partners=True))
    items = read_sources(config)
    pairs = [(i, j) for i, j in enumerate(items.partner) if j > i]
    assert pairs and all(items.partner[j] == i for i, j in pairs)
    assert all(items.scene[i] and items.scene[j] for i, j in pairs)
    for i, j in pairs:
        a, b = items.products[i].extra, items.products[j].extra
        assert a["products"] != b["products"] or a["boxes"] != b["boxes"]  # other garments, or the same ones moved
        assert items.given[i] != items.given[j]  # and the captions say so
    order = torch.arange(len(items.products)).flip(0)
    together = partners_together(order, torch.tensor(items.partner))
    assert len(together) == len(order)
    for i, j in pairs:
        k = together.tolist().index(i)
        assert together[k + 1] == j
