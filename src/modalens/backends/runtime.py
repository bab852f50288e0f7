"""ONNX Runtime on numpy arrays: exported folders, their manifest, verified sessions. No torch here.

An export folder holds ``*.onnx`` files and a ``manifest.json`` naming each
component (``image_tower``, ``text_tower``, ``image_head``, ``text_head``),
its inputs and outputs, the tower's ``preprocess_id``, the opset and exporter,
and the sha256 of every file. A file whose digest does not match (a partial
copy, a killed export, a disk error) is refused with :class:`CorruptExportError`.

This module imports only numpy, the standard library and (when a session is
opened) onnxruntime, so a future server can run exported models without
PyTorch: :func:`load_export` gives embeddings from pixels and tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
#: Version of the manifest layout (bump on incompatible changes).
FORMAT = 1


class CorruptExportError(RuntimeError):
    """An export folder is incomplete or a file does not match its recorded sha256."""


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_threads() -> int:
    """Cores this process may run on (the affinity mask, which a container or ``taskset`` narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None = None, spinning: bool = False) -> Any:
    """CPU session options: ``threads`` intra-op threads (default: every core we may use), one inter-op thread.

    ``spinning=False`` makes idle worker threads sleep instead of busy-waiting
    between operators; on a small shared machine that is faster, not slower.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: ORT's graph-optimiser notes are not the user's business
    return options


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptExportError(f"{folder} has no {MANIFEST}: not a finished modalens ONNX export") from None
    except (OSError, ValueError) as e:
        raise CorruptExportError(f"{path} cannot be read: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("components"), dict):
        raise CorruptExportError(f"{path} is not a modalens ONNX manifest of format {FORMAT}")
    return manifest


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` with ``files``: the sha256 of every file in the folder (tokenizer too), flushed to disk."""
    folder = Path(folder)
    manifest = dict(manifest)
    manifest["format"] = FORMAT
    named = [c[k] for c in manifest.get("components", {}).values() for k in ("file", "int8_file") if c.get(k)]
    missing = [f for f in named if not (folder / f).is_file()]
    if missing:
        raise CorruptExportError(f"{folder}: the manifest names files that are not there: {missing}")
    manifest["files"] = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    path = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_verified(folder: str | Path, file: str, manifest: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of ``file``, checked against the manifest's sha256 (one read serves both the check and the session)."""
    folder = Path(folder)
    manifest = manifest if manifest is not None else read_manifest(folder)
    expected = manifest.get("files", {}).get(file)
    if not expected:
        raise CorruptExportError(f"{folder / MANIFEST} records no sha256 for {file}")
    try:
        data = (folder / file).read_bytes()
    except OSError as e:
        raise CorruptExportError(f"{folder / file} cannot be read: {e.strerror or e}") from None
    actual = sha256_bytes(data)
    if actual != expected:
        raise CorruptExportError(f"{folder / file} is corrupt or partial: sha256 {actual[:12]}… ≠ recorded {expected[:12]}…")
    return data


def verify_export(folder: str | Path) -> dict[str, Any]:
    """Check every file of an export folder against its manifest; returns the manifest."""
    manifest = read_manifest(folder)
    for file in manifest.get("files", {}):
        read_verified(folder, file, manifest)
    return manifest


class OrtModel:
    """One verified ONNX file in an InferenceSession (CPUExecutionProvider), run on numpy arrays."""

    def __init__(self, model: bytes | str | Path, *, threads: int | None = None, spinning: bool = False) -> None:
        import onnxruntime as ort

        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, session_options(threads, spinning), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @classmethod
    def from_folder(cls, folder: str | Path, file: str, manifest: Mapping[str, Any] | None = None, **kwargs: Any) -> OrtModel:
        return cls(read_verified(folder, file, manifest), **kwargs)

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        return self.session.run(list(outputs) if outputs else None, dict(feeds))


@dataclass
class ExportedModel:
    """A whole exported model (towers + heads) on numpy: pixels or tokens → normalised embeddings.

    Preprocessing a photo is the manifest's ``image_tower`` recipe (letterbox to
    ``image_size`` on white, then ``(x - pixel_mean) / pixel_std`` per channel,
    NCHW float32); tokenising is the tokenizer saved in ``tokenizer/``.
    """

    folder: Path
    manifest: dict[str, Any]
    image_tower: OrtModel
    text_tower: OrtModel
    image_head: OrtModel
    text_head: OrtModel
    _tokenizer: Any = field(default=None, repr=False)

    def image_features(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        return self.image_tower.run({"pixels": pixels}, ["pooled"])[0]

    def image_embeddings(self, pixels: np.ndarray) -> np.ndarray:
        return self.image_head.run({"features": self.image_features(pixels)})[0]

    def text_features(self, tokens: Mapping[str, np.ndarray]) -> np.ndarray:
        feeds = {k: np.asarray(tokens[k], dtype=np.int64) for k in self.text_tower.input_names}
        return self.text_tower.run(feeds)[0]

    def text_embeddings(self, tokens: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.text_head.run({"features": self.text_features(tokens)})[0]

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenise with the saved tokenizer (needs ``transformers``; not torch)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder / "tokenizer"), local_files_only=True)
        max_length = int(self.manifest["components"]["text_tower"].get("max_length", 64))
        out = self._tokenizer([str(t) for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        return {k: np.asarray(v) for k, v in out.items()}


def load_export(folder: str | Path, *, int8: bool = False, threads: int | None = None) -> ExportedModel:
    """Open an export folder written by ``modalens export``; every file is checked against its sha256."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    components = manifest["components"]
    missing = {"image_tower", "text_tower", "image_head", "text_head"} - set(components)
    if missing:
        raise CorruptExportError(f"{folder} lacks {sorted(missing)}: export a whole model with `modalens export`")

    def open_(name: str) -> OrtModel:
        component = components[name]
        file = component.get("int8_file") if int8 and component.get("int8_file") else component["file"]
        return OrtModel.from_folder(folder, file, manifest, threads=threads)

    return ExportedModel(folder, manifest, *(open_(n) for n in ("image_tower", "text_tower", "image_head", "text_head")))
