"""What a contrastive run reads: products from one or more sources, their captions, features or pixels.

Frozen towers are read through the feature cache (a whole run then never
decodes a photo twice); a tower that trains needs its raw input every step,
so photos come from :class:`PhotoDataset` through a ``DataLoader`` (worker
processes with ``data.workers``) and captions are tokenised per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..catalog import read_catalog
from ..catalog.images import load_image
from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..encoders.views import get_view
from ..prompts import FIELD_TEMPLATES, CaptionSet, caption, load_caption_set
from .config import CAPTION_FIELD, ConfigError, SourceConfig, TrainConfig


#: What makes two training photos "the same class" for ArcMargin. ``product``: every photo and view of one
#: product (a product's 224 px and 60×80 photos share its id across the kagl and kagl-all sources).
CLASS_KEYS: dict[str, Callable[[Product], str]] = {
    "product": lambda p: p.id,
    "article-type": lambda p: p.get("article_type"),
    "article-type-colour": lambda p: f"{p.get('article_type')}|{p.get('colour')}" if p.get("article_type") else "",
}


@dataclass
class TrainingData:
    """Everything an epoch reads: per product its source, photo features (per view) or photo, and captions."""

    products: list[Product]
    source_of: torch.Tensor  # (products,) index into the config's train sources
    images: torch.Tensor | None  # (views, products, dim) tower features; view 0 is the photo itself. None: the tower trains
    texts: list[str]  # unique caption texts
    text_feats: torch.Tensor | None  # (texts, dim) tower features; None when the text tower trains
    choices: list[list[int]]  # per product, indices of its captions into ``texts``
    fields: dict[str, torch.Tensor]  # multi-field loss: per field, per product, a text index or -1
    val_products: list[Product]
    #: ArcMargin's class of each product (-1: none, e.g. no article type) and the class names; empty without ``classes``.
    class_ids: torch.Tensor | None = None
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.products)


def caption_table(products: list[Product], templates: CaptionSet | list[str]) -> tuple[list[str], list[list[int]]]:
    """Unique caption texts, and for each product the indices of its captions (a template's caption
    repeated by its weight, so a uniform draw from the list honours the weights).

    ``templates``: a caption set, or names of templates in the ``basic`` set.
    """
    caption_set = templates if isinstance(templates, CaptionSet) else load_caption_set("basic").select(templates)
    texts: dict[str, int] = {}
    choices = []
    for product in products:
        built = caption_set.captions(product)
        choices.append([texts.setdefault(t, len(texts)) for name, t in built.items() for _ in range(caption_set.weights.get(name, 1))])
    return list(texts), choices


def read_sources(config: TrainConfig) -> tuple[list[Product], list[int], list[Product]]:
    """Training products of every source (and which source each came from), and the validation products."""
    products: list[Product] = []
    source_of: list[int] = []
    for i, source in enumerate(config.data.train_sources()):
        selected = _source_products(source)
        if not selected:
            raise ConfigError(f"training source {source.catalog!r} has no products in split {source.split!r}")
        products += selected
        source_of += [i] * len(selected)
    val = read_catalog(config.data.catalog).split(config.data.val_split).products[: config.data.limit]
    return products, source_of, val


def _source_products(source: SourceConfig) -> list[Product]:
    catalog = read_catalog(source.catalog)
    if source.split:
        catalog = catalog.split(source.split)
    return catalog.products[: source.limit]


def _view_features(encoder: CachedEncoder, products: list[Product], view: str) -> np.ndarray:
    """Features of a degraded view of each photo (the photos themselves already decoded once, so a failure is a bug)."""
    feats, failures = encoder.image_features(products, view=view)
    if failures:
        raise ValueError(f"view {view!r} failed for {len(failures)} photos, e.g. {next(iter(failures.values()))}")
    return feats


def prepare(config: TrainConfig, encoder: CachedEncoder) -> TrainingData:
    """Read the sources, drop products whose photo fails or that have no caption, and cache frozen-tower features."""
    products, source_of, val_products = read_sources(config)
    image_feats, failures = encoder.image_features(products)
    keep = [i for i in range(len(products)) if i not in failures]
    products = [products[i] for i in keep]
    texts, choices = caption_table(products, load_caption_set(config.caption_set).select(config.captions))
    has_caption = [i for i, c in enumerate(choices) if c]
    kept = [products[i] for i in has_caption]
    images = None
    if not config.tune.tunes("image"):
        views = [image_feats[keep][has_caption]] + [_view_features(encoder, kept, view) for view in config.image_views]
        images = torch.from_numpy(np.stack(views))
    fields = _field_texts(config, kept, texts)
    class_ids, class_names = class_table(kept, config.classes) if config.classes else (None, None)
    return TrainingData(
        products=kept,
        source_of=torch.tensor([source_of[keep[i]] for i in has_caption]),
        images=images,
        texts=texts,
        text_feats=None if config.tune.tunes("text") else torch.from_numpy(encoder.text_features(texts)),
        choices=[choices[i] for i in has_caption],
        fields=fields,
        val_products=val_products,
        class_ids=class_ids,
        class_names=class_names,
    )


def class_table(products: list[Product], classes: str) -> tuple[torch.Tensor, list[str]]:
    """Each product's class index under ``CLASS_KEYS[classes]`` (-1 where the key is empty), and the class names.

    Classes with a single training product are kept: with several photo views
    per product, even a one-product class has several images to pull together.
    """
    key = CLASS_KEYS[classes]
    names = sorted({key(p) for p in products} - {""})
    if len(names) < 2:
        raise ConfigError(f"classes {classes!r}: the training products fall into {len(names)} class(es); ArcMargin needs at least 2")
    position = {name: i for i, name in enumerate(names)}
    return torch.tensor([position.get(key(p), -1) for p in products]), names


def _field_texts(config: TrainConfig, products: list[Product], texts: list[str]) -> dict[str, torch.Tensor]:
    """Per field of the multi-field loss, each product's text index (appended to ``texts``) or -1."""
    fields = {}
    index = {t: i for i, t in enumerate(texts)}
    for name in config.field_weights:
        if name == CAPTION_FIELD:  # drawn afresh each step from the caption templates, like the plain loss
            continue
        field_texts = [caption(p, FIELD_TEMPLATES[name]) for p in products]
        for t in field_texts:
            if t and t not in index:
                index[t] = len(texts)
                texts.append(t)
        fields[name] = torch.tensor([index[t] if t else -1 for t in field_texts])
    return fields


def epoch_order(data: TrainingData, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """The product indices of one epoch, in order.

    One source: a permutation. Several: each source contributes a share of
    the epoch proportional to its weight (cycling through its own
    permutations when up-sampled), and the whole is shuffled.
    """
    sources = config.data.train_sources()
    if len(sources) == 1:
        return torch.randperm(len(data), generator=generator)
    exact = torch.tensor([s.weight for s in sources], dtype=torch.float64)
    exact = exact / exact.sum() * len(data)
    shares = torch.floor(exact).long()
    for i in torch.argsort(exact - shares, descending=True)[: len(data) - int(shares.sum())]:
        shares[i] += 1  # largest remainders first: the epoch keeps exactly len(data) items
    parts = []
    for i, share in enumerate(shares.tolist()):
        members = torch.nonzero(data.source_of == i).flatten()
        if len(members) == 0 or share == 0:
            continue
        rounds = -(-share // len(members))
        cycled = torch.cat([members[torch.randperm(len(members), generator=generator)] for _ in range(rounds)])
        parts.append(cycled[:share])
    order = torch.cat(parts)
    return order[torch.randperm(len(order), generator=generator)]


class PhotoDataset(Dataset):
    """``(product index, view index)`` → preprocessed pixels, for a tower that trains (decoded in DataLoader workers)."""

    def __init__(self, products: list[Product], views: list[str], preprocess) -> None:
        self.products = products
        self.views = [None] + [get_view(v) for v in views]
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.products)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        index, view = item
        image = load_image(self.products[index].image)
        transform = self.views[view]
        return self.preprocess(transform(image) if transform else image)
