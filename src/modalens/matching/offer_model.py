"""The offer embedding: frozen tower features → small trained projections → one L2-normalised vector.

Each part (pooled photos, title, optional description, numbers) goes through its
own ``ProjectionHead`` (LayerNorm → linear, optionally an MLP) into a unit
vector; the parts are weighted (learned weights) and concatenated, then
normalised. The cosine of two offers is therefore a learned weighted mean of
the per-part cosines, which keeps the model small, fast to train on cached
features, and readable (``part_weights``). Which parts are used is a config
choice (``OfferModelConfig.parts``); an offer that lacks a part (no photo that
could be read, no description) gets a zero vector for it.

The baseline the model is measured against needs no training:
:func:`frozen_image_embeddings`, the normalised average-pooled tower features.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..models.heads import ProjectionHead
from .features import NUMBER_DIM, OfferFeatures

# The config and the torch-free helpers live beside the numpy inference (``match run`` needs no torch);
# named here too, where the model that trains them is.
from .offer_numpy import (  # noqa: F401
    CONFIG_FILE,
    DEFAULT_PARTS,
    PARTS,
    WEIGHTS_FILE,
    OfferModelConfig,
    frozen_image_embeddings,
    pair_cosines,
    scale_numbers,
)


class OfferModel(nn.Module):
    def __init__(self, config: OfferModelConfig | None = None) -> None:
        super().__init__()
        self.config = replace(config) if config is not None else OfferModelConfig()  # a copy: number scaling is fitted into it
        c = self.config
        heads: dict[str, nn.Module] = {}
        if "images" in c.parts:
            heads["images"] = ProjectionHead(c.image_dim, c.dim, kind=c.head, hidden_dim=1024)
        if "title" in c.parts:
            heads["title"] = ProjectionHead(c.text_dim, c.dim, kind=c.head, hidden_dim=1024)
        if "description" in c.parts:
            heads["description"] = ProjectionHead(c.text_dim, c.dim, kind="linear")
        if "frozen_images" in c.parts:
            heads["frozen_images"] = _Normalise()
        if "numbers" in c.parts:
            heads["numbers"] = ProjectionHead(NUMBER_DIM, 32, kind="mlp", hidden_dim=64, dropout=0.0)
        self.heads = nn.ModuleDict(heads)
        self.log_weights = nn.Parameter(torch.zeros(len(c.parts)))
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    # ------------------------------------------------------------------ inputs

    def scale_numbers(self, numbers: np.ndarray) -> np.ndarray:
        return scale_numbers(self.config, numbers)

    def fit_number_scaling(self, numbers: np.ndarray) -> None:
        values = []
        for col in (0, 1):
            present = numbers[:, 2 + col] == 0
            v = numbers[present, col] if present.any() else np.zeros(1)
            values.append((float(v.mean()), float(max(v.std(), 1e-3))))
        self.config.number_mean = [m for m, _ in values]
        self.config.number_std = [s for _, s in values]

    def tensors(self, feats: OfferFeatures) -> dict[str, torch.Tensor]:
        return {
            "images": torch.from_numpy(np.ascontiguousarray(feats.image, np.float32)),
            "has_image": torch.from_numpy(np.ascontiguousarray(feats.has_image, bool)),
            "title": torch.from_numpy(np.ascontiguousarray(feats.title, np.float32)),
            "description": torch.from_numpy(np.ascontiguousarray(feats.description, np.float32)),
            "numbers": torch.from_numpy(self.scale_numbers(feats.numbers)),
        }

    # ----------------------------------------------------------------- forward

    def part_weights(self) -> dict[str, float]:
        w = torch.softmax(self.log_weights.detach(), 0).tolist()
        return dict(zip(self.config.parts, w))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.log_weights, 0).sqrt()
        pieces = []
        for k, part in enumerate(self.config.parts):
            z = self.heads[part](x["images" if part == "frozen_images" else part])
            if part in ("images", "frozen_images"):
                z = z * x["has_image"][:, None].to(z.dtype)
            elif part == "description":
                z = z * (x["description"].abs().sum(1, keepdim=True) > 0).to(z.dtype)
            pieces.append(weights[k] * z)
        return F.normalize(torch.cat(pieces, dim=1), dim=-1)

    @torch.inference_mode()
    def embed(self, feats: OfferFeatures, batch_size: int = 4096) -> np.ndarray:
        self.eval()
        x = self.tensors(feats)
        out = [self.forward({k: v[i : i + batch_size] for k, v in x.items()}) for i in range(0, len(feats), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.output_dim), np.float32)

    @property
    def output_dim(self) -> int:
        sizes = {"numbers": 32, "frozen_images": self.config.image_dim}
        return sum(sizes.get(p, self.config.dim) for p in self.config.parts)

    # --------------------------------------------------------------- save/load

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> OfferModel:
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"no offer model in {folder} (expected {CONFIG_FILE}); train one with `modalens match train`")
        config = OfferModelConfig(**json.loads((folder / CONFIG_FILE).read_text()))
        model = cls(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        model.eval()
        return model


class _Normalise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)
