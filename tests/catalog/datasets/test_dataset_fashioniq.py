"""FashionIQ: image splits -> products, relative captions -> triplets, in the published layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import assert_images_ok, by_id, error_rows, photo, write_json

from modalens.catalog import CatalogError, read_catalog
from modalens.catalog.datasets import (
    FashionIQTriplet,
    read_fashioniq,
    read_fashioniq_triplets,
)


@pytest.fixture()
def fiq(tmp_path: Path) -> Path:
    root = tmp_path / "fashion-iq"
    photo(root / "images" / "B00DRESS01.png", (10, 10, 10))
    photo(root / "images" / "B00DRESS02.jpg", (200, 10, 10))  # mirrors re-encode as JPEG
    photo(root / "images" / "B00SHIRT01.png", (10, 200, 10))
    photo(root / "images" / "B00TOPTE01.png", (10, 10, 200))
    write_json(root / "image_splits" / "split.dress.train.json", ["B00DRESS01", "B00DRESS02", 42, "B00NOIMAGE"])
    write_json(root / "image_splits" / "split.shirt.val.json", ["B00SHIRT01"])
    write_json(root / "image_splits" / "split.toptee.test.json", ["B00TOPTE01", "B00DRESS01"])  # B00DRESS01 is train
    write_json(
        root / "captions" / "cap.dress.train.json",
        [
            {"target": "B00DRESS02", "candidate": "B00DRESS01", "captions": ["is red", " has no sleeves "]},
            {"target": "B00DRESS01", "candidate": 7, "captions": ["bad candidate"]},
            {"target": "B00DRESS01", "candidate": "B00DRESS02", "captions": "not a list"},
        ],
    )
    write_json(root / "captions" / "cap.toptee.test.json", [{"candidate": "B00TOPTE01", "captions": ["is blue", "plain"]}])
    return root


def test_products_images_splits_and_errors(fiq: Path) -> None:
    catalog = read_fashioniq(fiq)
    products = by_id(catalog)
    assert list(products) == ["B00DRESS01", "B00DRESS02", "B00SHIRT01", "B00TOPTE01"]
    assert {pid: p.split for pid, p in products.items()} == {
        "B00DRESS01": "train", "B00DRESS02": "train", "B00SHIRT01": "val", "B00TOPTE01": "test",
    }  # fmt: skip
    assert products["B00SHIRT01"].attributes == {"category": "shirt"}
    assert products["B00DRESS02"].images == [str(fiq / "images" / "B00DRESS02.jpg")]
    assert_images_ok(catalog)
    assert error_rows(catalog) == [
        ("split.dress.train.json", 3),  # 42 is not an ASIN
        ("split.dress.train.json", 4),  # no image
        ("split.toptee.test.json", 2),  # already in train
    ]
    assert "image not found" in catalog.errors[1].reason and "split 'train'" in catalog.errors[2].reason


def test_one_split_alias_limit_and_bad_split(fiq: Path) -> None:
    assert [p.id for p in read_fashioniq(fiq, "validation")] == ["B00SHIRT01"]
    assert [p.id for p in read_fashioniq(fiq, "train", limit=1)] == ["B00DRESS01"]
    with pytest.raises(CatalogError, match="no split 'dev2'"):
        read_fashioniq(fiq, "dev2")
    with pytest.raises(CatalogError, match="no image_splits"):
        read_fashioniq(fiq.parent)  # a folder without the layout
    with pytest.raises(CatalogError, match="not found"):
        read_fashioniq(fiq / "nope")


def test_triplets(fiq: Path) -> None:
    triplets = read_fashioniq_triplets(fiq)
    assert list(triplets) == [
        FashionIQTriplet("B00DRESS01", "B00DRESS02", ["is red", "has no sleeves"]),
        FashionIQTriplet("B00TOPTE01", None, ["is blue", "plain"]),  # the public test set withholds targets
    ]
    candidate, target, captions = triplets[0]  # a plain 3-tuple for callers
    assert (candidate, target, captions) == ("B00DRESS01", "B00DRESS02", ["is red", "has no sleeves"])
    assert error_rows(triplets) == [("cap.dress.train.json", 2), ("cap.dress.train.json", 3)]
    assert "candidate" in triplets.errors[0].reason and "captions" in triplets.errors[1].reason
    assert len(read_fashioniq_triplets(fiq, "test", categories=["toptee"])) == 1
    with pytest.raises(CatalogError, match="no category 'skirt'"):
        read_fashioniq_triplets(fiq, categories=["skirt"])


def test_read_catalog_spec(fiq: Path) -> None:
    catalog = read_catalog(f"fashioniq={fiq}:train")
    assert [p.id for p in catalog] == ["B00DRESS01", "B00DRESS02"] and catalog.name == "fashioniq-train"
    assert len(read_catalog(f"fashioniq={fiq}", limit=3)) == 3
