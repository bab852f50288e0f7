"""instance-retrieval: how scene hits are counted, an oracle that must score perfectly, and the task end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.cli.main import app
from modalens.embedding import CachedEncoder
from modalens.evaluation.instances import instance_retrieval_output, scene_hits
from modalens.instances import InstanceResult
from modalens.models import load
from modalens.models.instance_decoder import InstanceDecoder, InstanceDecoderConfig, head_digest, save_decoder


def test_a_scenes_other_targets_never_count_against_a_target_and_ties_are_pessimistic():
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.2, 0.1]])
    relevant = np.array([[True, True, False, False], [False, True, False, False]])
    hits = scene_hits(scores, relevant, (1, 2))
    assert hits[1].tolist() == [1.0, 0.0]  # both targets of scene 0 outrank every non-target; scene 1's tie loses
    assert hits[2].tolist() == [1.0, 1.0]


class _Oracle:
    """Instances that are exactly the packshot embeddings of the scene's own products: a perfect decoder."""

    def __init__(self, encoder, products):
        self.embeds = dict(zip([p.id for p in products], encoder.image_embeddings(products)[0]))

    def instances(self, photos):
        out = np.zeros((len(photos), 5, 512), np.float32)
        for i, photo in enumerate(photos):
            for k, pid in enumerate(photo.extra["products"]):
                out[i, k] = self.embeds[pid]
            out[i, len(photo.extra["products"]) :] = out[i, 0]  # spare queries repeat a real one
        return InstanceResult(out, np.ones((len(photos), 5)), np.full((len(photos), 5, 49), 1 / 49), {})


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(str(mini_catalog)).products


def test_an_oracle_decoder_finds_every_product_in_every_scene(products):
    encoder = CachedEncoder(load("modalens-photo").model, progress=False)
    out = instance_retrieval_output(encoder, products, _Oracle(encoder, products), scenes=12, resamples=50, single_product=False)
    assert out.metrics["scenes"] == 12 and 2 <= out.metrics["products_per_scene"] <= 4
    assert out.metrics["scene_to_product"]["instance"]["R@1"] == 1.0
    assert out.metrics["product_to_scene"]["instance"]["R@1"] > out.metrics["product_to_scene"]["global"]["R@1"]
    assert out.metrics["scene_to_product"]["global"]["R@1"] < 1.0  # one vector for several garments blurs them


def test_the_task_from_the_command_line_with_the_global_path_unchanged(tmp_path, mini_catalog):
    model = load("modalens-photo").model
    torch.manual_seed(0)
    decoder = InstanceDecoder(InstanceDecoderConfig(width=32, layers=1, heads=4))
    file = save_decoder(decoder, tmp_path / "instances.safetensors", head_digest(model.image_head))
    out = tmp_path / "results.json"
    args = ["eval", "--model", "modalens-photo", "--data", str(mini_catalog), "--tasks", "retrieval,instance-retrieval", "--instance-decoder", str(file),
            "--instance-scenes", "10", "--resamples", "50", "--no-report", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    task = results["instance-retrieval"]
    for direction in ("scene_to_product", "product_to_scene", "text_to_scene"):
        for method in ("instance", "global"):
            assert set(task[direction][method]["ci"]) == {"R@1", "R@5", "R@10"}
        assert set(task[direction]["instance_minus_global"]) == {"R@1", "R@5", "R@10"}
    assert task["single_product"]["text_to_image_R@1"] == results["retrieval"]["text_to_image"]["R@1"]
    assert "scene→product R@5 (instance)" in result.output


def test_a_model_without_an_instance_decoder_is_refused_before_any_work(mini_catalog):
    args = ["eval", "--model", "modalens-lite", "--data", str(mini_catalog), "--tasks", "instance-retrieval", "--no-report"]
    result = CliRunner().invoke(app, args)  # modalens-lite ships no instance decoder
    assert result.exit_code != 0 and "has no instance decoder" in result.output and "Traceback" not in result.output
