"""Scenes: seeded and repeatable, built from one split only, and their records say truly what is where."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modalens.catalog import read_catalog
from modalens.scenes import SceneError, build_scenes, product_role, scene_products


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(str(mini_catalog)).products


def test_same_seed_same_scenes_bit_for_bit_and_scene_i_does_not_depend_on_count(products):
    first = build_scenes(products, 6, seed=3, split="train")
    again = build_scenes(products, 6, seed=3, split="train")
    assert [s.key for s in first] == [s.key for s in again]
    assert all(np.array_equal(np.asarray(a.render()), np.asarray(b.render())) for a, b in zip(first[:2], again[:2]))
    assert [s.key for s in build_scenes(products, 3, seed=3, split="train")] == [s.key for s in first[:3]]
    other = build_scenes(products, 6, seed=4, split="train")
    assert {s.key for s in other}.isdisjoint(s.key for s in first)


def test_a_split_builds_scenes_from_its_own_products_only(products):
    for split in ("train", "val"):
        scenes = build_scenes(products, 12, seed=0, split=split)
        assert all(p.split == split for s in scenes for p in s.products)
    with pytest.raises(SceneError, match="split 'test'"):
        build_scenes(products, 1, split="test")  # the fixture has no test split


def test_scene_garments_are_distinct_types_and_counts_stay_in_bounds(products):
    for scene in build_scenes(products, 20, seed=1, split="train", min_products=2, max_products=5):
        types = [p.get("article_type") for p in scene.products]
        assert 2 <= len(types) <= 5 and len(set(types)) == len(types)
        assert all(0 <= x0 < x1 <= scene.size and 0 <= y0 < y1 <= scene.size for x0, y0, x1, y1 in scene.boxes)


def test_outfits_read_like_a_person_topwear_above_bottomwear_above_shoes_accessories_at_the_side(products):
    scenes = build_scenes(products, 12, seed=2, kind="outfit", split="train")
    checked = 0
    for scene in scenes:
        assert scene.kind == "outfit"
        roles = [product_role(p) for p in scene.products]
        for i, role in enumerate(roles):
            if role == "topwear" and "bottomwear" in roles:
                assert scene.relation(i, roles.index("bottomwear")) == "above"
                assert scene.relation(roles.index("bottomwear"), i) == "below"
                checked += 1
            if role == "footwear":
                assert all(scene.relation(i, j) == "below" for j, r in enumerate(roles) if r in ("topwear", "bottomwear"))
            if role == "accessory":
                assert scene.position(i).split()[-1] in ("left", "right")
    assert checked >= 6


def test_each_box_holds_what_its_product_drew(products):
    """Drop one product from a scene's record: every pixel that changes lies inside that product's box."""
    scene = next(s for s in build_scenes(products, 8, seed=5, kind="collage", split="train") if len(s.products) >= 3)
    full = np.asarray(scene.render()).astype(int)
    for i in range(len(scene.products)):
        rest = dataclasses.replace(
            scene, products=scene.products[:i] + scene.products[i + 1 :], placements=scene.placements[:i] + scene.placements[i + 1 :]
        )
        changed = np.abs(full - np.asarray(rest.render()).astype(int)).max(axis=2) > 0
        ys, xs = np.nonzero(changed)
        assert len(xs) > 100, "the product drew nothing"
        x0, y0, x1, y1 = scene.boxes[i]
        assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1


def test_scene_products_render_once_and_carry_their_ground_truth(products, tmp_path):
    scenes = build_scenes(products, 2, seed=0, split="val")
    made = scene_products(scenes, tmp_path)
    assert [p.id for p in made] == [f"scene-{s.key}" for s in scenes]
    assert all(p.split == "val" and p.extra["products"] == [q.id for q in s.products] for p, s in zip(made, scenes))
    stamp = [(tmp_path / f"{s.key}.png").stat().st_mtime_ns for s in scenes]
    scene_products(scenes, tmp_path)
    assert [(tmp_path / f"{s.key}.png").stat().st_mtime_ns for s in scenes] == stamp


def test_unusable_requests_are_clear_errors(products):
    with pytest.raises(SceneError, match="unknown scene kind"):
        build_scenes(products, 1, kind="street")
    with pytest.raises(SceneError, match="no product"):
        build_scenes([dataclasses.replace(p, images=[]) for p in products[:4]], 1)


def test_kagl_train_and_test_scenes_never_share_a_product(kagl_root):
    products = read_catalog(str(kagl_root / "products.csv")).products
    train = build_scenes(products, 15, seed=0, split="train", kind="outfit")
    test = build_scenes(products, 15, seed=0, split="test", kind="outfit")
    assert all(p.split == "train" for s in train for p in s.products) and all(p.split == "test" for s in test for p in s.products)
    assert sum(s.kind == "outfit" for s in test) == 15  # KAGL test has topwear and bottomwear: no fallback to collages
    for scene in test:
        roles = [product_role(p) for p in scene.products]
        if "topwear" in roles and "bottomwear" in roles:
            assert scene.relation(roles.index("topwear"), roles.index("bottomwear")) == "above"
