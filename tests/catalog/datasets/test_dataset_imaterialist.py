"""iMaterialist-Fashion: 2018 attribute JSON + label map, and the 2019/2020 segmentation CSV."""

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
from modalens.catalog.datasets import read_imaterialist, read_imaterialist_segmentation

LABEL_MAP = """labelId,taskId,labelName,taskName
17,2,Black,color
62,1,Dresses,category
66,3,Female,gender
97,4,Knit,material
106,3,Male,gender
181,6,Stripes,pattern
214,5,V-Necks,neckline
"""


@pytest.fixture()
def imat(tmp_path: Path) -> Path:
    root = tmp_path / "imat2018"
    write_text(root / "iMat_fashion_2018_label_map_228.csv", LABEL_MAP)
    photo(root / "train" / "1.jpg", (0, 0, 0))
    photo(root / "train" / "2.jpg", (50, 50, 50))
    photo(root / "train" / "4.jpg", (90, 90, 90))
    photo(root / "validation" / "1.jpg", (200, 200, 200))
    write_json(
        root / "train.json",
        {
            "images": [
                {"imageId": "1", "url": "https://contestimg.wish.com/api/webimage/1-large"},
                {"imageId": "2", "url": "https://contestimg.wish.com/api/webimage/2-large"},
                {"imageId": "3", "url": "https://contestimg.wish.com/api/webimage/3-large"},  # never downloaded
                {"url": "https://example.com/no-id"},
                {"imageId": "4", "url": "https://contestimg.wish.com/api/webimage/4-large"},
            ],
            "annotations": [
                {"imageId": "1", "labelId": ["62", "17", "66", "214", "181", "97"]},
                {"imageId": "2", "labelId": ["62", "999"]},  # 999 is not a label
                {"imageId": "9", "labelId": ["17"]},  # no such image
                {"imageId": "4", "labelId": ["106"]},
            ],
        },
    )
    write_json(
        root / "validation.json", {"images": [{"imageId": "1", "url": "u"}], "annotations": [{"imageId": "1", "labelId": ["17"]}]}
    )
    return root


def test_attributes_labels_and_errors(imat: Path) -> None:
    catalog = read_imaterialist(imat)
    products = by_id(catalog)
    assert list(products) == ["train-1", "train-4", "val-1"]  # ids restart per split, hence the prefix
    dress = products["train-1"]
    assert dress.attributes == {
        "category": "Dresses",
        "colour": "Black",
        "gender": "Women",
        "pattern": "Stripes",
        "material": "Knit",
    }
    assert dress.extra["labels"] == ["Dresses", "Black", "Female", "V-Necks", "Stripes", "Knit"]
    assert dress.extra["label_ids"] == [62, 17, 66, 214, 181, 97] and dress.extra["neckline"] == "V-Necks"
    assert dress.extra["url"].endswith("1-large") and dress.split == "train"
    assert products["train-4"].attributes == {"gender": "Men"}
    assert products["val-1"].split == "val" and products["val-1"].image == str(imat / "validation" / "1.jpg")
    assert_images_ok(catalog)
    assert error_rows(catalog) == [("train.json", 4), ("train.json", 2), ("train.json", 3), ("train.json", 3)]
    reasons = [e.reason for e in catalog.errors]
    assert reasons[0].startswith("images:") and "no imageId" in reasons[0]
    assert "999 is not in the label map" in reasons[1]
    assert "imageId '9' is not in images" in reasons[2]
    assert "image 3 not downloaded" in reasons[3]


def test_readme_spelling_without_label_map(tmp_path: Path) -> None:
    root = tmp_path / "imat"
    photo(root / "images" / "test" / "5.jpg")
    write_json(
        root / "val.json",
        {"images": [{"image_id": 5, "url": ["https://x/5"]}], "annotations": [{"image_id": 5, "label_id": [3, 17]}]},
    )
    photo(root / "val" / "5.jpg")
    write_json(root / "test.json", {"images": [{"image_id": 5, "url": ["https://x/5"]}]})
    catalog = read_imaterialist(root)
    products = by_id(catalog)
    assert products["val-5"].extra["labels"] == ["3", "17"] and products["val-5"].attributes == {}
    assert products["test-5"].extra["label_ids"] == [] and products["test-5"].extra["url"] == "https://x/5"
    assert catalog.errors == []
    assert [p.id for p in read_catalog(f"imaterialist={root}:test")] == ["test-5"]


SEG_LABELS = {
    "info": {"year": 2020},
    "categories": [
        {"id": 0, "name": "shirt, blouse", "supercategory": "upperbody", "level": 1},
        {"id": 6, "name": "pants", "supercategory": "lowerbody", "level": 1},
        {"id": 31, "name": "sleeve", "supercategory": "garment parts", "level": 2},
    ],
    "attributes": [
        {"id": 115, "name": "regular (fit)", "supercategory": "silhouette", "level": 1},
        {"id": 143, "name": "plain (pattern)", "supercategory": "textile pattern", "level": 1},
    ],
}


def test_segmentation_2020(tmp_path: Path) -> None:
    root = tmp_path / "imat2020"
    write_json(root / "label_descriptions.json", SEG_LABELS)
    photo(root / "train" / "aa11.jpg")
    photo(root / "train" / "bb22.jpg")
    write_text(
        root / "train.csv",
        "ImageId,EncodedPixels,Height,Width,ClassId,AttributesIds\n"
        'aa11,"1 3 10 5",16,12,0,"115,143"\n'
        "aa11,40 2,16,12,31,\n"
        "aa11,60 2,16,12,6,143\n"
        "bb22,1 1,16,12,99,\n"  # class 99 does not exist
        "bb22,1 1,x,12,6,\n"  # bad height
        "bb22,5 1,16,12,6,\n"
        "cc33,1 1,16,12,6,\n",  # photo missing
    )
    catalog = read_imaterialist_segmentation(root)
    products = by_id(catalog)
    assert list(products) == ["aa11", "bb22"]
    shirt = products["aa11"]
    assert shirt.extra["categories"] == ["shirt, blouse", "sleeve", "pants"]
    assert shirt.extra["attribute_names"] == ["regular (fit)", "plain (pattern)"] and shirt.extra["segments"] == 3
    assert shirt.attributes == {"category": "shirt, blouse, pants", "pattern": "plain (pattern)"}
    assert (shirt.extra["height"], shirt.extra["width"], shirt.split) == (16, 12, "train")
    assert products["bb22"].extra["segments"] == 1
    assert_images_ok(catalog)
    assert error_rows(catalog) == [("train.csv", 5), ("train.csv", 6), ("train.csv", 8)]
    assert "class id 99" in catalog.errors[0].reason and "Height" in catalog.errors[1].reason
    with pytest.raises(CatalogError, match="no split 'test'"):
        read_imaterialist_segmentation(root, "test")


def test_segmentation_2019_class_id_form(tmp_path: Path) -> None:
    root = tmp_path / "imat2019"
    write_json(root / "label_descriptions.json", SEG_LABELS)
    photo(root / "train" / "dd44.jpg")
    write_text(root / "train.csv", "ImageId,EncodedPixels,Height,Width,ClassId\ndd44,1 2,16,12,0_115_143\ndd44,1 2,16,12,6_abc\n")
    catalog = read_catalog(f"imaterialist-seg={root}")
    assert catalog[0].extra["labels"] == ["shirt, blouse", "regular (fit)", "plain (pattern)"]
    assert error_rows(catalog) == [("train.csv", 3)] and "'abc'" in catalog.errors[0].reason
