"""The instance decoder exports to ONNX (with the image head inside) and ONNX Runtime gives torch's instances."""

from __future__ import annotations

import numpy as np
import torch

from modalens.backends.runtime import OrtModel
from modalens.export.instances import OUTPUTS, export_instance_decoder
from modalens.instances import InstanceEncoder
from modalens.models import load
from modalens.models.instance_decoder import InstanceDecoder, InstanceDecoderConfig, head_digest, save_decoder


def test_the_exported_decoder_gives_torchs_instances_at_any_batch_size(tmp_path):
    torch.manual_seed(0)
    decoder = InstanceDecoder(InstanceDecoderConfig(width=32, layers=2, heads=4))
    file = save_decoder(decoder, tmp_path / "instances.safetensors", head_digest(load("modalens-photo").model.image_head))
    record = export_instance_decoder("modalens-photo", tmp_path / "decoder.onnx", decoder_file=file)
    assert record["max_abs_diff_vs_torch"] < 1e-4 and record["queries"] == 5
    grids = np.random.default_rng(0).random((3, 49, 1280)).astype(np.float32) * 6
    embeddings, objectness, attention = OrtModel(tmp_path / "decoder.onnx", threads=1).run({"grid": grids}, list(OUTPUTS))
    expected = InstanceEncoder.for_model("modalens-photo", decoder_file=file).decode(grids)
    for got, want in zip((embeddings, objectness, attention), expected):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_model_export_holds_its_decoder_and_answers_as_torch_on_real_scenes(mini_catalog):
    """`modalens export` (here the CLI's cached export) writes the decoder of a model that has one; from the
    export alone (ONNX Runtime: the tower's map, then the decoder graph) a scene photo gives torch's instances."""
    from PIL import Image

    from modalens.catalog import read_catalog
    from modalens.export.cache import query_handle
    from modalens.instances import OnnxInstanceEncoder, instance_encoder_for
    from modalens.scenes import build_scenes, scene_products

    handle = query_handle("modalens-photo")
    assert handle.torch_free and handle.query_encoder.exported.manifest["components"]["instance_decoder"]["max_abs_diff_vs_torch"] < 1e-4
    onnx, torch_path = instance_encoder_for(handle), instance_encoder_for(load("modalens-photo"))
    assert isinstance(onnx, OnnxInstanceEncoder) and onnx.digest == torch_path.digest
    photos = scene_products(build_scenes(read_catalog(mini_catalog).products, 3, seed=4, min_products=2, max_products=4))
    images = [Image.open(p.image).convert("RGB") for p in photos]
    ours, theirs = onnx.encode_images(images), torch_path.encode_images(images)
    for got, want in ((ours.embeddings, theirs.embeddings), (ours.objectness, theirs.objectness), (ours.attention, theirs.attention)):
        np.testing.assert_allclose(got, want, atol=1e-4)
