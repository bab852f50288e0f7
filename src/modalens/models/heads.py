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
            raise ValueError(f"head kind must be 'linear' or 'mlp' ('tokens' for a text head), not {kind!r}")
        self.in_dim = in_dim
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


class _AttentionBlock(nn.Module):
    """One pre-norm transformer block over token states, written in plain ops (so it exports to ONNX as is).

    Its MLP is as wide as a token (not 4×): it runs on every token of every caption of every step.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"token head: {heads} attention heads do not divide the token size {dim}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x`` (B, L, D); ``bias`` (B, 1, 1, L): 0 for a token, a large negative number for padding."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5 + bias, dim=-1)
        x = x + self.drop(self.out((weights @ v).transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class TokenHead(nn.Module):
    """Text token states → embedding: self-attention blocks, then attention pooling beside the masked mean.

    A mean-pooled sentence vector puts "red shirt above blue jeans" and "blue shirt above red jeans" at
    nearly one point (1 − cos 0.018 for MiniLM: docs/composition.md), so no head on it can tell them
    apart. The tower's token states still differ (each word's state has read its neighbours); the
    blocks relate them (at ``width``, narrower than the tower: with 384 a training step on two CPU
    cores cost 0.7 s against 0.02 s for an MLP head, at 128 about a fifth) and a learned query pools
    them. The masked mean of the input states (what the pooled heads read, up to scale) is kept
    beside it, so this head can do what an MLP head does.
    """

    reads_tokens = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 1024,
        dropout: float = 0.1,
        layers: int = 1,
        attention_heads: int = 4,
        width: int = 128,
    ) -> None:
        super().__init__()
        self.in_dim, self.heads = in_dim, attention_heads
        self.narrow = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, width))
        self.blocks = nn.ModuleList(_AttentionBlock(width, attention_heads, dropout) for _ in range(layers))
        self.pool_norm = nn.LayerNorm(width)
        self.query = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.pool_kv = nn.Linear(width, 2 * width)
        self.project = ProjectionHead(in_dim + width, out_dim, "mlp", hidden_dim, dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``tokens`` (B, L, D) token states, ``mask`` (B, L) 1 for a token, 0 for padding → (B, out_dim), unit length."""
        keep = mask.to(tokens.dtype)
        mean = (tokens * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)
        bias = ((1.0 - keep) * -1e4)[:, None, None, :]
        x = self.narrow(tokens)
        for block in self.blocks:
            x = block(x, bias)
        b, n, d = x.shape
        k, v = self.pool_kv(self.pool_norm(x)).reshape(b, n, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q = self.query.reshape(1, self.heads, 1, d // self.heads)
        weights = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5 + bias, dim=-1)
        pooled = (weights @ v).reshape(b, d)
        return self.project(torch.cat([mean, pooled], dim=-1))


def create_head(config, in_dim: int, out_dim: int) -> nn.Module:
    """The head a ``HeadConfig`` names: a ``ProjectionHead`` (linear, mlp) or a ``TokenHead`` (tokens)."""
    if config.kind == "tokens":
        return TokenHead(in_dim, out_dim, config.hidden_dim, config.dropout, config.layers, config.attention_heads, config.width)
    return ProjectionHead(in_dim, out_dim, config.kind, config.hidden_dim, config.dropout)
