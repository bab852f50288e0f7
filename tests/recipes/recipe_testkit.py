"""Small training configs on the mini catalogue, shared by the recipe tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file

from modalens.recipes import TrainConfig, load_train_config

#: Linear heads without dropout: runs that must agree number for number draw no random masks.
SMALL_MODEL = {"embed_dim": 32, "head": {"kind": "linear", "hidden_dim": 64, "dropout": 0.0}}


def small_config(folder: Path, catalog: Path, *, optim: dict[str, Any] | None = None, **extra: Any) -> TrainConfig:
    """A config file written to ``folder`` and read back through the real loader (its checks included)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model": "modalens-lite",
        "output": str(folder / "run"),
        "data": {"catalog": str(catalog)},
        "model_overrides": SMALL_MODEL,
        "optim": {"epochs": 2, "batch_size": 16, "lr": 0.003, "warmup_steps": 1, **(optim or {})},
        **extra,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_train_config(path)


def saved_weights(folder: Path) -> dict:
    """Every weight file a run saved (heads, tuned towers), keyed by ``file/tensor``."""
    weights = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        weights.update({f"{file.name}/{k}": v for k, v in load_file(str(file)).items()})
    return weights
