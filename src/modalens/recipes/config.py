"""Training configs: a YAML (or JSON) file → dataclasses, with unknown keys rejected by name."""

from __future__ import annotations

import dataclasses
import importlib.util
import types
import typing
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..errors import InvalidInputError
from ..models.factory import DEFAULT_MODEL
from ..prompts import CaptionSetError, load_caption_set

T = TypeVar("T")


class ConfigError(InvalidInputError):
    pass


#: The multi-field loss's name for the plain loss's term: one random ``captions`` template per product and step.
CAPTION_FIELD = "caption"


@dataclass
class SourceConfig:
    """One training source: a catalogue spec (``modalens.catalog.read_catalog``), its split and its share."""

    catalog: str
    split: str | None = "train"
    #: Relative share of each epoch drawn from this source (up- or down-sampled to match).
    weight: float = 1.0
    limit: int | None = None
    #: N > 0: the source gives N seeded scenes (``modalens.scenes``) of its products instead of the products
    #: themselves, each captioned by ``captioner`` alone (scenes have no fields for the caption set's templates).
    scenes: int = 0
    #: Scene kind (``modalens.scenes.KINDS``: outfit, collage, mixed), products per scene [fewest, most], and seed.
    scene_kind: str = "mixed"
    scene_products: list[int] = field(default_factory=lambda: [2, 3])
    scene_seed: int = 0
    #: Also give each scene its hard-negative partner (``scenes.partners``: two garments' colours or places
    #: swapped) and keep the two in one batch, so the loss must bind attributes and places.
    scene_partners: bool = False
    #: A scene captioner (``modalens.scenes``: ``grounded``, or one registered by name) whose captions each item
    #: gets, ``caption_count`` of them, drawn per step with the caption set's; scenes use ``grounded`` unless told.
    captioner: str | None = None
    caption_count: int = 4

    def scene_captioner(self) -> str | None:
        """The captioner this source's items get captions from (None: the caption set alone)."""
        return self.captioner or ("grounded" if self.scenes else None)


@dataclass
class DataConfig:
    """Where training and validation products come from.

    With no ``sources`` the run trains on ``catalog``'s ``train_split``; with
    several, each epoch mixes them by ``weight``. Validation is always
    ``catalog``'s ``val_split``, so runs with different mixtures stay comparable.
    """

    catalog: str = "kagl"
    train_split: str = "train"
    val_split: str = "val"
    limit: int | None = None
    sources: list[SourceConfig] = field(default_factory=list)
    #: Worker processes decoding photos when the image tower trains (0: in the training process).
    workers: int = 0

    def train_sources(self) -> list[SourceConfig]:
        return self.sources or [SourceConfig(self.catalog, self.train_split, 1.0, self.limit)]


@dataclass
class OptimConfig:
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0
    #: Split each batch into this many micro-batches whose gradients add up to the whole batch's, exactly
    #: (embeddings of the other micro-batches serve as negatives, open_clip's ``accum_freq``): big
    #: contrastive batches on small memory.
    accumulate_steps: int = 1
    #: ``fp32``, ``bf16`` (autocast, CPU or GPU) or ``fp16`` (autocast + loss scaling, GPU only).
    precision: str = "fp32"
    #: ``cpu``, ``cuda``, or ``auto``: ``$MODALENS_DEVICE`` when set, else a GPU when torch sees one, else the CPU.
    device: str = "auto"


@dataclass
class TuneConfig:
    """What trains besides the heads: nothing (the default), some top blocks of a tower, or all of it.

    ``image_tower``/``text_tower``: 0 keeps the tower frozen (its features come
    from the cache); N trains its last N blocks (LiT-style locked image +
    tuned text is ``image_tower: 0, text_tower: all``); ``all`` trains it whole.
    ``init`` starts the heads from a trained model instead of random, and
    ``wise_ft`` lists interpolations between that start and the fine-tuned
    weights (WiSE-FT, 0 = start, 1 = fine-tuned) to score on val; the best is kept.
    """

    init: str | None = None
    image_tower: int | str = 0
    text_tower: int | str = 0
    tower_lr: float = 1e-5
    wise_ft: list[float] = field(default_factory=list)
    #: Which projection heads train: both (the default), or one side only, the other kept as ``init`` left it
    #: (MCIP and GPR-FT move the image side alone; the second stage of two-stage re-aligns the text side alone).
    heads: list[str] = field(default_factory=lambda: ["image", "text"])

    def tunes(self, kind: str) -> bool:
        return getattr(self, f"{kind}_tower") not in (0, None)

    def frozen_heads(self) -> list[str]:
        """The heads that do not train (``heads`` leaves them out), in model order."""
        return [kind for kind in ("image", "text") if kind not in self.heads]


@dataclass
class InstancesConfig:
    """The ``instances`` recipe (ECLIP instance queries): which scenes it learns from and how the decoder is shaped.

    Scenes come from ``data.catalog``'s ``data.train_split`` (validation scenes from ``data.val_split``),
    ``min_products``-``max_products`` garments each; ``decoder`` overrides
    :class:`~modalens.models.instance_decoder.InstanceDecoderConfig` (queries, width, layers, heads).
    """

    scenes: int = 5000
    val_scenes: int = 500
    min_products: int = 2
    max_products: int = 4
    kind: str = "mixed"
    seed: int = 0
    decoder: dict[str, Any] = field(default_factory=dict)
    #: Weights of the pretext tasks: instance ↔ its product's caption (inter-product), instance ↔ its
    #: product's own packshot embedding (intra-product), and each query's "holds a product" score.
    inter_weight: float = 1.0
    intra_weight: float = 1.0
    objectness_weight: float = 0.5


@dataclass
class TrainConfig:
    """One training run: which model, which data, which captions, how long, and where the result goes."""

    recipe: str = "contrastive-heads"
    model: str = DEFAULT_MODEL
    output: str = f"runs/{DEFAULT_MODEL}"
    data: DataConfig = field(default_factory=DataConfig)
    #: Caption templates: a set shipped in ``caption_sets/`` (``basic``, ``rich``) or a YAML file of that shape.
    caption_set: str = "basic"
    #: Which of the set's templates to use (empty: all of them).
    captions: list[str] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    #: Extra image views (``encoders.views``) shown instead of the photo with ``view_probability``.
    image_views: list[str] = field(default_factory=list)
    view_probability: float = 0.25
    #: Weight of a view-consistency term (0: off): each product's photo and one of its views, embedded side by
    #: side, must pick each other out of the batch (InfoNCE between the two image embeddings). The text loss only
    #: says a view means the same caption; this says it is the same picture, so backgrounds and framing cost less.
    view_consistency: float = 0.0
    #: Share of each epoch's batches (0-1) made of few article types: a run of ``batch_size × 4`` products is sorted
    #: by type before it is cut into batches, so a T-shirt's negatives are other T-shirts. Random batches mostly
    #: pit a T-shirt against shoes and watches; title→image R@1 is lost to products of the same type.
    grouped_batches: float = 0.0
    #: Share of training images (0-1) whose colour histogram (tower pooling ``mean+colour``) is zeroed, so the
    #: head also learns to read a photo without it: a greyscale or dimly lit photo's histogram says little, and a
    #: head that leans on colour alone loses such photos (Fashion-MNIST −0.03 without this).
    colour_dropout: float = 0.0
    #: ``clip`` (InfoNCE), ``siglip`` (pairwise sigmoid), or an image-retrieval loss (``losses.retrieval``):
    #: ``arcmargin`` (GPR-FT), ``multi-caption-arcmargin`` or ``mcip``.
    loss: str = "clip"
    #: Settings of a retrieval loss (``losses.RetrievalLossOptions``: scale, margin, weights, captions_per_image).
    loss_options: dict[str, float] = field(default_factory=dict)
    #: The classes ArcMargin separates (``recipes.data.CLASS_KEYS``): ``product`` (every photo and view of one
    #: product), ``article-type`` or ``article-type-colour``.
    classes: str | None = None
    #: Metric groups whose mean picks the best epoch on val: ``retrieval``, ``zero-shot``, ``image-retrieval``.
    validation: list[str] = field(default_factory=lambda: ["retrieval", "zero-shot"])
    #: Multi-field loss: weight per field of ``prompts.FIELD_TEMPLATES``, plus ``caption`` for the term on a
    #: random templated caption (the plain loss's); empty: that caption term alone.
    field_weights: dict[str, float] = field(default_factory=dict)
    #: Also checkpoint every N optimiser steps (0: at each epoch's end only).
    checkpoint_every: int = 0
    #: Overrides of the model config (for example ``{"embed_dim": 256}``).
    model_overrides: dict[str, Any] = field(default_factory=dict)
    #: Tower fine-tuning and WiSE-FT (default: frozen towers, heads only).
    tune: TuneConfig = field(default_factory=TuneConfig)
    #: Also write TensorBoard event files to ``output/tensorboard`` (needs ``pip install tensorboard``).
    tensorboard: bool = False
    #: The ``instances`` recipe's scenes and decoder (other recipes ignore it).
    instances: InstancesConfig = field(default_factory=InstancesConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.recipe != "instances":  # other runs' saved configs (heads metadata, checkpoints) stay as they were
            del out["instances"]
        for key in ("view_consistency", "grouped_batches", "colour_dropout"):  # likewise: off, a run saves the config it saved before the key
            if not out[key]:
                del out[key]
        return out


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        nested = _NESTED.get((cls, name))
        if nested is SourceConfig:
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{name}: expected a list of sources")
            kwargs[name] = [_build(SourceConfig, item, f"{where}.{name}[{i}]") for i, item in enumerate(value)]
        elif nested:
            kwargs[name] = _build(nested, value, f"{where}.{name}")
        else:
            kwargs[name] = _typed(value, hints[name], f"{where}.{name}")
    missing = [f.name for f in fields.values() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs]
    if missing:
        raise ConfigError(f"{where}: missing keys {missing}")
    return cls(**kwargs)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """Check a scalar against its field's type, so a wrong type fails here by name, not mid-run.

    A whole number is accepted where a float is expected, and so is a numeric
    string: YAML 1.1 reads ``lr: 3e-3`` (no dot) as the string "3e-3".
    """
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                continue
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind in (str, bool) and isinstance(value, kind):
            return value
        if typing.get_origin(kind) in (list, dict) and isinstance(value, typing.get_origin(kind)):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{where}: expected {names}, got {value!r}")


_NESTED: dict[tuple[type, str], type] = {
    (TrainConfig, "data"): DataConfig,
    (TrainConfig, "optim"): OptimConfig,
    (TrainConfig, "tune"): TuneConfig,
    (TrainConfig, "instances"): InstancesConfig,
    (DataConfig, "sources"): SourceConfig,
}


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot parse: {e}") from None
    config = _build(TrainConfig, data or {}, path.name)
    try:
        load_caption_set(config.caption_set).select(config.captions)
    except CaptionSetError as e:
        raise ConfigError(f"{path.name}: {e}") from None
    from ..encoders.views import is_view, known_views
    from ..prompts import FIELD_TEMPLATES

    unknown_fields = set(config.field_weights) - set(FIELD_TEMPLATES) - {CAPTION_FIELD}
    if unknown_fields:
        raise ConfigError(f"{path.name}: unknown fields {sorted(unknown_fields)}; known: {sorted(FIELD_TEMPLATES)}")

    unknown = [view for view in config.image_views if not is_view(view)]
    if unknown:
        raise ConfigError(f"{path.name}: unknown image views {unknown}; known: {', '.join(known_views())}")
    for key in ("view_probability", "grouped_batches"):
        if not 0 <= getattr(config, key) <= 1:
            raise ConfigError(f"{path.name}: {key} must be within [0, 1]")
    check_config(config, path.name)
    return config


PRECISIONS = ("fp32", "bf16", "fp16")


def check_config(config: TrainConfig, where: str = "config") -> None:
    """Value checks that a dataclass cannot express, each naming the key at fault."""
    _check_objective(config, where)
    for i, source in enumerate(config.data.train_sources()):
        if not source.weight > 0:
            raise ConfigError(f"{where}: data.sources[{i}].weight must be > 0, not {source.weight}")
        _check_scenes(source, f"{where}: data.sources[{i}]")
    for kind in ("image", "text"):
        value = getattr(config.tune, f"{kind}_tower")
        if not (value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)):
            raise ConfigError(f"{where}: tune.{kind}_tower must be 0 (frozen), a number of top blocks, or 'all'; not {value!r}")
    if any(not 0 <= a <= 1 for a in config.tune.wise_ft):
        raise ConfigError(f"{where}: tune.wise_ft interpolations must lie within [0, 1]")
    if config.tune.wise_ft and not (config.tune.init or config.tune.tunes("image") or config.tune.tunes("text")):
        raise ConfigError(f"{where}: tune.wise_ft interpolates from a start worth keeping: set tune.init or tune a tower")
    if config.optim.epochs < 1 or config.optim.batch_size < 1:
        raise ConfigError(f"{where}: optim.epochs and optim.batch_size must be at least 1")
    if config.optim.lr <= 0 or config.tune.tower_lr <= 0:
        raise ConfigError(f"{where}: optim.lr and tune.tower_lr must be positive")
    if config.optim.accumulate_steps < 1 or config.optim.batch_size % config.optim.accumulate_steps:
        raise ConfigError(f"{where}: optim.accumulate_steps must be ≥ 1 and divide optim.batch_size")
    if config.optim.precision not in PRECISIONS:
        raise ConfigError(f"{where}: optim.precision must be one of {PRECISIONS}, not {config.optim.precision!r}")
    if config.optim.device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"{where}: optim.device must be cpu, cuda or auto, not {config.optim.device!r}")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"{where}: tensorboard: true needs the tensorboard package (pip install 'modalens[tensorboard]')")
    if config.data.workers < 0:
        raise ConfigError(f"{where}: data.workers must be ≥ 0")
    if config.view_consistency < 0:
        raise ConfigError(f"{where}: view_consistency must be 0 (off) or a positive weight")
    if config.view_consistency and not config.image_views:
        raise ConfigError(f"{where}: view_consistency pairs a photo with its views; list some in image_views")
    if config.view_consistency and (config.tune.tunes("image") or config.optim.accumulate_steps != 1):
        raise ConfigError(f"{where}: view_consistency works on cached image features: no tuned image tower, accumulate_steps 1")
    if isinstance(config.colour_dropout, bool) or not 0 <= config.colour_dropout <= 1:
        raise ConfigError(f"{where}: colour_dropout must be within [0, 1], not {config.colour_dropout!r}")
    if config.colour_dropout and config.recipe == "instances":
        raise ConfigError(f"{where}: colour_dropout trains a model's heads; the instances recipe keeps them frozen")
    if config.colour_dropout and (config.tune.tunes("image") or config.optim.accumulate_steps != 1):
        raise ConfigError(f"{where}: colour_dropout works on cached image features: no tuned image tower, accumulate_steps 1")
    if config.recipe == "instances":
        _check_instances(config.instances, where)


def _check_instances(options: InstancesConfig, where: str) -> None:
    from ..models.instance_decoder import InstanceDecoderConfig
    from ..scenes import KINDS

    if options.scenes < 1 or options.val_scenes < 1:
        raise ConfigError(f"{where}: instances.scenes and instances.val_scenes must be at least 1")
    if not 1 <= options.min_products <= options.max_products <= 5:
        raise ConfigError(f"{where}: instances.min_products ≤ instances.max_products, within 1-5")
    if options.kind not in KINDS:
        raise ConfigError(f"{where}: instances.kind must be one of {', '.join(KINDS)}, not {options.kind!r}")
    try:
        decoder = InstanceDecoderConfig.from_dict(options.decoder)
    except (InvalidInputError, TypeError) as e:
        raise ConfigError(f"{where}: instances.decoder: {e}") from None
    if decoder.queries < options.max_products:
        raise ConfigError(f"{where}: instances.decoder.queries ({decoder.queries}) must be at least instances.max_products")


def _check_scenes(source: SourceConfig, where: str) -> None:
    """A source's scene and captioner keys: values that could not build scenes or captions, by name."""
    from ..scenes import KINDS
    from ..scenes.generator import GRIDS

    if source.scenes < 0:
        raise ConfigError(f"{where}.scenes must be ≥ 0 (0: the products themselves), not {source.scenes}")
    if source.scene_kind not in KINDS:
        raise ConfigError(f"{where}.scene_kind must be one of {', '.join(KINDS)}, not {source.scene_kind!r}")
    counts = source.scene_products
    if len(counts) != 2 or not all(isinstance(n, int) for n in counts) or not 1 <= counts[0] <= counts[1] <= max(GRIDS):
        raise ConfigError(f"{where}.scene_products is [fewest, most] products per scene, within 1-{max(GRIDS)}; not {counts!r}")
    if source.scene_partners and not source.scenes:
        raise ConfigError(f"{where}.scene_partners needs scenes: partners are scenes of a scene source")
    if source.caption_count < 1:
        raise ConfigError(f"{where}.caption_count must be ≥ 1, not {source.caption_count}")
    captioner = source.scene_captioner()
    if captioner is not None:
        from ..scenes import get_captioner

        try:
            get_captioner(captioner)
        except CaptionSetError as e:
            raise ConfigError(f"{where}.captioner: {e}") from None


VALIDATION_GROUPS = ("retrieval", "zero-shot", "image-retrieval")


def _check_objective(config: TrainConfig, where: str) -> None:
    """The loss, its options and classes, the heads that train, and what picks the best epoch."""
    from ..losses import LOSS_NAMES, RETRIEVAL_LOSSES, RetrievalLossOptions
    from .data import CLASS_KEYS

    if config.loss not in LOSS_NAMES:
        raise ConfigError(f"{where}: unknown loss {config.loss!r}; known: {', '.join(LOSS_NAMES)}")
    if config.classes is not None and config.classes not in CLASS_KEYS:
        raise ConfigError(f"{where}: unknown classes {config.classes!r}; known: {', '.join(CLASS_KEYS)}")
    if config.loss in RETRIEVAL_LOSSES:
        try:
            options = RetrievalLossOptions.from_dict(config.loss, config.loss_options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
        if options.class_weight and config.classes not in CLASS_KEYS:
            raise ConfigError(f"{where}: loss {config.loss!r} needs classes: one of {', '.join(CLASS_KEYS)}")
        if config.field_weights:
            raise ConfigError(f"{where}: field_weights (the multi-field loss) do not combine with loss {config.loss!r}")
    elif config.loss_options:
        raise ConfigError(f"{where}: loss_options are for the retrieval losses ({', '.join(RETRIEVAL_LOSSES)}), not {config.loss!r}")
    heads = config.tune.heads
    if not heads or set(heads) - {"image", "text"} or len(set(heads)) != len(heads):
        raise ConfigError(f"{where}: tune.heads lists 'image' and/or 'text', each once, not {heads!r}")
    if len(heads) < 2 and not config.tune.init:
        raise ConfigError(f"{where}: tune.heads {heads} keeps a head as it starts: set tune.init to the model it comes from")
    if not config.validation or set(config.validation) - set(VALIDATION_GROUPS):
        raise ConfigError(f"{where}: validation lists metric groups among {', '.join(VALIDATION_GROUPS)}, not {config.validation!r}")
