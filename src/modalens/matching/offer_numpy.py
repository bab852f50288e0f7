"""The offer model's config and its inference on numpy: what ``modalens match run`` scores with, without torch.

:class:`~modalens.matching.offer_model.OfferModel` (PyTorch) trains and saves the
model; a saved one is a config (``offer-model.json``) and a few small heads
(``offer-model.safetensors``: LayerNorm → linear, or an MLP with a linear
shortcut). :class:`NumpyOfferModel` reads the same two files with
``safetensors.numpy`` and computes the same embedding in float32 numpy (the
tests hold it to the PyTorch model within 1e-5), so scoring offers needs neither
torch nor a GPU. The config and the helpers both use live here, torch-free;
``offer_model`` re-exports them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .features import IMAGE_TOWER, NUMBER_DIM, TEXT_TOWER, OfferFeatures

#: "frozen_images" is the normalised pooled tower features as they are (no projection, only a learned weight):
#: it keeps the tower's fine detail, which separates same-title variants, next to the trained parts.
PARTS = ("images", "frozen_images", "title", "description", "numbers")
#: Numbers are off by default: KAGL has no prices, so a model trained there would learn synthetic ones
#: (and the ablation on KAGL val chose images + title). Train with numbers on a catalogue that has real prices.
DEFAULT_PARTS = ("images", "title")
WEIGHTS_FILE = "offer-model.safetensors"
CONFIG_FILE = "offer-model.json"
#: torch's defaults, which the PyTorch model uses: ``nn.LayerNorm`` and ``F.normalize``.
LAYER_NORM_EPS = 1e-5
NORMALIZE_EPS = 1e-12


@dataclass
class OfferModelConfig:
    parts: tuple[str, ...] = DEFAULT_PARTS
    dim: int = 256
    head: str = "linear"  # "linear" or "mlp" for the image/title heads
    image_dim: int = 1280
    text_dim: int = 384
    image_tower: str = IMAGE_TOWER
    text_tower: str = TEXT_TOWER
    #: log1p(price) and size-count mean/std from the training offers (set by ``fit_number_scaling``).
    number_mean: list[float] = field(default_factory=lambda: [0.0, 0.0])
    number_std: list[float] = field(default_factory=lambda: [1.0, 1.0])

    def __post_init__(self) -> None:
        self.parts = tuple(self.parts)
        unknown = set(self.parts) - set(PARTS)
        if unknown or not self.parts:
            raise ValueError(f"offer model parts must be a non-empty subset of {PARTS}, not {self.parts}")

    @classmethod
    def load(cls, folder: str | Path) -> OfferModelConfig:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no offer model in {folder} (expected {CONFIG_FILE}); train one with `modalens match train`")
        return cls(**json.loads(path.read_text()))

    def to_dict(self) -> dict:
        return asdict(self)


def scale_numbers(config: OfferModelConfig, numbers: np.ndarray) -> np.ndarray:
    """Raw numbers (log1p price, sizes, two missing flags) → standardised by the training statistics, zero where missing."""
    out = np.array(numbers, dtype=np.float32, copy=True)
    mean, std = np.asarray(config.number_mean, np.float32), np.asarray(config.number_std, np.float32)
    present = 1.0 - out[:, 2:4]
    out[:, 0:2] = (out[:, 0:2] - mean) / std * present
    return out


def frozen_image_embeddings(feats: OfferFeatures) -> np.ndarray:
    """The baseline: cosine of average-pooled frozen image-tower features (no training)."""
    x = feats.image.astype(np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pair_cosines(a: np.ndarray, b: np.ndarray, pairs: Sequence[tuple[int, int]] | np.ndarray) -> np.ndarray:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.einsum("ij,ij->i", a[pairs[:, 0]], b[pairs[:, 1]]).astype(np.float64)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(NORMALIZE_EPS))


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU (``nn.GELU()``'s default): 0.5 x (1 + erf(x / √2))."""
    try:
        from scipy.special import erf
    except ImportError:  # scipy comes with scikit-learn; without it, the standard library's erf, element by element
        import math

        erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)


class _Head:
    """``models.heads.ProjectionHead`` on numpy: LayerNorm → linear (+ MLP shortcut) → L2 normalised."""

    def __init__(self, state: Mapping[str, np.ndarray], prefix: str) -> None:
        def get(name: str) -> np.ndarray | None:
            value = state.get(f"{prefix}.{name}")
            return None if value is None else np.asarray(value, dtype=np.float32)

        self.norm_w, self.norm_b = get("norm.weight"), get("norm.bias")
        self.linear_w, self.linear_b = get("linear.weight"), get("linear.bias")
        if self.norm_w is None or self.linear_w is None:
            raise ValueError(f"offer model weights lack the head {prefix!r}")
        self.mlp = None
        if get("mlp.0.weight") is not None:
            self.mlp = (get("mlp.0.weight"), get("mlp.0.bias"), get("mlp.3.weight"), get("mlp.3.bias"))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        mean = x.mean(axis=-1, keepdims=True)
        var = np.square(x - mean).mean(axis=-1, keepdims=True)
        x = (x - mean) / np.sqrt(var + np.float32(LAYER_NORM_EPS)) * self.norm_w + self.norm_b
        y = x @ self.linear_w.T + self.linear_b
        if self.mlp is not None:
            w0, b0, w1, b1 = self.mlp
            y = y + _gelu(x @ w0.T + b0) @ w1.T + b1  # dropout is off at inference
        return _normalize(y)


class NumpyOfferModel:
    """A saved offer model, scored on numpy: ``embed`` equals :meth:`OfferModel.embed <modalens.matching.offer_model.OfferModel.embed>`."""

    backend = "numpy"

    def __init__(self, config: OfferModelConfig, state: Mapping[str, np.ndarray]) -> None:
        self.config = config
        self.heads: dict[str, _Head | None] = {
            part: None if part == "frozen_images" else _Head(state, f"heads.{part}") for part in config.parts
        }
        log_weights = np.asarray(state["log_weights"], dtype=np.float32)
        if log_weights.shape != (len(config.parts),):
            raise ValueError(f"offer model weights hold {log_weights.shape} part weights for parts {config.parts}")
        self.log_weights = log_weights

    @classmethod
    def load(cls, folder: str | Path) -> NumpyOfferModel:
        from safetensors.numpy import load_file  # no torch: the "numpy" flavour

        folder = Path(folder)
        config = OfferModelConfig.load(folder)
        return cls(config, load_file(str(folder / WEIGHTS_FILE)))

    def part_weights(self) -> dict[str, float]:
        w = np.exp(self.log_weights - self.log_weights.max())
        return dict(zip(self.config.parts, (w / w.sum()).tolist()))

    @property
    def output_dim(self) -> int:
        sizes = {"numbers": 32, "frozen_images": self.config.image_dim}
        return sum(sizes.get(p, self.config.dim) for p in self.config.parts)

    def _forward(self, x: Mapping[str, np.ndarray]) -> np.ndarray:
        w = np.exp(self.log_weights - self.log_weights.max())
        weights = np.sqrt(w / w.sum()).astype(np.float32)
        pieces = []
        for k, part in enumerate(self.config.parts):
            inputs = x["images" if part == "frozen_images" else part]
            head = self.heads[part]
            z = _normalize(inputs) if head is None else head(inputs)
            if part in ("images", "frozen_images"):
                z = z * x["has_image"][:, None].astype(np.float32)
            elif part == "description":
                z = z * (np.abs(x["description"]).sum(1, keepdims=True) > 0).astype(np.float32)
            pieces.append(weights[k] * z)
        return _normalize(np.concatenate(pieces, axis=1))

    def embed(self, feats: OfferFeatures, batch_size: int = 4096) -> np.ndarray:
        x = {
            "images": np.ascontiguousarray(feats.image, np.float32),
            "has_image": np.ascontiguousarray(feats.has_image, bool),
            "title": np.ascontiguousarray(feats.title, np.float32),
            "description": np.ascontiguousarray(feats.description, np.float32),
            "numbers": scale_numbers(self.config, feats.numbers),
        }
        out = [self._forward({k: v[i : i + batch_size] for k, v in x.items()}) for i in range(0, len(feats), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.output_dim), np.float32)


__all__ = [
    "CONFIG_FILE",
    "DEFAULT_PARTS",
    "PARTS",
    "WEIGHTS_FILE",
    "NumpyOfferModel",
    "OfferModelConfig",
    "frozen_image_embeddings",
    "pair_cosines",
    "scale_numbers",
]
