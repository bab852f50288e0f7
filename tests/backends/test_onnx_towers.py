"""ONNX Runtime towers equal the torch towers (to 1e-4), keep their identity, and take any batch size."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from backends_testkit import PHOTOS, TEXTS, TOLERANCE

from modalens.backends.onnx import OnnxImageTower, OnnxTextTower
from modalens.backends.runtime import read_manifest
from modalens.catalog.images import load_image
from modalens.encoders import ImageTower, TextTower
from modalens.encoders.features import default_store


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


def _both(tower, pixels):
    with torch.inference_mode():
        return tower(pixels), tower.forward_features(pixels)


# --- image tower ---------------------------------------------------------------------------


def test_image_tower_matches_torch_on_photos(torch_image_tower, onnx_image_tower) -> None:
    """Seven real product photos in one batch (a batch size the export never saw)."""
    pixels = torch.stack([torch_image_tower.preprocess(load_image(str(p))) for p in PHOTOS[:7]])
    assert pixels.shape[0] == 7
    pooled, features = _both(torch_image_tower, pixels)
    onnx_pooled, onnx_features = _both(onnx_image_tower, pixels)
    assert onnx_pooled.shape == (7, 1280) and onnx_features.shape == (7, 1280, 7, 7)
    assert _max_diff(onnx_pooled, pooled) <= TOLERANCE
    assert _max_diff(onnx_features, features) <= TOLERANCE
    both = onnx_image_tower.forward_both(pixels)  # one pass, both outputs
    assert _max_diff(both[0], onnx_pooled) == 0 and _max_diff(both[1], onnx_features) == 0


def test_image_tower_matches_torch_on_random_input_batch_1(torch_image_tower, onnx_image_tower) -> None:
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3)) * 1.5
    pooled, features = _both(torch_image_tower, pixels)
    onnx_pooled, onnx_features = _both(onnx_image_tower, pixels)
    assert onnx_pooled.shape == (1, 1280)
    assert _max_diff(onnx_pooled, pooled) <= TOLERANCE
    assert _max_diff(onnx_features, features) <= TOLERANCE


def test_image_tower_accepts_channels_last_and_numpy(torch_image_tower, onnx_image_tower) -> None:
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    plain = onnx_image_tower(pixels)
    assert torch.equal(onnx_image_tower(pixels.contiguous(memory_format=torch.channels_last)), plain)
    (pooled,) = onnx_image_tower.run(pixels.numpy())  # the torch-free path
    assert isinstance(pooled, np.ndarray) and np.array_equal(pooled, plain.numpy())
    empty_pooled, empty_map = onnx_image_tower.run(np.zeros((0, 3, 224, 224), np.float32), ["pooled", "features"])
    assert empty_pooled.shape == (0, 1280) and empty_map.shape == (0, 1280, 7, 7)


def test_image_tower_keeps_the_torch_identity(torch_image_tower, onnx_image_tower) -> None:
    """Same name, size and preprocessing, so feature-cache keys and stores are shared."""
    assert isinstance(onnx_image_tower, ImageTower)
    for attr in ("name", "output_dim", "image_size", "pixel_mean", "pixel_std", "preprocess_id"):
        assert getattr(onnx_image_tower, attr) == getattr(torch_image_tower, attr), attr
    image = load_image(str(PHOTOS[0]))
    assert torch.equal(onnx_image_tower.preprocess(image), torch_image_tower.preprocess(image))
    assert default_store(onnx_image_tower, "image").dir == default_store(torch_image_tower, "image").dir


# --- text tower ----------------------------------------------------------------------------


def test_text_tower_matches_torch_on_varied_texts(torch_text_tower, onnx_text_tower) -> None:
    assert len(TEXTS) == 7
    with torch.inference_mode():
        expected, got = torch_text_tower(TEXTS), onnx_text_tower(TEXTS)
    assert got.shape == (7, 384)
    assert _max_diff(got, expected) <= TOLERANCE
    np.testing.assert_allclose(got.norm(dim=1).numpy(), 1.0, atol=1e-5)  # normalised inside the graph


@pytest.mark.parametrize("text", ["", "blue denim jeans", TEXTS[-1]])
def test_text_tower_batch_of_one(torch_text_tower, onnx_text_tower, text) -> None:
    with torch.inference_mode():
        assert _max_diff(onnx_text_tower([text]), torch_text_tower([text])) <= TOLERANCE


def test_text_tower_keeps_the_torch_identity_and_numpy_path(torch_text_tower, onnx_text_tower) -> None:
    assert isinstance(onnx_text_tower, TextTower)
    for attr in ("name", "output_dim", "max_length"):
        assert getattr(onnx_text_tower, attr) == getattr(torch_text_tower, attr), attr
    assert default_store(onnx_text_tower, "text").dir == default_store(torch_text_tower, "text").dir
    with torch.inference_mode():
        via_torch_api = onnx_text_tower(TEXTS[:3]).numpy()
        tokens = onnx_text_tower.tokenize(TEXTS[:3])
        via_tokens = onnx_text_tower.forward_tokens(**tokens).numpy()
    assert np.array_equal(onnx_text_tower.encode_numpy(TEXTS[:3]), via_torch_api)
    assert np.array_equal(via_tokens, via_torch_api)
    assert onnx_text_tower.encode_numpy([]).shape == (0, 384)


# --- the manifest ----------------------------------------------------------------


def test_cached_exports_have_a_complete_manifest(onnx_image_tower, onnx_text_tower) -> None:
    from modalens import __version__
    from modalens.backends.onnx import onnx_cache_root

    exports = [p for p in onnx_cache_root().iterdir() if (p / "manifest.json").is_file()]
    # a cache may hold several exports of one tower (another pooling, say): check the fixture's own image export
    folders = {p.name.rsplit("-", 1)[0]: p for p in exports if p.name.startswith("minilm-l6")}
    folders["efficientnet-lite0"] = next(
        p for p in exports if read_manifest(p)["components"].get("image_tower", {}).get("preprocess_id") == onnx_image_tower.preprocess_id
    )
    assert {"efficientnet-lite0", "minilm-l6"} <= set(folders)
    for tower_name, kind in (("efficientnet-lite0", "image_tower"), ("minilm-l6", "text_tower")):
        folder = folders[tower_name]
        manifest = read_manifest(folder)
        assert manifest == json.loads((folder / "manifest.json").read_text())
        assert manifest["modalens_version"] == __version__
        component = manifest["components"][kind]
        assert component["tower"] == tower_name
        assert component["exporter"] in ("dynamo", "torchscript")
        assert isinstance(component["opset"], int) and component["opset"] >= 17
        assert component["max_abs_diff_vs_torch"] <= TOLERANCE
        assert manifest["files"][component["file"]] == hashlib.sha256((folder / component["file"]).read_bytes()).hexdigest()
    image = read_manifest(folders["efficientnet-lite0"])["components"]["image_tower"]
    assert image["preprocess_id"] == onnx_image_tower.preprocess_id
    assert image["outputs"] == ["pooled", "features"]
    text = read_manifest(folders["minilm-l6"])["components"]["text_tower"]
    assert text["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


def test_towers_from_a_folder_equal_towers_from_torch(onnx_image_tower, onnx_text_tower) -> None:
    from modalens.backends.onnx import onnx_cache_root

    folders = [OnnxImageTower.from_folder(f, threads=1) for f in onnx_cache_root().glob("efficientnet-lite0-*")]
    again = next(t for t in folders if t.preprocess_id == onnx_image_tower.preprocess_id)  # mean pooled, not a colour one
    pixels = torch.randn(2, 3, 224, 224)
    assert torch.equal(again(pixels), onnx_image_tower(pixels))
    assert isinstance(onnx_text_tower, OnnxTextTower)
