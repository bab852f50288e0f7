"""Captions from product fields and zero-shot prompt ensembles."""

from __future__ import annotations

import pytest

from modalens.catalog.schema import Product
from modalens.prompts import (
    CAPTION_TEMPLATES,
    ZERO_SHOT_TEMPLATES,
    caption,
    captions,
    product_fields,
    readable,
    zero_shot_prompts,
)


def _product(**attributes: str) -> Product:
    defaults = {"colour": "Red", "article_type": "Tshirts", "gender": "Men"}
    defaults.update(attributes)
    return Product(id="p1", title="  Nike   Dri-FIT Tee ", attributes=defaults)


def test_caption_fills_template_with_readable_values() -> None:
    text = caption(_product(), "a photo of a {colour} {article_type} for {gender}")
    assert text == "a photo of a red t-shirt for men"


def test_caption_collapses_whitespace() -> None:
    assert caption(_product(), "{title}") == "Nike Dri-FIT Tee"
    assert caption(_product(), "  {colour}   {article_type} ") == "red t-shirt"


def test_caption_is_none_when_a_field_is_missing() -> None:
    assert caption(_product(), "{colour} {article_type} for {season}") is None
    assert caption(Product(id="x", attributes={"colour": "Blue"}), "{title}") is None  # empty title


@pytest.mark.parametrize("missing", ["NA", "na", "nan", "None", "  NA  "])
def test_na_like_values_count_as_missing(missing: str) -> None:
    product = _product(colour=missing)
    assert "colour" not in product_fields(product)
    assert caption(product, "{colour} {article_type}") is None
    assert caption(product, "{article_type} for {gender}") == "t-shirt for men"


def test_na_title_counts_as_missing() -> None:
    product = Product(id="x", title="NA", attributes={"colour": "Blue"})
    assert caption(product, "{title}") is None


def test_template_without_fields_is_returned_as_is() -> None:
    assert caption(_product(), "a fashion product") == "a fashion product"


def test_captions_keeps_only_complete_templates() -> None:
    product = _product()  # no usage, season or year
    built = captions(product)
    assert built == {
        "title": "Nike Dri-FIT Tee",
        "type_colour_gender": "a photo of a red t-shirt for men",
        "colour_type": "red t-shirt",
    }
    assert set(built) <= set(CAPTION_TEMPLATES)
    full = captions(_product(usage="Sports", season="Summer", year="2012"))
    assert full["full"] == "a sports red t-shirt for men, summer 2012"
    assert full["title_usage_season"] == "Nike Dri-FIT Tee, sports wear for summer"


def test_captions_with_custom_templates() -> None:
    assert captions(_product(), {"a": "{gender}", "b": "{brand}"}) == {"a": "men"}


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Tshirts", "t-shirt"),
        ("tshirts", "t-shirt"),
        ("T-shirt/top", "t-shirt or top"),
        ("Innerwear  Vests", "innerwear vest"),
        ("Casual_Shoes", "casual shoes"),
        ("  Jeans ", "jeans"),
    ],
)
def test_readable(label: str, expected: str) -> None:
    assert readable(label) == expected


def test_zero_shot_prompts_shape_and_content() -> None:
    prompts = zero_shot_prompts(["Tshirts", "Jeans", "Watches"])
    assert len(prompts) == 3
    assert all(len(group) == len(ZERO_SHOT_TEMPLATES) for group in prompts)
    assert prompts[0][0] == "a photo of t-shirt"
    assert prompts[1] == [t.format(label="jeans") for t in ZERO_SHOT_TEMPLATES]
    assert all("{" not in p for group in prompts for p in group)


def test_zero_shot_prompts_custom_templates_and_empty_labels() -> None:
    assert zero_shot_prompts(["Tshirts"], ["{label}!", "x {label}"]) == [["t-shirt!", "x t-shirt"]]
    assert zero_shot_prompts([]) == []
