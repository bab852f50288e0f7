"""The dataset registry and read_catalog's NAME=ROOT[:SPLIT] form."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from dataset_fixtures import photo, write_json

from modalens.catalog import CatalogError, read_catalog
from modalens.catalog.datasets import DATASETS, parse_dataset_spec, read_dataset


def fashioniq_root(root: Path) -> Path:
    photo(root / "images" / "A1.png")
    photo(root / "images" / "A2.png")
    write_json(root / "image_splits" / "split.dress.train.json", ["A1"])
    write_json(root / "image_splits" / "split.dress.val.json", ["A2"])
    return root


def test_every_reader_has_the_common_signature() -> None:
    assert set(DATASETS) == {
        "fashioniq", "fashion200k", "fashion-gen", "imaterialist", "imaterialist-seg",
        "deepfashion-inshop", "deepfashion-multimodal", "polyvore", "atlas",
    }  # fmt: skip
    for reader in DATASETS.values():
        parameters = inspect.signature(reader).parameters
        assert list(parameters)[:2] == ["root", "split"] and parameters["split"].default is None
        assert parameters["limit"].kind is inspect.Parameter.KEYWORD_ONLY


def test_read_dataset_names_and_aliases(tmp_path: Path) -> None:
    root = fashioniq_root(tmp_path / "fiq")
    assert [p.id for p in read_dataset("FashionIQ", root, "val")] == ["A2"]
    assert [p.id for p in read_dataset("fashion-iq", root)] == ["A1", "A2"]
    with pytest.raises(CatalogError, match="unknown dataset 'mnist'.*fashioniq"):
        read_dataset("mnist", root)


def test_spec_parsing(tmp_path: Path) -> None:
    assert parse_dataset_spec("products.csv") is None
    assert parse_dataset_spec("kagl:test") is None
    assert parse_dataset_spec("fashion200k=/data/f200k:train") == ("fashion200k", "/data/f200k", "train")
    assert parse_dataset_spec("fashion_gen=/data/fg") == ("fashion-gen", "/data/fg", None)
    odd = tmp_path / "with:colon"
    odd.mkdir()
    assert parse_dataset_spec(f"atlas={odd}") == ("atlas", str(odd), None)  # an existing root is taken whole
    assert parse_dataset_spec(f"atlas={odd}:test") == ("atlas", str(odd), "test")
    with pytest.raises(CatalogError, match="not a known dataset"):
        parse_dataset_spec("fashoniq=/data/fiq")
    with pytest.raises(CatalogError, match="needs the dataset folder"):
        parse_dataset_spec("polyvore=")


def test_read_catalog_keeps_its_other_forms(tmp_path: Path, mini_catalog: Path) -> None:
    root = fashioniq_root(tmp_path / "fiq")
    assert [p.split for p in read_catalog(f"fashioniq={root}:val")] == ["val"]
    # A table whose name contains '=' is still a table.
    photo(tmp_path / "shop" / "p1.png")
    table = tmp_path / "shop" / "a=b.csv"
    table.write_text("id,image,title\np1,p1.png,Red scarf\n", encoding="utf-8")
    assert [p.title for p in read_catalog(table)] == ["Red scarf"]
    assert len(read_catalog(mini_catalog, limit=2)) == 2
    with pytest.raises(CatalogError, match="no such file"):
        read_catalog(tmp_path / "missing=thing.csv")
