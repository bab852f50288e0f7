"""The contrastive recipe (OpenFashionCLIP on open data): one loop for heads-only, LiT, partial and full fine-tuning.

With frozen towers (the default) every input comes from the feature cache and
a full run (40 epochs on 6.7k KAGL products) takes well under a minute on two
CPU cores. A tower that trains (``tune``) reads its raw input each step
instead. Each epoch draws one caption per product from its templates
(OpenFashionCLIP's prompt engineering at training time), validates on the val
split, and the best epoch is kept; WiSE-FT interpolations are then scored and
the best one saved.

Scale-up knobs: exact gradient accumulation, bf16/fp16 autocast, photo
decoding in worker processes, and data parallelism under ``torchrun``
(``recipes.distributed``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..backends.device import torch_device
from ..embedding import CachedEncoder
from ..encoders.pooling import POOLINGS
from ..encoders.features import TokenStates
from ..evaluation import tasks
from ..losses import RETRIEVAL_LOSSES, MultiFieldLoss, RetrievalLoss, RetrievalLossOptions, create_loss
from ..models import DualEncoder, ModelConfig, load, save_model
from .config import CAPTION_FIELD, ConfigError, TrainConfig, check_config
from .data import PhotoDataset, TrainingData, caption_table, epoch_order, prepare
from .distributed import gather, init_distributed
from .tuning import describe, interpolate, load_trained_state, parameter_groups, train_mode, trainable_tower, trained_state


@dataclass
class TrainResult:
    output: Path
    best_epoch: int
    best_score: float
    history: list[dict[str, Any]]
    seconds: float


def build_model(config: TrainConfig) -> DualEncoder:
    """The model a run starts from: its config (+ overrides), heads (and tuned towers) from ``tune.init`` when given.

    A new model (the one trained), not a shared handle's: only its config and the start's weights come from handles.
    """
    merged = {**load(config.model).config.to_dict(), **config.model_overrides}
    start = load(config.tune.init).model if config.tune.init else None
    if start is not None:
        for kind in ("image", "text"):  # the start's tuned towers come with its heads, or its scores mean nothing
            ours, theirs = merged[f"{kind}_tower"], getattr(start.config, f"{kind}_tower")
            if theirs.get("tuned_weights"):
                if theirs["name"] != ours["name"]:
                    raise ConfigError(f"tune.init {config.tune.init!r} has a tuned {theirs['name']} {kind} tower; model {config.model!r} uses {ours['name']}")
                merged[f"{kind}_tower"] = {**ours, "tuned_weights": theirs["tuned_weights"]}
    model = DualEncoder(ModelConfig.from_dict(merged))
    if model.text_reads_tokens and config.tune.tunes("text"):
        raise ConfigError("a token text head (text_head kind 'tokens') trains on cached token states; it cannot train with the text tower")
    if start is not None:
        try:
            model.load_state_dict(start.state_dict())
        except RuntimeError as e:
            raise ConfigError(f"tune.init {config.tune.init!r} does not fit model {config.model!r}: {str(e).splitlines()[0]}") from None
    return model


def validation_score(metrics: dict[str, Any]) -> float:
    """One number to pick the best epoch: the mean of the validated groups' numbers (the six retrieval
    recalls, zero-shot accuracy, image→image mAP@10 and R@1; each group when it was run)."""
    numbers = [metrics[d][f"R@{k}"] for d in ("text_to_image", "image_to_text") for k in (1, 5, 10) if d in metrics]
    if "zero_shot" in metrics:
        numbers.append(metrics["zero_shot"]["ensemble"]["accuracy"])
    if "image_retrieval" in metrics:
        numbers += [metrics["image_retrieval"]["mAP@10"], metrics["image_retrieval"]["R@1"]]
    return float(np.mean(numbers))


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _partner_views(views: torch.Tensor, extra_views: int, generator: torch.Generator) -> torch.Tensor:
    """Per item, the other half of a photo/view pair: one of the views for an item showing its photo, else the photo."""
    which = torch.randint(1, extra_views + 1, views.shape, generator=generator)
    return torch.where(views == 0, which, torch.zeros_like(views))


def _at_step(plan: torch.Tensor | None, step: int) -> torch.Tensor | None:
    """One step's row of a per-step plan drawn only when its option is on (None: off)."""
    return None if plan is None else plan[step]


def _colour_extra(model: nn.Module, config: TrainConfig) -> int:
    """How many trailing image-feature values ``colour_dropout`` zeroes: the tower's colour histogram (0: off)."""
    if not config.colour_dropout:
        return 0
    pooling = getattr(model.image_tower, "pooling", "mean")
    if pooling != "mean+colour":
        raise ConfigError(f"colour_dropout zeroes the colour histogram: the image tower's pooling must be mean+colour, not {pooling}")
    return POOLINGS[pooling][1]


def _pick_views(n: int, extra_views: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Per item: 0 (the photo) or, with ``probability``, one of the extra views at random."""
    if extra_views == 0 or probability == 0:
        return torch.zeros(n, dtype=torch.long)
    use_view = torch.rand(n, generator=generator) < probability
    which = torch.randint(1, extra_views + 1, (n,), generator=generator)
    return torch.where(use_view, which, torch.zeros_like(which))


class _TuningEncoder(CachedEncoder):
    """Validation encoder: a tower that trains must never be answered from the frozen tower's feature cache."""

    def __init__(self, model: DualEncoder, tuned: set[str]) -> None:
        super().__init__(model, progress=False)
        self.tuned = tuned

    def _store(self, kind: str):
        return None if kind in self.tuned else super()._store(kind)


def _validate(encoder: _TuningEncoder, towers: dict[str, nn.Module], products: list, groups: list[str]) -> dict[str, Any]:
    """The ``groups`` (retrieval, zero-shot, image-retrieval) on the val products (on the CPU, towers in eval
    mode), then back to training."""
    if not products:
        return {}
    model = encoder.model
    device = model.logit_scale.device
    model.cpu()
    for tower in towers.values():
        tower.cpu().eval()
    metrics: dict[str, Any] = dict(tasks.retrieval(encoder, products)) if "retrieval" in groups else {}
    if "zero-shot" in groups:
        metrics["zero_shot"] = tasks.zero_shot(encoder, products)
    if "image-retrieval" in groups:
        metrics["image_retrieval"] = tasks.image_retrieval(encoder, products, k=10)
    model.to(device)
    for tower in towers.values():
        train_mode(tower.to(device))
    return metrics


class ContrastiveStep(nn.Module):
    """A (micro-)batch's inputs → image embeddings, text embeddings per key, and the temperature.

    Inputs are cached tower features for a frozen tower, pixels or tokens for
    one that trains. One module for DDP to wrap.
    """

    def __init__(self, model: DualEncoder, towers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.model = model
        self.towers = nn.ModuleDict(towers)

    def forward(self, images: torch.Tensor, texts: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        if "image" in self.towers:
            images = self.towers["image"](images)
        image_embeds = self.model.project_image(images)
        text_embeds = {}
        for key, value in texts.items():
            feats = self.towers["text"].forward_tokens(**value) if "text" in self.towers else value
            text_embeds[key] = self.model.project_text(feats)
        return image_embeds, text_embeds, self.model.logit_scale


def make_loss(config: TrainConfig, data: TrainingData, model: DualEncoder) -> nn.Module:
    """The run's loss. A retrieval loss needs the data's classes; its prototypes start at each class's mean
    image embedding under the starting model when there is one (``tune.init``), else at random."""
    if config.loss in RETRIEVAL_LOSSES:
        options = RetrievalLossOptions.from_dict(config.loss, config.loss_options)
        num_classes = len(data.class_names or [])
        prototypes = None
        if options.class_weight and config.tune.init and data.images is not None:
            prototypes = class_mean_embeddings(model, data.images[0], data.class_ids, num_classes)
        return RetrievalLoss(options, num_classes, model.config.embed_dim, prototypes)
    base = create_loss(config.loss)
    return MultiFieldLoss(config.field_weights, base) if config.field_weights else base


@torch.no_grad()
def class_mean_embeddings(model: DualEncoder, features: torch.Tensor, class_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each class's mean (normalised) image embedding: prototypes that already sit where the start model puts the class."""
    embeds = torch.from_numpy(model.project_features(features.numpy(), "image"))
    keep = class_ids >= 0
    sums = torch.zeros(num_classes, embeds.shape[1]).index_add_(0, class_ids[keep], embeds[keep])
    return torch.nn.functional.normalize(sums, dim=-1)


def _retrieval_targets(data: TrainingData, batch: torch.Tensor, text_ids: dict[str, torch.Tensor], choice_matrix: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """What a retrieval loss needs besides embeddings: the batch's classes, and which drawn captions describe
    which image (any caption whose text is among the product's captions, so shared wordings count)."""
    targets = {}
    if data.class_ids is not None:
        targets["class_ids"] = data.class_ids[batch]
    if "captions" in text_ids and choice_matrix is not None:
        own = choice_matrix[batch]  # (B, C) caption text ids, -1 padded
        targets["caption_positives"] = (own[:, :, None] == text_ids["captions"][None, None, :]).any(dim=1)
    return targets


def choice_matrix(data: TrainingData) -> torch.Tensor:
    """Per product, its caption text ids as one padded (-1) tensor row."""
    width = max(len(c) for c in data.choices)
    matrix = torch.full((len(data.choices), width), -1, dtype=torch.long)
    for i, ids in enumerate(data.choices):
        matrix[i, : len(ids)] = torch.tensor(ids)
    return matrix


def _loss(
    loss_fn: nn.Module,
    image_embeds: torch.Tensor,
    text_embeds: dict[str, torch.Tensor],
    logit_scale,
    text_ids: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor] | None = None,
):
    if isinstance(loss_fn, RetrievalLoss):
        targets = targets or {}
        return loss_fn(
            image_embeds,
            class_ids=targets.get("class_ids"),
            caption_embeds=text_embeds.get("captions"),
            caption_positives=targets.get("caption_positives"),
            text_embeds=text_embeds.get("caption"),
            logit_scale=logit_scale,
            group_ids=text_ids.get("caption"),
        )
    if isinstance(loss_fn, MultiFieldLoss):
        present = {name: ids >= 0 for name, ids in text_ids.items()}
        return loss_fn(image_embeds, text_embeds, logit_scale, text_ids, present)
    return loss_fn(image_embeds, text_embeds["caption"], logit_scale, text_ids["caption"])


def _pick_texts(data: TrainingData, batch: torch.Tensor, fields: dict[str, float], loss_fn: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Per text key, each item's text index (-1: none): each multi-field text, and one random templated caption
    unless the multi-field loss leaves the ``caption`` term out. A retrieval loss takes ``captions``: several
    drawn per item (flattened, item by item), and the single ``caption`` only for its contrastive term."""
    picked = {name: ids[batch] for name, ids in data.fields.items()}
    if isinstance(loss_fn, RetrievalLoss):
        if loss_fn.needs_captions:
            per_image = loss_fn.options.captions_per_image
            picked["captions"] = torch.tensor([random.choice(data.choices[i]) for i in batch.tolist() for _ in range(per_image)])
        if loss_fn.contrastive is None:
            return picked
    if not fields or CAPTION_FIELD in fields:
        picked["caption"] = torch.tensor([random.choice(data.choices[i]) for i in batch.tolist()])
    return picked


def _items(ids: torch.Tensor, local: torch.Tensor, batch_size: int) -> torch.Tensor:
    """This rank's share of a text key: one id per item, or several per item (``captions``), item by item."""
    return ids[local] if len(ids) == batch_size else ids.view(batch_size, -1)[local].flatten()


class Batches:
    """Turns positions in the global batch into step inputs: cached features, or pixels/tokens for tuned towers."""

    def __init__(self, data: TrainingData, towers: dict[str, nn.Module], device: torch.device) -> None:
        self.data, self.towers, self.device = data, towers, device

    def texts(self, text_ids: dict[str, torch.Tensor]) -> dict[str, Any]:
        feats = self.data.text_feats
        if isinstance(feats, TokenStates):  # a token head: each key's states padded to its longest text, and the mask
            batches = {key: feats.batch(ids.clamp(min=0).tolist()) for key, ids in text_ids.items()}
            return {key: {"tokens": torch.from_numpy(t).to(self.device), "mask": torch.from_numpy(m).to(self.device)} for key, (t, m) in batches.items()}
        if "text" not in self.towers:
            return {key: feats[ids.clamp(min=0)].to(self.device) for key, ids in text_ids.items()}
        tokenize = self.towers["text"].tokenize
        return {
            key: {k: v.to(self.device) for k, v in tokenize([self.data.texts[i] for i in ids.clamp(min=0).tolist()]).items()}
            for key, ids in text_ids.items()
        }

    def images(self, batch: torch.Tensor, views: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
        if pixels is not None:
            return pixels.to(self.device)
        return self.data.images[views, batch].to(self.device)


def _photo_loader(data: TrainingData, config: TrainConfig, tower: nn.Module, plan: list[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[torch.Tensor]:
    """Pixels of each planned (local) batch, decoded in ``data.workers`` processes ahead of the training step."""
    dataset = PhotoDataset(data.products, config.image_views, tower.preprocess)
    batches = [list(zip(batch.tolist(), views.tolist())) for batch, views in plan]
    workers = config.data.workers
    # A private generator seeds the workers: drawing from the global RNG would shift every later dropout mask
    # depending on where the epoch (re)started, and a resumed run would no longer replay the original.
    loader = DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, prefetch_factor=2 if workers else None, generator=torch.Generator().manual_seed(0)
    )
    return iter(loader)


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per line), mirrored to TensorBoard scalars when asked."""

    def __init__(self, output: Path, append: bool, tensorboard: bool, epochs_done: int = 0) -> None:
        path = output / "metrics.jsonl"
        if append:
            _keep_epochs(path, epochs_done)
        self.file = open(path, "a" if append else "w")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tensorboard"))

    def write(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        if self.writer is not None and "epoch" in entry:
            for name, value in _scalars(entry).items():
                self.writer.add_scalar(name, value, entry["epoch"])
            self.writer.flush()

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def _keep_epochs(path: Path, epochs_done: int) -> None:
    """On resume, keep only the log lines of epochs the checkpoint holds: a kill after an epoch's line but
    before its checkpoint would otherwise leave that epoch logged twice (and a final WiSE-FT line too)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            epoch = json.loads(line).get("epoch")
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
        if epoch is not None and epoch <= epochs_done:
            kept.append(line + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def _scalars(entry: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numbers of a (nested) metrics entry as ``a/b/c`` scalar names; lists and strings are skipped."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_scalars(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            out[name] = float(value)
    return out


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


def _device(name: str) -> torch.device:
    """``optim.device``: ``auto`` is ``$MODALENS_DEVICE``, else CUDA when torch sees a GPU, else the CPU (``backends.device``)."""
    return torch.device(torch_device(name))


def _without_device(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config minus ``optim.device``: a checkpoint resumes on another device (it is saved on the CPU)."""
    return {**config, "optim": {k: v for k, v in config.get("optim", {}).items() if k != "device"}}


def _epoch_start(epoch: int) -> dict[str, Any]:
    """Where a run stands at the start of ``epoch``: its order and views not drawn yet, no step taken."""
    return {"epoch": epoch, "step": 0, "order": None, "views": None, "partners": None, "colour_off": None, "losses": []}


class Trainer:
    """One run: the step, the optimiser and everything a checkpoint must hold to resume exactly."""

    def __init__(self, config: TrainConfig, progress: bool) -> None:
        opt = config.optim
        random.seed(opt.seed)
        np.random.seed(opt.seed)
        torch.manual_seed(opt.seed)
        self.config, self.progress = config, progress
        self.device = _device(opt.device)
        self.env = init_distributed(self.device.type)
        if self.env.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.env.local_rank)
        self.model = build_model(config)
        self.colour_values = _colour_extra(self.model, config)
        # Before the trainable towers replace the model's frozen ones: reading (and caching) the photos once
        # goes through the fast inference back-end, not an eager torch tower.
        self.data = prepare(config, CachedEncoder(self.model, progress=progress and self.env.is_main))
        self.towers = {kind: trainable_tower(self.model, kind, getattr(config.tune, f"{kind}_tower")) for kind in ("image", "text") if config.tune.tunes(kind)}
        for kind in config.tune.frozen_heads():  # kept as tune.init left it
            getattr(self.model, f"{kind}_head").requires_grad_(False)
        self.loss_fn = make_loss(config, self.data, self.model)
        self.view_loss = create_loss("clip")
        # a product drawn by two sources is one identity: its two items are not each other's negatives
        ids: dict[str, int] = {}
        self.identity = torch.tensor([ids.setdefault(p.id, len(ids)) for p in self.data.products]) if config.view_consistency else None
        self.choices = choice_matrix(self.data) if isinstance(self.loss_fn, RetrievalLoss) and self.loss_fn.needs_captions else None
        self.start_state = trained_state(self.model, self.towers) if config.tune.wise_ft else None
        self.step_module = ContrastiveStep(self.model, self.towers).to(self.device)
        self.loss_fn.to(self.device)
        for tower in self.towers.values():
            train_mode(tower)
        self.wrapped: nn.Module = self.step_module
        if self.env.enabled:
            self.wrapped = nn.parallel.DistributedDataParallel(self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        groups = parameter_groups(self.model, self.loss_fn, self.towers, opt.lr, config.tune.tower_lr)
        self.optimizer = torch.optim.AdamW(groups, weight_decay=opt.weight_decay)
        self._check_sizes()
        self.steps_per_epoch = len(self.data) // opt.batch_size
        total = self.steps_per_epoch * opt.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _schedule(s, total, opt.warmup_steps))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=opt.precision == "fp16")
        self.generator = torch.Generator().manual_seed(opt.seed)
        self.batches = Batches(self.data, self.towers, self.device)
        self.val_encoder: _TuningEncoder | None = None
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int, dict | None] = (-float("inf"), -1, None)
        self.position: dict[str, Any] = _epoch_start(1)

    def _check_sizes(self) -> None:
        """What the config alone cannot know: the data's size, the validation split, the number of processes."""
        opt, tune = self.config.optim, self.config.tune
        if len(self.data) < opt.batch_size:
            raise ConfigError(f"optim.batch_size {opt.batch_size} is larger than the {len(self.data)} usable training products")
        if tune.wise_ft and not self.data.val_products:
            raise ConfigError(f"tune.wise_ft picks an interpolation on val, but split {self.config.data.val_split!r} has no products")
        if "image-retrieval" in self.config.validation:
            types = [p.get("article_type") for p in self.data.val_products if p.image and p.get("article_type")]
            if len(types) == len(set(types)):
                raise ConfigError("validation: image-retrieval needs val products sharing an article type; none do")
        local = opt.batch_size // self.env.world_size
        if opt.batch_size % self.env.world_size or local % opt.accumulate_steps:
            raise ConfigError(
                f"optim.batch_size {opt.batch_size} must split into {self.env.world_size} equal process shares, "
                f"each divisible by optim.accumulate_steps {opt.accumulate_steps}"
            )

    # -- checkpoints -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "weights": trained_state(self.model, self.towers),
            "start": self.start_state,
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "python_random": random.getstate(),
            "torch_random": torch.get_rng_state(),
            "cuda_random": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history,
            "best": self.best,
            "position": self.position,
        }

    def restore(self, saved: dict[str, Any], where: Path) -> None:
        if _without_device(saved["config"]) != _without_device(self.config.to_dict()):
            raise ValueError(f"{where} was written by a run with another config; train into a new output folder")
        load_trained_state(self.model, self.towers, saved["weights"])
        self.start_state = saved["start"]
        self.loss_fn.load_state_dict(saved["loss"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.generator.set_state(saved["generator"])
        random.setstate(saved["python_random"])
        torch.set_rng_state(saved["torch_random"])
        if saved.get("cuda_random") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_random"])
        self.history, self.best, self.position = saved["history"], saved["best"], saved["position"]

    # -- one optimiser step ------------------------------------------------------------------------
    def _autocast(self):
        precision = self.config.optim.precision
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype, enabled=precision != "fp32")

    def _forward(self, images: torch.Tensor, texts: dict[str, Any]):
        with self._autocast():
            image_embeds, text_embeds, scale = self.wrapped(images, texts)
        return image_embeds.float(), {k: v.float() for k, v in text_embeds.items()}, scale

    def _gathered(self, image_embeds, text_embeds):
        return gather(image_embeds, self.env), {k: gather(v, self.env) for k, v in text_embeds.items()}

    def step(
        self, batch: torch.Tensor, views: torch.Tensor, pixels: torch.Tensor | None, partners: torch.Tensor | None = None, colour_off: torch.Tensor | None = None
    ) -> float:
        """One optimiser step on a global batch; this rank encodes its slice, in ``accumulate_steps`` pieces.

        ``partners``: per item, the view paired with the one shown for ``view_consistency`` (cached features only).
        ``colour_off``: per item, whether ``colour_dropout`` zeroes its colour histogram (cached features only).
        """
        # drawn for the whole batch on every rank: the same RNG stream
        text_ids = _pick_texts(self.data, batch, self.config.field_weights, self.loss_fn)
        local = self.env.local_slice(torch.arange(len(batch)))
        local_ids = {k: _items(v, local, len(batch)) for k, v in text_ids.items()}
        images = self.batches.images(batch[local], views[local], pixels)
        if colour_off is not None and self.colour_values:
            images = images.clone()
            images[colour_off[local].to(self.device), -self.colour_values :] = 0
        texts = self.batches.texts(local_ids)
        targets = {k: v.to(self.device) for k, v in _retrieval_targets(self.data, batch, text_ids, self.choices).items()}
        text_ids = {k: v.to(self.device) for k, v in text_ids.items()}
        self.optimizer.zero_grad()
        pieces = self.config.optim.accumulate_steps
        if pieces == 1:
            image_embeds, text_embeds, scale = self._forward(images, texts)
            shown, text_embeds = self._gathered(image_embeds, text_embeds)
            loss = _loss(self.loss_fn, shown, text_embeds, scale, text_ids, targets)
            if partners is not None:
                loss = loss + self.config.view_consistency * self._view_consistency(shown, batch, partners, local, scale)
            self.scaler.scale(loss).backward()
        else:
            loss = self._accumulated(images, texts, text_ids, pieces, targets)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def _view_consistency(self, shown: torch.Tensor, batch: torch.Tensor, partners: torch.Tensor, local: torch.Tensor, scale) -> torch.Tensor:
        """InfoNCE between the shown images (the whole batch's, gathered) and their partner views; one product twice
        in a batch counts as one."""
        with self._autocast():
            partner_embeds = self.model.project_image(self.batches.images(batch[local], partners[local], None)).float()
        return self.view_loss(shown, gather(partner_embeds, self.env), scale, self.identity[batch].to(self.device))

    def _accumulated(self, images, texts, text_ids, pieces: int, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """The whole batch's gradient from ``pieces`` micro-batches (open_clip's ``accum_freq``).

        First every micro-batch is embedded without gradients; then each is
        embedded again with gradients and the loss over the whole batch
        (the others' cached embeddings as negatives) is back-propagated. The
        temperature's gradient is taken once, not ``pieces`` times.
        """
        chunks = [self._chunk(images, texts, i, pieces) for i in range(pieces)]
        states, cached = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(self._rng_state())  # each micro-batch's dropout masks, replayed in its gradient pass
                cached.append(self._forward(*chunk)[:2])
        for i, chunk in enumerate(chunks):
            last = i == pieces - 1
            sync = contextlib.nullcontext() if last or not self.env.enabled else self.wrapped.no_sync()
            with sync:
                self._set_rng_state(states[i])
                image_i, texts_i, scale = self._forward(*chunk)
                image_embeds = torch.cat([image_i if j == i else c[0] for j, c in enumerate(cached)])
                text_embeds = {k: torch.cat([texts_i[k] if j == i else c[1][k] for j, c in enumerate(cached)]) for k in texts_i}
                # The temperature's gradient is taken once, in the pass DDP synchronises (the last).
                loss = _loss(self.loss_fn, *self._gathered(image_embeds, text_embeds), scale if last else scale.detach(), text_ids, targets)
                self.scaler.scale(loss).backward()
        for p in self.loss_fn.parameters():  # the loss's own parameters (SigLIP's bias) saw the whole loss each pass
            if p.grad is not None:
                p.grad /= pieces
        return loss

    def _rng_state(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set_rng_state(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    @staticmethod
    def _chunk(images: torch.Tensor, texts: dict[str, Any], i: int, pieces: int):
        def part(x: torch.Tensor) -> torch.Tensor:
            return x.chunk(pieces)[i]

        texts_i = {k: {n: part(t) for n, t in v.items()} if isinstance(v, dict) else part(v) for k, v in texts.items()}
        return part(images), texts_i

    # -- epochs ------------------------------------------------------------------------------------
    def plan_epoch(self) -> None:
        """This epoch's order and per-step photo views, drawn up front so a resumed run replays them."""
        opt = self.config.optim
        order = epoch_order(self.data, self.config, self.generator)
        extra = len(self.config.image_views)
        views = torch.stack([_pick_views(opt.batch_size, extra, self.config.view_probability, self.generator) for _ in range(self.steps_per_epoch)])
        # drawn only when the term is on, so runs without it keep their random stream
        partners = _partner_views(views, extra, self.generator) if self.config.view_consistency else None
        colour_off = torch.rand(views.shape, generator=self.generator) < self.config.colour_dropout if self.colour_values else None
        self.position.update(order=order, views=views, partners=partners, colour_off=colour_off)

    def _pixels(self, first_step: int) -> Iterator[torch.Tensor | None]:
        if "image" not in self.towers:
            return iter(lambda: None, 0)
        bs, order, views = self.config.optim.batch_size, self.position["order"], self.position["views"]
        local = self.env.local_slice(torch.arange(bs))
        plan = [(order[s * bs : (s + 1) * bs][local], views[s][local]) for s in range(first_step, self.steps_per_epoch)]
        return _photo_loader(self.data, self.config, self.towers["image"], plan)

    def validate(self) -> dict[str, Any]:
        if not self.env.is_main:
            return {}
        if self.val_encoder is None:  # one encoder for the run: its feature stores are read from disk once
            self.val_encoder = _TuningEncoder(self.model, set(self.towers))
        return _validate(self.val_encoder, self.towers, self.data.val_products, self.config.validation)

    def train_mode(self) -> None:
        """Heads in training mode (dropout on), except a head kept frozen: its outputs are targets, not guesses."""
        self.model.train()
        for kind in self.config.tune.frozen_heads():
            getattr(self.model, f"{kind}_head").eval()


def train(config: TrainConfig, progress: bool = True, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
    """Train; ``resume`` continues from the output folder's checkpoint exactly where it stopped.

    ``stop_after_steps`` ends the run early (checkpoint written), as a kill would: for tests of resuming.
    """
    start = time.time()
    check_config(config)  # configs built in code get the same checks as files
    t = Trainer(config, progress)
    output = Path(config.output)
    checkpoint = Checkpoint(output)
    saved = checkpoint.load() if resume else None
    if saved is not None:
        t.restore(saved, checkpoint.path)
    main = t.env.is_main
    if main:
        output.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(output, append=saved is not None, tensorboard=config.tensorboard, epochs_done=len(t.history)) if main else None

    def record(entry: dict[str, Any]) -> None:
        if log:
            log.write(entry)

    if saved is None and (config.tune.init or t.towers) and main:
        before = t.validate()  # zero-shot and retrieval before any training: what fine-tuning must not lose
        record({"epoch": 0, "trains": describe(config.tune, t.towers), "val": before, "score": validation_score(before) if before else None})
    opt = config.optim
    total = t.steps_per_epoch * opt.epochs
    done = (t.position["epoch"] - 1) * t.steps_per_epoch + t.position["step"]
    bar = tqdm(total=total, initial=done, desc=f"train ({config.loss})", unit="step", disable=not (progress and main))
    steps_this_run = 0
    for epoch in range(t.position["epoch"], opt.epochs + 1):
        t.train_mode()
        if t.position["order"] is None:
            t.plan_epoch()
        pixels = t._pixels(t.position["step"])
        for step in range(t.position["step"], t.steps_per_epoch):
            batch = t.position["order"][step * opt.batch_size : (step + 1) * opt.batch_size]
            partners, colour_off = (_at_step(t.position.get(key), step) for key in ("partners", "colour_off"))
            t.position["losses"].append(t.step(batch, t.position["views"][step], next(pixels), partners, colour_off))
            t.position["step"] = step + 1
            bar.update(1)
            steps_this_run += 1
            at_checkpoint = config.checkpoint_every and (done + steps_this_run) % config.checkpoint_every == 0
            stopping = stop_after_steps is not None and steps_this_run >= stop_after_steps
            if (at_checkpoint or stopping) and main:
                checkpoint.save(t.snapshot())
            if stopping:
                bar.close()
                if log:
                    log.close()
                t.env.barrier()
                return TrainResult(output, t.best[1], t.best[0], t.history, time.time() - start)
        metrics = t.validate()
        mean_loss = float(np.mean(t.position["losses"]))
        score = validation_score(metrics) if metrics else -mean_loss
        entry = {"epoch": epoch, "loss": mean_loss, "score": score, "temperature": float(t.model.logit_scale.detach().exp()), "val": metrics}
        t.history.append(entry)
        record(entry)
        bar.set_postfix(loss=f"{mean_loss:.3f}", val=f"{score:.3f}")
        if score > t.best[0]:
            t.best = (score, epoch, trained_state(t.model, t.towers))
        t.position = _epoch_start(epoch + 1)
        if main:
            checkpoint.save(t.snapshot())
    bar.close()
    load_trained_state(t.model, t.towers, t.best[2])
    wise = _wise_ft(t, record) if config.tune.wise_ft and main else None
    if main:
        _save(t, output, wise)
    if log:
        log.close()
    t.env.barrier()
    return TrainResult(output, t.best[1], t.best[0], t.history, time.time() - start)


def _wise_ft(t: Trainer, record) -> dict[str, Any]:
    """Score each interpolation between the start and the best fine-tuned weights on val; keep the best."""
    best_state = trained_state(t.model, t.towers)
    results = []
    for alpha in sorted(set(t.config.tune.wise_ft)):
        load_trained_state(t.model, t.towers, interpolate(t.start_state, best_state, alpha))
        metrics = t.validate()
        score = validation_score(metrics) if metrics else 0.0
        results.append({"alpha": alpha, "score": score, "zero_shot": metrics.get("zero_shot", {}).get("ensemble", {}), "val": metrics})
    chosen = max(results, key=lambda r: r["score"])
    load_trained_state(t.model, t.towers, interpolate(t.start_state, best_state, chosen["alpha"]))
    summary = {"wise_ft": [{k: r[k] for k in ("alpha", "score", "zero_shot")} for r in results], "chosen_alpha": chosen["alpha"]}
    record(summary)
    return summary


def _save(t: Trainer, output: Path, wise: dict[str, Any] | None) -> None:
    config = t.config
    meta: dict[str, Any] = {"recipe": config.recipe, "best_epoch": t.best[1], "val_score": t.best[0], "train_config": config.to_dict()}
    if wise:
        meta["wise_ft"] = wise
    t.model.cpu()
    towers = {kind: tower.cpu().eval() for kind, tower in t.towers.items()}
    save_model(t.model, output, metadata={k: json.dumps(v) for k, v in meta.items()}, tuned_towers=towers)
    (output / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


__all__ = ["train", "TrainResult", "TrainingData", "Trainer", "build_model", "caption_table", "prepare", "validation_score"]
