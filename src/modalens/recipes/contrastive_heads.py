"""The OpenFashionCLIP recipe on frozen towers: CLIP loss, captions from product fields, heads only.

Tower features come from the on-disk cache, so after the first run a full
training run (40 epochs on 6.7k KAGL products) takes well under a minute on
two CPU cores. Each epoch draws one caption per product from its templates
(OpenFashionCLIP's prompt engineering at training time), validates on the
val split, and the best epoch is kept.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ..catalog import read_catalog
from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..evaluation import tasks
from ..losses import MultiFieldLoss, create_loss
from ..models import DualEncoder, ModelConfig, save_model
from ..paths import MODEL_CONFIG_DIR
from ..prompts import CAPTION_TEMPLATES, FIELD_TEMPLATES, caption, captions
from .config import TrainConfig


@dataclass
class TrainResult:
    output: Path
    best_epoch: int
    best_score: float
    history: list[dict[str, Any]]
    seconds: float


def build_model(config: TrainConfig) -> DualEncoder:
    path = Path(config.model) / "config.json" if Path(config.model).is_dir() else MODEL_CONFIG_DIR / f"{config.model}.json"
    model_config = ModelConfig.load(path)
    merged = {**model_config.to_dict(), **config.model_overrides}
    return DualEncoder(ModelConfig.from_dict(merged))


def caption_table(products: list[Product], template_names: list[str]) -> tuple[list[str], list[list[int]]]:
    """Unique caption texts, and for each product the indices of its captions."""
    templates = {name: CAPTION_TEMPLATES[name] for name in template_names}
    texts: dict[str, int] = {}
    choices = []
    for product in products:
        built = captions(product, templates).values()
        choices.append([texts.setdefault(t, len(texts)) for t in built])
    return list(texts), choices


def validation_score(metrics: dict[str, Any]) -> float:
    """One number to pick the best epoch: mean of the six retrieval recalls and zero-shot accuracy."""
    recalls = [metrics[d][f"R@{k}"] for d in ("text_to_image", "image_to_text") for k in (1, 5, 10)]
    return float(np.mean(recalls + [metrics["zero_shot"]["ensemble"]["accuracy"]]))


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _view_features(encoder: CachedEncoder, products: list[Product], view: str) -> np.ndarray:
    """Features of a degraded view of each photo (the photos themselves already decoded once, so a failure is a bug)."""
    feats, failures = encoder.image_features(products, view=view)
    if failures:
        raise ValueError(f"view {view!r} failed for {len(failures)} photos, e.g. {next(iter(failures.values()))}")
    return feats


def _pick_views(n: int, extra_views: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Per item: 0 (the photo) or, with ``probability``, one of the extra views at random."""
    if extra_views == 0 or probability == 0:
        return torch.zeros(n, dtype=torch.long)
    use_view = torch.rand(n, generator=generator) < probability
    which = torch.randint(1, extra_views + 1, (n,), generator=generator)
    return torch.where(use_view, which, torch.zeros_like(which))


def _validate(encoder: CachedEncoder, val: list[Product]) -> dict[str, Any]:
    metrics: dict[str, Any] = dict(tasks.retrieval(encoder, val))
    metrics["zero_shot"] = tasks.zero_shot(encoder, val)
    return metrics


@dataclass
class TrainingData:
    """Everything one epoch reads, as tensors: tower features of each view, caption features and choices."""

    images: torch.Tensor  # (views, products, dim); view 0 is the photo itself
    text_feats: torch.Tensor  # (unique captions, dim)
    choices: list[list[int]]  # per product, indices of its captions
    fields: dict[str, torch.Tensor]  # multi-field loss: per field, per product, a caption index or -1
    val_products: list[Product]


def prepare(config: TrainConfig, model: DualEncoder, progress: bool) -> TrainingData:
    catalog = read_catalog(config.data.catalog)
    train_products = catalog.split(config.data.train_split).products[: config.data.limit]
    val_products = catalog.split(config.data.val_split).products[: config.data.limit]
    if not train_products:
        raise ValueError(f"catalogue {config.data.catalog!r} has no products in split {config.data.train_split!r}")
    encoder = CachedEncoder(model, progress=progress)
    image_feats, failures = encoder.image_features(train_products)
    keep = [i for i in range(len(train_products)) if i not in failures]
    train_products = [train_products[i] for i in keep]
    texts, choices = caption_table(train_products, config.captions)
    has_caption = [i for i, c in enumerate(choices) if c]
    kept = [train_products[i] for i in has_caption]
    views = [image_feats[keep][has_caption]] + [_view_features(encoder, kept, view) for view in config.image_views]
    fields = {}
    for name in config.field_weights:
        field_texts = [caption(p, FIELD_TEMPLATES[name]) for p in kept]
        index = {t: i for i, t in enumerate(texts)}
        for t in field_texts:
            if t and t not in index:
                index[t] = len(texts)
                texts.append(t)
        fields[name] = torch.tensor([index[t] if t else -1 for t in field_texts])
    return TrainingData(
        images=torch.from_numpy(np.stack(views)),
        text_feats=torch.from_numpy(encoder.text_features(texts)),
        choices=[choices[i] for i in has_caption],
        fields=fields,
        val_products=val_products,
    )


def make_loss(config: TrainConfig) -> torch.nn.Module:
    base = create_loss(config.loss)
    return MultiFieldLoss(config.field_weights, base) if config.field_weights else base


def batch_loss(model: DualEncoder, loss_fn, data: TrainingData, batch: torch.Tensor, config: TrainConfig, generator) -> torch.Tensor:
    view = _pick_views(len(batch), len(data.images) - 1, config.view_probability, generator)
    image_embeds = model.project_image(data.images[view, batch])
    if isinstance(loss_fn, MultiFieldLoss):
        field_ids = {name: ids[batch] for name, ids in data.fields.items()}
        embeds = {name: model.project_text(data.text_feats[ids.clamp(min=0)]) for name, ids in field_ids.items()}
        present = {name: ids >= 0 for name, ids in field_ids.items()}
        return loss_fn(image_embeds, embeds, model.logit_scale, field_ids, present)
    picked = torch.tensor([random.choice(data.choices[i]) for i in batch.tolist()])
    return loss_fn(image_embeds, model.project_text(data.text_feats[picked]), model.logit_scale, picked)


class Checkpoint:
    """Everything needed to continue a run exactly: weights, optimiser, schedule, RNGs, position, best so far."""

    def __init__(self, output: Path) -> None:
        self.path = output / "checkpoint.pt"

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)


def train(config: TrainConfig, progress: bool = True, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
    """Train the heads; ``resume`` continues from the output folder's checkpoint exactly where it stopped.

    ``stop_after_steps`` ends the run early (checkpoint written), as a kill would: for tests of resuming.
    """
    start = time.time()
    opt = config.optim
    random.seed(opt.seed)
    np.random.seed(opt.seed)
    torch.manual_seed(opt.seed)
    model = build_model(config)
    data = prepare(config, model, progress)
    loss_fn = make_loss(config)
    params = [p for p in list(model.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
    steps_per_epoch = max(1, data.images.shape[1] // opt.batch_size)
    total = steps_per_epoch * opt.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, total, opt.warmup_steps))
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = Checkpoint(output)
    generator = torch.Generator().manual_seed(opt.seed)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict | None] = (-float("inf"), -1, None)
    position = {"epoch": 1, "step": 0, "order": None, "losses": []}

    saved = checkpoint.load() if resume else None
    if saved is not None:
        if saved["config"] != config.to_dict():
            raise ValueError(f"{checkpoint.path} was written by a run with another config; train into a new output folder")
        model.load_state_dict(saved["model"])
        loss_fn.load_state_dict(saved["loss"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        random.setstate(saved["python_random"])
        history, best, position = saved["history"], saved["best"], saved["position"]

    def snapshot() -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "model": model.state_dict(),
            "loss": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "python_random": random.getstate(),
            "history": history,
            "best": best,
            "position": position,
        }

    log = open(output / "metrics.jsonl", "a" if saved else "w")
    encoder = CachedEncoder(model, progress=False)
    done = (position["epoch"] - 1) * steps_per_epoch + position["step"]
    bar = tqdm(total=total, initial=done, desc=f"train ({config.loss})", unit="step", disable=not progress)
    steps_this_run = 0
    for epoch in range(position["epoch"], opt.epochs + 1):
        model.train()
        if position["order"] is None:
            position["order"] = torch.randperm(data.images.shape[1], generator=generator)
        order = position["order"]
        for step in range(position["step"], steps_per_epoch):
            batch = order[step * opt.batch_size : (step + 1) * opt.batch_size]
            loss = batch_loss(model, loss_fn, data, batch, config, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            position["losses"].append(loss.item())
            position["step"] = step + 1
            bar.update(1)
            steps_this_run += 1
            if config.checkpoint_every and (done + steps_this_run) % config.checkpoint_every == 0:
                checkpoint.save(snapshot())
            if stop_after_steps is not None and steps_this_run >= stop_after_steps:
                checkpoint.save(snapshot())
                bar.close()
                log.close()
                return TrainResult(output, best[1], best[0], history, time.time() - start)
        metrics = _validate(encoder, data.val_products) if data.val_products else {}
        mean_loss = float(np.mean(position["losses"]))
        score = validation_score(metrics) if metrics else -mean_loss
        record = {"epoch": epoch, "loss": mean_loss, "score": score, "temperature": float(model.logit_scale.detach().exp()), "val": metrics}
        history.append(record)
        log.write(json.dumps(record) + "\n")
        log.flush()
        bar.set_postfix(loss=f"{mean_loss:.3f}", val=f"{score:.3f}")
        if score > best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        position = {"epoch": epoch + 1, "step": 0, "order": None, "losses": []}
        checkpoint.save(snapshot())
    bar.close()
    log.close()
    model.load_state_dict(best[2])
    meta = {"recipe": config.recipe, "best_epoch": best[1], "val_score": best[0], "train_config": config.to_dict()}
    save_model(model, output, metadata={k: json.dumps(v) for k, v in meta.items()})
    (output / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return TrainResult(output, best[1], best[0], history, time.time() - start)


__all__ = ["train", "TrainResult", "TrainingData", "build_model", "caption_table", "prepare"]
