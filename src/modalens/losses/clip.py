"""CLIP's symmetric InfoNCE loss with a learnable temperature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClipLoss(nn.Module):
    """Cross-entropy over image→text and text→image similarities; the diagonal pairs are positives.

    ``max_logit_scale`` clamps the learned temperature (CLIP caps exp(scale) at 100) so
    a small batch cannot drive it to a degenerate, over-confident value. When
    ``group_ids`` are given, items sharing an id (the same caption twice in a batch,
    common with attribute captions) are all positives instead of false negatives.
    """

    def __init__(self, max_logit_scale: float = 4.6052) -> None:
        super().__init__()
        self.max_logit_scale = max_logit_scale

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        logit_scale: torch.Tensor,
        group_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        scale = logit_scale.clamp(max=self.max_logit_scale).exp()
        logits = scale * image_embeds @ text_embeds.T
        if group_ids is None:
            labels = torch.arange(len(logits), device=logits.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        positives = group_ids[:, None] == group_ids[None, :]
        return (_multi_positive_nce(logits, positives) + _multi_positive_nce(logits.T, positives.T)) / 2


def _multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """-log of the total probability on a row's positives (MIL-NCE): any positive may win."""
    positive_logits = logits.masked_fill(~positives, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(positive_logits, dim=1)).mean()
