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


def _photo(garment: tuple[int, int, int], backdrop: tuple[int, int, int]) -> torch.Tensor:
    """A 224 px photo: a garment-coloured block in the middle of a plain backdrop, as the tower's input."""
    image = Image.new("RGB", (224, 224), backdrop)
    image.paste(Image.new("RGB", (110, 140), garment), (57, 42))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
    return ((pixels - MEAN[0]) / STD[0])[None]


def _bin(rgb: tuple[int, int, int]) -> int:
    r, g, b = (min(v * BINS // 256, BINS - 1) for v in rgb)
    return r * BINS * BINS + g * BINS + b


@pytest.mark.parametrize("backdrop", [(255, 255, 255), (0, 0, 0), (40, 120, 40)])
def test_the_histogram_holds_the_garment_whatever_the_backdrop(backdrop):
    red = (200, 20, 30)
    histogram = colour_histogram(_photo(red, backdrop), MEAN, STD)[0]
    assert histogram.shape == (HISTOGRAM_DIM,)
    assert int(histogram.argmax()) == _bin(red) and histogram[_bin(backdrop)] < 0.05 * histogram.max()
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
