"""Additive angular margin losses for image retrieval (ArcFace's margin, as MCIP uses it).

A contrastive loss only asks an image to be nearer its own caption than the
batch's other captions. Retrieval wants more: every image of a class packed
tightly around one direction, far from the others. ArcMargin gets there with
one prototype per class and a margin ``m`` added to the angle between an image
and its own prototype, so it must win by that angle, not just win.

Trained on the image side alone it drifts away from the text space (the
prototypes are free vectors). Multi-Caption ArcMargin (Schall et al., 2024,
"MCIP") makes the prototypes the *text embeddings of captions*: the margin then
pulls an image towards its own captions, which keeps it where text queries
look for it. Both take a scale ``s`` (the softmax temperature's inverse) and a
margin ``m`` in radians; MCIP's reference values are s = 30, m = 0.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def angular_margin_logits(cosine: torch.Tensor, positives: torch.Tensor, margin: float, scale: float) -> torch.Tensor:
    """``scale * cos(θ + m)`` on the positive entries, ``scale * cos θ`` elsewhere.

    Past θ = π - m, where cos(θ + m) would turn back up, the usual linear
    continuation ``cos θ - m sin m`` keeps the penalty monotonic (ArcFace).
    """
    # Kept off ±1: sin θ = sqrt(1 - cos² θ) has an infinite slope there (an image sitting exactly on its
    # prototype, as happens when prototypes start at class means, would turn the gradient into NaN).
    cosine = cosine.float().clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    sine = torch.sqrt((1.0 - cosine**2).clamp(min=0.0))
    with_margin = cosine * math.cos(margin) - sine * math.sin(margin)
    with_margin = torch.where(cosine > math.cos(math.pi - margin), with_margin, cosine - math.sin(math.pi - margin) * margin)
    return scale * torch.where(positives, with_margin, cosine)


class ArcMarginLoss(nn.Module):
    """Cross-entropy over learnable class prototypes with an additive angular margin on the true class.

    ``prototypes`` may start from given vectors (for example each class's mean
    embedding under the model being fine-tuned, so the first steps do not
    scramble a good space); otherwise Xavier-uniform, as in MCIP's code.
    """

    def __init__(self, num_classes: int, embed_dim: int, scale: float = 30.0, margin: float = 0.1, prototypes: torch.Tensor | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError("ArcMargin needs at least two classes")
        if prototypes is None:
            prototypes = nn.init.xavier_uniform_(torch.empty(num_classes, embed_dim))
        elif prototypes.shape != (num_classes, embed_dim):
            raise ValueError(f"prototypes must be ({num_classes}, {embed_dim}), not {tuple(prototypes.shape)}")
        self.prototypes = nn.Parameter(prototypes.detach().clone().float())
        self.scale, self.margin = float(scale), float(margin)

    def forward(self, image_embeds: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Mean loss over the images with a class (``class_ids`` ≥ 0); images without one (-1) are left out."""
        keep = class_ids >= 0
        if not bool(keep.any()):
            return image_embeds.sum() * 0.0
        image_embeds, class_ids = image_embeds[keep], class_ids[keep]
        cosine = F.normalize(image_embeds, dim=-1) @ F.normalize(self.prototypes, dim=-1).T
        positives = F.one_hot(class_ids.long(), len(self.prototypes)).bool()
        return F.cross_entropy(angular_margin_logits(cosine, positives, self.margin, self.scale), class_ids.long())


class MultiCaptionArcMarginLoss(nn.Module):
    """ArcMargin whose prototypes are the batch's caption embeddings, several positives per image.

    Row ``i`` of ``positives`` marks the captions that describe image ``i``
    (its own, and any other product's caption with the same text). The target
    spreads evenly over them (soft targets), each gets the margin, and
    ``negative_weight`` adds a hardest-negative term: ``-log(1 - p)`` of the
    negative caption the image rates highest, which the soft target alone
    barely pushes once the positives share the mass.

    MCIP's reference code weights ``max(-log p)`` over negatives instead, which
    picks the *least* likely negative; we keep the paper's stated intent (a
    hardest-negative penalty) and say so here.
    """

    def __init__(self, scale: float = 30.0, margin: float = 0.1, negative_weight: float = 0.1) -> None:
        super().__init__()
        self.scale, self.margin, self.negative_weight = float(scale), float(margin), float(negative_weight)

    def forward(self, image_embeds: torch.Tensor, caption_embeds: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        positives = positives.bool()
        has_positive = positives.any(dim=1)
        if not bool(has_positive.any()):
            raise ValueError("no image in the batch has a positive caption")
        image_embeds, positives = image_embeds[has_positive], positives[has_positive]
        cosine = F.normalize(image_embeds, dim=-1) @ F.normalize(caption_embeds, dim=-1).T
        log_probs = F.log_softmax(angular_margin_logits(cosine, positives, self.margin, self.scale), dim=1)
        target = positives.float() / positives.sum(dim=1, keepdim=True)
        loss = -(target * log_probs).sum(dim=1)
        if self.negative_weight:
            negatives = ~positives
            hardest = log_probs.masked_fill(positives, -float("inf")).max(dim=1).values  # log p of the top negative
            # -log(1 - p), stable for p near 0; rows without a negative (every caption positive) add nothing
            penalty = -torch.log1p(-hardest.exp().clamp(max=1 - 1e-6))
            loss = loss + self.negative_weight * torch.where(negatives.any(dim=1), penalty, torch.zeros_like(penalty))
        return loss.mean()
