"""CLIP ViT towers (open_clip architectures) from local checkpoints, run by transformers' CLIP modules.

``create_image_tower("clip-image", path=...)`` and ``create_text_tower("clip-text", path=...)``
accept, offline and without open_clip installed:

* a **Hugging Face CLIP folder** (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``, sharded or not, + tokenizer files), as
  ``CLIPModel.save_pretrained`` writes it;
* an **open_clip checkpoint file** (``.pt``/``.pth``/``.bin``/``.safetensors``
  holding a state dict, possibly under ``"state_dict"`` with ``module.``
  prefixes, as open_clip's training writes it). Its keys are converted to
  transformers' CLIP layout and the architecture is read off the tensor
  shapes; the two things shapes cannot tell, the number of attention heads
  and QuickGELU, come from ``arch=`` (an open_clip config name or dict), from
  :data:`OPEN_CLIP_ARCHS` when the shapes match a known architecture, or
  from open_clip's defaults (64-wide heads, exact GELU);
* nothing (``arch=..., pretrained=False``): random weights, for trying an
  architecture out.

Only one half is built per tower (vision or text), so an image tower does
not hold the text transformer in memory.

What a tower returns:

* ``ClipImageTower.forward`` → CLIP's projected image embedding (the CLS
  token after ``ln_post``, times ``proj``; ``output_dim`` = the embed dim,
  512 for ViT-B-32), unnormalised: what ``CLIPModel.get_image_features`` gives.
* ``ClipImageTower.forward_features`` → the patch tokens after ``ln_post``,
  projected by the same ``proj`` and laid out as (B, embed dim, h, w), h = w =
  image size / patch size (7×7 for ViT-B-32 at 224 px). Projected so that the
  map lives in the same space as the pooled vector (a patch can be compared
  with a text embedding, MaskCLIP-style, and a head sized for ``output_dim``
  fits both). The unprojected tokens are ``patch_tokens()``.
* ``ClipTextTower.forward`` → CLIP's projected text embedding (the EOT
  token after ``ln_final``, times ``text_projection``), unnormalised: what
  ``CLIPModel.get_text_features`` gives.

Preprocessing is modalens' letterbox on white (a cut-off sleeve is a
different product) with CLIP's mean and std, not CLIP's resize and centre
crop; for square product photos the two agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import ImageTower, TextTower
from .registry import register_image_tower, register_text_tower

#: OpenAI CLIP's pixel statistics (0..1 scale), used by open_clip's ViT checkpoints.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_VIT_B_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}
_VIT_L_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}
_VIT_H_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 12}

#: open_clip's ``model_configs/<name>.json`` for its plain ViT CLIPs (vision ``head_width`` defaults to 64,
#: ``mlp_ratio`` to 4). ``<name>-quickgelu`` selects the same architecture with QuickGELU.
OPEN_CLIP_ARCHS: dict[str, dict[str, Any]] = {
    "ViT-B-32": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": _VIT_B_TEXT},
    "ViT-B-32-256": {"embed_dim": 512, "vision_cfg": {"image_size": 256, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": _VIT_B_TEXT},
    "ViT-B-16": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16}, "text_cfg": _VIT_B_TEXT},
    "ViT-L-14": {"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": _VIT_L_TEXT},
    "ViT-L-14-336": {"embed_dim": 768, "vision_cfg": {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": _VIT_L_TEXT},
    "ViT-H-14": {
        "embed_dim": 1024,
        "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
        "text_cfg": _VIT_H_TEXT,
    },
    "ViT-g-14": {
        "embed_dim": 1024,
        "vision_cfg": {"image_size": 224, "layers": 40, "width": 1408, "head_width": 88, "mlp_ratio": 4.3637, "patch_size": 14},
        "text_cfg": _VIT_H_TEXT,
    },
    "ViT-bigG-14": {
        "embed_dim": 1280,
        "vision_cfg": {"image_size": 224, "layers": 48, "width": 1664, "head_width": 104, "mlp_ratio": 4.9231, "patch_size": 14},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1280, "heads": 20, "layers": 32},
    },
}

_QUICKGELU_SUFFIX = "-quickgelu"
#: State-dict entries that are not weights of either tower (temperature, OpenAI's JIT metadata, buffers).
_IGNORED_KEYS = {"logit_scale", "logit_bias", "input_resolution", "context_length", "vocab_size", "attn_mask"}
_HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))


class ClipCheckpointError(ValueError):
    """A file or folder is not a usable CLIP checkpoint (what is wrong is in the message)."""


# --------------------------------------------------------------------------------------------
# Architectures: open_clip config dicts → transformers configs
# --------------------------------------------------------------------------------------------


def open_clip_arch(arch: str | Path | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(label, open_clip config dict)`` from a known name, a ``model_configs``-style JSON file, or a dict."""
    if isinstance(arch, Mapping):
        return str(arch.get("name", "custom")), dict(arch)
    text = str(arch)
    if text.endswith(".json"):
        try:
            return Path(text).stem, json.loads(Path(text).read_text())
        except (OSError, ValueError) as e:
            raise ClipCheckpointError(f"arch file {text}: {e}") from None
    base = text.removesuffix(_QUICKGELU_SUFFIX)
    if base not in OPEN_CLIP_ARCHS:
        raise ClipCheckpointError(f"unknown open_clip arch {text!r}; known: {', '.join(OPEN_CLIP_ARCHS)} (each also with {_QUICKGELU_SUFFIX})")
    config = json.loads(json.dumps(OPEN_CLIP_ARCHS[base]))  # a deep copy
    if base != text:
        config["quick_gelu"] = True
    return text, config


def _activation(arch: Mapping[str, Any], quick_gelu: bool | None) -> str:
    """open_clip uses exact GELU unless the config says QuickGELU (the OpenAI-trained weights need it)."""
    quick = bool(arch.get("quick_gelu", False)) if quick_gelu is None else quick_gelu
    return "quick_gelu" if quick else "gelu"


def _part(arch: Mapping[str, Any], part: str, needed: Sequence[str]) -> Mapping[str, Any]:
    """``arch[part]``, or an error naming the open_clip config fields that are missing."""
    cfg = arch.get(part) if isinstance(arch.get(part), Mapping) else {}
    missing = [f"{part}.{f}" for f in needed if f not in cfg] + ([] if "embed_dim" in arch else ["embed_dim"])
    if missing:
        raise ClipCheckpointError(f"open_clip arch lacks {', '.join(missing)}")
    return cfg


def _mlp_width(cfg: Mapping[str, Any]) -> int:
    """open_clip's ``int(width * mlp_ratio)``; ``mlp_width`` (read off a checkpoint) is exact and wins."""
    return int(cfg.get("mlp_width") or int(cfg["width"] * float(cfg.get("mlp_ratio", 4.0))))


def vision_config_from_arch(arch: Mapping[str, Any], quick_gelu: bool | None = None) -> Any:
    """transformers ``CLIPVisionConfig`` (with the projection) for an open_clip config dict."""
    from transformers import CLIPVisionConfig

    cfg = _part(arch, "vision_cfg", ("width", "layers", "patch_size", "image_size"))
    width = int(cfg["width"])
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=_mlp_width(cfg),
        num_hidden_layers=int(cfg["layers"]),
        num_attention_heads=max(1, width // int(cfg.get("head_width", 64))),
        image_size=int(cfg["image_size"]),
        patch_size=int(cfg["patch_size"]),
        projection_dim=int(arch["embed_dim"]),
        hidden_act=_activation(arch, quick_gelu),
        layer_norm_eps=1e-5,
    )


def text_config_from_arch(arch: Mapping[str, Any], quick_gelu: bool | None = None) -> Any:
    """transformers ``CLIPTextConfig`` for an open_clip config dict.

    ``eos_token_id=2`` selects transformers' legacy pooling, the token with
    the largest id, which is exactly open_clip's ``text.argmax(dim=-1)``
    (the EOT token has the largest id in CLIP's vocabulary).
    """
    from transformers import CLIPTextConfig

    cfg = _part(arch, "text_cfg", ("width", "layers"))
    width = int(cfg["width"])
    return CLIPTextConfig(
        vocab_size=int(cfg.get("vocab_size", 49408)),
        hidden_size=width,
        intermediate_size=_mlp_width(cfg),
        num_hidden_layers=int(cfg["layers"]),
        num_attention_heads=int(cfg.get("heads", max(1, width // 64))),
        max_position_embeddings=int(cfg.get("context_length", 77)),
        projection_dim=int(arch["embed_dim"]),
        hidden_act=_activation(arch, quick_gelu),
        layer_norm_eps=1e-5,
        eos_token_id=2,
        bos_token_id=None,  # open_clip's text tower uses neither; CLIP's ids would be out of a small vocabulary
        pad_token_id=None,
    )


# --------------------------------------------------------------------------------------------
# Reading checkpoints
# --------------------------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or torch file, unwrapped from ``"state_dict"`` and ``module.`` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CLIP checkpoint at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        data: Any = load_file(str(path))
    else:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # a TorchScript archive, a pickle with foreign classes, not a torch file at all
            raise ClipCheckpointError(f"{path} cannot be read as a state dict ({type(e).__name__}: {str(e)[:200]})") from None
    while isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]  # open_clip's training checkpoints: {"epoch", "name", "state_dict", "optimizer"}
    if not isinstance(data, Mapping):
        raise ClipCheckpointError(f"{path} holds a {type(data).__name__}, not a state dict")
    return {_strip_wrappers(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _strip_wrappers(key: str) -> str:
    """DistributedDataParallel adds ``module.``, torch.compile ``_orig_mod.``."""
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face model folder, single file or shards."""
    name = next((n for n in _HF_WEIGHT_FILES if (folder / n).is_file()), None)
    if name is None:
        raise ClipCheckpointError(f"{folder} has a config.json but no weights ({' or '.join(_HF_WEIGHT_FILES)})")
    if not name.endswith(".index.json"):
        return read_state_dict(folder / name)
    shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
    out: dict[str, torch.Tensor] = {}
    for shard in shards:
        out.update(read_state_dict(folder / shard))
    return out


def _digest(files: Sequence[Path], config: Any) -> str:
    """A cheap identity for weights (size, first and last MiB of each file) and config (heads, activation).

    It goes into the tower's name, which keys the feature cache and the ONNX
    exports: two checkpoints, or one loaded with other heads or QuickGELU, never share them.
    """
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for file in files:
        size = file.stat().st_size
        h.update(f"{file.name}|{size}".encode())
        with open(file, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()[:8]


# --------------------------------------------------------------------------------------------
# open_clip key layout → transformers key layout
# --------------------------------------------------------------------------------------------


class _Keys:
    """Takes tensors out of one tower's part of an open_clip state dict and says what was missing or left over."""

    def __init__(self, state: Mapping[str, torch.Tensor], prefix: str, origin: str, tower: str) -> None:
        self.prefix, self.origin, self.tower = prefix, origin, tower
        self.left = {k: v for k, v in state.items() if k.startswith(prefix)}
        self.missing: list[str] = []

    def take(self, key: str) -> torch.Tensor:
        value = self.left.pop(self.prefix + key, None)
        if value is None:
            self.missing.append(self.prefix + key)
            return torch.empty(0)
        return value.float()

    def block_count(self, stack: str) -> int:
        return _blocks(self.left, self.prefix + stack)

    def finish(self) -> None:
        if self.missing:
            raise ClipCheckpointError(
                f"{self.origin} is not an open_clip ViT checkpoint for the {self.tower} tower: missing {_listing(self.missing)}"
            )
        if self.left:
            raise ClipCheckpointError(
                f"{self.origin}: unsupported open_clip {self.tower} tower variant (only plain ViT CLIPs load); "
                f"keys not understood: {_listing(sorted(self.left))}"
            )


def _listing(keys: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(keys[:most])
    return f"{shown} (+{len(keys) - most} more)" if len(keys) > most else shown


def _convert_blocks(keys: _Keys, stack: str, target: str, out: dict[str, torch.Tensor]) -> None:
    """open_clip resblocks (fused in_proj, c_fc/c_proj) → transformers encoder layers (q/k/v, fc1/fc2)."""
    for i in range(keys.block_count(stack)):
        src, dst = f"{stack}.{i}.", f"{target}.{i}."
        for part in ("weight", "bias"):
            fused = keys.take(f"{src}attn.in_proj_{part}")  # rows: q, then k, then v
            for name, rows in zip("qkv", fused.chunk(3) if fused.numel() else (fused,) * 3):
                out[f"{dst}self_attn.{name}_proj.{part}"] = rows
            out[f"{dst}self_attn.out_proj.{part}"] = keys.take(f"{src}attn.out_proj.{part}")
            out[f"{dst}layer_norm1.{part}"] = keys.take(f"{src}ln_1.{part}")
            out[f"{dst}layer_norm2.{part}"] = keys.take(f"{src}ln_2.{part}")
            out[f"{dst}mlp.fc1.{part}"] = keys.take(f"{src}mlp.c_fc.{part}")
            out[f"{dst}mlp.fc2.{part}"] = keys.take(f"{src}mlp.c_proj.{part}")


def open_clip_vision_to_hf(state: Mapping[str, torch.Tensor], origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``visual.*`` part of an open_clip state dict in ``CLIPVisionModelWithProjection``'s layout."""
    if not any(k.startswith("visual.") for k in state):
        raise ClipCheckpointError(f"{origin} has no image tower: no 'visual.*' keys (found {_listing(sorted(state))})")
    keys = _Keys(state, "visual.", origin, "image")
    out = {
        "vision_model.embeddings.patch_embedding.weight": keys.take("conv1.weight"),
        "vision_model.embeddings.class_embedding": keys.take("class_embedding"),
        "vision_model.embeddings.position_embedding.weight": keys.take("positional_embedding"),
        "vision_model.pre_layrnorm.weight": keys.take("ln_pre.weight"),
        "vision_model.pre_layrnorm.bias": keys.take("ln_pre.bias"),
        "vision_model.post_layernorm.weight": keys.take("ln_post.weight"),
        "vision_model.post_layernorm.bias": keys.take("ln_post.bias"),
        "visual_projection.weight": keys.take("proj").T.contiguous(),  # open_clip: x @ proj; Linear: x @ W.T
    }
    _convert_blocks(keys, "transformer.resblocks", "vision_model.encoder.layers", out)
    keys.finish()
    return out


def _text_prefix(state: Mapping[str, torch.Tensor]) -> str:
    """``""`` for open_clip's CLIP, ``"text."`` for its CustomTextCLIP (same TextTransformer, nested)."""
    if "text.token_embedding.weight" in state:
        return "text."
    return ""


def open_clip_text_to_hf(state: Mapping[str, torch.Tensor], origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The text part of an open_clip state dict in ``CLIPTextModelWithProjection``'s layout."""
    prefix = _text_prefix(state)
    text_state = {k: v for k, v in state.items() if not k.startswith("visual.") and k.split(".")[-1] not in _IGNORED_KEYS}
    if f"{prefix}token_embedding.weight" not in text_state:
        raise ClipCheckpointError(f"{origin} has no open_clip text tower: no 'token_embedding.weight' (found {_listing(sorted(state))})")
    keys = _Keys(text_state, prefix, origin, "text")
    out = {
        "text_model.embeddings.token_embedding.weight": keys.take("token_embedding.weight"),
        "text_model.embeddings.position_embedding.weight": keys.take("positional_embedding"),
        "text_model.final_layer_norm.weight": keys.take("ln_final.weight"),
        "text_model.final_layer_norm.bias": keys.take("ln_final.bias"),
        "text_projection.weight": keys.take("text_projection").T.contiguous(),
    }
    _convert_blocks(keys, "transformer.resblocks", "text_model.encoder.layers", out)
    keys.finish()
    return out


def _blocks(state: Mapping[str, torch.Tensor], stack: str) -> int:
    pattern = re.compile(re.escape(stack) + r"\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def infer_vision_cfg(hf_state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """open_clip ``vision_cfg`` (less head width) read off a converted vision state dict's shapes."""
    width, _, patch, _ = hf_state["vision_model.embeddings.patch_embedding.weight"].shape
    positions = hf_state["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise ClipCheckpointError(f"positional embedding of {positions} rows is not a square grid + CLS")
    return {
        "width": int(width),
        "patch_size": int(patch),
        "image_size": int(grid * patch),
        "layers": _blocks(hf_state, "vision_model.encoder.layers"),
        "mlp_width": int(hf_state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
    }


def infer_text_cfg(hf_state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """open_clip ``text_cfg`` (less heads) read off a converted text state dict's shapes."""
    vocab, width = hf_state["text_model.embeddings.token_embedding.weight"].shape
    return {
        "width": int(width),
        "vocab_size": int(vocab),
        "context_length": int(hf_state["text_model.embeddings.position_embedding.weight"].shape[0]),
        "layers": _blocks(hf_state, "text_model.encoder.layers"),
        "mlp_width": int(hf_state["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
    }


def _known_arch_matching(part: str, inferred: Mapping[str, Any]) -> dict[str, Any] | None:
    """A built-in arch whose ``part`` (vision_cfg / text_cfg) has the same shapes, for the head count shapes cannot show."""
    fields = ("width", "layers", "patch_size", "image_size") if part == "vision_cfg" else ("width", "layers", "vocab_size")
    for config in OPEN_CLIP_ARCHS.values():
        if all(config[part].get(f) == inferred.get(f) for f in fields):
            return config
    return None


def arch_from_shapes(hf_state: Mapping[str, torch.Tensor], part: str) -> dict[str, Any]:
    """An open_clip config dict for one tower, from a converted state dict (heads: a matching known arch, else 64-wide)."""
    if part == "vision_cfg":
        cfg = infer_vision_cfg(hf_state)
        embed_dim = hf_state["visual_projection.weight"].shape[0]
    else:
        cfg = infer_text_cfg(hf_state)
        embed_dim = hf_state["text_projection.weight"].shape[0]
    known = _known_arch_matching(part, cfg)
    if part == "vision_cfg":
        cfg["head_width"] = known[part].get("head_width", 64) if known else 64
    else:
        cfg["heads"] = known[part]["heads"] if known else max(1, cfg["width"] // 64)
    return {"embed_dim": int(embed_dim), part: cfg}


# --------------------------------------------------------------------------------------------
# Resolving path / arch / pretrained into (config, weights)
# --------------------------------------------------------------------------------------------


@dataclass
class ClipHalf:
    """One tower's transformers config and weights (None: random), plus what the tower needs around it."""

    config: Any
    state: dict[str, torch.Tensor] | None
    label: str
    folder: Path | None = None  # where tokenizer / preprocessor files may lie
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD


_HALVES = {
    "vision": (("vision_model.", "visual_projection."), "vision_cfg", open_clip_vision_to_hf, vision_config_from_arch),
    "text": (("text_model.", "text_projection."), "text_cfg", open_clip_text_to_hf, text_config_from_arch),
}


def resolve_clip(
    half: str,
    path: str | Path | None = None,
    *,
    arch: str | Path | Mapping[str, Any] | None = None,
    pretrained: bool = True,
    quick_gelu: bool | None = None,
) -> ClipHalf:
    """The ``"vision"`` or ``"text"`` half of a CLIP checkpoint (HF folder, open_clip file) or of a random ``arch``."""
    if path is None:
        if pretrained or arch is None:
            raise ClipCheckpointError("a CLIP tower needs path= (a local checkpoint), or arch= with pretrained=False for random weights")
        label, config = open_clip_arch(arch)
        make_config = _HALVES[half][3]
        return ClipHalf(make_config(config, quick_gelu), None, f"{label}-random")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no CLIP checkpoint at {path}")
    if path.is_dir():
        if arch is not None or quick_gelu is not None:
            raise ClipCheckpointError(f"{path} is a Hugging Face folder: its config.json sets the architecture; drop arch=/quick_gelu=")
        return _resolve_hf_folder(half, path)
    return _resolve_open_clip_file(half, path, arch, quick_gelu)


def _resolve_hf_folder(half: str, folder: Path) -> ClipHalf:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ClipCheckpointError(f"{folder} is not a Hugging Face model folder (no config.json); for an open_clip checkpoint give the file")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != "clip":
        raise ClipCheckpointError(f"{folder} holds a {model_type!r} model, not a CLIP model (model_type 'clip')")
    from transformers import CLIPConfig

    full = CLIPConfig.from_pretrained(str(folder), local_files_only=True)
    config = full.vision_config if half == "vision" else full.text_config
    config.projection_dim = full.projection_dim  # transformers keeps it on the parent config only
    prefixes = _HALVES[half][0]
    weights = _read_hf_weights(folder)
    state = {k: v.float() for k, v in weights.items() if k.startswith(prefixes) and not k.endswith("position_ids")}
    files = [folder / n for n in _HF_WEIGHT_FILES if (folder / n).is_file()]
    mean, std = _pixel_stats(folder)
    return ClipHalf(config, state, f"{folder.name}-{_digest(files, config)}", folder, mean, std)


def _pixel_stats(folder: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``image_mean`` / ``image_std`` from ``preprocessor_config.json`` when present, else OpenAI CLIP's."""
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return OPENAI_MEAN, OPENAI_STD
    data = json.loads(file.read_text())
    mean, std = data.get("image_mean", OPENAI_MEAN), data.get("image_std", OPENAI_STD)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]


def _resolve_open_clip_file(half: str, file: Path, arch: Any, quick_gelu: bool | None) -> ClipHalf:
    _, part, convert, make_config = _HALVES[half]
    state = convert(read_state_dict(file), origin=str(file))
    arch_config = open_clip_arch(arch)[1] if arch is not None else arch_from_shapes(state, part)
    config = make_config(arch_config, quick_gelu)
    return ClipHalf(config, state, f"{file.stem}-{_digest([file], config)}", file.parent)


def build_clip_model(clip: ClipHalf, half: str, seed: int = 0) -> nn.Module:
    """``CLIPVisionModelWithProjection`` / ``CLIPTextModelWithProjection`` with the checkpoint's weights (or seeded random ones)."""
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    cls = CLIPVisionModelWithProjection if half == "vision" else CLIPTextModelWithProjection
    if clip.state is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(clip.config).eval()
    with _skipped_init():  # every weight is overwritten below: a random init of a ViT-L would cost seconds
        model = cls(clip.config)
    _load_strict(model, clip.state, clip.label)
    return model.eval()


def _skipped_init() -> contextlib.AbstractContextManager[Any]:
    """transformers' ``no_init_weights`` (its home moved in 5.0); no context where neither exists."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # type: ignore[no-redef]
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], label: str) -> None:
    """Every weight present and of the right shape, or an error naming which are not."""
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} ≠ model {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s]
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches {_listing(wrong, 4)}")
    if problems:
        raise ClipCheckpointError(f"CLIP checkpoint {label} does not fit its architecture: {'; '.join(problems)}")
    model.load_state_dict(state, strict=False)  # position_ids are buffers the model makes itself


# --------------------------------------------------------------------------------------------
# Towers
# --------------------------------------------------------------------------------------------


class ClipImageTower(ImageTower):
    """A CLIP ViT: ``forward`` is the projected CLS embedding, ``forward_features`` the projected patch-token map."""

    def __init__(self, model: nn.Module, name: str, mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD) -> None:
        super().__init__()
        config = model.config
        self.model = model
        self.name = name
        self.output_dim = int(config.projection_dim)
        self.image_size = int(config.image_size)
        self.grid = self.image_size // int(config.patch_size)
        self.pixel_mean = tuple(255.0 * m for m in mean)  # type: ignore[assignment]
        self.pixel_std = tuple(255.0 * s for s in std)  # type: ignore[assignment]
        self.eval()

    def tuning_blocks(self) -> list[nn.Module]:
        """Input to output, the units fine-tuning unfreezes from the top: patch embedding, each layer, ln_post + proj."""
        vision = self.model.vision_model
        return [
            nn.ModuleList([vision.embeddings, vision.pre_layrnorm]),
            *vision.encoder.layers,
            nn.ModuleList([vision.post_layernorm, self.model.visual_projection]),
        ]

    def patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, h·w, width): the patch tokens after ``ln_post``, before the projection (open_clip's ``output_tokens``)."""
        vision = self.model.vision_model
        hidden = vision(pixel_values=pixels).last_hidden_state
        return vision.post_layernorm(hidden[:, 1:])

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        projected = self.model.visual_projection(self.patch_tokens(pixels))
        return projected.transpose(1, 2).reshape(projected.shape[0], projected.shape[2], self.grid, self.grid)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).image_embeds


class ClipTextTower(TextTower):
    """A CLIP text transformer (causal, pooled at the EOT token) + its projection; the tokenizer is CLIP's BPE."""

    def __init__(self, model: nn.Module, tokenizer: Any, name: str, max_length: int | None = None) -> None:
        super().__init__()
        context = int(model.config.max_position_embeddings)
        if max_length is not None and max_length > context:
            raise ValueError(f"max_length {max_length} is longer than the model's context of {context} tokens")
        self.transformer = model  # the attribute name the ONNX exporter reads max_position_embeddings from
        self.tokenizer = tokenizer
        self.name = name
        self.output_dim = int(model.config.projection_dim)
        self.max_length = int(max_length or context)
        self.normalize = False
        self.eval()

    def tuning_blocks(self) -> list[nn.Module]:
        """Input to output, the units fine-tuning unfreezes from the top: embeddings, each layer, ln_final + projection."""
        text = self.transformer.text_model
        return [text.embeddings, *text.encoder.layers, nn.ModuleList([text.final_layer_norm, self.transformer.text_projection])]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        texts = [str(t) for t in texts]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: tokens[k] for k in ("input_ids", "attention_mask")}

    def forward_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected embedding and the last layer's token states (batch, tokens, hidden size), one pass."""
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return out.text_embeds, out.last_hidden_state

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        return self.forward_states(input_ids, attention_mask)[0]

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.forward_tokens(**self.tokenize(texts))


def load_clip_tokenizer(tokenizer: str | Path | None, beside: Path | None, label: str) -> Any:
    """CLIP's tokenizer from ``tokenizer=`` or the checkpoint's folder; a clear error when neither has one."""
    candidates = [Path(tokenizer).expanduser()] if tokenizer is not None else ([beside] if beside is not None else [])
    for folder in candidates:
        if any(all((folder / f).is_file() for f in files) for files in _TOKENIZER_FILE_SETS):
            from transformers import CLIPTokenizerFast

            return CLIPTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    where = f"tokenizer={tokenizer}" if tokenizer is not None else (str(beside) if beside else "no folder (random weights)")
    raise FileNotFoundError(
        f"CLIP text tower {label}: no tokenizer in {where}; it needs tokenizer.json, or vocab.json + merges.txt "
        "(OpenAI's CLIP BPE, 49408 tokens, as in any Hugging Face CLIP model folder): pass tokenizer=<folder>"
    )


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@register_image_tower("clip-image")
def _clip_image(
    path: str | Path | None = None,
    *,
    arch: str | Path | Mapping[str, Any] | None = None,
    pretrained: bool = True,
    quick_gelu: bool | None = None,
    seed: int = 0,
) -> ClipImageTower:
    """CLIP image tower from a HF CLIP folder, an open_clip checkpoint file, or ``arch`` + ``pretrained=False``."""
    _quiet_transformers()
    clip = resolve_clip("vision", path, arch=arch, pretrained=pretrained, quick_gelu=quick_gelu)
    label = clip.label if clip.state is not None else f"{clip.label}{seed}"
    return ClipImageTower(build_clip_model(clip, "vision", seed), f"clip-image:{label}", clip.mean, clip.std)


@register_text_tower("clip-text")
def _clip_text(
    path: str | Path | None = None,
    *,
    arch: str | Path | Mapping[str, Any] | None = None,
    pretrained: bool = True,
    quick_gelu: bool | None = None,
    tokenizer: str | Path | None = None,
    max_length: int | None = None,
    seed: int = 0,
) -> ClipTextTower:
    """CLIP text tower; the tokenizer comes from ``tokenizer=`` or the checkpoint's folder."""
    _quiet_transformers()
    clip = resolve_clip("text", path, arch=arch, pretrained=pretrained, quick_gelu=quick_gelu)
    label = clip.label if clip.state is not None else f"{clip.label}{seed}"
    bpe = load_clip_tokenizer(tokenizer, clip.folder, label)
    return ClipTextTower(build_clip_model(clip, "text", seed), bpe, f"clip-text:{label}", max_length)
