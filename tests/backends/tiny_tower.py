"""A two-conv image tower for the export-cache tests (exports in a second), shared with ``killed_export.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modalens.encoders import ImageTower


class TinyTower(ImageTower):
    """A two-conv image tower: exports in a second, which is all these tests need."""

    name = "tiny-test"
    image_size = 32
    output_dim = 8

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.eval()

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.conv2(F.relu(self.conv1(pixels))))
