"""Atlas: the repository's atlas_dataset.json (category path as tokens) and a CSV re-export."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import (
    assert_images_ok,
    by_id,
    error_rows,
    photo,
    write_json,
    write_text,
)

from modalens.catalog import CatalogError, read_catalog
from modalens.catalog.datasets import read_atlas


@pytest.fixture()
def atlas(tmp_path: Path) -> Path:
    root = tmp_path / "atlas"
    photo(root / "Men-Western_Wear-Shirts" / "images" / "203_large.jpeg")  # where create_dataset.py puts it
    photo(root / "atlas_dataset" / "Women-Indian_Wear-Kurtas" / "images" / "k1.jpg")  # the JSON's own relative path
    write_json(
        root / "atlas_dataset.json",
        {
            "images": [
                {"filename": "/home/someone/atlas_dataset/Men-Western_Wear-Shirts/images/203_large.jpeg",
                 "title": "Men's slim fit cotton shirt", "sentences": [{"tokens": ["Men", "Western Wear", "Shirts"]}],
                 "image_url": "https://example.com/203_large.jpeg", "split": "train"},
                {"filename": "atlas_dataset/Women-Indian_Wear-Kurtas/images/k1.jpg", "title": "Printed kurta",
                 "sentences": [{"tokens": ["Women", "Indian Wear", "Kurtas"]}], "split": "test"},
                {"filename": "atlas_dataset/Women-Indian_Wear-Kurtas/images/gone.jpg", "title": "Not downloaded",
                 "sentences": [{"tokens": ["Women", "Indian Wear", "Kurtas"]}], "split": "train"},
                {"filename": "x.jpg", "title": "No path", "sentences": [{"tokens": "Men"}], "split": "train"},
                {"filename": "y.jpg", "title": ["not", "text"], "sentences": [{"tokens": ["Men", "Shirts"]}]},
                {"filename": "/elsewhere/Men-Western_Wear-Shirts/images/203_large.jpeg", "title": "Again",
                 "sentences": [{"tokens": ["Men", "Western Wear", "Shirts"]}], "split": "val"},
            ]
        },
    )  # fmt: skip
    return root


def test_json_layout(atlas: Path) -> None:
    catalog = read_atlas(atlas)
    products = by_id(catalog)
    assert list(products) == ["Men-Western_Wear-Shirts/203_large", "Women-Indian_Wear-Kurtas/k1"]
    shirt = products["Men-Western_Wear-Shirts/203_large"]
    assert shirt.attributes == {"gender": "Men", "article_type": "Shirts", "sub_category": "Western Wear"}
    assert shirt.extra == {"category_path": "Men > Western Wear > Shirts", "image_url": "https://example.com/203_large.jpeg"}
    assert shirt.title == "Men's slim fit cotton shirt" and shirt.split == "train"
    assert shirt.image == str(atlas / "Men-Western_Wear-Shirts" / "images" / "203_large.jpeg")
    assert products["Women-Indian_Wear-Kurtas/k1"].split == "test"
    assert_images_ok(catalog)
    assert error_rows(catalog) == [("atlas_dataset.json", n) for n in (3, 4, 5, 6)]
    reasons = [e.reason for e in catalog.errors]
    assert "image not found" in reasons[0] and "tokens" in reasons[1] and "expected text" in reasons[2]
    assert "appears twice" in reasons[3]
    assert [p.id for p in read_atlas(atlas, "test")] == ["Women-Indian_Wear-Kurtas/k1"]
    assert [p.id for p in read_catalog(f"atlas={atlas}:train")] == ["Men-Western_Wear-Shirts/203_large"]


def test_csv_export_and_missing_layout(atlas: Path, tmp_path: Path) -> None:
    csv = write_text(
        atlas / "export.csv",
        "image,title,category_path,split\n"
        "Men-Western_Wear-Shirts/images/203_large.jpeg,Cotton shirt,Apparel > Topwear > Shirts,val\n"
        "nowhere.jpg,Lost,Women > Dresses,train\n",
    )
    catalog = read_atlas(csv)  # root may name the file itself
    assert [p.attributes for p in catalog] == [
        {"article_type": "Shirts", "sub_category": "Topwear", "master_category": "Apparel"}
    ]
    assert catalog[0].split == "val" and error_rows(catalog) == [("export.csv", 3)]
    with pytest.raises(CatalogError, match="atlas_dataset.json"):
        read_atlas(tmp_path)


def test_csv_export_bad_bytes_and_open_quotes_cost_only_their_rows(atlas: Path) -> None:
    """The dataset CSVs stream through the same row reader as shop catalogues."""
    photo(atlas / "a.jpg")
    photo(atlas / "b.jpg")
    photo(atlas / "c.jpg")
    path = atlas / "export.csv"
    path.write_bytes(
        b"image,title,category_path,split\n"
        b"a.jpg,Caf\xe9 shirt,Men > Shirts,train\n"  # line 2: Latin-1
        b'b.jpg,"Open quote,Men > Shirts,train\n'  # line 3: never closed
        b"c.jpg,Fine,Men > Shirts,train\n"  # line 4
    )
    catalog = read_atlas(path)
    assert [p.image for p in catalog] == [str(atlas / "c.jpg")]
    assert error_rows(catalog) == [("export.csv", 2), ("export.csv", 3)]
    assert "not UTF-8" in catalog.errors[0].reason and "unterminated quote" in catalog.errors[1].reason
