"""Training objectives, one module per loss, created by name (``create_loss``).

Contrastive (``clip``, ``siglip``, the multi-field wrapper) align images with
text; the retrieval losses (``arcmargin``, ``multi-caption-arcmargin``, ``mcip``)
shape the image side for image→image search (``losses.retrieval``).
"""

from .arcmargin import ArcMarginLoss, MultiCaptionArcMarginLoss
from .clip import ClipLoss
from .multi_field import MultiFieldLoss
from .retrieval import PRESETS as RETRIEVAL_LOSSES
from .retrieval import RetrievalLoss, RetrievalLossOptions
from .siglip import SigLipLoss

LOSSES = {"clip": ClipLoss, "siglip": SigLipLoss}

#: Every name a training config's ``loss`` may take.
LOSS_NAMES = (*LOSSES, *RETRIEVAL_LOSSES)


def create_loss(name: str, **kwargs):
    """A contrastive loss by name (the retrieval losses need the data's classes: ``RetrievalLoss``)."""
    try:
        return LOSSES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSS_NAMES)} (and 'multi-field')") from None


__all__ = [
    "ArcMarginLoss",
    "ClipLoss",
    "LOSSES",
    "LOSS_NAMES",
    "MultiCaptionArcMarginLoss",
    "MultiFieldLoss",
    "RETRIEVAL_LOSSES",
    "RetrievalLoss",
    "RetrievalLossOptions",
    "SigLipLoss",
    "create_loss",
]
