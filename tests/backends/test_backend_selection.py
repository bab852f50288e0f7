"""Which back-end the towers run on: MODALENS_BACKEND, the model config, then onnxruntime's presence."""

from __future__ import annotations

import pytest
import torch

from modalens import backends
from modalens.backends import (
    BackendError,
    build_image_tower,
    resolve_backend,
    tower_backend,
)
from modalens.models import DualEncoder, ModelConfig


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)


def test_auto_is_onnx_exactly_when_onnxruntime_imports(monkeypatch) -> None:
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: True)
    assert resolve_backend(None) == ("onnx", False)
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    assert resolve_backend(None) == ("torch", False)
    assert resolve_backend("auto") == ("torch", False)


def test_environment_overrides_config(monkeypatch) -> None:
    assert resolve_backend("onnx") == ("onnx", True)
    assert resolve_backend(None, "torch") == ("torch", True)  # first non-empty request wins
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    assert resolve_backend("onnx") == ("torch", True)
    monkeypatch.setenv(backends.ENV_VAR, "tensorflow")
    with pytest.raises(ValueError, match="MODALENS_BACKEND"):
        resolve_backend(None)


def test_modalens_backend_torch_forces_torch(monkeypatch) -> None:
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    model = DualEncoder(ModelConfig(name="t", image_tower={"name": "efficientnet-lite0", "backend": "onnx"}))
    tower = model.image_tower
    assert tower_backend(tower) == "torch"
    assert type(tower).__name__ == "EfficientNetLite"
    assert tower._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)  # as before the back-ends


def test_tower_config_key_selects_torch() -> None:
    tower = build_image_tower({"name": "efficientnet-lite0", "backend": "torch"})
    assert tower_backend(tower) == "torch"


def test_model_config_backend_attribute_is_honoured() -> None:
    config = ModelConfig(name="t")
    config.backend = "torch"  # type: ignore[attr-defined]  # a top-level key, when ModelConfig carries one
    assert tower_backend(DualEncoder(config).image_tower) == "torch"


def test_without_onnxruntime_auto_falls_back_and_explicit_onnx_fails(monkeypatch) -> None:
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    assert tower_backend(build_image_tower({"name": "efficientnet-lite0"})) == "torch"  # auto: quietly torch
    with pytest.raises(BackendError, match="onnxruntime is not installed"):
        build_image_tower({"name": "efficientnet-lite0", "backend": "onnx"})


def test_auto_falls_back_to_torch_with_a_warning_when_export_is_impossible(monkeypatch) -> None:
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(backends, "onnx_export_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="runs in PyTorch"):
        tower = build_image_tower({"name": "efficientnet-lite1", "pretrained": False})  # nothing cached for it
    assert tower_backend(tower) == "torch"


def test_torch_path_works_when_onnxruntime_cannot_be_imported(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    assert not backends.onnxruntime_available()
    tower = DualEncoder(ModelConfig(name="t")).image_tower
    assert tower_backend(tower) == "torch"
    with torch.inference_mode():
        assert tower(torch.zeros(1, 3, 224, 224)).shape == (1, 1280)
