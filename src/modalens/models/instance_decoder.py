"""ECLIP instance queries: a few learnable queries read a photo's spatial feature map, one embedding per product.

Jin et al., "Learning Instance-Level Representation for Large-Scale Multi-Modal
Pretraining in E-commerce" (CVPR 2023): K queries cross-attend to the image
tower's feature map (7×7×1280 for EfficientNet-Lite0) through a few decoder
layers (cross-attention, self-attention among the queries, MLP), and each
query's output becomes an instance embedding in the shared space.

One choice of ours: each query ends with an *attention pooling* of the raw
feature map (its own weights over the grid cells), and that pooled 1280-d
vector goes through the model's frozen image head, plus a learned correction
that starts at zero. So an untrained decoder already gives embeddings in the
shared space (every query a soft global embedding), a query that learns to
look at one garment gives roughly that garment's embedding, and a few
thousand label-free scenes are enough to train it. The attention weights are
also where the query looked (the grounding view).

The decoder is an add-on of a trained model: the global embedding (the image
head on the pooled map) is untouched, and the file holds only the decoder's
own weights, with a digest of the image head it was trained on (a decoder
read through other heads would put its instances somewhere else).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from ..paths import INSTANCE_DECODER_FILE, instance_decoder_path


@dataclass(frozen=True)
class InstanceDecoderConfig:
    """The decoder's shape as data (saved in its file's metadata)."""

    queries: int = 5
    width: int = 256
    layers: int = 2
    heads: int = 8
    feature_dim: int = 1280
    cells: int = 49
    embed_dim: int = 512
    mlp_ratio: int = 4
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InstanceDecoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown instance decoder settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Instances(NamedTuple):
    """What the decoder says about a batch of photos."""

    embeddings: torch.Tensor  # (B, K, D) unit vectors in the shared space
    objectness: torch.Tensor  # (B, K) logits: does query k hold a product?
    attention: torch.Tensor  # (B, K, cells) where each query looked (rows sum to 1)


class DecoderLayer(nn.Module):
    """Pre-norm: queries cross-attend to the grid, then to each other (so two queries can agree to split), then an MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.cross_norm = nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.self_norm = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width * mlp_ratio), nn.GELU(), nn.Dropout(dropout), nn.Linear(width * mlp_ratio, width))

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = self.cross_norm(queries)
        queries = queries + self.cross(q, tokens, tokens, need_weights=False)[0]
        q = self.self_norm(queries)
        queries = queries + self.self_attn(q, q, q, need_weights=False)[0]
        return queries + self.mlp(self.mlp_norm(queries))


class InstanceDecoder(nn.Module):
    """K learnable queries over a (B, cells, feature_dim) feature map → :class:`Instances`.

    ``image_head`` (the model's frozen :class:`~modalens.models.heads.ProjectionHead`) is passed to
    :meth:`forward` rather than held, so this module's ``state_dict`` is the decoder alone.
    """

    def __init__(self, config: InstanceDecoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or InstanceDecoderConfig()
        self.token_norm = nn.LayerNorm(config.feature_dim)
        self.token_proj = nn.Linear(config.feature_dim, config.width)
        self.positions = nn.Parameter(torch.randn(config.cells, config.width) * 0.02)
        self.queries = nn.Parameter(torch.randn(config.queries, config.width))
        self.layers = nn.ModuleList(DecoderLayer(config.width, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.layers))
        self.out_norm = nn.LayerNorm(config.width)
        self.pool_query = nn.Linear(config.width, config.width)
        self.pool_key = nn.Linear(config.width, config.width)
        self.correction = nn.Linear(config.width, config.embed_dim)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        self.objectness = nn.Linear(config.width, 1)
        #: InfoNCE temperature of the pretext tasks (log of the inverse, as CLIP keeps it).
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.05)))))

    def forward(self, grid: torch.Tensor, image_head: nn.Module) -> Instances:
        """``grid``: (B, cells, feature_dim) maps (any float dtype) → instance embeddings, objectness and attention."""
        grid = grid.float()
        if grid.dim() != 3 or grid.shape[1:] != (self.config.cells, self.config.feature_dim):
            raise InvalidInputError(
                f"the instance decoder reads (batch, {self.config.cells}, {self.config.feature_dim}) feature maps, not {tuple(grid.shape)}"
            )
        tokens = self.token_proj(self.token_norm(grid)) + self.positions
        queries = self.queries.expand(grid.shape[0], -1, -1)  # shape[0], not len(): a traced export keeps the batch dynamic
        for layer in self.layers:
            queries = layer(queries, tokens)
        states = self.out_norm(queries)
        logits = self.pool_query(states) @ self.pool_key(tokens).transpose(1, 2) / self.config.width**0.5
        attention = logits.softmax(dim=-1)
        pooled = attention @ grid  # (B, K, feature_dim): each query's own weighted average of the raw map
        # a mean+colour head reads a colour histogram after the channels, which a map does not have: zeros
        # (grounding.cell_padding says why)
        pooled = F.pad(pooled, (0, getattr(image_head, "in_dim", self.config.feature_dim) - self.config.feature_dim))
        head_out = image_head(pooled)  # unit vectors: where the frozen head puts what the query looked at
        embeddings = F.normalize(head_out + self.correction(states), dim=-1)
        return Instances(embeddings, self.objectness(states).squeeze(-1), attention)


# ---------------------------------------------------------------- the add-on file

# Where the file lives is torch-free knowledge (the export cache's key reads it): modalens.paths.
DECODER_FILE = INSTANCE_DECODER_FILE
decoder_path = instance_decoder_path


def head_digest(image_head: nn.Module) -> str:
    """A digest of an image head's weights: what a decoder file records and checks (names and bytes)."""
    import hashlib

    digest = hashlib.sha1()
    for name, tensor in sorted(image_head.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def decoder_digest(path: str | Path) -> str:
    """A digest of a decoder file's bytes: what an export records beside its decoder graph and what a scene's
    content key holds, so scenes decoded by another decoder are decoded again."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def save_decoder(decoder: InstanceDecoder, path: str | Path, image_head: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the decoder's weights with its config and the :func:`head_digest` of the image head it reads through.

    Stored in float16 (half the size: 2.7M weights are 5.4 MB) and read back as float32; retrieval with the
    rounded weights is what the shipped numbers measure.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"config": json.dumps(decoder.config.to_dict()), "image_head": image_head}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra or {}).items()})
    state = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in decoder.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def load_decoder(path: str | Path, image_head: str | None = None) -> tuple[InstanceDecoder, dict[str, str]]:
    """A saved decoder (eval mode) and its metadata; given the ``image_head`` digest, refuse one trained on another head."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "numpy") as f:
        metadata = dict(f.metadata() or {})
    if image_head is not None and metadata.get("image_head") != image_head:
        raise InvalidInputError(f"{path} was trained on another model's image head: retrain it on this model (modalens train)")
    decoder = InstanceDecoder(InstanceDecoderConfig.from_dict(json.loads(metadata["config"])))
    decoder.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=True)
    return decoder.eval(), metadata
