"""DeepFashion In-shop (partition list, item list, descriptions) and DeepFashion-MultiModal (captions, labels)."""

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
from modalens.catalog.datasets import (
    read_deepfashion_inshop,
    read_deepfashion_multimodal,
)

PARTITION = """9
image_name item_id evaluation_status
img/WOMEN/Dresses/id_00000001/02_1_front.jpg      id_00000001  train
img/WOMEN/Dresses/id_00000001/02_3_back.jpg       id_00000001  train
img/MEN/Denim/id_00000002/01_1_front.jpg          id_00000002  query
img/MEN/Denim/id_00000002/01_2_side.jpg           id_00000002  gallery
img/MEN/Denim/id_00000002/01_4_full.jpg           id_00000002  gallery
img/MEN/Denim/id_00000002/01_7_additional.jpg     id_00000002
img/WOMEN/Dresses/id_00000001/02_2_side.jpg       id_00000001  validation
img/WOMEN/Dresses/id_00000001/02_4_full.jpg       id_00000001  train
img/WOMEN/Skirts/id_00000099/01_1_front.jpg       id_00000099  train
"""


@pytest.fixture()
def inshop(tmp_path: Path) -> Path:
    root = tmp_path / "In-shop"
    for line in PARTITION.splitlines()[2:]:
        name = line.split()[0]
        if not name.endswith("02_4_full.jpg"):  # that photo is missing
            photo(root / "Img" / name)
    write_text(root / "Eval" / "list_eval_partition.txt", PARTITION)
    write_text(root / "Anno" / "list_item_inshop.txt", "2\nid_00000001\nid_00000002\n")
    write_json(
        root / "Anno" / "list_description_inshop.json",
        [{"item": "id_00000001", "color": "Navy", "description": ["A navy shift dress.", "Lined."]}],
    )
    return root


def test_inshop_items_splits_and_errors(inshop: Path) -> None:
    catalog = read_deepfashion_inshop(inshop)
    products = by_id(catalog)
    assert list(products) == ["id_00000001", "id_00000002-query", "id_00000002-gallery"]
    dress = products["id_00000001"]
    assert dress.split == "train" and dress.extra["views"] == ["front", "back"]
    assert dress.images == [
        str(inshop / "Img/img/WOMEN/Dresses/id_00000001/02_1_front.jpg"),
        str(inshop / "Img/img/WOMEN/Dresses/id_00000001/02_3_back.jpg"),
    ]
    assert dress.attributes == {"gender": "Women", "category": "Dresses", "colour": "Navy"}
    assert dress.description == "A navy shift dress. Lined."
    gallery = products["id_00000002-gallery"]
    assert gallery.split == "gallery" and len(gallery.images) == 2 and gallery.extra["item_id"] == "id_00000002"
    assert products["id_00000002-query"].attributes == {"gender": "Men", "category": "Denim"}
    assert_images_ok(catalog)
    assert error_rows(catalog) == [("list_eval_partition.txt", n) for n in (8, 9, 10, 11)]
    reasons = [e.reason for e in catalog.errors]
    assert "got 2 fields" in reasons[0]
    assert "unknown evaluation status 'validation'" in reasons[1]
    assert "image not found" in reasons[2] and "not in list_item_inshop.txt" in reasons[3]


def test_inshop_split_choices_and_header_count(inshop: Path) -> None:
    assert [p.id for p in read_deepfashion_inshop(inshop, "query")] == ["id_00000002-query"]
    assert [p.split for p in read_deepfashion_inshop(inshop, "test")] == ["query", "gallery"]
    assert [p.id for p in read_catalog(f"deepfashion-inshop={inshop}:gallery")] == ["id_00000002-gallery"]
    text = (inshop / "Eval" / "list_eval_partition.txt").read_text().replace("9\n", "12\n", 1)
    (inshop / "Eval" / "list_eval_partition.txt").write_text(text)
    catalog = read_deepfashion_inshop(inshop, "train")
    assert ("list_eval_partition.txt", 1) in error_rows(catalog)
    assert any("header says 12 images but 9" in e.reason for e in catalog.errors)
    with pytest.raises(CatalogError, match="list_eval_partition"):
        read_deepfashion_inshop(inshop / "Anno")


SHAPE = {  # image -> 12 shape codes
    "WOMEN-Dresses-id_00000002-01_1_front.jpg": "0 4 3 0 4 0 0 0 0 2 2 1",
    "WOMEN-Dresses-id_00000002-01_2_side.jpg": "5 4 3 0 4 0 0 0 1 7 2 1",
    "MEN-Denim-id_00000080-01_7_additional.jpg": "3 3 0 0 0 0 1 0 1 5 1 0",
}


@pytest.fixture()
def multimodal(tmp_path: Path) -> Path:
    root = tmp_path / "DeepFashion-MultiModal"
    for name in SHAPE:
        photo(root / "images" / name)
    write_json(
        root / "captions.json",
        {
            "WOMEN-Dresses-id_00000002-01_2_side.jpg": "She wears a sleeveless dress.",
            "MEN-Denim-id_00000080-01_7_additional.jpg": "His denim jeans are long.",
            "WOMEN-Dresses-id_00000002-01_1_front.jpg": "The lady wears a round-neck dress.",
            "not-a-deepfashion-name.jpg": "x",
            "MEN-Denim-id_00000081-01_1_front.jpg": "missing photo",
            "WOMEN-Tees_Tanks-id_00000003-01_1_front.jpg": ["not", "text"],
        },
    )
    shape = "".join(f"{name} {codes}\n" for name, codes in SHAPE.items()) + "MEN-Denim-id_00000080-01_1_front.jpg 1 2 3\n"
    write_text(root / "labels" / "shape" / "shape_anno_all.txt", shape)
    write_text(
        root / "labels" / "texture" / "fabric_ann.txt",
        "WOMEN-Dresses-id_00000002-01_2_side.jpg 7 7 7\n"
        "WOMEN-Dresses-id_00000002-01_1_front.jpg 5 7 7\n"
        "MEN-Denim-id_00000080-01_7_additional.jpg 1 0 9\n",  # 9 is not a fabric code
    )
    write_text(root / "labels" / "texture" / "pattern_ann.txt", "WOMEN-Dresses-id_00000002-01_1_front.jpg 0 7 7\n")
    return root


def test_multimodal_grouping_captions_and_labels(multimodal: Path) -> None:
    catalog = read_deepfashion_multimodal(multimodal)
    products = by_id(catalog)
    assert list(products) == ["WOMEN-Dresses-id_00000002", "MEN-Denim-id_00000080"]
    dress = products["WOMEN-Dresses-id_00000002"]
    assert [Path(p).name for p in dress.images] == [
        "WOMEN-Dresses-id_00000002-01_2_side.jpg",
        "WOMEN-Dresses-id_00000002-01_1_front.jpg",
    ]
    assert dress.extra["captions"] == ["She wears a sleeveless dress.", "The lady wears a round-neck dress."]
    assert dress.description == "She wears a sleeveless dress." and dress.extra["views"] == ["side", "front"]
    # first photo's sleeve code is 5 (NA), so the front view's 0 (sleeveless) is used; neckline 7 (NA) -> 2 (round)
    assert dress.extra["sleeve_length"] == "sleeveless" and dress.extra["neckline"] == "round"
    assert dress.extra["waist_accessories"] == "belt"
    assert dress.attributes == {"gender": "Women", "category": "Dresses", "material": "chiffon", "pattern": "floral"}
    denim = products["MEN-Denim-id_00000080"]
    assert denim.attributes["gender"] == "Men" and "material" not in denim.attributes  # its fabric line is malformed
    assert denim.extra["sleeve_length"] == "long-sleeve" and denim.split is None
    assert_images_ok(catalog)
    assert sorted(error_rows(catalog)) == sorted(
        [("shape_anno_all.txt", 4), ("fabric_ann.txt", 3), ("captions.json", 4), ("captions.json", 5), ("captions.json", 6)]
    )
    with pytest.raises(CatalogError, match="no splits"):
        read_deepfashion_multimodal(multimodal, "train")
    assert len(read_catalog(f"deepfashion-multimodal={multimodal}", limit=1)) == 1
