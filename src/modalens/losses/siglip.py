"""SigLIP's pairwise sigmoid loss: every image-text pair is its own binary decision.

Unlike InfoNCE it needs no softmax over the batch, so it behaves the same at any
batch size (useful on a CPU, where batches are small); it learns a bias as well
as a temperature (initialised as in the paper: t = log 10, b = -10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SigLipLoss(nn.Module):
    def __init__(self, init_bias: float = -10.0) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        logit_scale: torch.Tensor,
        group_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits = logit_scale.exp() * image_embeds @ text_embeds.T + self.bias
        if group_ids is None:
            positives = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        else:
            positives = group_ids[:, None] == group_ids[None, :]
        labels = positives.float() * 2 - 1  # +1 for matching pairs, -1 otherwise
        return -F.logsigmoid(labels * logits).sum() / len(logits)
