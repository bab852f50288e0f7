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
    """A projection head. ``kind``: ``linear`` or ``mlp`` read one pooled vector; ``tokens`` (text only) reads
    the text tower's token states, narrowed to ``width``, through ``layers`` self-attention blocks and attention
    pooling (``heads.TokenHead``), so word order and which word goes with which survive."""

    kind: str = "mlp"
    hidden_dim: int = 1024
    dropout: float = 0.1
    layers: int = 1
    attention_heads: int = 4
    width: int = 128


@dataclass
class ModelConfig:
    name: str
    image_tower: dict[str, Any] = field(default_factory=lambda: {"name": "efficientnet-lite0"})
    text_tower: dict[str, Any] = field(default_factory=lambda: {"name": "minilm-l6", "max_length": 64})
    embed_dim: int = 512
    head: HeadConfig = field(default_factory=HeadConfig)
    #: The text side's head when it differs from ``head`` (e.g. ``{"kind": "tokens"}``); None: ``head``.
    text_head: HeadConfig | None = None
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
        if data.get("text_head") is not None:
            data["text_head"] = HeadConfig(**data["text_head"])
        if data["head"].kind == "tokens":
            raise ValueError("head kind 'tokens' reads text token states: set it as text_head, not head")
        return cls(**data)

    @property
    def text_head_config(self) -> HeadConfig:
        return self.text_head or self.head

    @property
    def text_reads_tokens(self) -> bool:
        """Whether the text head reads the text tower's token states rather than its pooled vector."""
        return self.text_head_config.kind == "tokens"

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["text_head"] is None:  # configs without one read (and key caches) as before it existed
            del data["text_head"]
        for head in (data["head"], data.get("text_head") or {}):
            if head.get("kind") != "tokens":  # only a token head has attention blocks
                for key in ("layers", "attention_heads", "width"):
                    head.pop(key, None)
        return data

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
