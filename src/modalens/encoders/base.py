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
from .colour import VERSION as COLOUR_VERSION
from .colour import colour_histogram
from .pooling import POOLINGS, check_pooling

__all__ = ["POOLINGS", "ImageTower", "TextTower", "letterbox", "normalise_pixels", "pool_feature_map", "to_tensor"]


def pool_feature_map(features: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """(B, C, h, w) → (B, C) for ``mean`` (and the map's part of ``mean+colour``), (B, 5C) for ``mean+quadrants``
    (whole map, then quadrants row by row)."""
    check_pooling(pooling)
    mean = features.mean(dim=(2, 3))
    if pooling != "mean+quadrants":
        return mean
    quadrants = torch.nn.functional.adaptive_avg_pool2d(features, 2).flatten(2).transpose(1, 2).flatten(1)
    return torch.cat([mean, quadrants], dim=1)


class ImageTower(nn.Module):
    """Pixels → one pooled vector, plus the spatial feature map for instance-level work."""

    name: str = "image-tower"
    output_dim: int = 0
    image_size: int = 224
    #: Pixel value mapping: (x - mean) / std on 0..255 values, per channel.
    pixel_mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    pixel_std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    #: One of :data:`POOLINGS`; towers whose ``forward`` is not a pooling of their map keep ``mean``.
    pooling: str = "mean"

    def set_pooling(self, pooling: str, channels: int) -> None:
        """Pool the map of ``channels`` channels as ``pooling`` says; the output size follows."""
        check_pooling(pooling)
        self.pooling = pooling
        multiple, extra = POOLINGS[pooling]
        self.output_dim = channels * multiple + extra

    @property
    def map_channels(self) -> int:
        """C of the feature map: what single cells (grounding) and instance queries hand the image head."""
        multiple, extra = POOLINGS[self.pooling]
        return (self.output_dim - extra) // multiple

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, C, h, w) feature map."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, output_dim), the feature map pooled (by default its global average)."""
        return self.pool(self.forward_features(pixels), pixels)

    def pool(self, features: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """The feature map (and, for ``mean+colour``, the input pixels it came from) → the pooled vector."""
        pooled = pool_feature_map(features, self.pooling)
        if self.pooling != "mean+colour":
            return pooled
        return torch.cat([pooled, colour_histogram(pixels, self.pixel_mean, self.pixel_std).to(pooled.dtype)], dim=1)

    @property
    def preprocess_id(self) -> str:
        """Identifies the exact preprocessing (and pooling, when not the mean), so cached features are never mixed up."""
        pooling = "" if self.pooling == "mean" else f"|pool={self.pooling}"
        if self.pooling == "mean+colour":
            pooling += f"-v{COLOUR_VERSION}"
        return f"{self.name}|{self.image_size}|pad-white|{self.pixel_mean}|{self.pixel_std}{pooling}"

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
