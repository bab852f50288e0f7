"""Where a text label matches in a photo (`modalens tag --explain`): the map's mass lies on the labelled product."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.cli.catalog_cmds import label_png_name
from modalens.cli.main import app
from modalens.grounding import explain_labels
from modalens.models import DEFAULT_MODEL, load
from modalens.scenes import build_scenes, scene_products


def box_share(box: tuple[int, int, int, int], canvas: int, side: int = 7) -> np.ndarray:
    """How much of each feature-map cell (of the square canvas the tower sees) the box covers, in reading order."""
    step = canvas / side
    edges = np.arange(side + 1) * step
    across = np.clip(np.minimum(edges[1:], box[2]) - np.maximum(edges[:-1], box[0]), 0, None) / step
    down = np.clip(np.minimum(edges[1:], box[3]) - np.maximum(edges[:-1], box[1]), 0, None) / step
    return np.outer(down, across).ravel()


@pytest.mark.parametrize("model", ["modalens-photo", DEFAULT_MODEL])
def test_a_labels_map_puts_its_mass_on_that_products_box_in_real_scenes(mini_catalog, model):
    """8 seeded scenes of real KAGL photos; each product whose article type is alone in its scene is the label."""
    encoder = load(model).query_encoder
    chosen = build_scenes(read_catalog(mini_catalog).products, 8, seed=3, min_products=2, max_products=3)
    inside, chance = [], []
    for scene, photo in zip(chosen, scene_products(chosen)):
        types = [p.attributes["article_type"] for p in scene.products]
        labels = [t for t in types if types.count(t) == 1]
        for found in explain_labels(encoder, Image.open(photo.image).convert("RGB"), labels):
            cells = box_share(scene.boxes[types.index(found["label"])], scene.size)
            assert found["map"].shape == (49,) and found["map"].sum() == pytest.approx(1, abs=1e-5)
            inside.append(float(found["map"] @ cells))
            chance.append(float(cells.mean()))  # the box's share of the photo: a map spread evenly
    assert len(inside) >= 15
    assert np.mean(inside) > 2.5 * np.mean(chance)  # measured 0.49 against 0.12


def test_a_quadrant_pooled_model_gets_a_clear_error_not_a_shape_crash():
    """Its head reads 6,400-d vectors (the map's mean and its four quadrants); a cell has 1,280 values."""
    from modalens.errors import InvalidInputError
    from modalens.grounding import label_maps
    from modalens.instances import InstanceEncoder
    from modalens.models import DualEncoder, ModelConfig

    model = DualEncoder(ModelConfig(name="pooled", image_tower={"name": "efficientnet-lite0", "pooling": "mean+quadrants", "dim": 6400}))
    assert model.image_tower.map_channels == 1280 and model.image_tower.output_dim == 6400
    grids = np.zeros((1, 49, 1280), np.float32)
    with pytest.raises(InvalidInputError, match="pooled as mean\\+quadrants"):
        label_maps(model, None, grids)
    with pytest.raises(InvalidInputError, match="instance queries"):
        InstanceEncoder._with_model(model, "pooled", None)


def test_a_colour_model_reads_cells_with_an_empty_colour_slot(mini_catalog, tmp_path):
    """A mean+colour head reads 1,344 values; a cell hands it its 1,280 channels and zeros where the histogram goes."""
    from modalens.grounding import label_maps, photo_grids
    from modalens.models import DualEncoder, ModelConfig, save_model
    from modalens.zeroshot import build_classifier

    model = DualEncoder(ModelConfig(name="colour", image_tower={"name": "efficientnet-lite0", "pooling": "mean+colour", "dim": 1344}))
    encoder = load(save_model(model, tmp_path / "colour")).query_encoder
    photo = Image.open(read_catalog(mini_catalog).products[0].image).convert("RGB")
    grids = photo_grids(encoder, [photo])
    assert grids.shape == (1, 49, 1280)
    classifier = build_classifier(encoder, ["shirt", "shoes"], ["a photo of {label}"])
    maps = label_maps(encoder, classifier, grids)
    assert maps.shape == (1, 2, 49) and np.allclose(maps.sum(axis=2), 1, atol=1e-5)
    padded = np.concatenate([grids[0], np.zeros((49, 64), np.float32)], axis=1)
    expected = model.project_features(padded, "image") @ classifier.weights.T  # the cells, zeros appended, through the head
    assert np.argmax(maps[0], axis=1).tolist() == np.argmax(expected, axis=0).tolist()


LABELS = ["T-shirt", "t shirt", "连衣裙", "ワンピース", "../../up", "dress"]


def test_each_label_gets_its_own_png_whatever_its_script(tmp_path):
    names = [label_png_name("look", j, label) for j, label in enumerate(LABELS)]
    assert names == ["look.00-t-shirt.png", "look.01-t-shirt.png", "look.02-连衣裙.png", "look.03-ワンピース.png", "look.04-up.png",
                     "look.05-dress.png"]  # fmt: skip
    assert label_png_name("look", 0, "///") == "look.00-label.png" and len(label_png_name("a", 0, "x" * 500)) < 60


def test_tag_explain_writes_one_file_per_label_and_a_bad_folder_is_one_clear_line(mini_catalog, tmp_path):
    photo = read_catalog(mini_catalog).products[0].image
    out = tmp_path / "maps"
    result = CliRunner().invoke(app, ["tag", "--explain", photo, "--labels", ",".join(LABELS), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    files = [Path(r["file"]) for r in json.loads(result.output)]
    assert len(set(files)) == len(LABELS) and sorted(out.iterdir()) == sorted(files)  # none overwritten, none outside -o
    taken = tmp_path / "a-file"
    taken.write_text("x")
    refused = CliRunner().invoke(app, ["tag", "--explain", photo, "--labels", "dress", "-o", str(taken)])
    assert refused.exit_code == 2 and "cannot write the maps into" in refused.output, refused.output  # not a traceback
