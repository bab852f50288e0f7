"""`modalens export`: a self-contained folder (towers, heads, tokenizer, manifest) that equals the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from backends_testkit import PHOTOS, TEXTS, TOLERANCE

from modalens.backends.runtime import OrtModel, load_export, verify_export
from modalens.catalog.images import load_image
from modalens.cli.export_cmd import export
from modalens.models import create_model
from modalens.models.factory import DEFAULT_MODEL


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(export)

    @app.callback()
    def main() -> None:  # a group, so the command is called by name as in `modalens export`
        pass

    return app


@pytest.fixture(scope="module")
def exported(tmp_path_factory, onnx_image_tower, onnx_text_tower):
    """One export (with int8) for the module; the towers come from the session's cached exports."""
    out = tmp_path_factory.mktemp("export") / "lite-onnx"
    photos = PHOTOS[0].parent
    result = CliRunner().invoke(_app(), ["export", "--output", str(out), "--int8", "--check-images", str(photos)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_export_writes_a_verified_folder(exported) -> None:
    folder, output = exported
    manifest = verify_export(folder)
    assert manifest == json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == DEFAULT_MODEL and manifest["embed_dim"] == 512
    components = manifest["components"]
    # the default model ships an instance decoder: its graph comes along (docs/instances.md)
    assert set(components) == {"image_tower", "text_tower", "image_head", "text_head", "instance_decoder"}
    assert components["instance_decoder"]["max_abs_diff_vs_torch"] < 1e-4 and components["instance_decoder"]["decoder_digest"]
    for component in components.values():
        assert (folder / component["file"]).exists()
        assert component["exporter"] in ("dynamo", "torchscript")
    assert components["image_tower"]["preprocess_id"].startswith("efficientnet-lite0|224|")
    assert (folder / "tokenizer").is_dir()
    assert "tokenizer/tokenizer.json" in manifest["files"]  # every file has its digest, not only the models
    # int8: text tower and heads quantised; the image tower kept fp32 without --calibration, with the reason.
    assert {n for n, c in components.items() if c.get("int8_file")} == {"text_tower", "image_head", "text_head"}
    assert "R@1" in components["image_tower"]["int8_skipped"] and "--calibration" in components["image_tower"]["int8_skipped"]
    assert "int8 vs fp32 text embeddings: cosine mean" in output
    assert "int8 vs fp32 image embeddings: cosine mean" in output
    assert components["text_tower"]["int8_embedding_cosine"]["mean"] > 0.95
    assert components["image_tower"]["int8_embedding_cosine"]["mean"] > 0.99


def test_exported_heads_match_torch_for_batches_of_1_and_7(exported) -> None:
    folder, _ = exported
    model = create_model(DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    for kind, head, dim in (("image_head", model.image_head, model.image_head.in_dim), ("text_head", model.text_head, 384)):
        session = OrtModel(folder / f"{kind}.onnx", threads=1)
        for n in (1, 7):
            features = (rng.random((n, dim)) * 4).astype(np.float32)
            with torch.inference_mode():
                expected = head(torch.from_numpy(features)).numpy()
            (got,) = session.run({"features": features})
            assert got.shape == (n, 512)
            assert np.abs(got - expected).max() <= TOLERANCE


def test_exported_folder_equals_the_model(exported, monkeypatch) -> None:
    """Pixels/tokens → embeddings on numpy alone agree with DualEncoder (torch heads) to 1e-4."""
    folder, _ = exported
    monkeypatch.setenv("MODALENS_BACKEND", "torch")
    model = create_model(DEFAULT_MODEL)
    onnx_model = load_export(folder, threads=1)
    texts = TEXTS
    got = onnx_model.text_embeddings(onnx_model.tokenize(texts))
    assert np.abs(got - model.encode_text(texts)).max() <= TOLERANCE
    images = [load_image(str(p)) for p in PHOTOS[:3]]
    pixels = torch.stack([model.image_tower.preprocess(im) for im in images]).numpy()
    assert np.abs(onnx_model.image_embeddings(pixels) - model.encode_image(images)).max() <= TOLERANCE
    int8 = load_export(folder, int8=True, threads=1)
    cos = (int8.text_embeddings(int8.tokenize(texts)) * got).sum(1)
    assert cos.mean() > 0.95


def test_export_refuses_to_overwrite_a_folder_that_is_not_an_export(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(_app(), ["export", "--output", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a modalens ONNX export" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_writes_a_static_int8_image_tower_when_given_calibration_photos(tmp_path, onnx_image_tower, onnx_text_tower) -> None:
    """Opt-in (--calibration): QDQ static int8 calibrated on a fixed draw of photos; load_export(int8=True) runs it."""
    out = tmp_path / "lite-onnx"
    photos = PHOTOS[0].parent
    # static int8 is for mean-pooled towers (the default's colour histogram refuses it: test_colour.py)
    args = ["export", "--model", "modalens-photo", "--output", str(out), "--int8", "--calibration", str(photos), "--calibration-photos", "16",
            "--calibration-method", "minmax"]  # MinMax: the quick one (Percentile builds histograms)
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    manifest = verify_export(out)
    image = manifest["components"]["image_tower"]
    assert image["int8_file"] == "image_tower.int8.onnx" and "int8_skipped" not in image
    assert image["int8_quantization"]["kind"] == "static" and image["int8_quantization"]["format"] == "QDQ"
    assert image["int8_quantization"]["calibration_photos"] == 16 and image["int8_quantization"]["method"] == "minmax"
    assert {n for n, c in manifest["components"].items() if c.get("int8_file")} == {"image_tower", "text_tower", "image_head", "text_head"}

    import onnx

    ops = {n.op_type for n in onnx.load(str(out / image["int8_file"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "ConvInteger" not in ops
    # Pooled features on all 40 photos (24 of them not calibrated on): measured mean 0.993, min 0.978.
    pixels = np.stack([onnx_image_tower.preprocess(load_image(str(p))).numpy() for p in PHOTOS])
    fp32, int8 = load_export(out, threads=1), load_export(out, int8=True, threads=1)
    a, b = fp32.image_features(pixels), int8.image_features(pixels)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.mean() >= 0.985 and cos.min() >= 0.95, (cos.mean(), cos.min())
    # The same photos are drawn every time.
    from modalens.export import calibration_photos

    assert calibration_photos(photos, 16) == calibration_photos(photos, 16) and len(set(calibration_photos(photos, 16))) == 16
    # The feature cache is keyed by name and preprocessing id: an int8 tower must not share the fp32 one's.
    from modalens.backends.onnx import OnnxImageTower

    fp32_tower, int8_tower = OnnxImageTower.from_folder(out), OnnxImageTower.from_folder(out, int8=True)
    assert int8_tower.preprocess_id != fp32_tower.preprocess_id and int8_tower.name.endswith("+int8")


def test_unreadable_calibration_photos_leave_the_image_tower_fp32(tmp_path, onnx_image_tower, onnx_text_tower) -> None:
    from modalens.export import export_model

    report = export_model("modalens-photo", tmp_path / "out", int8=True, calibration=[tmp_path / "missing.jpg"])
    image = report.manifest["components"]["image_tower"]
    assert "int8_file" not in image and "not by default" in image["int8_skipped"]
    assert "no readable calibration photo" in image["int8_calibration_error"]
