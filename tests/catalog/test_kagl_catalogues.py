"""The KAGL catalogues by name: kagl (224 px), kagl-full (60×80 px) and kagl-all (each product once, best photo first)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from modalens.catalog import CatalogError, read_catalog
from modalens.catalog.readers import read_kagl

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _write_kagl(folder: Path, rows: list[tuple[str, str]]) -> Path:
    (folder / "images").mkdir(parents=True)
    lines = ["id,image,title,articleType,baseColour,split"]
    for pid, split in rows:
        (folder / "images" / f"{pid}.jpg").write_bytes(b"")
        lines.append(f"{pid},images/{pid}.jpg,Product {pid},Shirts,Blue,{split}")
    (folder / "products.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_named_kagl_catalogues_come_from_the_shared_data_folder(tmp_path, monkeypatch):
    _write_kagl(tmp_path / "kagl-fashion", [("1", "train"), ("2", "test"), ("9", "val")])
    _write_kagl(tmp_path / "kagl-full", [("1", "train"), ("2", "test"), ("3", "train")])
    for env in ("MODALENS_KAGL", "MODALENS_KAGL_FULL"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("MODALENS_SHARED_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    full = read_catalog("kagl-full")
    assert full.name == "kagl-full" and [p.id for p in full] == ["1", "2", "3"]
    assert [p.id for p in read_catalog("kagl-full:train")] == ["1", "3"]
    both = read_catalog("kagl-all")
    by_id = {p.id: p for p in both}
    assert sorted(by_id) == ["1", "2", "3", "9"]  # each product once; kagl-fashion's extra product kept
    assert by_id["1"].images == [str(tmp_path / "kagl-fashion" / "images" / "1.jpg"), str(tmp_path / "kagl-full" / "images" / "1.jpg")]
    assert by_id["3"].images == [str(tmp_path / "kagl-full" / "images" / "3.jpg")]
    assert [p.id for p in read_catalog("kagl-all:test")] == ["2"]


def test_a_missing_kagl_full_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match=r"KAGL dataset not found \(kagl-full\): no products.csv in .*nowhere"):
        read_kagl(tmp_path / "nowhere", name="kagl-full")


@pytest.mark.shared
def test_the_shared_kagl_catalogues_agree_on_every_products_split():
    if not (SHARED / "kagl-full" / "products.csv").exists():
        pytest.skip("../shared/data/kagl-full is not present")
    sharp = {p.id: p.split for p in read_catalog("kagl")}
    full = {p.id: p.split for p in read_catalog("kagl-full")}
    shared_ids = sharp.keys() & full.keys()
    assert len(shared_ids) > 8000
    assert all(sharp[i] == full[i] for i in shared_ids)
    both = read_catalog("kagl-all")
    assert len(both) == len(sharp.keys() | full.keys())
    assert Counter(len(p.images) for p in both)[2] == len(shared_ids)
