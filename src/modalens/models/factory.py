"""Create a model by name or from a folder, and save one (open_clip's factory, in small).

A model name resolves to ``model_configs/NAME.json``; its trained heads, when
shipped, are ``pretrained/NAME.safetensors``. A folder saved by
``save_model`` (``config.json`` + ``heads.safetensors``) loads the same way, so a
user's own training run is used exactly like the shipped default.

Importing this module does not import torch (it is imported by the functions
that build or save a model), so a torch-free server can name the default model,
resolve a config and read a model's identity.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NotFoundError
from ..paths import MODEL_CONFIG_DIR, PRETRAINED_DIR
from .config import ModelConfig

if TYPE_CHECKING:
    import torch

    from .dual_encoder import DualEncoder

#: The model every command, the server, training and export use unless told otherwise: the one place it is named.
DEFAULT_MODEL = "modalens-colour"
HEADS_FILE = "heads.safetensors"


class ModelNotFoundError(NotFoundError, FileNotFoundError):
    pass


def list_models() -> list[str]:
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


def _resolve(name_or_path: str | Path) -> tuple[ModelConfig, Path | None]:
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} has no config.json: not a saved modalens model")
        weights = path / HEADS_FILE
        return _with_local_towers(ModelConfig.load(path / "config.json"), path), weights if weights.exists() else None
    config_file = MODEL_CONFIG_DIR / f"{name_or_path}.json"
    if not config_file.exists():
        raise ModelNotFoundError(f"unknown model {str(name_or_path)!r}: not a folder, and not one of {', '.join(list_models())}")
    weights = PRETRAINED_DIR / f"{name_or_path}.safetensors"
    return ModelConfig.load(config_file), weights if weights.exists() else None


def _with_local_towers(config: ModelConfig, folder: Path) -> ModelConfig:
    """Fine-tuned tower weights are saved beside the heads and named relative to the folder: resolve them."""
    for spec in (config.image_tower, config.text_tower):
        if spec.get("tuned_weights") and not Path(spec["tuned_weights"]).is_absolute():
            spec["tuned_weights"] = str((folder / spec["tuned_weights"]).resolve())
    return config


def model_config(name_or_path: str | Path) -> ModelConfig:
    """The config of a named model or saved folder (a folder's tuned tower files resolved), without building it."""
    return _resolve(name_or_path)[0]


def create_model(name_or_path: str | Path = DEFAULT_MODEL, *, pretrained: bool = True) -> DualEncoder:
    """Build a model; with ``pretrained`` its trained heads must exist (a clear error otherwise).

    Callers that share a model (search, serve, eval, export) go through
    :func:`modalens.models.load`, which calls this once per handle.
    """
    from safetensors.torch import load_file

    from .dual_encoder import DualEncoder

    config, weights = _resolve(name_or_path)
    model = DualEncoder(config)
    if pretrained:
        if weights is None:
            raise ModelNotFoundError(f"model {config.name!r} has no trained heads; train it with `modalens train`")
        model.load_state_dict(load_file(str(weights)), strict=True)
    return model.eval()


def save_model(
    model: DualEncoder, folder: str | Path, metadata: dict[str, str] | None = None, tuned_towers: dict[str, torch.nn.Module] | None = None
) -> Path:
    """Write ``config.json`` + ``heads.safetensors`` (heads and temperature: frozen towers are named, not copied).

    ``tuned_towers`` (``{"image": tower, "text": tower}``) were fine-tuned: their
    weights go to ``image_tower.safetensors``/``text_tower.safetensors`` beside
    the heads, and the saved config points at them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ModelConfig.from_dict(model.config.to_dict())
    for kind in ("image", "text"):
        spec, file = getattr(config, f"{kind}_tower"), f"{kind}_tower.safetensors"
        if kind in (tuned_towers or {}):
            _atomic_save({k: v.detach().contiguous().cpu() for k, v in tuned_towers[kind].state_dict().items()}, folder / file)
            spec["tuned_weights"] = file
        elif spec.get("tuned_weights") and Path(spec["tuned_weights"]).is_absolute():
            # A tuned tower this model inherited (not retrained): copied in, so the folder stands alone.
            source = Path(spec["tuned_weights"])
            if source.resolve() != (folder / file).resolve():
                tmp = folder / f".{file}.tmp"
                shutil.copyfile(source, tmp)
                tmp.replace(folder / file)
            spec["tuned_weights"] = file
    config.save(folder / "config.json")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic_save(state, folder / HEADS_FILE, {k: json.dumps(v) if not isinstance(v, str) else v for k, v in (metadata or {}).items()})
    return folder


def _atomic_save(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(path)


def model_metadata(name_or_path: str | Path) -> dict[str, str]:
    _, weights = _resolve(name_or_path)
    if weights is None:
        return {}
    from safetensors import safe_open

    with safe_open(str(weights), "numpy") as f:  # only the header is read; "pt" would import torch
        return dict(f.metadata() or {})


def model_identity(model_name: str) -> str:
    """Name plus a digest of its trained heads, so re-trained heads never mix with old vectors.

    What a search index records as its model and an export records in its
    manifest: vectors are only comparable between the same identities.
    """
    meta = model_metadata(model_name)
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:10]
    return f"{model_name}@{digest}"


__all__ = [
    "create_model", "model_config", "save_model", "list_models", "model_metadata", "model_identity", "ModelNotFoundError",
    "DEFAULT_MODEL",
]
