"""Contrastive objectives, one module per loss, created by name (``create_loss``)."""

from .clip import ClipLoss
from .multi_field import MultiFieldLoss
from .siglip import SigLipLoss

LOSSES = {"clip": ClipLoss, "siglip": SigLipLoss}


def create_loss(name: str, **kwargs):
    try:
        return LOSSES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)} (and 'multi-field')") from None


__all__ = ["ClipLoss", "SigLipLoss", "MultiFieldLoss", "LOSSES", "create_loss"]
