"""MCIP's objective: retrieval margins on the image side that keep (or give up) the text alignment.

Three recipes share this one module, differing only in weights:

* ``arcmargin`` (GPR-FT): ArcMargin over classes alone. Image retrieval gains;
  nothing ties the images to the text space any more.
* ``multi-caption-arcmargin``: the margin towards each image's own captions alone.
* ``mcip``: both, ``0.75 × class + 0.25 × caption`` as in the paper's code.

A CLIP term (``contrastive_weight``) can be added to any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from .arcmargin import ArcMarginLoss, MultiCaptionArcMarginLoss
from .clip import ClipLoss


@dataclass
class RetrievalLossOptions:
    """``loss_options`` of a training config (every key optional); defaults are MCIP's."""

    scale: float = 30.0
    margin: float = 0.1
    class_weight: float = 0.75
    caption_weight: float = 0.25
    negative_weight: float = 0.1
    contrastive_weight: float = 0.0
    #: Captions drawn per image for the multi-caption term (each a positive of its image).
    captions_per_image: int = 3

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> "RetrievalLossOptions":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown loss_options {sorted(unknown)}; known: {sorted(known)}")
        options = cls(**{**PRESETS[name], **data})
        weights = (options.class_weight, options.caption_weight, options.contrastive_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError("loss_options weights must be ≥ 0 and not all 0")
        if options.scale <= 0 or not 0 <= options.margin < 1.5 or options.captions_per_image < 1:
            raise ValueError("loss_options: scale must be > 0, margin within [0, 1.5) radians, captions_per_image ≥ 1")
        return options


#: Loss name → default weights (then ``loss_options`` on top).
PRESETS: dict[str, dict[str, float]] = {
    "arcmargin": {"class_weight": 1.0, "caption_weight": 0.0},
    "multi-caption-arcmargin": {"class_weight": 0.0, "caption_weight": 1.0},
    "mcip": {"class_weight": 0.75, "caption_weight": 0.25},
}


class RetrievalLoss(nn.Module):
    """Weighted sum of ArcMargin over classes, Multi-Caption ArcMargin and (optionally) CLIP's loss."""

    def __init__(self, options: RetrievalLossOptions, num_classes: int, embed_dim: int, prototypes: torch.Tensor | None = None) -> None:
        super().__init__()
        self.options = options
        self.class_loss = (
            ArcMarginLoss(num_classes, embed_dim, options.scale, options.margin, prototypes) if options.class_weight else None
        )
        self.caption_loss = MultiCaptionArcMarginLoss(options.scale, options.margin, options.negative_weight) if options.caption_weight else None
        self.contrastive = ClipLoss() if options.contrastive_weight else None

    @property
    def needs_classes(self) -> bool:
        return self.class_loss is not None

    @property
    def needs_captions(self) -> bool:
        return self.caption_loss is not None

    def forward(
        self,
        image_embeds: torch.Tensor,
        *,
        class_ids: torch.Tensor | None = None,
        caption_embeds: torch.Tensor | None = None,
        caption_positives: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        logit_scale: torch.Tensor | None = None,
        group_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        o = self.options
        total = image_embeds.new_zeros(())
        if self.class_loss is not None:
            total = total + o.class_weight * self.class_loss(image_embeds, class_ids)
        if self.caption_loss is not None:
            total = total + o.caption_weight * self.caption_loss(image_embeds, caption_embeds, caption_positives)
        if self.contrastive is not None:
            total = total + o.contrastive_weight * self.contrastive(image_embeds, text_embeds, logit_scale, group_ids)
        return total
