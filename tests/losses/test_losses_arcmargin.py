"""ArcMargin and Multi-Caption ArcMargin: the margin, the soft targets and the hardest-negative term do what they say."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modalens.losses import ArcMarginLoss, MultiCaptionArcMarginLoss, RetrievalLoss, RetrievalLossOptions
from modalens.losses.arcmargin import angular_margin_logits


def test_margin_lowers_only_the_positive_logit_by_the_angle():
    cosine = torch.tensor([[math.cos(0.5), math.cos(1.0)]])
    logits = angular_margin_logits(cosine, torch.tensor([[True, False]]), margin=0.1, scale=30.0)
    assert logits[0, 0].item() == pytest.approx(30 * math.cos(0.6), abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(30 * math.cos(1.0), abs=1e-4)
    # beyond π - m the penalty continues linearly instead of turning back up
    near_pi = torch.tensor([[math.cos(math.pi - 0.05)]])
    assert angular_margin_logits(near_pi, torch.tensor([[True]]), 0.1, 1.0).item() < near_pi.item()


def test_arcmargin_is_harder_than_plain_softmax_and_ignores_unlabelled_rows():
    torch.manual_seed(0)
    embeds, prototypes = torch.randn(8, 16), torch.randn(4, 16)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    with_margin = ArcMarginLoss(4, 16, scale=10.0, margin=0.3, prototypes=prototypes)(embeds, labels)
    no_margin = ArcMarginLoss(4, 16, scale=10.0, margin=0.0, prototypes=prototypes)(embeds, labels)
    plain = F.cross_entropy(10.0 * F.normalize(embeds, dim=-1) @ F.normalize(prototypes, dim=-1).T, labels)
    assert no_margin.item() == pytest.approx(plain.item(), rel=1e-5)
    assert with_margin > no_margin
    unlabelled = torch.tensor([0, 1, 2, 3, 0, 1, 2, -1])
    assert ArcMarginLoss(4, 16, 10.0, 0.0, prototypes)(embeds, unlabelled).item() == pytest.approx(
        F.cross_entropy(10.0 * F.normalize(embeds[:7], dim=-1) @ F.normalize(prototypes, dim=-1).T, labels[:7]).item(), rel=1e-5
    )


def test_arcmargin_training_packs_classes_around_their_prototypes():
    torch.manual_seed(0)
    embeds = torch.randn(40, 8, requires_grad=True)
    labels = torch.arange(40) % 4
    loss_fn = ArcMarginLoss(4, 8, scale=16.0, margin=0.2)
    opt = torch.optim.Adam([embeds, *loss_fn.parameters()], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(embeds, labels).backward()
        opt.step()
    sims = F.normalize(embeds, dim=-1) @ F.normalize(loss_fn.prototypes, dim=-1).T
    assert (sims.argmax(dim=1) == labels).all()


def test_multi_caption_soft_targets_spread_over_every_positive():
    image = F.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=-1)
    captions = F.normalize(torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    loss_fn = MultiCaptionArcMarginLoss(scale=5.0, margin=0.0, negative_weight=0.0)
    both = loss_fn(image, captions, torch.tensor([[True, True, False]]))
    logp = F.log_softmax(5.0 * image @ captions.T, dim=1)[0]
    assert both.item() == pytest.approx(-(logp[0] + logp[1]).item() / 2, rel=1e-5)
    # the hardest-negative term adds -log(1 - p) of the negative rated highest
    with_negative = MultiCaptionArcMarginLoss(5.0, 0.0, negative_weight=0.5)(image, captions, torch.tensor([[True, False, False]]))
    hardest = max(logp[1].exp().item(), logp[2].exp().item())
    assert with_negative.item() == pytest.approx(-logp[0].item() + 0.5 * -math.log(1 - hardest), rel=1e-5)


def test_multi_caption_needs_a_positive():
    with pytest.raises(ValueError, match="positive caption"):
        MultiCaptionArcMarginLoss()(torch.randn(2, 4), torch.randn(3, 4), torch.zeros(2, 3, dtype=torch.bool))


def test_presets_and_options_are_checked_by_name():
    mcip = RetrievalLossOptions.from_dict("mcip", {})
    assert (mcip.class_weight, mcip.caption_weight, mcip.scale, mcip.margin) == (0.75, 0.25, 30.0, 0.1)
    gpr = RetrievalLoss(RetrievalLossOptions.from_dict("arcmargin", {"margin": 0.2}), 5, 8)
    assert gpr.needs_classes and not gpr.needs_captions
    with pytest.raises(ValueError, match="unknown loss_options"):
        RetrievalLossOptions.from_dict("mcip", {"margn": 0.1})
    with pytest.raises(ValueError, match="not all 0"):
        RetrievalLossOptions.from_dict("arcmargin", {"class_weight": 0})
