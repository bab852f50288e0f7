"""Polyvore Outfits: item metadata -> products, split files -> outfits."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import assert_images_ok, by_id, error_rows, photo, write_json

from modalens.catalog import CatalogError, read_catalog
from modalens.catalog.datasets import (
    PolyvoreOutfit,
    read_polyvore,
    read_polyvore_outfits,
)


@pytest.fixture()
def polyvore(tmp_path: Path) -> Path:
    root = tmp_path / "polyvore_outfits"
    for item in ("1001", "1002", "1004", "1005"):
        photo(root / "images" / f"{item}.jpg")
    write_json(
        root / "polyvore_item_metadata.json",
        {
            "1001": {"url_name": "striped tee", "description": "Cotton tee.", "catgeories": ["Women's Fashion", "Clothing", "Tops"],
                     "title": "Striped T-shirt", "related": [], "category_id": "104", "semantic_category": "tops"},
            "1002": {"url_name": "black ankle boots", "description": "", "catgeories": ["Shoes", "Boots"],
                     "title": "", "related": [], "category_id": "261", "semantic_category": "shoes"},
            "1003": {"url_name": "no photo", "title": "Lost bag", "semantic_category": "bags", "category_id": "35"},
            "1004": "not an object",
            "1005": {"url_name": "gold hoops", "title": "Gold hoop earrings", "semantic_category": "jewellery", "category_id": "52"},
        },
    )  # fmt: skip
    write_json(
        root / "nondisjoint" / "train.json",
        [
            {"set_id": "s1", "items": [{"item_id": "1002", "index": 2}, {"item_id": "1001", "index": 1}]},
            {"set_id": "s2", "items": [{"item_id": "1005", "index": 1}, {"item_id": "7777", "index": 2}]},
            {"items": []},
        ],
    )
    write_json(root / "nondisjoint" / "valid.json", [{"set_id": "s3", "items": [{"item_id": "1001", "index": 1}]}])
    write_json(root / "nondisjoint" / "test.json", [])
    write_json(root / "disjoint" / "test.json", [{"set_id": "d1", "items": [{"item_id": "1005", "index": 1}]}])
    return root


def test_products_from_metadata(polyvore: Path) -> None:
    catalog = read_polyvore(polyvore)
    products = by_id(catalog)
    assert list(products) == ["1001", "1002", "1005"]
    tee = products["1001"]
    assert tee.title == "Striped T-shirt" and tee.description == "Cotton tee." and tee.split is None
    assert tee.attributes == {"category": "tops"}
    assert tee.extra == {"categories": ["Women's Fashion", "Clothing", "Tops"], "category_id": "104"}
    assert products["1002"].title == "black ankle boots"  # empty title falls back to url_name
    assert_images_ok(catalog)
    assert error_rows(catalog) == [("polyvore_item_metadata.json", 3), ("polyvore_item_metadata.json", 4)]
    assert "image not found" in catalog.errors[0].reason and "must be an object" in catalog.errors[1].reason


def test_split_products_follow_outfits(polyvore: Path) -> None:
    train = read_polyvore(polyvore, "train")
    assert [(p.id, p.split) for p in train] == [("1001", "train"), ("1002", "train"), ("1005", "train")]
    assert error_rows(train) == [("train.json", 3), ("train.json", 2)]  # bad outfit, then 7777 not in metadata
    assert "7777" in train.errors[1].reason
    assert [p.id for p in read_polyvore(polyvore, "valid")] == ["1001"]
    assert [p.id for p in read_catalog(f"polyvore={polyvore}:disjoint-test")] == ["1005"]
    assert [p.id for p in read_polyvore(polyvore, "train", limit=2)] == ["1001", "1002"]


def test_outfits(polyvore: Path) -> None:
    outfits = read_polyvore_outfits(polyvore)
    assert list(outfits) == [
        PolyvoreOutfit("s1", ["1001", "1002"], "train"),  # ordered by index
        PolyvoreOutfit("s2", ["1005", "7777"], "train"),
        PolyvoreOutfit("s3", ["1001"], "val"),
    ]
    assert error_rows(outfits) == [("train.json", 3)] and "set_id" in outfits.errors[0].reason
    assert list(read_polyvore_outfits(polyvore, "test", version="disjoint")) == [PolyvoreOutfit("d1", ["1005"], "test")]
    with pytest.raises(CatalogError, match="no split version 'semi'"):
        read_polyvore_outfits(polyvore, version="semi")
