"""What a contrastive run reads: products from one or more sources, their captions, features or pixels.

Frozen towers are read through the feature cache (a whole run then never
decodes a photo twice); a tower that trains needs its raw input every step,
so photos come from :class:`PhotoDataset` through a ``DataLoader`` (worker
processes with ``data.workers``) and captions are tokenised per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..catalog import read_catalog
from ..catalog.images import load_image
from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..encoders.features import TokenStates
from ..encoders.views import get_view
from ..prompts import FIELD_TEMPLATES, CaptionSet, caption, load_caption_set
from ..scenes import Scene, SceneError, build_scenes, product_captions, scene_products
from ..scenes.partners import ColourIndex, partner_scene
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
    text_feats: torch.Tensor | TokenStates | None  # (texts, dim) tower features, or token states for a token head; None when the text tower trains
    choices: list[list[int]]  # per product, indices of its captions into ``texts``
    fields: dict[str, torch.Tensor]  # multi-field loss: per field, per product, a text index or -1
    val_products: list[Product]
    #: ArcMargin's class of each product (-1: none, e.g. no article type) and the class names; empty without ``classes``.
    class_ids: torch.Tensor | None = None
    class_names: list[str] | None = None
    #: Per product, the index of its hard-negative partner scene (kept in the same batch), or -1; None: no partners.
    partner: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.products)


def caption_table(
    products: list[Product], templates: CaptionSet | list[str], given: Sequence[Sequence[str]] | None = None,
    templated: Sequence[bool] | None = None,
) -> tuple[list[str], list[list[int]]]:
    """Unique caption texts, and for each product the indices of its captions (a template's caption
    repeated by its weight, so a uniform draw from the list honours the weights).

    ``templates``: a caption set, or names of templates in the ``basic`` set. ``given``: per product,
    ready captions (a scene captioner's) drawn alongside, once each. ``templated``: per product, whether
    the templates caption it too (not a rendered scene: its fields are those of none of its garments).
    """
    caption_set = templates if isinstance(templates, CaptionSet) else load_caption_set("basic").select(templates)
    texts: dict[str, int] = {}
    choices = []
    for k, product in enumerate(products):
        ids = []
        if templated is None or templated[k]:
            built = caption_set.captions(product)
            ids = [texts.setdefault(t, len(texts)) for name, t in built.items() for _ in range(caption_set.weights.get(name, 1))]
        if given is not None:
            ids += [texts.setdefault(t, len(texts)) for t in given[k]]
        choices.append(ids)
    return list(texts), choices


@dataclass
class SourceItems:
    """What the training sources give: their items in order (rendered scenes among them), where each came
    from, each one's captioner captions, and the validation products."""

    products: list[Product] = field(default_factory=list)
    source_of: list[int] = field(default_factory=list)
    given: list[list[str]] = field(default_factory=list)  # per item, its captioner's captions (empty: the caption set's alone)
    scene: list[bool] = field(default_factory=list)  # per item: a rendered scene, captioned by its captioner only, shown without views
    partner: list[int] = field(default_factory=list)  # per item, its partner scene's index, or -1
    val: list[Product] = field(default_factory=list)


def read_sources(config: TrainConfig) -> SourceItems:
    """Training items of every source (and which source each came from), and the validation products."""
    items = SourceItems()
    for i, source in enumerate(config.data.train_sources()):
        products, given, partner = _source_items(source)
        if not products:
            raise ConfigError(f"training source {source.catalog!r} has no products in split {source.split!r}")
        items.partner += [len(items.products) + j if j >= 0 else -1 for j in partner]
        items.products += products
        items.source_of += [i] * len(products)
        items.given += given
        items.scene += [source.scenes > 0] * len(products)
    items.val = read_catalog(config.data.catalog).split(config.data.val_split).products[: config.data.limit]
    return items


def _source_items(source: SourceConfig) -> tuple[list[Product], list[list[str]], list[int]]:
    """A source's products, or scenes rendered from them (as products, see ``scenes.scene_products``), with
    each one's captioner captions and its partner's index in the source (-1: none)."""
    catalog = read_catalog(source.catalog)
    if source.split:
        catalog = catalog.split(source.split)
    products = catalog.products[: source.limit]
    captioner = source.scene_captioner()
    if source.scenes:
        fewest, most = source.scene_products
        try:
            scenes = build_scenes(products, source.scenes, source.scene_seed, kind=source.scene_kind, min_products=fewest, max_products=most)
        except SceneError as e:
            raise ConfigError(f"training source {source.catalog!r} (scenes: {source.scenes}): {e}") from None
        partner = [-1] * len(scenes)
        if source.scene_partners:
            scenes, partner = _with_partners(scenes, products, source.scene_seed)
        return scene_products(scenes), [scene.captions(captioner, source.caption_count) for scene in scenes], partner
    given = [[] for _ in products] if captioner is None else [product_captions(p, captioner, source.caption_count) for p in products]
    return products, given, [-1] * len(products)


def _with_partners(scenes: list[Scene], products: list[Product], seed: int) -> tuple[list[Scene], list[int]]:
    """Each scene followed by its hard-negative partner where one exists, and each one's partner index (-1: none)."""
    index = ColourIndex(products)
    out, partner = [], []
    for i, scene in enumerate(scenes):
        other = partner_scene(scene, index, np.random.default_rng([seed, i, 0xFA1]))
        if other is None:
            out.append(scene)
            partner.append(-1)
        else:
            n = len(out)
            out += [scene, other]
            partner += [n + 1, n]
    return out, partner


def _view_features(encoder: CachedEncoder, products: list[Product], scene: list[bool], photos: np.ndarray, view: str) -> np.ndarray:
    """Features of a degraded view of each photo (the photos themselves already decoded once, so a failure is a bug).

    A rendered scene is its own view (``photos``' row): it already lies on a photo-like backdrop, and a
    view that cuts a garment from studio white would cut into the scene instead.
    """
    feats = photos.copy()
    plain = [i for i, s in enumerate(scene) if not s]
    if not plain:
        return feats
    viewed, failures = encoder.image_features([products[i] for i in plain], view=view)
    if failures:
        raise ValueError(f"view {view!r} failed for {len(failures)} photos, e.g. {next(iter(failures.values()))}")
    feats[plain] = viewed
    return feats


def prepare(config: TrainConfig, encoder: CachedEncoder) -> TrainingData:
    """Read the sources, drop products whose photo fails or that have no caption, and cache frozen-tower features."""
    items = read_sources(config)
    image_feats, failures = encoder.image_features(items.products)
    keep = [i for i in range(len(items.products)) if i not in failures]
    products = [items.products[i] for i in keep]
    scene = [items.scene[i] for i in keep]
    caption_set = load_caption_set(config.caption_set).select(config.captions)
    texts, choices = caption_table(products, caption_set, [items.given[i] for i in keep], [not s for s in scene])
    has_caption = [i for i, c in enumerate(choices) if c]
    kept = [products[i] for i in has_caption]
    kept_scene = [scene[i] for i in has_caption]
    images = None
    if not config.tune.tunes("image"):
        photos = image_feats[keep][has_caption]
        views = [photos] + [_view_features(encoder, kept, kept_scene, photos, view) for view in config.image_views]
        images = torch.from_numpy(np.stack(views))
    fields = _field_texts(config, kept, kept_scene, texts)
    class_ids, class_names = class_table(kept, config.classes) if config.classes else (None, None)
    position = {keep[i]: n for n, i in enumerate(has_caption)}  # an item's index in the sources → in ``kept``
    partner = [position.get(items.partner[keep[i]], -1) for i in has_caption]
    return TrainingData(
        products=kept,
        source_of=torch.tensor([items.source_of[keep[i]] for i in has_caption]),
        images=images,
        texts=texts,
        text_feats=None if config.tune.tunes("text") else _text_inputs(encoder, texts),
        choices=[choices[i] for i in has_caption],
        fields=fields,
        val_products=items.val,
        class_ids=class_ids,
        class_names=class_names,
        partner=torch.tensor(partner) if any(j >= 0 for j in partner) else None,
    )


def _text_inputs(encoder: CachedEncoder, texts: list[str]) -> torch.Tensor | TokenStates:
    """What the text head trains on: pooled features as a tensor, or a token head's ``TokenStates`` (batched per step)."""
    feats = encoder.text_features(texts)
    return feats if isinstance(feats, TokenStates) else torch.from_numpy(feats)


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


def _field_texts(config: TrainConfig, products: list[Product], scene: list[bool], texts: list[str]) -> dict[str, torch.Tensor]:
    """Per field of the multi-field loss, each product's text index (appended to ``texts``) or -1 (always for a
    scene: its fields would be one garment's)."""
    fields = {}
    index = {t: i for i, t in enumerate(texts)}
    for name in config.field_weights:
        if name == CAPTION_FIELD:  # drawn afresh each step from the caption templates, like the plain loss
            continue
        field_texts = ["" if s else caption(p, FIELD_TEMPLATES[name]) for p, s in zip(products, scene)]
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
    permutations when up-sampled), and the whole is shuffled. Scenes with a
    hard-negative partner are then followed by it (:func:`partners_together`).
    """
    order = _mixed_order(data, config, generator)
    if config.grouped_batches:  # (scene partners, inserted next, shift batch boundaries: grouping is then approximate)
        order = grouped_by_type(order, article_type_ids(data.products), config.grouped_batches, config.optim.batch_size, generator)
    return order if data.partner is None else partners_together(order, data.partner)


#: How many batches' worth of products are sorted by type together: enough that each batch holds a few
#: types, not one (a batch of one type would hold many products with the same type-and-colour caption).
GROUP_SPAN = 4


def article_type_ids(products: Sequence[Product]) -> torch.Tensor:
    """Per product, an index of its article type (-1: none, e.g. a scene)."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(t, len(ids)) if (t := p.attributes.get("article_type", "")) else -1 for p in products])


def grouped_by_type(order: torch.Tensor, type_ids: torch.Tensor, share: float, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``order`` with a ``share`` of its batches made of few article types, and the batches shuffled.

    The first ``share`` of the (already shuffled) order is cut into spans of ``GROUP_SPAN`` batches, each
    span sorted by type (stably, so products stay in random order within a type) and cut into batches;
    then all whole batches, grouped or not, are shuffled, so grouped ones come spread over the epoch.
    The same products are seen the same number of times; only who shares a batch changes.
    """
    whole = len(order) // batch_size
    grouped = round(share * whole)
    span = GROUP_SPAN * batch_size
    parts = []
    for start in range(0, grouped * batch_size, span):
        chunk = order[start : min(start + span, grouped * batch_size)]
        parts.append(chunk[torch.argsort(type_ids[chunk], stable=True)])
    head = torch.cat(parts + [order[grouped * batch_size : whole * batch_size]]) if whole else order[:0]
    batches = head.view(whole, batch_size)[torch.randperm(whole, generator=generator)]
    return torch.cat([batches.flatten(), order[whole * batch_size :]])


def _mixed_order(data: TrainingData, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
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


def partners_together(order: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """``order`` with each scene's partner right after it (where the scene with the lower index comes), so the
    two share a batch; the length is kept (repeating the start when pairs came short, cutting when long)."""
    out = []
    for i in order.tolist():
        j = int(partner[i])
        if j < 0:
            out.append(i)
        elif i < j:
            out += [i, j]
    while len(out) < len(order):
        out += out[: len(order) - len(out)]
    return torch.tensor(out[: len(order)], dtype=order.dtype)


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
