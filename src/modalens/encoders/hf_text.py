"""Hugging Face text towers with sentence-transformers pooling, loaded from local files only.

:class:`HFTextTower` is the shared machinery (a transformer encoder, masked mean
pooling, L2 norm); the modules that register named towers (``minilm``,
``mpnet``, ``e5_multilingual``) only say where their weights come from. Any
other local Hugging Face encoder folder works through
``create_text_tower("hf-text", path=...)``; nothing is ever fetched from a hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import TextTower
from .registry import register_text_tower


def quiet_offline_transformers() -> None:
    """Never reach for the hub, and no progress bar for loading 100 tensors from disk."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class HFTextTower(TextTower):
    """Transformer encoder + attention-masked mean pooling (+ L2 norm, as sentence-transformers does)."""

    def __init__(self, tokenizer: Any, transformer: torch.nn.Module, name: str, max_length: int = 64, normalize: bool = True) -> None:
        super().__init__()
        self.name = name
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.output_dim = int(transformer.config.hidden_size)
        self.max_length = max_length
        self.normalize = normalize
        self.eval()

    @classmethod
    def from_folder(cls, path: str | Path, name: str, **kwargs: Any) -> HFTextTower:
        """A folder as ``save_pretrained`` writes it (config.json, weights, tokenizer files)."""
        quiet_offline_transformers()
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a Hugging Face model folder (no config.json)")
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        transformer = AutoModel.from_pretrained(str(path), local_files_only=True)
        return cls(tokenizer, transformer, name, **kwargs)

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

    def forward_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled embedding and the last layer's token states (batch, tokens, dim), from one pass."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return (F.normalize(pooled, dim=-1) if self.normalize else pooled), hidden

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        return self.forward_states(input_ids, attention_mask, **extra)[0]

    @torch.inference_mode()
    def encode_states(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texts → pooled (n, dim), token states (n, tokens, dim) and their mask (n, tokens), numpy: what a
        token head reads (``models.heads.TokenHead``)."""
        tokens = self.tokenize(texts)
        pooled, states = self.forward_states(**tokens)
        return pooled.float().numpy(), states.float().numpy(), tokens["attention_mask"].numpy()

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenize(texts)
        return self.forward_tokens(**tokens)


@register_text_tower("hf-text")
def _hf_text(path: str | Path, max_length: int = 64, **kwargs) -> HFTextTower:
    return HFTextTower.from_folder(path, f"hf-text:{Path(path).name}", max_length=max_length, **kwargs)
