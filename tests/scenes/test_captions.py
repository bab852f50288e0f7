"""Grounded captions: each colour and pattern said with its own garment, each garment with its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalens.catalog import read_catalog
from modalens.catalog.schema import Product
from modalens.prompts import CaptionSetError
from modalens.scenes import (
    arrange,
    column,
    garment,
    load_scene_captions,
    product_captions,
    register_captioner,
    side,
)


@pytest.fixture(scope="module")
def photos(mini_catalog) -> dict[str, str]:
    return {p.get("article_type"): p.image for p in read_catalog(str(mini_catalog))}


def _product(pid: str, image: str, kind: str, colour: str, sub: str, title: str = "") -> Product:
    attributes = {"article_type": kind, "colour": colour, "sub_category": sub, "usage": "Casual"}
    return Product(id=pid, images=[image], title=title, attributes=attributes)


@pytest.fixture(scope="module")
def outfit(photos):
    shirt = _product("s", photos["Shirts"], "Shirts", "Navy Blue", "Topwear", "Roadster Men Striped Shirt")
    jeans = _product("j", photos["Jeans"], "Jeans", "Blue", "Bottomwear", "Levis Men Blue Jeans")
    belt = _product("b", photos["Belts"], "Belts", "Brown", "Belts", "Fastrack Men Brown Belt")
    return arrange([shirt, jeans, belt], column(["topwear", "bottomwear"]) + [side("left-low")], seed=7)


def test_a_garment_is_named_with_its_own_colour_and_the_pattern_its_title_says(photos):
    shirt = _product("s", photos["Shirts"], "Shirts", "Navy Blue", "Topwear", "Roadster Men Striped Shirt")
    assert garment(shirt).phrase() == "navy blue striped shirt"
    plain = _product("t", photos["Tshirts"], "Tshirts", "Multi", "Topwear", "Nike Tee")
    assert garment(plain).phrase() == "multicoloured t-shirt"
    assert garment(Product(id="x", attributes={"pattern": "Floral", "article_type": "Dresses"})).phrase() == "floral dress"


def test_the_first_scene_caption_binds_attributes_to_garments_and_places(outfit):
    captions = outfit.captions()
    assert captions[0] == "navy blue striped shirt above blue jeans, brown belt at the bottom left"
    assert len(captions) == len(load_scene_captions().scene) and len(set(captions)) == len(captions)
    for text in captions:  # every caption names every garment with its colour next to it
        assert "navy blue" in text and "blue jeans" in text and "brown belt" in text
    assert outfit.captions(count=5) == outfit.captions(count=5)


def test_scene_captions_are_distinct_whatever_the_scene_key_draws(outfit):
    """The draws hang on the scene's key (which names its photos' paths): no key may repeat a caption."""
    for seed in range(60):  # 60 keys: before redraws, some drew the same caption twice
        scene = arrange(outfit.products, column(["topwear", "bottomwear"]) + [side("left-low")], seed=seed)
        captions = scene.captions()
        assert len(set(captions)) == len(captions), (seed, captions)


def test_single_product_captions(photos):
    shirt = _product("s", photos["Shirts"], "Shirts", "Navy Blue", "Topwear", "Roadster Men Striped Shirt")
    texts = product_captions(shirt)
    assert texts[0] == "navy blue striped shirt"
    assert "navy blue striped shirt for casual wear" in texts


def test_a_local_captioning_model_plugs_in_by_name_or_as_a_callable(outfit, photos):
    @register_captioner("test-vlm")
    def vlm(scene, count):
        return [f"{len(scene.products)} things, {scene.render().size[0]} px"] * (count or 1)

    assert outfit.captions("test-vlm") == ["3 things, 384 px"]
    assert outfit.captions(lambda scene, count: ["mine"]) == ["mine"]
    assert product_captions(outfit.products[0], "test-vlm", count=2) == ["1 things, 384 px"] * 2
    with pytest.raises(CaptionSetError, match="unknown captioner 'nosuch'"):
        outfit.captions("nosuch")


def test_a_users_scene_caption_file_is_checked_when_loaded(tmp_path: Path):
    good = tmp_path / "mine.yaml"
    good.write_text("garment: ['{colour} {article}']\nsingle: {plain: '{g}'}\nscene: {plain: '{a} {relation} {b}{rest}'}\n")
    assert load_scene_captions(str(good)).garment == ("{colour} {article}",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("garment: ['{colour} {fabric}']\nsingle: {plain: '{g}'}\nscene: {plain: '{a}'}\n")
    with pytest.raises(CaptionSetError, match="fabric"):
        load_scene_captions(str(bad))
    with pytest.raises(CaptionSetError, match="no such file"):
        load_scene_captions("nosuch")
