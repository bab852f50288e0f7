"""A multi-field contrastive loss in the manner of Marqo's GCL.

One contrastive term per product field (title, colour, category, material...)
against the same image, with a weight each: the image embedding is pulled
toward every way a shopper might describe it, and a field that says little
(a long title) cannot drown one that says a lot (the colour).
"""

from __future__ import annotations

import torch
from torch import nn

from .clip import ClipLoss


class MultiFieldLoss(nn.Module):
    def __init__(self, weights: dict[str, float], base: nn.Module | None = None) -> None:
        super().__init__()
        if not weights or any(w < 0 for w in weights.values()):
            raise ValueError("multi-field loss needs one non-negative weight per field")
        self.weights = dict(weights)
        self.base = base or ClipLoss()

    def forward(
        self,
        image_embeds: torch.Tensor,
        field_embeds: dict[str, torch.Tensor],
        logit_scale: torch.Tensor,
        field_groups: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``field_embeds[f]`` are the texts of field ``f`` (one per image); ``present[f]`` masks products lacking it.

        ``field_groups[f]`` gives equal ids to equal texts: many products share a colour, and those
        are all positives of each other rather than false negatives.
        """
        total = image_embeds.new_zeros(())
        weight_sum = 0.0
        for name, weight in self.weights.items():
            if name not in field_embeds or weight == 0:
                continue
            keep = present[name] if present is not None and name in present else None
            images, texts, groups = image_embeds, field_embeds[name], field_groups[name]
            if keep is not None:
                if int(keep.sum()) < 2:
                    continue
                images, texts, groups = images[keep], texts[keep], groups[keep]
            total = total + weight * self.base(images, texts, logit_scale, groups)
            weight_sum += weight
        if weight_sum == 0:
            raise ValueError("no field had at least two products in this batch")
        return total / weight_sum
