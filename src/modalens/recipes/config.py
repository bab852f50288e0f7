"""Training configs: a YAML (or JSON) file → dataclasses, with unknown keys rejected by name."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..prompts import CAPTION_TEMPLATES

T = TypeVar("T")


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    catalog: str = "kagl"
    train_split: str = "train"
    val_split: str = "val"
    limit: int | None = None


@dataclass
class OptimConfig:
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0


@dataclass
class TrainConfig:
    """One training run: which model, which data, which captions, how long, and where the result goes."""

    recipe: str = "contrastive-heads"
    model: str = "modalens-lite"
    output: str = "runs/modalens-lite"
    data: DataConfig = field(default_factory=DataConfig)
    captions: list[str] = field(default_factory=lambda: list(CAPTION_TEMPLATES))
    optim: OptimConfig = field(default_factory=OptimConfig)
    #: Extra image views (``encoders.views``) shown instead of the photo with ``view_probability``.
    image_views: list[str] = field(default_factory=list)
    view_probability: float = 0.25
    #: ``clip`` (InfoNCE) or ``siglip`` (pairwise sigmoid).
    loss: str = "clip"
    #: Multi-field loss: weight per field of ``prompts.FIELD_TEMPLATES`` (empty: one caption per product).
    field_weights: dict[str, float] = field(default_factory=dict)
    #: Also checkpoint every N optimiser steps (0: at each epoch's end only).
    checkpoint_every: int = 0
    #: Overrides of the model config (for example ``{"embed_dim": 256}``).
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        nested = {"data": DataConfig, "optim": OptimConfig}.get(name) if cls is TrainConfig else None
        kwargs[name] = _build(nested, value, f"{where}.{name}") if nested else value
    return cls(**kwargs)


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot parse: {e}") from None
    config = _build(TrainConfig, data or {}, path.name)
    unknown = set(config.captions) - set(CAPTION_TEMPLATES)
    if unknown:
        raise ConfigError(f"{path.name}: unknown caption templates {sorted(unknown)}; known: {sorted(CAPTION_TEMPLATES)}")
    from ..encoders.views import VIEWS
    from ..losses import LOSSES
    from ..prompts import FIELD_TEMPLATES

    if config.loss not in LOSSES:
        raise ConfigError(f"{path.name}: unknown loss {config.loss!r}; known: {sorted(LOSSES)}")
    unknown_fields = set(config.field_weights) - set(FIELD_TEMPLATES)
    if unknown_fields:
        raise ConfigError(f"{path.name}: unknown fields {sorted(unknown_fields)}; known: {sorted(FIELD_TEMPLATES)}")

    unknown = set(config.image_views) - set(VIEWS)
    if unknown:
        raise ConfigError(f"{path.name}: unknown image views {sorted(unknown)}; known: {sorted(VIEWS)}")
    if not 0 <= config.view_probability <= 1:
        raise ConfigError(f"{path.name}: view_probability must be within [0, 1]")
    return config
