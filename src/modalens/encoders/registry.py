"""Name → constructor registries for image and text towers (timm style).

A tower registers itself with a decorator; ``create_image_tower(name)`` builds
any of them. Later back-ends (open_clip ViTs, ONNX Runtime, larger text
encoders) plug in by adding a module that registers a name — nothing else in
modalens changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=Callable[..., Any])

_IMAGE_TOWERS: dict[str, Callable[..., Any]] = {}
_TEXT_TOWERS: dict[str, Callable[..., Any]] = {}


class UnknownTowerError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _register(table: dict[str, Callable[..., Any]], name: str) -> Callable[[T], T]:
    def decorator(fn: T) -> T:
        if name in table:
            raise ValueError(f"tower {name!r} is registered twice")
        table[name] = fn
        return fn

    return decorator


def register_image_tower(name: str) -> Callable[[T], T]:
    return _register(_IMAGE_TOWERS, name)


def register_text_tower(name: str) -> Callable[[T], T]:
    return _register(_TEXT_TOWERS, name)


def _create(table: dict[str, Callable[..., Any]], kind: str, name: str, **kwargs: Any) -> Any:
    _import_builtin_towers()
    try:
        factory = table[name]
    except KeyError:
        raise UnknownTowerError(f"unknown {kind} tower {name!r}; known: {', '.join(sorted(table))}") from None
    tuned_weights = kwargs.pop("tuned_weights", None)
    tower = factory(**kwargs)
    return load_tuned_weights(tower, tuned_weights) if tuned_weights else tower


def load_tuned_weights(tower: Any, path: str | Path) -> Any:
    """Replace a tower's weights by a fine-tuned copy (a safetensors state dict written by ``modalens train``).

    The tower's name gains the file's digest: cached features and ONNX exports
    are keyed by the name, so a tuned tower never reuses the frozen one's.
    """
    from safetensors.torch import load_file

    from ..backends.runtime import sha256_file  # torch-free, numpy-only

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tuned tower weights {path} do not exist")
    digest = sha256_file(path)
    try:
        tower.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit tower {tower.name!r}: {str(e).splitlines()[0]}") from None
    tower.name = f"{tower.name}+tuned-{digest[:12]}"
    return tower.eval()


def create_image_tower(name: str, **kwargs: Any):
    """Build a registered image tower, e.g. ``create_image_tower("efficientnet-lite0")``."""
    return _create(_IMAGE_TOWERS, "image", name, **kwargs)


def create_text_tower(name: str, **kwargs: Any):
    """Build a registered text tower, e.g. ``create_text_tower("minilm-l6")``."""
    return _create(_TEXT_TOWERS, "text", name, **kwargs)


def list_image_towers() -> list[str]:
    _import_builtin_towers()
    return sorted(_IMAGE_TOWERS)


def list_text_towers() -> list[str]:
    _import_builtin_towers()
    return sorted(_TEXT_TOWERS)


def _import_builtin_towers() -> None:
    # Imported lazily so that `import modalens` stays cheap.
    from . import efficientnet_lite, hf_text, minilm  # noqa: F401
    from . import clip  # noqa: F401  (transformers is imported only when a CLIP tower is built)
    from . import e5_multilingual, mpnet  # noqa: F401  (their packages are looked up only when one is built)
