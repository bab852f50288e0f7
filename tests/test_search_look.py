"""Shop the look: a scene photo → each product the instance decoder finds, where it looked, and its catalogue matches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.cli.main import app
from modalens.scenes import build_scenes, scene_products
from modalens.search import SearchEngine


@pytest.fixture(scope="module")
def engine(tiny_instance_model, mini_catalog, tmp_path_factory):
    engine = SearchEngine(tmp_path_factory.mktemp("look-index"), model=tiny_instance_model, progress=False)
    engine.build(read_catalog(mini_catalog))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def scenes(mini_catalog):
    chosen = build_scenes(read_catalog(mini_catalog).products, 6, seed=5, split="train", min_products=3, max_products=3)
    return list(zip(chosen, scene_products(chosen)))


def test_each_product_of_a_scene_is_among_the_matches_of_what_the_decoder_found(engine, scenes):
    found = 0
    for scene, photo in scenes:
        items = engine.look(photo.image, k=5)
        assert 1 <= len(items) <= 5 and len({i.query for i in items}) == len(items)
        for item in items:
            assert len(item.hits) == 5 and 0 <= item.objectness <= 1
            x0, y0, x1, y1 = item.box
            assert 0 <= x0 < x1 <= scene.size and 0 <= y0 < y1 <= scene.size
        matched = {h.id for i in items for h in i.hits}
        found += sum(p.id in matched for p in scene.products)
    assert found / (3 * len(scenes)) >= 0.6  # of 40 products, chance would put a product in 5 × items / 40 of the lists


def test_look_from_the_command_line_and_the_api(engine, scenes, tiny_instance_model, tmp_path):
    photo = scenes[0][1].image
    drawn = tmp_path / "look.png"
    args = ["search", "--look", photo, "--index", str(engine.index_dir), "--model", str(tiny_instance_model), "--json", "-k", "3",
            "--explain", str(drawn)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert items and all(len(i["hits"]) == 3 and len(i["box"]) == 4 for i in items)
    assert all(len(i["attention"]) == 49 and abs(sum(i["attention"]) - 1) < 1e-3 for i in items)
    with Image.open(drawn) as image:
        assert image.size == (scenes[0][0].size,) * 2
        original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
        assert np.abs(np.asarray(image.convert("RGB"), dtype=np.int16) - original).mean() > 2  # tinted where it looked
    from modalens.serving.app import create_app
    from modalens.serving.settings import ServeSettings

    settings = ServeSettings(engine.index_dir, model=str(tiny_instance_model))
    with TestClient(create_app(settings, engine.handle)) as client, open(photo, "rb") as f:
        response = client.post("/api/search/look", files={"image": ("scene.png", f, "image/png")}, data={"k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [len(p["results"]) for p in body["products"]] == [3] * len(items)
    assert [p["box"] for p in body["products"]] == [i["box"] for i in items]
