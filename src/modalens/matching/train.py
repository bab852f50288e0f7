"""Contrastive training of the offer model on generated pairs (and reviewed ones), with hard negatives.

Rows pair an anchor offer (the catalogue listing) with a positive (another
seller's copy; a fresh copy is drawn each epoch). The loss is the shared
``ClipLoss`` (symmetric InfoNCE with group ids: rows of one product are all
positives), so every other row in the batch is a negative. Batches are not
random: they are filled with *families* of easy-to-confuse offers, so the
negatives a row meets are hard ones:

* epoch 0 and every other mining round: the rule-based hard negatives of
  ``pairs.hard_negatives`` (same brand and type in another colour; same type
  and colour from another brand),
* every ``mine_every`` epochs: each anchor's nearest other anchors under the
  current model (mined hard negatives),
* reviewed "no match" pairs: both offers always share a batch.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..catalog.schema import Product
from ..losses import ClipLoss
from .features import OfferFeatures, OfferFeaturizer
from .offer_model import OfferModel, OfferModelConfig
from .offers import Offer
from .pairs import SELLER_VIEWS, catalogue_offer, hard_negatives, seller_offer

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    copies: int = 3  # generated seller copies per product (one drawn per epoch)
    family_share: float = 0.75  # share of each batch filled with hard-negative families
    family_size: int = 6
    mine_every: int = 5
    mine_k: int = 6
    max_logit_scale: float = 4.6052


@dataclass
class TrainingData:
    """Anchors, their positive copies and groups, and the families that should share a batch."""

    anchors: list[Offer]
    positives: list[list[Offer]]  # per anchor, one or more positives (one is drawn per epoch)
    groups: list[int]
    families: list[list[int]] = field(default_factory=list)  # fixed families (rule-based, reviewed negatives)


def training_data(products: Sequence[Product], *, seed: int = 0, copies: int = 3, views: Sequence[str] = SELLER_VIEWS) -> TrainingData:
    products = [p for p in products if p.image]
    anchors = [catalogue_offer(p) for p in products]
    positives = [[seller_offer(p, f"train{seed}", c, views=views)[0] for c in range(copies)] for p in products]
    negatives = hard_negatives(products)
    families = [[i, *negatives[i]] for i in range(len(products)) if negatives[i]]
    return TrainingData(anchors, positives, list(range(len(products))), families)


def reviewed_data(labelled: Sequence[tuple[Offer, Offer, bool]], *, seed: int = 0, copies: int = 2, group_offset: int = 0) -> TrainingData:
    """Reviewed pairs as training rows: a match is an anchor/positive pair; a non-match puts both offers
    (each with generated copies of itself as positives) in one family, so they meet as negatives."""
    anchors: list[Offer] = []
    positives: list[list[Offer]] = []
    groups: list[int] = []
    families: list[list[int]] = []
    g = group_offset
    for left, right, is_match in labelled:
        if is_match:
            anchors.append(left)
            positives.append([right])
            groups.append(g)
            g += 1
        else:
            rows = []
            for offer in (left, right):
                rows.append(len(anchors))
                anchors.append(offer)
                positives.append([seller_offer(offer, f"review{seed}", c)[0] for c in range(copies)])
                groups.append(g)
                g += 1
            families.append(rows)
    return TrainingData(anchors, positives, groups, families)


def merge(a: TrainingData, b: TrainingData) -> TrainingData:
    n, g = len(a.anchors), (max(a.groups) + 1 if a.groups else 0)
    return TrainingData(
        a.anchors + b.anchors,
        a.positives + b.positives,
        a.groups + [x + g for x in b.groups],
        a.families + [[i + n for i in f] for f in b.families],
    )


def _batches(n: int, families: list[list[int]], config: TrainConfig, rng: random.Random) -> list[list[int]]:
    """Every row once per epoch; ``family_share`` of each batch comes as hard-negative families."""
    order = list(range(n))
    rng.shuffle(order)
    fam_order = list(range(len(families)))
    rng.shuffle(fam_order)
    used = np.zeros(n, bool)
    batches: list[list[int]] = []
    batch: list[int] = []
    fam_target = int(config.batch_size * config.family_share)
    fam_iter = iter(fam_order)
    rest = iter(order)
    while not used.all():
        # families first, until the batch holds its share of them
        while len(batch) < fam_target:
            f = next(fam_iter, None)
            if f is None:
                break
            members = [i for i in families[f][: config.family_size] if not used[i]]
            if len(members) >= 2:
                for i in members:
                    used[i] = True
                batch.extend(members)
        while len(batch) < config.batch_size:
            i = next(rest, None)
            if i is None:
                break
            if not used[i]:
                used[i] = True
                batch.append(i)
        if not batch:
            break
        batches.append(batch)
        batch = []
    return [b for b in batches if len(b) >= 2]


def _mined_families(embeddings: np.ndarray, groups: np.ndarray, k: int) -> list[list[int]]:
    sims = embeddings @ embeddings.T
    sims[groups[:, None] == groups[None, :]] = -np.inf  # an anchor's own group is no negative
    top = np.argpartition(-sims, min(k, len(sims) - 1) - 1, axis=1)[:, :k] if len(sims) > k else np.argsort(-sims, axis=1)[:, :k]
    return [[i, *map(int, row)] for i, row in enumerate(top)]


def train_offer_model(
    data: TrainingData,
    featurizer: OfferFeaturizer,
    *,
    model_config: OfferModelConfig | None = None,
    config: TrainConfig | None = None,
    init: OfferModel | None = None,
    features: tuple[OfferFeatures, OfferFeatures, np.ndarray] | None = None,
) -> tuple[OfferModel, list[float]]:
    """Train (or, with ``init``, continue training) an offer model; returns it and the per-epoch losses.

    Runs on one thread: the heads are small, and on a shared 2-core machine two
    threads were measured 13x slower per step (OpenMP waiting on busy cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(data, featurizer, model_config=model_config, config=config, init=init, features=features)
    finally:
        torch.set_num_threads(threads)


def _train(data, featurizer, *, model_config, config, init, features):
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    if features is None:
        features = featurize_training_data(data, featurizer)
    anchor_feats, positive_feats, positive_owner = features
    if init is not None:
        model = init
    else:
        model = OfferModel(model_config or OfferModelConfig())
        model.fit_number_scaling(np.concatenate([anchor_feats.numbers, positive_feats.numbers]))
    model.train()
    loss_fn = ClipLoss(max_logit_scale=config.max_logit_scale)
    a_all = model.tensors(anchor_feats)
    p_all = model.tensors(positive_feats)
    owners: list[list[int]] = [[] for _ in data.anchors]
    for j, owner in enumerate(positive_owner):
        owners[int(owner)].append(j)
    groups = torch.tensor(data.groups)
    n = len(data.anchors)
    steps_per_epoch = max(1, -(-n // config.batch_size))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=max(total + 10, 20), pct_start=0.1)
    families = list(data.families)
    history: list[float] = []
    for epoch in range(config.epochs):
        if config.mine_every and epoch > 0 and epoch % config.mine_every == 0:
            model.eval()
            with torch.inference_mode():
                emb = model(a_all).numpy()
            model.train()
            families = list(data.families) + _mined_families(emb, np.asarray(data.groups), config.mine_k)
        choice = torch.tensor([rng.choice(owners[i]) for i in range(n)])
        losses = []
        for batch in _batches(n, families, config, rng):
            rows = torch.tensor(batch)
            za = model({k: v[rows] for k, v in a_all.items()})
            zp = model({k: v[choice[rows]] for k, v in p_all.items()})
            loss = loss_fn(za, zp, model.logit_scale, group_ids=groups[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if scheduler.last_epoch < scheduler.total_steps - 1:
                scheduler.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)) if losses else float("nan"))
        log.info("epoch %d loss %.4f", epoch, history[-1])
    model.eval()
    return model, history


def featurize_training_data(data: TrainingData, featurizer: OfferFeaturizer) -> tuple[OfferFeatures, OfferFeatures, np.ndarray]:
    anchor_feats = featurizer(data.anchors)
    flat = [o for ps in data.positives for o in ps]
    owner = np.array([i for i, ps in enumerate(data.positives) for _ in ps], dtype=np.int64)
    return anchor_feats, featurizer(flat), owner
