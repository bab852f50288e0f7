"""Shared fixtures: a private feature cache per test session, and the small real catalogues."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MINI_CATALOG = FIXTURES / "mini-catalog"
KAGL = Path(__file__).resolve().parents[2] / "shared" / "data" / "kagl-fashion"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/modalens."""
    os.environ["MODALENS_CACHE"] = str(tmp_path_factory.mktemp("modalens-cache"))
    # ONNX exports depend only on the code and weights: keep them across runs (and share them with
    # the servers and CLI runs the tests start), so only the first run pays for exporting.
    os.environ.setdefault("MODALENS_ONNX_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "onnx"))
    yield


@pytest.fixture(scope="session")
def mini_catalog() -> Path:
    """40 real product photos (KAGL-derived, 96 px), 20 article types, train/val splits."""
    return MINI_CATALOG / "products.csv"


@pytest.fixture(scope="session")
def kagl_root() -> Path:
    if not (KAGL / "products.csv").exists():
        pytest.skip("../shared/data/kagl-fashion is not present")
    return KAGL


@pytest.fixture(scope="session")
def tiny_instance_model(mini_catalog, tmp_path_factory) -> Path:
    """The default model with a small instance decoder trained on fixture scenes (about 30 s): a saved model folder."""
    import yaml

    from modalens.recipes import load_train_config, run_recipe

    folder = tmp_path_factory.mktemp("tiny-instances")
    config = {
        "recipe": "instances",
        "output": str(folder / "run"),
        "data": {"catalog": str(mini_catalog), "train_split": "train", "val_split": "train"},  # val: new layouts
        "optim": {"epochs": 4, "batch_size": 16, "lr": 0.002, "warmup_steps": 4, "seed": 0},
        "tune": {"init": "modalens-photo"},
        "instances": {"scenes": 96, "val_scenes": 16, "decoder": {"width": 64, "layers": 1, "heads": 4}},
    }
    (folder / "instances.yaml").write_text(yaml.safe_dump(config))
    return run_recipe(load_train_config(folder / "instances.yaml"), progress=False).output
