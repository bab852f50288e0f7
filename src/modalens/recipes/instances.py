"""The ``instances`` recipe: ECLIP's instance decoder, trained on seeded scenes with no box labels.

A trained model (``tune.init``, else ``model``) stays frozen, heads and all;
only :class:`~modalens.models.instance_decoder.InstanceDecoder` learns. Each
step takes a batch of scenes (2-4 catalogue products cut out and laid on a
backdrop, :mod:`modalens.scenes`), decodes K instance embeddings per scene from
the cached feature maps, and gives each product in the scene one query by
Hungarian matching on how well each query already matches the product
(its caption plus its packshot). Then ECLIP's two pretext tasks, as InfoNCE
across the whole batch (the other products of the same scene are the hardest
negatives):

* inter-product: a product's instance embedding matches that product's caption
  (the frozen text head on one of its captions, drawn each step);
* intra-product: it matches the product's own packshot embedding (the frozen
  image head on its single-photo features), so an instance reads the same in
  any scene as the product does alone;

plus a per-query objectness score (a matched query holds a product, the
others do not). The epoch with the best scene→product R@5 on validation
scenes (val-split products) is kept; the output folder is a saved model (the
start's heads, unchanged) with ``instances.safetensors`` beside them.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from ..catalog import read_catalog
from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..evaluation.instances import scene_hits
from ..grounding import cell_padding
from ..instances import instance_scores
from ..losses import ClipLoss
from ..models import load, model_metadata, save_model
from ..models.instance_decoder import DECODER_FILE, InstanceDecoder, InstanceDecoderConfig, head_digest, save_decoder
from ..prompts import load_caption_set
from ..scenes import Scene, build_scenes, scene_products
from .config import ConfigError, TrainConfig, check_config
from .contrastive import TrainResult, _schedule
from .data import caption_table


def assign(similarity: np.ndarray) -> np.ndarray:
    """Hungarian matching: ``similarity`` (products, queries) → the query each product gets (all different).

    Maximises the total similarity; needs at least as many queries as products.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.shape[0] > similarity.shape[1]:
        raise ValueError(f"{similarity.shape[0]} products cannot each get one of {similarity.shape[1]} queries")
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    out = np.empty(similarity.shape[0], dtype=np.int64)
    out[rows] = cols
    return out


class SceneData:
    """Scenes as tensors: their feature maps, which products each holds, and the products' frozen targets."""

    def __init__(self, encoder: CachedEncoder, scenes: list[Scene], captions: Any, scene_dir: str | None = None) -> None:
        photos = scene_products(scenes, scene_dir)
        grids, failures = encoder.image_grids(photos)
        keep = [i for i in range(len(scenes)) if i not in failures]
        self.scenes = [scenes[i] for i in keep]
        self.grids = torch.from_numpy(grids[keep])
        products: dict[str, Product] = {}
        for scene in self.scenes:
            for p in scene.products:
                products.setdefault(p.id, p)
        self.products = list(products.values())
        index = {pid: i for i, pid in enumerate(products)}
        self.members = [[index[p.id] for p in scene.products] for scene in self.scenes]
        packshots, missing = encoder.image_embeddings(self.products)
        if missing:
            raise ConfigError(f"{len(missing)} scene products have unreadable photos: {next(iter(missing.values()))}")
        self.image_targets = torch.from_numpy(packshots)
        texts, self.choices = caption_table(self.products, captions)
        self.text_targets = torch.from_numpy(encoder.text_embeddings(texts))


def _batch_loss(decoder: InstanceDecoder, head: torch.nn.Module, data: SceneData, batch: list[int], config: TrainConfig, clip: ClipLoss) -> tuple[torch.Tensor, dict[str, float]]:
    """One step's loss: decode, match products to queries, the two pretext tasks and objectness."""
    options = config.instances
    out = decoder(data.grids[batch], head)
    scene_of, query_of, product_of, caption_of = [], [], [], []
    with torch.no_grad():
        for row, s in enumerate(batch):
            members = data.members[s]
            captions = [random.choice(data.choices[p]) for p in members]
            target = data.text_targets[captions] + data.image_targets[members]
            queries = assign((target @ out.embeddings[row].T).numpy())
            scene_of += [row] * len(members)
            query_of += queries.tolist()
            product_of += members
            caption_of += captions
    rows, queries = torch.tensor(scene_of), torch.tensor(query_of)
    instances = out.embeddings[rows, queries]
    ids = torch.tensor(product_of)
    inter = clip(instances, data.text_targets[caption_of], decoder.logit_scale, ids)
    intra = clip(instances, data.image_targets[product_of], decoder.logit_scale, ids)
    held = torch.zeros_like(out.objectness)
    held[rows, queries] = 1.0
    objectness = torch.nn.functional.binary_cross_entropy_with_logits(out.objectness, held)
    loss = options.inter_weight * inter + options.intra_weight * intra + options.objectness_weight * objectness
    return loss, {"inter": inter.item(), "intra": intra.item(), "objectness": objectness.item()}


@torch.no_grad()
def scene_recall(decoder: InstanceDecoder, head: torch.nn.Module, data: SceneData, gallery: torch.Tensor, gallery_ids: list[str], k: int = 5) -> float:
    """Scene→product R@k of the decoder on ``data``'s scenes against a gallery of packshot embeddings."""
    decoder.eval()
    embeddings = torch.cat([decoder(data.grids[i : i + 256], head).embeddings for i in range(0, len(data.grids), 256)]).numpy()
    position = {pid: j for j, pid in enumerate(gallery_ids)}
    relevant = np.zeros((len(data.scenes), len(gallery_ids)), bool)
    for s, scene in enumerate(data.scenes):
        relevant[s, [position[p.id] for p in scene.products]] = True
    scores = instance_scores(gallery.numpy(), embeddings).T
    return float(np.nanmean(scene_hits(scores, relevant, (k,))[k]))


def _scenes(config: TrainConfig, products: list[Product], split: str, count: int, seed: int) -> list[Scene]:
    options = config.instances
    return build_scenes(products, count, seed=seed, kind=options.kind, split=split, min_products=options.min_products, max_products=options.max_products)


def train(config: TrainConfig, progress: bool = True, resume: bool = False) -> TrainResult:
    """Train the instance decoder of ``tune.init`` (or ``model``); see the module's docstring."""
    check_config(config)
    if resume:
        raise ConfigError("the instances recipe takes minutes and keeps no checkpoint: run it again without --resume")
    started = time.time()
    torch.manual_seed(config.optim.seed)
    random.seed(config.optim.seed)
    start = config.tune.init or config.model
    model = load(start).model
    for p in model.parameters():
        p.requires_grad_(False)
    cell_padding(model.image_tower, model.image_tower.map_channels, "the instances recipe")
    head = model.image_head.eval()
    encoder = CachedEncoder(model, progress=progress)
    catalogue = read_catalog(config.data.catalog).products[: config.data.limit]
    captions = load_caption_set(config.caption_set).select(config.captions)
    options = config.instances
    train_data = SceneData(encoder, _scenes(config, catalogue, config.data.train_split, options.scenes, options.seed), captions)
    val_data = SceneData(encoder, _scenes(config, catalogue, config.data.val_split, options.val_scenes, options.seed + 1), captions)
    val_products = [p for p in catalogue if p.split == config.data.val_split and p.image]
    val_embeds, failures = encoder.image_embeddings(val_products)
    keep = [i for i in range(len(val_products)) if i not in failures]
    gallery, gallery_ids = torch.from_numpy(val_embeds[keep]), [val_products[i].id for i in keep]

    decoder_config = InstanceDecoderConfig.from_dict({"embed_dim": model.config.embed_dim, **options.decoder, "feature_dim": train_data.grids.shape[2], "cells": train_data.grids.shape[1]})
    decoder = InstanceDecoder(decoder_config)
    untrained = scene_recall(decoder, head, val_data, gallery, gallery_ids)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    batch_size = min(config.optim.batch_size, len(train_data.scenes))
    steps_per_epoch = max(1, len(train_data.scenes) // batch_size)
    total = steps_per_epoch * config.optim.epochs
    clip = ClipLoss()
    rng = np.random.default_rng(config.optim.seed)
    history: list[dict[str, Any]] = [{"epoch": 0, "val_scene_to_product_R@5": untrained}]
    best = (untrained, 0, {k: v.clone() for k, v in decoder.state_dict().items()})
    step = 0
    for epoch in range(1, config.optim.epochs + 1):
        decoder.train()
        order = rng.permutation(len(train_data.scenes))
        sums: dict[str, float] = {}
        bar = tqdm(range(steps_per_epoch), desc=f"instances epoch {epoch}", disable=not progress, leave=False)
        for b in bar:
            for group in optimizer.param_groups:
                group["lr"] = config.optim.lr * _schedule(step, total, config.optim.warmup_steps)
            loss, parts = _batch_loss(decoder, head, train_data, order[b * batch_size : (b + 1) * batch_size].tolist(), config, clip)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            for key, value in {"loss": loss.item(), **parts}.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(loss=f"{loss.item():.3f}")
        score = scene_recall(decoder, head, val_data, gallery, gallery_ids)
        history.append({"epoch": epoch, **{k: round(v / steps_per_epoch, 4) for k, v in sums.items()}, "val_scene_to_product_R@5": round(score, 4)})
        if progress:
            tqdm.write(f"epoch {epoch}: loss {sums['loss'] / steps_per_epoch:.3f}, val scene→product R@5 {score:.4f}")
        if score > best[0]:
            best = (score, epoch, {k: v.clone() for k, v in decoder.state_dict().items()})
    decoder.load_state_dict(best[2])
    output = Path(config.output)
    save_model(model, output, metadata=model_metadata(start))
    extra = {"trained_on": f"{options.scenes} {config.data.catalog}:{config.data.train_split} scenes", "best_epoch": best[1], "val_scene_to_product_R@5": round(best[0], 4)}
    save_decoder(decoder, output / DECODER_FILE, head_digest(head), extra)
    (output / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    (output / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return TrainResult(output, best[1], best[0], history, time.time() - started)
