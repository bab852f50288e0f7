"""The per-machine cache of whole-model exports: what the CLI's query commands answer from without torch.

``modalens search``, ``tag`` and a read-only ``eval`` used to import torch and
build the model for every call (about 5 s and 0.8 GB before a 7 ms query). A
whole-model export (:func:`~modalens.export.model.export_model`: towers, heads,
tokenizer) answers the same queries with ONNX Runtime, ``tokenizers`` and numpy
(:class:`~modalens.query_encoder.OnnxQueryEncoder`); this module keeps one per
model in the cache and hands out handles on it (:func:`query_handle`).

Where: ``onnx_cache_root()/models/<model>-<key[:16]>`` (``$MODALENS_ONNX_CACHE``
moves the root). The key (:func:`model_export_key`) is read without building the
model or importing torch: the model's identity (its name and the digest of its
trained heads: what an index records), its config, where its weight files are and
their size and mtime, the modalens version, and a digest of the code that builds
the exported graphs. Anything that changes the vectors changes the key, so a
stale export is never found; it is made again instead.

Made once: the first query command on a model (or ``modalens index``) builds the
PyTorch model, exports it into a temporary folder beside the target under a file
lock (two processes export once; the second waits and uses the first's), and
renames the folder into place. A killed export leaves only a ``.tmp-*`` folder
that no reader looks at; the next export removes it. A cached export whose files
no longer match their recorded sha256 is discarded and made again.

Torch stays the path when an export cannot be used: ``MODALENS_BACKEND=torch``
(or a model config that puts a tower on torch, whose vectors the export would not
reproduce exactly), ``MODALENS_AUTO_EXPORT=0`` (the PyTorch model as before, towers
where the back-end puts them), no ``onnxruntime``, or an export that cannot be made
here (no ``onnx`` package, an exporter failure: a warning says why). Training and
writes to an index use the PyTorch model as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..backends import onnx_export_available, onnxruntime_available, resolve_backend
from ..backends.device import DeviceError
from ..backends.runtime import CorruptExportError, onnx_cache_root, read_manifest
from ..models import DEFAULT_MODEL, ModelHandle, as_handle, load
from ..models.factory import _resolve, model_identity
from ..paths import PACKAGE_DIR, instance_decoder_path

if TYPE_CHECKING:
    from ..models.config import ModelConfig

#: ``0``, ``off``, ``false`` or ``no``: query commands use the PyTorch model even where an export could answer.
AUTO_EXPORT_ENV = "MODALENS_AUTO_EXPORT"
#: Bump when a whole-model export changes meaning (its layout or what it holds), so cached ones are made again.
MODEL_EXPORT_VERSION = 1
#: Sub-folder of the ONNX cache root holding whole-model exports (the tower exports sit beside it).
MODELS_DIR = "models"
#: The code that decides what the exported graphs compute: a change to it makes a new key (as a tower's
#: export fingerprint covers its class's source). Paths relative to the package.
GRAPH_SOURCES = (
    "encoders/base.py",
    "encoders/registry.py",
    "encoders/efficientnet_lite.py",
    "encoders/hf_text.py",
    "encoders/minilm.py",
    "encoders/mpnet.py",
    "encoders/e5_multilingual.py",
    "encoders/clip.py",
    "models/dual_encoder.py",
    "models/heads.py",
    "export/model.py",
    "export/instances.py",
    "models/instance_decoder.py",
    "backends/onnx.py",
)

log = logging.getLogger(__name__)


def _code_digest() -> str:
    h = hashlib.sha256()
    for relative in GRAPH_SOURCES:
        h.update(relative.encode())
        try:
            h.update((PACKAGE_DIR / relative).read_bytes())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()


def _file_record(path: str | Path | None) -> list[Any] | None:
    """Where a weights file is, its size and mtime: a retrained or replaced file makes a new key (no 14 MB hashed per query)."""
    if not path:
        return None
    path = Path(path).resolve()
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def model_export_key(name_or_folder: str | Path = DEFAULT_MODEL) -> dict[str, Any]:
    """What a model's cached export depends on, read without building the model (an unknown model raises here)."""
    config, weights = _resolve(name_or_folder)
    towers = {kind: _file_record(spec.get("tuned_weights")) for kind, spec in (("image", config.image_tower), ("text", config.text_tower))}
    return {
        "format": MODEL_EXPORT_VERSION,
        "identity": model_identity(str(name_or_folder)),
        "config": config.to_dict(),
        "heads": _file_record(weights),
        "tuned_towers": towers,
        "instance_decoder": _file_record(instance_decoder_path(name_or_folder)) if instance_decoder_path(name_or_folder).is_file() else None,
        "modalens": __version__,
        "code": _code_digest(),
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def model_export_dir(name_or_folder: str | Path = DEFAULT_MODEL, root: str | Path | None = None, key: dict[str, Any] | None = None) -> Path:
    """``<root>/models/<model>-<key digest[:16]>`` (root: ``onnx_cache_root()``); the folder need not exist."""
    key = key or model_export_key(name_or_folder)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name_or_folder)).name or str(name_or_folder)).strip("._") or "model"
    return Path(root or onnx_cache_root()) / MODELS_DIR / f"{safe}-{key_digest(key)[:16]}"


def cached_model_export(name_or_folder: str | Path = DEFAULT_MODEL, root: str | Path | None = None) -> Path | None:
    """The model's finished export in the cache, or None (never a half-made one); imports no torch."""
    key = model_export_key(name_or_folder)
    folder = model_export_dir(name_or_folder, root, key)
    try:
        manifest = read_manifest(folder)
    except CorruptExportError:
        return None
    if manifest.get("cache_key") != key_digest(key) or manifest.get("model_identity") != key["identity"]:
        return None  # a digest-prefix collision, or a folder put there by hand
    return folder


def ensure_model_export(
    model: str | Path | ModelHandle = DEFAULT_MODEL, *, root: str | Path | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """The model's export in the cache, made now if missing (PyTorch; a handle given has its model reused).

    Safe against concurrent processes (a file lock: one exports, the others then find its folder) and
    against kills (a temporary folder renamed into place when complete).
    """
    from ..backends.onnx import _file_lock, discard_folder
    from .model import export_model

    handle = as_handle(model)
    key = model_export_key(handle.name)
    folder = model_export_dir(handle.name, root, key)
    found = cached_model_export(handle.name, root)
    if found is not None:
        return found
    with _file_lock(folder.with_name(f".{folder.name}.lock")):
        found = cached_model_export(handle.name, root)  # another process may have made it while we waited
        if found is not None:
            return found
        # Holding the lock, any temporary folder of this export is a dead process's leftovers.
        for leftover in [*folder.parent.glob(f".tmp-{folder.name}-*"), *folder.parent.glob(f".stale-{folder.name}-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        discard_folder(folder)  # a corrupt or stale one
        message = f"modalens: exporting {handle.name} to ONNX once → {folder} (later queries skip PyTorch)"
        log.info(message)
        if progress is not None:
            progress(message)
        elif sys.stderr.isatty():  # a one-off pause of seconds deserves a word; pipes stay clean
            print(message, file=sys.stderr, flush=True)
        export_model(handle, folder, manifest_extra={"cache_key": key_digest(key), "cache_key_fields": key})
        _discard_superseded(folder, key)
    return folder


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two keys of one model (the same name and heads file), whatever changed since."""
    name = lambda key: str(key.get("identity", "")).rsplit("@", 1)[0]  # noqa: E731
    heads = lambda key: (key.get("heads") or [None])[0]  # noqa: E731
    return name(a) == name(b) and heads(a) == heads(b)


def _discard_superseded(folder: Path, key: dict[str, Any]) -> None:
    """Remove this model's older exports (made before its heads, the code or modalens changed): nothing finds them now."""
    from ..backends.onnx import discard_folder

    prefix = folder.name.rsplit("-", 1)[0]
    for other in folder.parent.glob(f"{prefix}-*"):
        if other == folder or not other.is_dir():
            continue
        try:
            old = read_manifest(other).get("cache_key_fields") or {}
        except CorruptExportError:
            continue  # someone's export in progress is in a .tmp folder, never here; a broken folder is left alone
        if _same_model(old, key):
            log.info("removing the superseded export %s", other)
            discard_folder(other)


def exports_wanted(config: ModelConfig) -> bool:
    """Whether queries may come from an export: both towers would run in ONNX Runtime anyway (so the export's
    vectors are the PyTorch path's), which ``MODALENS_BACKEND=torch`` or a config naming torch rules out,
    and the user has not turned it off (:data:`AUTO_EXPORT_ENV`)."""
    if os.environ.get(AUTO_EXPORT_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return False
    if not onnxruntime_available():
        return False
    top = getattr(config, "backend", None)
    return all(resolve_backend(spec.get("backend"), top)[0] == "onnx" for spec in (config.image_tower, config.text_tower))


def query_handle(
    model: str | Path = DEFAULT_MODEL,
    *,
    make: bool = True,
    progress: Callable[[str], None] | None = None,
    root: str | Path | None = None,
) -> ModelHandle:
    """The handle a query command uses: answers from the model's cached export without torch, else PyTorch.

    With ``make`` a missing export is made first (once per model and machine: seconds, in PyTorch).
    The export's files are checked by size, times and inode (``verify="stat"``), its sessions opened
    on first use. Falls back to the PyTorch handle, with a warning where something failed, when the
    export cannot be made or used (see the module's notes); an unknown model raises as
    :func:`modalens.models.load` does. ``root``: another cache root for the model exports (tests).
    """
    handle = load(model)  # an unknown model fails here, in one line
    if not exports_wanted(handle.config):
        return handle
    for attempt in range(2):
        folder = cached_model_export(model, root)
        if folder is None:
            if not make or not onnx_export_available():  # nothing to export with: the PyTorch path, as before
                return handle
            try:
                folder = ensure_model_export(handle, root=root, progress=progress)
            except Exception as e:  # an exporter failure: the PyTorch path still answers
                warnings.warn(f"queries on {handle.name} use PyTorch: its ONNX export failed ({type(e).__name__}: {e})",
                              RuntimeWarning, stacklevel=2)
                return handle
        onnx_handle = load(model, onnx_dir=folder, verify="stat")
        try:
            _ = onnx_handle.query_encoder  # read the manifest, check the files: a corrupt export fails here, not mid-query
        except DeviceError:  # cuda asked for and absent: not the export's fault
            raise
        except Exception as e:
            if attempt or not make or not onnx_export_available():
                warnings.warn(f"queries on {handle.name} use PyTorch: its cached ONNX export {folder} is unusable ({e})",
                              RuntimeWarning, stacklevel=2)
                return handle
            from ..backends.onnx import discard_folder

            log.warning("discarding the unusable cached export %s (%s)", folder, e)
            discard_folder(folder)
            continue
        onnx_handle._model = handle._model  # a model built to export serves writes too, without a second build
        return onnx_handle
    return handle


__all__ = [
    "AUTO_EXPORT_ENV",
    "GRAPH_SOURCES",
    "MODELS_DIR",
    "MODEL_EXPORT_VERSION",
    "cached_model_export",
    "ensure_model_export",
    "exports_wanted",
    "key_digest",
    "model_export_dir",
    "model_export_key",
    "query_handle",
]
