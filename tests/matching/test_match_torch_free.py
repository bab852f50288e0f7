"""`modalens match run` without torch: the offer model on numpy and the towers from the ONNX export of modalens-photo (its towers are the featurizer's)
give the PyTorch path's embeddings (within 1e-5) and its decisions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from modalens.cli.match_cmd import app
from modalens.matching.features import OfferFeatures, OfferFeaturizer, export_towers
from modalens.matching.offer_model import PARTS, OfferModel, OfferModelConfig
from modalens.matching.offer_numpy import NumpyOfferModel
from modalens.matching.offers import write_offers
from modalens.matching.pairs import catalogue_offer, seller_offer

VIEWS = ("seller-1", "seller-2")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def offers(mini_products):
    held_out = [p for p in mini_products if p.split == "val"]
    new = [seller_offer(p, "torch-free", c, views=VIEWS)[0] for p in held_out for c in (0, 1)]
    for i, offer in enumerate(new[:6]):  # some with a description and a price, so every part is exercised
        offer.description, offer.price, offer.n_sizes = f"soft cotton, size {i}", 10.0 + 7 * i, i + 1
    return new + [catalogue_offer(p) for p in mini_products[:10]]


def _close(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) <= TOLERANCE


def test_export_towers_give_the_torch_featurizers_features(offers):
    towers = export_towers()
    assert towers is not None and all(getattr(t, "numpy_io", False) for t in towers)
    ours = OfferFeaturizer(*towers, use_cache=False)(offers)
    theirs = OfferFeaturizer(use_cache=False)(offers)  # PyTorch towers (the image tower as `--no-onnx` builds it)
    assert ours.failures == theirs.failures and np.array_equal(ours.has_image, theirs.has_image)
    for name in ("image", "title", "description", "numbers"):
        _close(getattr(ours, name), getattr(theirs, name))


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_the_numpy_offer_model_embeds_as_the_torch_one(matcher_dir, offers, featurizer, head, tmp_path):
    feats = featurizer(offers)
    feats.has_image[3] = False  # an offer whose photos could not be read
    if head == "linear":
        folder = matcher_dir  # the trained one
    else:  # every part, MLP heads (GELU), fitted number scaling; untrained weights are as good a test
        model = OfferModel(OfferModelConfig(parts=PARTS, head="mlp"))
        model.fit_number_scaling(feats.numbers)
        with torch.no_grad():
            model.log_weights.copy_(torch.linspace(-1, 1, len(PARTS)))
        folder = model.save(tmp_path / "mlp")
    torch_model, numpy_model = OfferModel.load(folder), NumpyOfferModel.load(folder)
    _close(numpy_model.embed(feats), torch_model.embed(feats))
    assert numpy_model.output_dim == torch_model.output_dim
    assert numpy_model.part_weights() == pytest.approx(torch_model.part_weights(), abs=1e-6)
    empty = OfferFeatures(*(getattr(feats, n)[:0] for n in ("image", "has_image", "title", "description", "numbers")), {})
    assert numpy_model.embed(empty).shape == (0, torch_model.output_dim)


_WRAPPER = """
import json, sys
class Blocker:  # any `import torch` now fails, as where it is not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
sys.meta_path.insert(0, Blocker())
sys.argv = ["modalens", *json.loads(sys.argv[1])]
from modalens.cli.main import app
try:
    app()
except SystemExit as e:
    code = e.code
print("MODULES " + json.dumps(sorted(m for m in sys.modules if sys.modules[m] is not None)))
"""


def test_match_run_needs_no_torch_and_decides_as_the_torch_path(mini_catalog, matcher_dir, offers, tmp_path):
    new_file = write_offers(offers[:26], tmp_path / "new.jsonl")
    common = [str(new_file), "--against", str(mini_catalog), "--model", str(matcher_dir), "-k", "3"]
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "torch"), "--no-onnx"])
    assert result.exit_code == 0, result.output
    args = ["match", *common, "--out", str(tmp_path / "onnx")]
    run = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(args)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "MODULES " in run.stdout, run.stderr[-3000:]
    modules = set(json.loads(run.stdout.split("MODULES ", 1)[1]))
    assert not {"torch", "transformers", "sklearn", "matplotlib", "fastapi"} & {m.split(".")[0] for m in modules}
    assert "modalens.matching.offer_numpy" in modules and "modalens.matching.offer_model" not in modules

    def pairs(folder):
        return [json.loads(line) for line in (tmp_path / folder / "pairs.jsonl").read_text().splitlines()]

    ours, theirs = pairs("onnx"), pairs("torch")
    assert [(p["left"], p["right"], p["decision"]) for p in ours] == [(p["left"], p["right"], p["decision"]) for p in theirs]
    assert np.allclose([p["score"] for p in ours], [p["score"] for p in theirs], atol=TOLERANCE)
    assert json.loads((tmp_path / "onnx" / "groups.json").read_text()) == json.loads((tmp_path / "torch" / "groups.json").read_text())
