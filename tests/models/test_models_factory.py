"""ModelConfig, ProjectionHead, DualEncoder and the create_model / save_model factory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from modalens.models import (
    DEFAULT_MODEL,
    DualEncoder,
    HeadConfig,
    ModelConfig,
    ModelNotFoundError,
    ProjectionHead,
    create_model,
    list_models,
    model_metadata,
    save_model,
)
from modalens.paths import PRETRAINED_DIR

HEAD_PREFIXES = ("image_head.", "text_head.")


def _scrambled(model: DualEncoder, seed: int = 0) -> DualEncoder:
    """Move every head parameter away from its init, so a round trip that re-inits would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model


def _small_config(name: str = "tiny") -> ModelConfig:
    return ModelConfig(
        name=name,
        image_tower={"name": "efficientnet-lite0", "dim": 12},
        text_tower={"name": "minilm-l6", "dim": 10, "max_length": 32},
        embed_dim=6,
        head=HeadConfig(kind="mlp", hidden_dim=16, dropout=0.5),
        init_logit_scale=1.5,
    )


# --- ModelConfig -------------------------------------------------------------------------------


def test_config_json_round_trip(tmp_path: Path) -> None:
    config = _small_config()
    config.save(tmp_path / "c.json")
    loaded = ModelConfig.load(tmp_path / "c.json")
    assert loaded == config
    assert isinstance(loaded.head, HeadConfig)
    assert json.loads((tmp_path / "c.json").read_text())["head"]["hidden_dim"] == 16


def test_config_rejects_unknown_fields_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embed_dims"):
        ModelConfig.from_dict({"name": "x", "embed_dims": 3})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.load(tmp_path / "bad.json")


def test_shipped_config_loads() -> None:
    assert DEFAULT_MODEL in list_models()
    config = create_model(DEFAULT_MODEL, pretrained=False).config
    assert config.name == DEFAULT_MODEL
    assert config.image_tower["name"] == "efficientnet-lite0"
    assert config.text_tower["name"] == "minilm-l6"
    assert config.embed_dim == 512


# --- ProjectionHead ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_projection_head_outputs_unit_vectors(kind: str) -> None:
    torch.manual_seed(0)
    head = ProjectionHead(20, 8, kind=kind, hidden_dim=32).eval()
    out = head(torch.rand(5, 20) * 6)  # all-positive, ReLU6-like features
    assert out.shape == (5, 8)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))
    assert (head.mlp is None) == (kind == "linear")


def test_projection_head_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="linear"):
        ProjectionHead(4, 2, kind="transformer")


# --- DualEncoder -------------------------------------------------------------------------------


def test_pretrained_false_builds_heads_without_loading_towers() -> None:
    model = create_model("modalens-lite", pretrained=False)
    assert isinstance(model, DualEncoder)
    assert not model.training
    assert model._towers == {}  # towers are lazy
    assert model.image_head.linear.in_features == 1280
    assert model.text_head.linear.in_features == 384
    assert model.image_head.linear.out_features == model.text_head.linear.out_features == 512
    assert model.logit_scale.item() == pytest.approx(model.config.init_logit_scale)


def test_state_dict_holds_only_heads_and_temperature() -> None:
    model = create_model("modalens-lite", pretrained=False)
    _ = model.image_tower  # load a tower: it must still stay out of the state dict
    assert "image" in model._towers
    keys = set(model.state_dict())
    assert "logit_scale" in keys
    assert all(k == "logit_scale" or k.startswith(HEAD_PREFIXES) for k in keys), sorted(keys)
    assert not any("_conv_stem" in k or "_blocks" in k or "transformer" in k or "tower" in k for k in keys)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 5_000_000  # a few MB of heads, not a CNN


def test_config_dims_override_tower_dims() -> None:
    model = DualEncoder(_small_config())
    assert model.image_head.linear.in_features == 12
    assert model.text_head.linear.in_features == 10
    assert model.image_head.linear.out_features == 6


def test_project_features_shapes_norms_and_chunking() -> None:
    torch.manual_seed(0)
    model = _scrambled(DualEncoder(_small_config()))
    features = np.random.default_rng(0).random((5000, 12), dtype=np.float32)  # > one 4096 chunk
    out = model.project_features(features, "image")
    assert out.shape == (5000, 6) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        direct = model.image_head(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(out, direct, atol=1e-6)
    text = model.project_features(np.random.default_rng(1).random((3, 10), dtype=np.float32), "text")
    assert text.shape == (3, 6)
    empty = model.project_features(np.zeros((0, 12), np.float32), "image")
    assert empty.shape == (0, 6)


def test_project_features_is_deterministic_despite_dropout() -> None:
    model = _scrambled(DualEncoder(_small_config()))
    model.train()  # project_features must switch to eval (dropout 0.5 in this config)
    features = np.random.default_rng(2).random((8, 12), dtype=np.float32)
    a = model.project_features(features, "image")
    b = model.project_features(features, "image")
    np.testing.assert_array_equal(a, b)


def test_project_features_accepts_float64_arrays() -> None:
    model = DualEncoder(_small_config())
    features = np.random.default_rng(3).random((4, 12))  # float64
    out = model.project_features(features, "image")
    expected = model.project_features(features.astype(np.float32), "image")
    np.testing.assert_allclose(out, expected, atol=1e-6)


# --- save_model / create_model -----------------------------------------------------------------


def test_save_and_reload_gives_identical_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _scrambled(create_model("modalens-lite", pretrained=False), seed=1)
    folder = save_model(model, tmp_path / "run")
    assert (folder / "config.json").exists() and (folder / "heads.safetensors").exists()
    assert not list(folder.glob(".*.tmp"))  # written atomically, nothing left behind

    loaded = create_model(folder)
    assert loaded.config == model.config
    rng = np.random.default_rng(0)
    image_feats = (rng.random((7, 1280)) * 6).astype(np.float32)
    text_feats = rng.normal(size=(7, 384)).astype(np.float32)
    np.testing.assert_array_equal(loaded.project_features(image_feats, "image"), model.project_features(image_feats, "image"))
    np.testing.assert_array_equal(loaded.project_features(text_feats, "text"), model.project_features(text_feats, "text"))
    assert loaded.logit_scale.item() == model.logit_scale.item()

    # ...and differs from a fresh init, so the weights really came from the file.
    fresh = create_model("modalens-lite", pretrained=False)
    assert not np.allclose(fresh.project_features(image_feats, "image"), loaded.project_features(image_feats, "image"))


def test_saved_heads_file_has_no_tower_keys(tmp_path: Path) -> None:
    model = create_model("modalens-lite", pretrained=False)
    _ = model.image_tower
    folder = save_model(model, tmp_path / "run")
    keys = set(load_file(str(folder / "heads.safetensors")))
    assert keys == set(model.state_dict())
    assert all(k == "logit_scale" or k.startswith(HEAD_PREFIXES) for k in keys)
    assert (folder / "heads.safetensors").stat().st_size < 20 * 2**20


def test_save_model_metadata_round_trip(tmp_path: Path) -> None:
    model = DualEncoder(_small_config())
    folder = save_model(model, tmp_path / "run", metadata={"recipe": "contrastive", "epochs": 3, "r1": 0.25})
    meta = model_metadata(folder)
    assert meta["recipe"] == "contrastive"
    assert json.loads(meta["epochs"]) == 3 and json.loads(meta["r1"]) == 0.25


def test_folder_without_config_is_model_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        create_model(tmp_path / "empty")
    assert issubclass(ModelNotFoundError, FileNotFoundError)


def test_folder_without_heads_needs_pretrained_false(tmp_path: Path) -> None:
    folder = tmp_path / "config-only"
    folder.mkdir()
    _small_config("config-only").save(folder / "config.json")
    with pytest.raises(ModelNotFoundError, match="no trained heads"):
        create_model(folder)
    model = create_model(folder, pretrained=False)
    assert model.name == "config-only"
    assert model_metadata(folder) == {}


def test_unknown_model_name_lists_known_models() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        create_model("no-such-model")
    message = str(info.value)
    assert "no-such-model" in message
    for name in list_models():
        assert name in message


def test_heads_file_with_missing_key_fails_strictly(tmp_path: Path) -> None:
    model = DualEncoder(_small_config())
    folder = save_model(model, tmp_path / "run")
    state = load_file(str(folder / "heads.safetensors"))
    del state["logit_scale"]
    save_file(state, str(folder / "heads.safetensors"))
    with pytest.raises(RuntimeError, match="logit_scale"):
        create_model(folder)


#: The models whose heads ship in ``pretrained/``; each has its recorded outputs beside this file.
SHIPPED_MODELS = ("modalens-lite", "modalens-photo", "modalens-mcip", "modalens-multilingual", "modalens-colour")


def _shipped_reference(name: str) -> Path:
    return Path(__file__).with_name(f"shipped_heads_reference.{name}.json")


def _reference_inputs(image_dim: int = 1280) -> tuple[np.ndarray, np.ndarray]:
    """Fixed tower-like features (PCG64 streams are stable across NumPy versions): ReLU6-range image, normal text."""
    rng = np.random.default_rng(12)
    return (rng.random((3, image_dim)) * 6).astype(np.float32), rng.normal(size=(3, 384)).astype(np.float32)


def _reference_outputs(model: DualEncoder) -> dict:
    image, text = _reference_inputs(model.image_tower.output_dim)
    if model.text_reads_tokens:  # a token head reads token states: the same numbers as three texts of 1, 2 and 3 tokens
        from modalens.encoders.features import TokenStates

        text = TokenStates([np.tile(row, (n, 1)) for n, row in zip((1, 2, 3), text)], text.shape[1])
    image_emb, text_emb = model.project_features(image, "image"), model.project_features(text, "text")
    return {
        "logit_scale": model.logit_scale.item(),
        "image_embeddings_first16": image_emb[:, :16].tolist(),
        "text_embeddings_first16": text_emb[:, :16].tolist(),
        "image_text_cosines": (image_emb @ text_emb.T).tolist(),
    }


def write_shipped_reference(name: str) -> None:
    """Record a shipped model's head outputs; run after deliberately shipping new heads:
    ``PYTHONPATH=src python -c "import sys; sys.path.insert(0, 'tests/models'); import test_models_factory as t; t.write_shipped_reference('NAME')"``"""
    _shipped_reference(name).write_text(json.dumps(_reference_outputs(create_model(name)), indent=1) + "\n")


def test_the_default_model_ships_its_heads() -> None:
    assert DEFAULT_MODEL in SHIPPED_MODELS


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_heads(name: str) -> None:
    weights = PRETRAINED_DIR / f"{name}.safetensors"
    if not weights.exists():
        with pytest.raises(ModelNotFoundError, match="no trained heads"):
            create_model(name)
        pytest.skip(f"no shipped {name}.safetensors yet; checked the clear error instead")
    # the shipped file fits the configured architecture exactly: every tensor, with the configured shape
    architecture = create_model(name, pretrained=False).state_dict()
    shipped = load_file(str(weights))
    assert {k: tuple(v.shape) for k, v in shipped.items()} == {k: tuple(v.shape) for k, v in architecture.items()}
    # ...and the loaded model reproduces the outputs recorded when these heads were shipped
    model = create_model(name)
    assert not torch.equal(model.image_head.linear.weight, architecture["image_head.linear.weight"])  # not the init
    expected, got = json.loads(_shipped_reference(name).read_text()), _reference_outputs(model)
    assert got["logit_scale"] == pytest.approx(expected["logit_scale"], abs=1e-6)
    for key in ("image_embeddings_first16", "text_embeddings_first16", "image_text_cosines"):
        np.testing.assert_allclose(got[key], expected[key], atol=2e-5, err_msg=key)
    # trained heads tell these inputs apart: not all cosines alike (a collapsed or re-initialised head would be)
    assert np.ptp(np.array(got["image_text_cosines"])) > 0.01
