"""What every image and text tower offers the rest of modalens.

Towers are pretrained feature extractors (frozen by default). They know their
own preprocessing, because index and query must share it exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

# Re-exported: the tower's letterbox and normalisation are the decoder's (workers and the torch-free
# export path need them without torch).
from ..catalog.images import letterbox, normalise_pixels

__all__ = ["ImageTower", "TextTower", "letterbox", "normalise_pixels", "to_tensor"]


class ImageTower(nn.Module):
    """Pixels → one pooled vector, plus the spatial feature map for instance-level work."""

    name: str = "image-tower"
    output_dim: int = 0
    image_size: int = 224
    #: Pixel value mapping: (x - mean) / std on 0..255 values, per channel.
    pixel_mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    pixel_std: tuple[float, float, float] = (128.0, 128.0, 128.0)

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, C, h, w) feature map."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, output_dim), the global average of the feature map."""
        return self.forward_features(pixels).mean(dim=(2, 3))

    @property
    def preprocess_id(self) -> str:
        """Identifies the exact preprocessing, so cached features are never mixed up."""
        return f"{self.name}|{self.image_size}|pad-white|{self.pixel_mean}|{self.pixel_std}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Fit the whole product into a square on white (no crop: a cut-off sleeve is a different product)."""
        return to_tensor(letterbox(image, self.image_size), self.pixel_mean, self.pixel_std)


class TextTower(nn.Module):
    """Texts → one vector per text."""

    name: str = "text-tower"
    output_dim: int = 0
    max_length: int = 64

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError


def to_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """One letterboxed image → a normalised (3, H, W) float tensor."""
    return torch.from_numpy(normalise_pixels(np.asarray(image)[None], mean, std)[0])
