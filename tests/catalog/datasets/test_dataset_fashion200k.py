"""Fashion200k: tab-separated label files, photos grouped by their product folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import assert_images_ok, by_id, error_rows, photo, write_text

from modalens.catalog import CatalogError, read_catalog
from modalens.catalog.datasets import read_fashion200k

DRESS = "women/dresses/casual_and_day_dresses"
TOP = "women/tops/blouses"


@pytest.fixture()
def f200k(tmp_path: Path) -> Path:
    root = tmp_path / "fashion200k"
    for relative, colour in [
        (f"{DRESS}/51727804/51727804_0.jpeg", (0, 0, 0)),
        (f"{DRESS}/51727804/51727804_1.jpeg", (20, 20, 20)),
        (f"{DRESS}/60000001/60000001_0.jpeg", (200, 0, 0)),
        (f"{TOP}/70000001/70000001_2.jpeg", (0, 0, 200)),
    ]:
        photo(root / relative, colour)
    write_text(
        root / "labels" / "dress_train_detect_all.txt",
        f"{DRESS}/51727804/51727804_0.jpeg\t0.98\tblack shift dress\n"
        f"{DRESS}/60000001/60000001_0.jpeg\t0.75\tred wrap dress\n"
        f"{DRESS}/51727804/51727804_1.jpeg\t0.91\tblack shift dress\n"
        f"{DRESS}/51727804/51727804_9.jpeg\t0.50\tblack shift dress\n"  # photo missing
        f"{DRESS}/60000001/60000001_0.jpeg\tnot-a-score\tred wrap dress\n"
        "just one field\n"
        "\n",
    )
    write_text(
        root / "labels" / "top_test_detect_all.txt",
        f"{TOP}/70000001/70000001_2.jpeg\t0.88\tblue silk blouse\n"
        f"{DRESS}/60000001/60000001_0.jpeg\t0.75\tred wrap dress\n",  # a train product in test
    )
    return root


def test_products_grouped_by_folder(f200k: Path) -> None:
    catalog = read_fashion200k(f200k)
    products = by_id(catalog)
    assert list(products) == ["51727804", "60000001", "70000001"]
    dress = products["51727804"]
    assert dress.images == [
        str(f200k / DRESS / "51727804" / "51727804_0.jpeg"),
        str(f200k / DRESS / "51727804" / "51727804_1.jpeg"),
    ]
    assert dress.extra["detection_scores"] == [0.98, 0.91]
    assert dress.title == "black shift dress" and dress.split == "train"
    assert dress.attributes == {"category": "dress", "gender": "Women", "sub_category": "casual and day dresses"}
    assert products["70000001"].split == "test" and products["70000001"].attributes["category"] == "top"
    assert_images_ok(catalog)
    assert error_rows(catalog) == [
        ("dress_train_detect_all.txt", 4),
        ("dress_train_detect_all.txt", 5),
        ("dress_train_detect_all.txt", 6),
        ("top_test_detect_all.txt", 2),
    ]
    reasons = [e.reason for e in catalog.errors]
    assert "image not found" in reasons[0] and "not a number" in reasons[1] and "3 tab-separated" in reasons[2]
    assert "split 'train'" in reasons[3]


def test_split_limit_and_missing_layout(f200k: Path, tmp_path: Path) -> None:
    test = read_fashion200k(f200k, "test")
    assert [p.id for p in test] == ["70000001", "60000001"] and test.errors == []
    assert [p.id for p in read_fashion200k(f200k, "train", limit=1)] == ["51727804"]
    assert len(read_fashion200k(f200k, "train", limit=1)[0].images) == 2  # a kept product still gets all its photos
    with pytest.raises(CatalogError, match="no labels"):
        read_fashion200k(tmp_path)


def test_read_catalog_spec(f200k: Path) -> None:
    catalog = read_catalog(f"fashion200k={f200k}:train")
    assert [p.id for p in catalog] == ["51727804", "60000001"]
    assert all(p.split == "train" for p in catalog)
