"""The dual encoder: frozen towers + trainable projection heads into one shared space (CLIP-style)."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..backends import build_image_tower, build_text_tower, tower_options
from ..encoders import ImageTower, TextTower
from ..encoders.features import TokenStates
from .config import ModelConfig
from .heads import ProjectionHead, create_head

#: Guards lazy tower creation: one model is shared by a server's query and ingest threads, which may both
#: ask for a tower first (two builds at once would race on the tower export cache and waste memory).
_TOWER_LOCK = threading.RLock()

#: Pooled output size of each registered tower, so heads can be built without loading a tower.
TOWER_DIMS = {
    "efficientnet-lite0": 1280,
    "efficientnet-lite1": 1280,
    "efficientnet-lite2": 1280,
    "minilm-l6": 384,
    "mpnet-base": 768,
    "e5-small-multilingual": 384,
}


def tower_dim(spec: dict, kind: str) -> int:
    """A tower's output size: the spec's ``dim``, the table above, or (for a checkpoint-defined tower) the tower itself."""
    if spec.get("dim"):
        return int(spec["dim"])
    if spec["name"] in TOWER_DIMS:
        return TOWER_DIMS[spec["name"]]
    from ..encoders import create_image_tower, create_text_tower

    return int((create_image_tower if kind == "image" else create_text_tower)(spec["name"], **tower_options(spec)).output_dim)


class DualEncoder(nn.Module):
    """Image and text into one normalised space, compared by cosine similarity.

    The towers are created on first use and are not part of ``state_dict()``:
    with frozen towers the trainable (and saved) model is only the two heads
    and the temperature, a file of a few MB, and training on cached tower
    features never loads a tower at all.
    """

    def __init__(self, config: ModelConfig, image_dim: int | None = None, text_dim: int | None = None) -> None:
        super().__init__()
        self.config = config
        image_dim = image_dim or tower_dim(config.image_tower, "image")
        text_dim = text_dim or tower_dim(config.text_tower, "text")
        head = config.head
        self.image_head = ProjectionHead(image_dim, config.embed_dim, head.kind, head.hidden_dim, head.dropout)
        self.text_head = create_head(config.text_head_config, text_dim, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        self._towers: dict[str, nn.Module] = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_tower(self) -> ImageTower:
        return self._tower("image")  # type: ignore[return-value]

    @property
    def text_tower(self) -> TextTower:
        return self._tower("text")  # type: ignore[return-value]

    def _tower(self, kind: str) -> nn.Module:
        """The tower, built on first use, once even when two threads ask at the same moment."""
        tower = self._towers.get(kind)
        if tower is None:
            with _TOWER_LOCK:
                if kind not in self._towers:
                    # ONNX Runtime when available (exported once, cached), else torch: see modalens.backends.
                    build = build_image_tower if kind == "image" else build_text_tower
                    self._towers[kind] = build(getattr(self.config, f"{kind}_tower"), getattr(self.config, "backend", None))
                tower = self._towers[kind]
        return tower

    def project_image(self, features: torch.Tensor) -> torch.Tensor:
        return self.image_head(features)

    @property
    def text_reads_tokens(self) -> bool:
        """Whether the text head reads token states (``TokenStates``, or ``{"tokens", "mask"}``) instead of pooled vectors."""
        return self.config.text_reads_tokens

    def project_text(self, features: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled tower features (n, dim), or for a token head ``{"tokens": (n, L, dim), "mask": (n, L)}``."""
        if isinstance(features, dict):
            return self.text_head(features["tokens"], features["mask"])
        return self.text_head(features)

    @torch.inference_mode()
    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images → (n, embed_dim) normalised embeddings."""
        self.eval()
        tower = self.image_tower
        pixels = torch.stack([tower.preprocess(im) for im in images]).contiguous(memory_format=torch.channels_last)
        return self.project_image(tower(pixels)).numpy()

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, embed_dim) normalised embeddings."""
        self.eval()
        if self.text_reads_tokens:
            _, states, mask = self.text_tower.encode_states(list(texts))
            return self.project_text({"tokens": torch.from_numpy(states), "mask": torch.from_numpy(mask)}).numpy()
        return self.project_text(self.text_tower(list(texts))).numpy()

    @torch.inference_mode()
    def project_features(self, features: np.ndarray | TokenStates, kind: str) -> np.ndarray:
        """Cached tower features → embeddings, in chunks so memory stays flat (a token head's: ``TokenStates``)."""
        self.eval()
        if isinstance(features, TokenStates):
            chunks = []
            for i in range(0, len(features), 512):
                tokens, mask = features.batch(range(i, min(i + 512, len(features))))
                chunks.append(self.project_text({"tokens": torch.from_numpy(tokens), "mask": torch.from_numpy(mask)}).numpy())
            return np.concatenate(chunks) if chunks else np.zeros((0, self.config.embed_dim), np.float32)
        head = self.image_head if kind == "image" else self.text_head
        features = np.ascontiguousarray(features, dtype=np.float32)
        chunks = [head(torch.from_numpy(features[i : i + 4096])).numpy() for i in range(0, len(features), 4096)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.config.embed_dim), np.float32)
