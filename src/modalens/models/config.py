"""Model configs as data: a JSON file names the towers, the head shape and the embedding size."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class HeadConfig:
    kind: str = "mlp"
    hidden_dim: int = 1024
    dropout: float = 0.1


@dataclass
class ModelConfig:
    name: str
    image_tower: dict[str, Any] = field(default_factory=lambda: {"name": "efficientnet-lite0"})
    text_tower: dict[str, Any] = field(default_factory=lambda: {"name": "minilm-l6", "max_length": 64})
    embed_dim: int = 512
    head: HeadConfig = field(default_factory=HeadConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    #: Inference back-end for both towers: "onnx", "torch", or None for automatic (ONNX Runtime when it imports).
    backend: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        data["head"] = HeadConfig(**data.get("head", {}))
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
