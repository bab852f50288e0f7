"""Contrastive objectives, one module per loss."""

from .clip import ClipLoss

__all__ = ["ClipLoss"]
