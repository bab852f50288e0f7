"""Projection heads: small trainable maps from a frozen tower into the shared space."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """LayerNorm → (Linear | MLP with a linear shortcut) → L2-normalised embedding.

    The input LayerNorm matters for frozen CNN features: pooled ReLU6
    activations are all positive and unevenly scaled, and a linear map on them
    alone trains slowly. The shortcut keeps the MLP at least as good as linear.
    """

    def __init__(self, in_dim: int, out_dim: int, kind: str = "mlp", hidden_dim: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise ValueError(f"head kind must be 'linear' or 'mlp', not {kind!r}")
        self.norm = nn.LayerNorm(in_dim)
        self.linear = nn.Linear(in_dim, out_dim)
        self.mlp = (
            nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))
            if kind == "mlp"
            else None
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.norm(features)
        y = self.linear(x)
        if self.mlp is not None:
            y = y + self.mlp(x)
        return F.normalize(y, dim=-1)
