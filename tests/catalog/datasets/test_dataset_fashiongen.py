"""Fashion-Gen: an HDF5 file in the published field layout, poses grouped, PNGs materialised once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import assert_images_ok, by_id, error_rows
from PIL import Image

from modalens.catalog import CatalogError, read_catalog
from modalens.catalog.datasets import read_fashion_gen

try:
    import h5py
except ImportError:  # the reader then raises a CatalogError naming the package (tested below)
    h5py = None
needs_h5py = pytest.mark.skipif(h5py is None, reason="h5py is not installed (pip install 'modalens[datasets]')")

ROWS = [  # productID, name, description (bytes as stored), category, gender, pose, price
    (100, b"Black wool coat", b"Long coat in black wool. Made in Italy.", b"JACKETS & COATS", b"MEN", b"id_gridfs_1", 1200.0),
    (100, b"Black wool coat", b"Long coat in black wool. Made in Italy.", b"JACKETS & COATS", b"MEN", b"id_gridfs_2", 1200.0),
    (200, b"Caf\xe9 silk scarf", "Silk scarf, caf\xe9 au lait tone.".encode("latin-1"), b"SCARVES", b"WOMEN", b"id_gridfs_1", 95.5),
    (0, b"Broken row", b"no id", b"TOPS", b"WOMEN", b"id_gridfs_1", 10.0),  # malformed: product id 0
    (100, b"Black wool coat", b"Long coat in black wool. Made in Italy.", b"JACKETS & COATS", b"MEN", b"id_gridfs_3", 1200.0),
]  # fmt: skip


def write_h5(path: Path, rows=ROWS, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(len(rows), 32, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("input_image", data=pixels)
        f.create_dataset("input_productID", data=np.array([[r[0]] for r in rows], dtype=np.int64))
        for i, name in enumerate(("input_name", "input_description", "input_category", "input_gender", "input_pose"), 1):
            f.create_dataset(name, data=np.array([[r[i]] for r in rows], dtype="S200"))
        f.create_dataset("input_subcategory", data=np.array([[b"SUBCAT"]] * len(rows), dtype="S20"))
        f.create_dataset("input_brand", data=np.array([[b"Acme"]] * len(rows), dtype="S20"))
        f.create_dataset("input_msrpUSD", data=np.array([[r[6]] for r in rows], dtype=np.float32))
    return pixels


@pytest.fixture()
def fgen(tmp_path: Path) -> tuple[Path, np.ndarray]:
    root = tmp_path / "fashiongen"
    pixels = write_h5(root / "fashiongen_256_256_train.h5")
    write_h5(root / "fashiongen_256_256_validation.h5", rows=[ROWS[2]], seed=1)
    return root, pixels


@needs_h5py
def test_products_poses_pngs_and_errors(fgen, tmp_path: Path) -> None:
    root, pixels = fgen
    cache = tmp_path / "cache"
    catalog = read_fashion_gen(root, "train", cache=cache)
    products = by_id(catalog)
    assert list(products) == ["100", "200"]
    coat = products["100"]
    assert len(coat.images) == 3 and coat.extra["poses"] == ["id_gridfs_1", "id_gridfs_2", "id_gridfs_3"]
    assert coat.extra["h5_rows"] == [0, 1, 4]
    assert coat.title == "Black wool coat" and coat.description.startswith("Long coat") and coat.price == 1200.0
    assert coat.attributes == {"category": "JACKETS & COATS", "sub_category": "SUBCAT", "gender": "Men", "brand": "Acme"}
    scarf = products["200"]
    assert scarf.title == "Café silk scarf" and "café au lait" in scarf.description  # latin-1 bytes decoded
    assert scarf.attributes["gender"] == "Women" and scarf.split == "train"
    for image, row in zip(coat.images, coat.extra["h5_rows"]):
        assert Path(image).parent.parent == cache and Path(image).suffix == ".png"
        np.testing.assert_array_equal(np.asarray(Image.open(image)), pixels[row])
    assert_images_ok(catalog)
    assert error_rows(catalog) == [("fashiongen_256_256_train.h5", 4)]
    assert "product id" in catalog.errors[0].reason
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob(".*"))


@needs_h5py
def test_pngs_written_once_under_the_default_cache(fgen, tmp_path: Path, monkeypatch) -> None:
    root, _ = fgen
    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path / "envcache"))
    first = read_fashion_gen(root, "train", limit=1)
    assert [p.id for p in first] == ["100"] and len(first[0].images) == 3
    folder = Path(first[0].image).parent
    assert folder.parent == tmp_path / "envcache" / "fashion-gen" and folder.name.startswith("train-")
    assert len(list(folder.glob("*.png"))) == 3  # only the kept product's rows were rendered
    Path(first[0].image).write_bytes(b"sentinel")  # an existing PNG is reused, not rewritten
    second = read_fashion_gen(root, "train")
    assert len(second) == 2 and Path(second[0].image).read_bytes() == b"sentinel"


@needs_h5py
def test_validation_split_and_spec(fgen, tmp_path: Path, monkeypatch) -> None:
    root, _ = fgen
    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path / "c"))
    val = read_fashion_gen(root, "validation")
    assert [(p.id, p.split) for p in val] == [("200", "val")]
    both = read_catalog(f"Fashion_Gen={root}")
    assert [(p.id, p.split) for p in both] == [("100", "train"), ("200", "train")]
    assert error_rows(both)[-1] == ("fashiongen_256_256_validation.h5", 1)  # 200 is already in train


@needs_h5py
def test_missing_file_and_bad_layout(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="fashiongen_256_256_train.h5"):
        read_fashion_gen(tmp_path, "train")
    with h5py.File(tmp_path / "fashiongen_256_256_train.h5", "w") as f:
        f.create_dataset("input_image", data=np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(CatalogError, match="no dataset 'input_productID'"):
        read_fashion_gen(tmp_path, "train", cache=tmp_path / "c")


def test_without_h5py_the_error_names_the_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(CatalogError, match="h5py"):
        read_fashion_gen(tmp_path)
