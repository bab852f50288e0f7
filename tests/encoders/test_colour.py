"""The garment colour histogram of ``pooling: mean+colour``: the garment's colour, not the backdrop's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modalens.backends.onnx import _ImageGraph
from modalens.encoders import create_image_tower
from modalens.encoders.colour import BINS, HISTOGRAM_DIM, SCALE, colour_histogram

MEAN, STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)


def _photo(garment: tuple[int, int, int], backdrop: tuple[int, int, int], width: int = 224) -> torch.Tensor:
    """A garment-coloured block in the middle of a plain backdrop ``width`` wide and 224 high, letterboxed on
    white as the tower does, as the tower's input."""
    image = Image.new("RGB", (width, 224), backdrop)
    image.paste(Image.new("RGB", (width // 2, 140), garment), (width // 4, 42))
    boxed = Image.new("RGB", (224, 224), (255, 255, 255))
    boxed.paste(image, ((224 - width) // 2, 0))
    pixels = torch.from_numpy(np.asarray(boxed, dtype=np.float32)).permute(2, 0, 1)
    return ((pixels - MEAN[0]) / STD[0])[None]


def _bin(rgb: tuple[int, int, int]) -> int:
    r, g, b = (min(v * BINS // 256, BINS - 1) for v in rgb)
    return r * BINS * BINS + g * BINS + b


@pytest.mark.parametrize("width", [224, 168])  # square, and a portrait photo with white padding left and right
@pytest.mark.parametrize("backdrop", [(255, 255, 255), (0, 0, 0), (40, 120, 40)])
def test_the_histogram_holds_the_garment_whatever_the_backdrop(backdrop, width):
    red = (200, 20, 30)
    histogram = colour_histogram(_photo(red, backdrop, width), MEAN, STD)[0]
    assert histogram.shape == (HISTOGRAM_DIM,)
    assert int(histogram.argmax()) == _bin(red) and histogram[_bin(backdrop)] < 0.1 * histogram.max()  # (edge blocks blend garment and backdrop)
    assert torch.isclose(histogram.norm(), torch.tensor(SCALE), atol=1e-4)


def test_a_plain_swatch_still_gets_a_histogram():
    """Nothing unlike the border: every pixel counts (no division by zero, no empty vector)."""
    histogram = colour_histogram(_photo((30, 30, 200), (30, 30, 200)), MEAN, STD)[0]
    assert int(histogram.argmax()) == _bin((30, 30, 200)) and torch.isfinite(histogram).all()


def test_colour_pooling_appends_the_histogram_to_the_mean_and_exports_alike():
    plain = create_image_tower("efficientnet-lite0")
    coloured = create_image_tower("efficientnet-lite0", pooling="mean+colour")
    assert (coloured.output_dim, coloured.map_channels) == (1280 + HISTOGRAM_DIM, 1280)
    assert coloured.preprocess_id != plain.preprocess_id  # its features cache apart
    pixels = torch.cat([_photo((200, 20, 30), (255, 255, 255)), _photo((20, 30, 200), (255, 255, 255))])
    with torch.no_grad():
        vectors, means = coloured(pixels), plain(pixels)
        graph_vectors, maps = _ImageGraph(coloured)(pixels)  # what the ONNX export computes
    assert torch.allclose(vectors[:, :1280], means, atol=1e-5) and torch.allclose(graph_vectors, vectors, atol=1e-5)
    assert maps.shape[1] == 1280
    assert int(vectors[0, 1280:].argmax()) != int(vectors[1, 1280:].argmax())  # red and blue tell apart


def test_a_colour_tower_exports_with_both_exporters_and_matches_torch(tmp_path):
    from modalens.backends.onnx import OnnxImageTower

    tower = create_image_tower("efficientnet-lite0", pooling="mean+colour")
    pixels = torch.cat([_photo((200, 20, 30), (40, 120, 40), 168), _photo((20, 30, 200), (255, 255, 255))])
    with torch.no_grad():
        expected = tower(pixels).numpy()
    for exporter in ("torchscript", "dynamo"):
        onnx_tower = OnnxImageTower.from_torch(tower, root=tmp_path / exporter, exporter=exporter)
        assert (onnx_tower.output_dim, onnx_tower.map_channels, onnx_tower.pooling) == (1344, 1280, "mean+colour")
        assert np.abs(onnx_tower.run(pixels.numpy(), ["pooled"])[0] - expected).max() < 1e-3


def test_static_int8_export_of_a_colour_tower_is_refused_clearly(tmp_path):
    from modalens.export import export_model
    from modalens.models import DualEncoder, ModelConfig, save_model

    model = DualEncoder(ModelConfig(name="colour", image_tower={"name": "efficientnet-lite0", "pooling": "mean+colour", "dim": 1344}))
    folder = save_model(model, tmp_path / "colour")
    with pytest.raises(ValueError, match="static int8 breaks"):
        export_model(str(folder), tmp_path / "out", int8=True, calibration="kagl:train")
    assert not (tmp_path / "out").exists()
