"""Instance embeddings of photos: a model's image tower feature maps, read by its instance decoder.

Where a model and its instance decoder meet (:mod:`modalens.models.instance_decoder`):
evaluation (``instance-retrieval``), training's validation and ``modalens search --look``
all embed scene photos through here, so feature maps come from the same cache and the
same decoder call whatever asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .catalog.schema import Product
from .errors import NotFoundError

if TYPE_CHECKING:
    from PIL import Image

    from .embedding import CachedEncoder
    from .models import ModelHandle
    from .query_encoder import OnnxQueryEncoder


class NoInstanceDecoderError(NotFoundError):
    """The model has no trained instance decoder."""


@dataclass
class InstanceResult:
    """Per photo: K instance embeddings, each query's objectness (probability) and where it looked."""

    embeddings: np.ndarray  # (n, K, D) unit vectors
    objectness: np.ndarray  # (n, K) in [0, 1]
    attention: np.ndarray  # (n, K, h·w)
    failures: dict[int, str]


class _InstanceReader:
    """What both decoders share: scene photos through the feature-map cache, photos in memory, one result type."""

    _encoder: "CachedEncoder | None"
    _model: Any  # what the feature cache embeds with when none was given: a DualEncoder or an export's query encoder

    @property
    def encoder(self) -> "CachedEncoder":
        """The feature-map cache scene photos go through, made on first use (a query photo never needs it, nor
        the imports it brings)."""
        if self._encoder is None:
            from .embedding import CachedEncoder

            self._encoder = CachedEncoder(self._model, progress=False)
        return self._encoder

    #: A digest of the decoder's weights (with the image head it reads through): scenes an index holds were decoded by it.
    digest: str

    def decode(self, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, cells, C) feature maps → embeddings (n, K, D), objectness (n, K), attention (n, K, cells)."""
        raise NotImplementedError

    def _photo_grids(self, images: Sequence["Image.Image"]) -> np.ndarray:
        raise NotImplementedError

    def encode_images(self, images: Sequence["Image.Image"]) -> InstanceResult:
        """Instance embeddings of photos in memory (a query photo): letterboxed as the tower's cache would, no cache."""
        embeddings, objectness, attention = self.decode(self._photo_grids(images))
        return InstanceResult(embeddings, objectness, attention, {})

    def instances(self, products: Sequence[Product]) -> InstanceResult:
        """Instance embeddings of each product's (scene's) main photo; unreadable photos are zeros, with a reason."""
        grids, failures = self.encoder.image_grids(products)
        embeddings, objectness, attention = self.decode(grids)
        for i in failures:
            embeddings[i] = 0
        return InstanceResult(embeddings, objectness, attention, failures)


class InstanceEncoder(_InstanceReader):
    """A model's frozen image head plus its instance decoder (PyTorch), over the feature-map cache of ``encoder``."""

    def __init__(self, encoder: "CachedEncoder", decoder, image_head, digest: str = "") -> None:
        self._encoder, self._model = encoder, encoder.model
        self.decoder = decoder.eval()
        self.image_head = image_head.eval()
        self.digest = digest

    @classmethod
    def for_model(cls, model_name: str | Path, encoder: "CachedEncoder | None" = None, decoder_file: str | Path | None = None) -> "InstanceEncoder":
        """The decoder shipped with (or saved beside) ``model_name``, checked against that model's identity."""
        from .models import load

        return cls._with_model(load(model_name).model, model_name, encoder, decoder_file)

    @classmethod
    def _with_model(cls, model, model_name: str | Path, encoder: "CachedEncoder | None", decoder_file: str | Path | None = None) -> "InstanceEncoder":
        from .embedding import CachedEncoder
        from .grounding import cell_padding
        from .models.instance_decoder import decoder_digest, head_digest, load_decoder

        cell_padding(model.image_tower, model.image_tower.map_channels, "instance queries")
        path = decoder_file_for(model_name, decoder_file)
        decoder, _ = load_decoder(path, head_digest(model.image_head))
        return cls(encoder or CachedEncoder(model, progress=False), decoder, model.image_head, decoder_digest(path))

    def decode(self, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        outs = []
        with torch.inference_mode():
            for i in range(0, len(grids), batch_size):
                out = self.decoder(torch.from_numpy(np.asarray(grids[i : i + batch_size])), self.image_head)
                outs.append((out.embeddings.numpy(), torch.sigmoid(out.objectness).numpy(), out.attention.numpy()))
        if not outs:
            k, cells, dim = self.decoder.config.queries, self.decoder.config.cells, self.decoder.config.embed_dim
            return np.zeros((0, k, dim), np.float32), np.zeros((0, k), np.float32), np.zeros((0, k, cells), np.float32)
        return tuple(np.concatenate(parts) for parts in zip(*outs))  # type: ignore[return-value]

    def _photo_grids(self, images: Sequence["Image.Image"]) -> np.ndarray:
        import torch

        tower = self._model.image_tower
        pixels = torch.stack([tower.preprocess(image) for image in images])
        with torch.inference_mode():
            maps = tower.forward_features(pixels).float()
        return maps.flatten(2).transpose(1, 2).numpy()  # (n, h·w, C), cells in reading order


class OnnxInstanceEncoder(_InstanceReader):
    """The instance decoder of a whole-model export (``modalens export``): ONNX Runtime and numpy, no torch.

    The export's image tower gives the feature map and its ``instance_decoder`` graph (the decoder with the
    image head inside) the instances, equal to :class:`InstanceEncoder`'s within float rounding.
    """

    def __init__(self, query_encoder: "OnnxQueryEncoder", encoder: "CachedEncoder | None" = None) -> None:
        from .backends.runtime import INSTANCE_DECODER

        self.exported = query_encoder.exported
        if not self.exported.has_instance_decoder:
            raise NoInstanceDecoderError(f"the export {self.exported.folder} holds no instance decoder")
        self._encoder, self._model = encoder, query_encoder
        self.digest = str(self.exported.manifest["components"][INSTANCE_DECODER]["decoder_digest"])

    def decode(self, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outs = [self.exported.decode_instances(np.asarray(grids[i : i + batch_size], np.float32)) for i in range(0, len(grids), batch_size)]
        if not outs:
            return self.exported.decode_instances(np.zeros((0, *np.shape(grids)[1:]), np.float32))
        return tuple(np.concatenate(parts) for parts in zip(*outs))  # type: ignore[return-value]

    def _photo_grids(self, images: Sequence["Image.Image"]) -> np.ndarray:
        return self.exported.image_grids(self.exported.preprocess(images))


def instance_encoder_for(handle: "ModelHandle", encoder: "CachedEncoder | None" = None) -> InstanceEncoder | OnnxInstanceEncoder:
    """The handle's instance decoder: its export's (no torch) when the handle answers from an export that holds one,
    else the PyTorch decoder beside the model (a clear error when the model has none)."""
    if handle.torch_free:
        query_encoder = handle.query_encoder
        if query_encoder.exported.has_instance_decoder:  # type: ignore[attr-defined]
            return OnnxInstanceEncoder(query_encoder, encoder)  # type: ignore[arg-type]
        decoder_file_for(handle.name)  # no decoder at all: say so before loading torch
    return InstanceEncoder._with_model(handle.model, handle.name, encoder)


def decoder_file_for(model_name: str | Path, decoder_file: str | Path | None = None) -> Path:
    """The instance decoder file to use (given, or the model's own); a clear error when there is none."""
    from .paths import instance_decoder_path

    path = Path(decoder_file) if decoder_file else instance_decoder_path(model_name)
    if not path.is_file():
        what = f"instance decoder file {path} does not exist" if decoder_file else f"model {str(model_name)!r} has no instance decoder (no {path})"
        raise NoInstanceDecoderError(f"{what}; train one with `modalens train configs/experiments/instances/instances.yaml`")
    return path


def instance_scores(queries: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Cosine of each query vector with each photo's best-matching instance: (q, D) × (n, K, D) → (q, n).

    A photo matches a product when any of its instances does (max over the K queries).
    """
    n, k, d = instances.shape
    return (queries @ instances.reshape(n * k, d).T).reshape(len(queries), n, k).max(axis=2)


#: A query whose objectness is below this holds no product (the recipe trains it on matched vs unmatched queries).
OBJECTNESS_THRESHOLD = 0.5
#: Two instances closer than this are the same product seen by two queries: the weaker one is dropped.
DUPLICATE_COSINE = 0.92


def distinct_instances(embeddings: np.ndarray, objectness: np.ndarray, threshold: float = OBJECTNESS_THRESHOLD) -> list[int]:
    """One photo's queries that hold a product, most confident first, near-duplicates left out (at least one kept)."""
    order = [int(k) for k in np.argsort(-objectness, kind="stable")]
    kept: list[int] = []
    for k in order:
        if kept and objectness[k] < threshold:
            break
        if all(float(embeddings[k] @ embeddings[j]) < DUPLICATE_COSINE for j in kept):
            kept.append(k)
    return kept


def attention_box(attention: np.ndarray, side: int, image_size: tuple[int, int], share: float = 0.6) -> tuple[int, int, int, int]:
    """Where a query looked, as a box on the photo: the smallest span of grid cells holding ``share`` of its attention.

    The cells are the letterboxed square's, mapped back onto the photo (x0, y0, x1, y1 in pixels).
    """
    grid = attention.reshape(side, side)
    order = np.argsort(-grid, axis=None)
    chosen = order[: int(np.searchsorted(np.cumsum(grid.ravel()[order]), share)) + 1]
    rows, cols = np.unravel_index(chosen, grid.shape)
    width, height = image_size
    scale = max(width, height) / side
    left, top = (max(width, height) - width) / 2, (max(width, height) - height) / 2  # the letterbox's padding
    box = (cols.min() * scale - left, rows.min() * scale - top, (cols.max() + 1) * scale - left, (rows.max() + 1) * scale - top)
    return (max(0, round(box[0])), max(0, round(box[1])), min(width, round(box[2])), min(height, round(box[3])))


#: Colours of the products found, in order (drawn over the photo by :func:`draw_look`).
LOOK_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180))


def draw_look(
    photo: "Image.Image", attentions: Sequence[np.ndarray], boxes: Sequence[tuple[int, int, int, int]], names: Sequence[str] | None = None
) -> "Image.Image":
    """Where each found product's query looked, over the photo: its attention as a tint (stronger where it looked
    more), its box and its number (or its name from ``names``), one colour per product (the grounding view; a
    label's map from :mod:`modalens.grounding` is drawn the same way)."""
    from PIL import Image, ImageDraw

    width, height = photo.size
    square = max(width, height)
    left, top = (square - width) // 2, (square - height) // 2  # the letterbox the tower saw
    out = photo.convert("RGB")
    for n, (attention, box) in enumerate(zip(attentions, boxes)):
        side = int(round(len(attention) ** 0.5))
        weights = np.asarray(attention, np.float64).reshape(side, side)
        weights = (255 * weights / max(weights.max(), 1e-12)).astype(np.uint8)
        mask = Image.fromarray(weights).resize((square, square), Image.Resampling.BILINEAR).crop((left, top, left + width, top + height))
        colour = LOOK_COLOURS[n % len(LOOK_COLOURS)]
        out = Image.composite(Image.new("RGB", out.size, colour), out, mask.point(lambda v: v * 0.55))
        pen = ImageDraw.Draw(out)
        pen.rectangle(box, outline=colour, width=max(2, square // 150))
        pen.text((box[0] + 4, box[1] + 2), names[n] if names else str(n + 1), fill=colour)
    return out
