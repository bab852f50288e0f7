"""Scene photos in the index: each product found in them, and the scenes that hold a product (words, photo, id)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.cli.main import app
from modalens.errors import InvalidInputError
from modalens.scenes import build_scenes, scene_products
from modalens.search import SearchEngine
from modalens.models import DEFAULT_MODEL

MODEL = DEFAULT_MODEL  # ships an instance decoder


@pytest.fixture(scope="module")
def scenes(mini_catalog):
    chosen = build_scenes(read_catalog(mini_catalog).products, 8, seed=11, min_products=2, max_products=3)
    return list(zip(chosen, scene_products(chosen)))


@pytest.fixture(scope="module")
def engine(mini_catalog, scenes, tmp_path_factory):
    engine = SearchEngine(tmp_path_factory.mktemp("scene-index"), model=MODEL, progress=False)
    engine.build(read_catalog(mini_catalog))
    report = engine.add_scenes([photo for _, photo in scenes])
    assert (report.added, report.failed) == (len(scenes), 0)
    yield engine
    engine.close()


def write_scene_csv(path: Path, photos, extra: list[dict] = ()) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "image", "title"])
        writer.writeheader()
        writer.writerows([{"id": p.id, "image": p.image, "title": p.title} for p in photos] + list(extra))
    return path


def test_each_scene_keeps_the_instances_that_hold_a_product_and_products_stay_as_they_were(engine, scenes, mini_catalog):
    index = engine.scene_index()
    assert index.scene_count() == len(scenes) and len(index) == len(read_catalog(mini_catalog).products)
    for scene, photo in scenes:
        kept = index.scene_instances(photo.id)
        assert 1 <= len(kept.queries) <= 5 and (kept.objectness[1:] >= 0.5).all()  # the cut (the best one always kept)
    again = engine.add_scenes([photo for _, photo in scenes])
    assert (again.added, again.skipped_unchanged) == (0, len(scenes))  # re-run safe: nothing decoded again


def test_a_product_finds_the_scenes_that_hold_it(engine, scenes):
    """By id and by photo; on 8 scenes, chance puts a holding scene first about 1 time in 8."""
    first_by_id = first_by_photo = 0
    pairs = [(scene, product) for scene, _ in scenes for product in scene.products]
    for scene, product in pairs:
        holding = {photo.id for s, photo in scenes if product.id in {p.id for p in s.products}}
        by_id = engine.search_scenes(product_id=product.id, k=3)
        assert len(by_id) == 3 and by_id[0].score >= by_id[1].score >= by_id[2].score
        first_by_id += by_id[0].id in holding
        first_by_photo += engine.search_scenes(image=product.image, k=1)[0].id in holding
    assert first_by_id / len(pairs) >= 0.7 and first_by_photo / len(pairs) >= 0.7


def test_words_find_the_scenes_that_hold_a_product(engine, scenes):
    hits = 0
    pairs = [(scene, product) for scene, _ in scenes for product in scene.products]
    for scene, product in pairs:
        holding = {photo.id for s, photo in scenes if product.title in {p.title for p in s.products}}
        hits += any(h.id in holding for h in engine.search_scenes(product.title, k=2))
    assert hits / len(pairs) >= 0.6  # chance: 2 of 8 scenes


def test_unreadable_scene_photos_are_reported_and_retried(engine, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    scenes = read_catalog(str(write_scene_csv(tmp_path / "bad.csv", [], [{"id": "bad-scene", "image": str(broken), "title": "x"}]))).products
    report = engine.add_scenes(scenes)
    assert (report.added, report.failed) == (0, 1)
    assert [sid for sid, _ in engine.scene_index().scene_failures()] == ["bad-scene"]
    with pytest.raises(KeyError):
        engine.scene_index().get_scene("bad-scene")


def test_the_milvus_store_refuses_scenes_with_a_clear_error(engine):
    other = SearchEngine(engine.index_dir, engine.handle, progress=False, store="milvus:/nowhere.db")
    other._index = object()  # stands in for an opened MilvusIndex: no pymilvus needed to check the refusal
    with pytest.raises(InvalidInputError, match="SQLite store"):
        other.search_scenes("belt")


def test_scenes_from_the_command_line_and_the_api(engine, scenes, mini_catalog, tmp_path):
    folder = tmp_path / "index"
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(mini_catalog), "--index", str(folder)]).exit_code == 0
    table = write_scene_csv(tmp_path / "scenes.csv", [photo for _, photo in scenes])
    result = runner.invoke(app, ["index", str(table), "--scenes", "--index", str(folder)])
    assert result.exit_code == 0 and f"holds {len(scenes)} scenes" in result.output, result.output
    product = scenes[0][0].products[0]
    for args in (["--product", product.id], ["--image", product.image], [product.title]):
        result = runner.invoke(app, ["search", *args, "--scenes", "--index", str(folder), "-k", "3", "--json"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.output)
        assert len(found) == 3 and found[0]["image"] and len(found[0]["attention"]) == 49
        if args[0] == "--product":
            assert [f["id"] for f in found] == [h.id for h in engine.search_scenes(product_id=product.id, k=3)]
    result = runner.invoke(app, ["search", "--product", product.id, "--index", str(folder)])
    assert result.exit_code == 2 and "add --scenes" in result.output

    from modalens.serving.app import create_app
    from modalens.serving.settings import ServeSettings

    with TestClient(create_app(ServeSettings(engine.index_dir, model=MODEL), engine.handle)) as client:
        by_id = client.post("/api/scenes/search", json={"product_id": product.id, "k": 3})
        assert by_id.status_code == 200, by_id.text
        assert [s["id"] for s in by_id.json()["scenes"]] == [h.id for h in engine.search_scenes(product_id=product.id, k=3)]
        by_words = client.post("/api/scenes/search", json={"q": product.title, "k": 2}).json()["scenes"]
        assert len(by_words) == 2 and by_words[0]["image_url"].startswith("/api/scenes/")
        assert client.get(by_words[0]["image_url"]).headers["content-type"] == "image/png"
        with open(product.image, "rb") as f:
            by_photo = client.post("/api/scenes/search/image", files={"image": ("p.jpg", f, "image/jpeg")}, data={"k": "2"})
        assert by_photo.status_code == 200 and len(by_photo.json()["scenes"]) == 2
        assert client.post("/api/scenes/search", json={"product_id": "no-such-product"}).status_code == 404
        assert client.post("/api/scenes/search", json={"q": "belt", "product_id": product.id}).status_code == 422
        assert "/api/scenes/search" in client.get("/openapi.json").json()["paths"]


def test_refused_scene_indexing_leaves_no_index_behind(scenes, tmp_path):
    """The store kind and the model's decoder are checked before an index (or a Milvus collection) is made."""
    table = write_scene_csv(tmp_path / "scenes.csv", [photo for _, photo in scenes[:2]])
    runner = CliRunner()
    no_decoder = runner.invoke(app, ["index", str(table), "--scenes", "--index", str(tmp_path / "lite"), "--model", "modalens-lite"])
    assert no_decoder.exit_code == 2 and "has no instance decoder" in no_decoder.output, no_decoder.output
    assert not (tmp_path / "lite").exists()
    milvus = runner.invoke(app, ["index", str(table), "--scenes", "--store", f"milvus:{tmp_path / 'm.db'}"])
    assert milvus.exit_code == 2 and "SQLite store" in milvus.output, milvus.output
    assert list(tmp_path.iterdir()) == [table]


def test_look_and_scenes_together_are_refused(scenes):
    result = CliRunner().invoke(app, ["search", "--look", scenes[0][1].image, "--scenes"])
    assert result.exit_code == 2 and "one or the other" in result.output, result.output


def test_scenes_dropped_from_the_list_are_pruned_and_their_failures_not_reported_again(scenes, tmp_path):
    folder, broken = tmp_path / "index", tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    photos = [photo for _, photo in scenes[:3]]
    bad = [{"id": "bad-scene", "image": str(broken), "title": "x"}]
    runner = CliRunner()
    first = runner.invoke(app, ["index", str(write_scene_csv(tmp_path / "all.csv", photos, bad)), "--scenes", "--index", str(folder)])
    assert first.exit_code == 0 and "not indexed scene bad-scene" in first.output and "holds 3 scenes" in first.output, first.output
    fewer = write_scene_csv(tmp_path / "fewer.csv", photos[:1])
    kept = runner.invoke(app, ["index", str(fewer), "--scenes", "--index", str(folder)])
    assert kept.exit_code == 0 and "bad-scene" not in kept.output and "holds 3 scenes" in kept.output, kept.output
    pruned = runner.invoke(app, ["index", str(fewer), "--scenes", "--prune", "--index", str(folder)])
    assert pruned.exit_code == 0 and "2 removed" in pruned.output and "holds 1 scenes" in pruned.output, pruned.output
    engine = SearchEngine(folder, model=MODEL, progress=False)
    try:
        assert engine.scene_index().scene_ids() == [photos[0].id] and engine.scene_index().scene_failures() == []
    finally:
        engine.close()
