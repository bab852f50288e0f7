"""The token text head: it reads the text tower's token states, ignores padding, exports to ONNX, trains from a config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from modalens.embedding import CachedEncoder
from modalens.encoders.features import default_store, text_key
from modalens.models import ModelConfig, load, save_model
from modalens.models.dual_encoder import DualEncoder
from modalens.models.heads import TokenHead

TOKEN_MODEL = {"name": "token-test", "embed_dim": 64, "text_head": {"kind": "tokens", "hidden_dim": 64, "attention_heads": 4}}
SWAPS = ["red shirt above blue jeans", "blue shirt above red jeans", "a long red dress with a belt on the left, casual"]


def test_padding_does_not_change_a_texts_embedding():
    torch.manual_seed(0)
    head = TokenHead(16, 8, hidden_dim=32, dropout=0.0, layers=2, attention_heads=4).eval()
    short, long = torch.randn(1, 3, 16), torch.randn(1, 9, 16)
    alone = head(short, torch.ones(1, 3, dtype=torch.int64))
    padded = torch.cat([torch.cat([short, torch.randn(1, 6, 16) * 50], dim=1), long])  # padding holds garbage, not zeros
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[0, 3:] = 0
    together = head(padded, mask)
    assert torch.allclose(together[0], alone[0], atol=1e-5)
    assert not torch.allclose(together[1], alone[0], atol=1e-2)


def test_config_keeps_old_models_as_they_were_and_puts_token_heads_on_the_text_side():
    old = ModelConfig.load("src/modalens/models/model_configs/modalens-photo.json")
    assert "text_head" not in old.to_dict() and set(old.to_dict()["head"]) == {"kind", "hidden_dim", "dropout"}
    assert not old.text_reads_tokens
    config = ModelConfig.from_dict(TOKEN_MODEL)
    assert config.text_reads_tokens and ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="text_head"):
        ModelConfig.from_dict({"name": "x", "head": {"kind": "tokens"}})


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    torch.manual_seed(0)
    model = DualEncoder(ModelConfig.from_dict(TOKEN_MODEL)).eval()
    return model, save_model(model, tmp_path_factory.mktemp("token-model") / "model")


def test_cached_token_states_give_what_the_model_gives_on_text(token_model):
    model, _ = token_model
    encoder = CachedEncoder(model, progress=False)
    direct = model.encode_text(SWAPS)
    assert np.abs(encoder.text_embeddings(SWAPS) - direct).max() < 1e-3  # float16 cache
    assert np.abs(CachedEncoder(model, progress=False).text_embeddings(SWAPS[::-1]) - direct[::-1]).max() < 1e-3  # from disk
    pooled = default_store(model.text_tower, "text")  # the same pass filled the pooled cache
    assert np.abs(np.stack([pooled.get(text_key(t)) for t in SWAPS]) - model.text_tower.encode_numpy(SWAPS)).max() < 1e-5
    assert np.linalg.norm(direct, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_token_head_exports_and_answers_without_torch_the_same(token_model, tmp_path):
    from modalens.export import export_model
    from modalens.query_encoder import OnnxQueryEncoder

    model, folder = token_model
    report = export_model(str(folder), tmp_path / "export", int8=True)
    components = report.manifest["components"]
    assert components["text_head"]["inputs"] == ["tokens", "mask"]
    assert components["text_tower"]["outputs"] == ["pooled", "tokens"]
    assert report.int8_cosine["text"]["min"] > 0.9
    exported = OnnxQueryEncoder(tmp_path / "export")
    assert exported.text_reads_tokens
    assert np.abs(exported.encode_text(SWAPS) - model.encode_text(SWAPS)).max() < 1e-4
    assert np.abs(CachedEncoder(exported, progress=False).text_embeddings(SWAPS) - model.encode_text(SWAPS)).max() < 1e-3


def test_a_token_head_trains_from_a_config_and_loads_by_folder(tmp_path, mini_catalog):
    from modalens.recipes import ConfigError, load_train_config, run_recipe

    config = {
        "model": "modalens-lite",
        "output": str(tmp_path / "run"),
        "data": {"catalog": str(mini_catalog), "train_split": "train", "val_split": "val"},
        "caption_set": "basic",
        "model_overrides": {"embed_dim": 32, "head": {"kind": "linear"}, "text_head": {"kind": "tokens", "hidden_dim": 64}},
        "optim": {"epochs": 2, "batch_size": 8, "warmup_steps": 2},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_recipe(load_train_config(path), progress=False)
    assert all(np.isfinite(h["loss"]) for h in result.history)
    trained = load(result.output).model
    assert isinstance(trained.text_head, TokenHead)
    assert trained.encode_text(SWAPS).shape == (3, 32)
    path.write_text(yaml.safe_dump({**config, "tune": {"text_tower": "all"}}))
    with pytest.raises(ConfigError, match="token"):
        run_recipe(load_train_config(path), progress=False)
