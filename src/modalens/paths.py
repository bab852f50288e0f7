"""Where modalens keeps caches and the files it ships."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PRETRAINED_DIR = PACKAGE_DIR / "pretrained"
MODEL_CONFIG_DIR = PACKAGE_DIR / "models" / "model_configs"


#: A model's instance decoder file (an add-on beside its heads; :mod:`modalens.models.instance_decoder`):
#: ``<folder>/instances.safetensors`` for a saved model, ``pretrained/<name>.instances.safetensors`` for a named one.
INSTANCE_DECODER_FILE = "instances.safetensors"


def instance_decoder_path(name_or_folder: str | Path) -> Path:
    """Where a model's instance decoder lives (it may not exist); torch-free, so the export cache's key can ask."""
    folder = Path(name_or_folder)
    if folder.is_dir():
        return folder / INSTANCE_DECODER_FILE
    return PRETRAINED_DIR / f"{name_or_folder}.{INSTANCE_DECODER_FILE}"


def cache_dir() -> Path:
    """``$MODALENS_CACHE`` or ``~/.cache/modalens``: frozen-tower features and rendered datasets live here."""
    return Path(os.environ.get("MODALENS_CACHE") or Path.home() / ".cache" / "modalens")


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside a checkout (or ``$MODALENS_SHARED_DATA``), where the KAGL photos live; None if absent."""
    env = os.environ.get("MODALENS_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(PACKAGE_DIR.parents[2] / "shared" / "data")
    candidates.append(Path.cwd().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)
