"""ONNX Runtime on numpy arrays: exported folders, their manifest, verified sessions. No torch here.

An export folder holds ``*.onnx`` files and a ``manifest.json`` naming each
component (``image_tower``, ``text_tower``, ``image_head``, ``text_head``),
its inputs and outputs, the tower's ``preprocess_id``, the opset and exporter,
and the sha256 of every file. A file whose digest does not match (a partial
copy, a killed export, a disk error) is refused with :class:`CorruptExportError`.

This module imports only numpy, PIL, the standard library and (when used)
onnxruntime and ``tokenizers``, never torch or transformers: the search
server answers queries from an export without PyTorch (see
``modalens.query_encoder``). :func:`load_export` gives embeddings from
pixels and tokens, :class:`ExportTokenizer` tokens from texts, and
:func:`letterbox_pixels` pixels from photos.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
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


#: The letterbox recipe ``ImageTower.preprocess`` names ``pad-white`` in its ``preprocess_id``.
LETTERBOX_RECIPE = "pad-white"


def letterbox_pixels(image: Any, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A PIL image → (3, size, size) float32: the whole photo fitted into a white square, then ``(x - mean) / std``.

    The letterbox is the towers' own (``catalog.images``, torch-free); the
    normalisation is ``encoders.base.to_tensor``'s arithmetic on numpy.
    """
    from ..catalog.images import letterbox

    array = np.asarray(letterbox(image, size), dtype=np.float32)
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class ExportTokenizer:
    """The export's ``tokenizer/tokenizer.json`` run by the ``tokenizers`` library, called as the towers call theirs.

    Not ``transformers.AutoTokenizer``: importing transformers imports torch
    whenever torch is installed (seconds and hundreds of MB), and the fast
    tokenizer it wraps is this very file. Settings match the text towers'
    call: special tokens added, truncation to ``max_length``, padding to the
    longest text of the batch, on the sides ``tokenizer_config.json`` names.
    """

    def __init__(self, folder: str | Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = _json_or_empty(folder / "tokenizer_config.json")
        self.max_length = int(max_length)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        pad_token = _token_text(config.get("pad_token")) or "[PAD]"
        pad_id = self._tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise CorruptExportError(f"{folder}: the pad token {pad_token!r} is not in tokenizer.json")
        self._tokenizer.enable_truncation(self.max_length, direction=config.get("truncation_side", "right"))
        self._tokenizer.enable_padding(
            direction=config.get("padding_side", "right"),
            pad_id=pad_id,
            pad_type_id=int(config.get("pad_token_type_id", 0)),
            pad_token=pad_token,
        )

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``input_ids``, ``attention_mask``, ``token_type_ids``: int64 (batch, longest)."""
        encodings = self._tokenizer.encode_batch([str(t) for t in texts])
        if not encodings:
            return {name: np.zeros((0, 0), np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }


def _json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(token: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string, or ``{"content": ...}``."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) and token else None


@dataclass
class ExportedModel:
    """A whole exported model (towers + heads) on numpy: photos, pixels, texts or tokens → normalised embeddings.

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
    _tokenizer: ExportTokenizer | None = field(default=None, repr=False)

    @property
    def embed_dim(self) -> int:
        return int(self.manifest.get("embed_dim") or self.manifest["components"]["text_head"]["embed_dim"])

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
        """Tokenise with the saved tokenizer (the ``tokenizers`` library: no torch, no transformers)."""
        if self._tokenizer is None:
            max_length = int(self.manifest["components"]["text_tower"].get("max_length", 64))
            self._tokenizer = ExportTokenizer(self.folder / str(self.manifest.get("tokenizer", "tokenizer")), max_length)
        return self._tokenizer(texts)

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images → (n, 3, S, S) float32 pixels, exactly as the torch image tower prepares them."""
        component = self.manifest["components"]["image_tower"]
        if f"|{LETTERBOX_RECIPE}|" not in str(component.get("preprocess_id", "")):
            raise ValueError(f"{self.folder}: image preprocessing {component.get('preprocess_id')!r} is not the letterbox this runtime knows")
        size, mean, std = int(component["image_size"]), component["pixel_mean"], component["pixel_std"]
        if not images:
            return np.zeros((0, 3, size, size), np.float32)
        return np.stack([letterbox_pixels(image, size, mean, std) for image in images])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, embed_dim) normalised embeddings: the numpy twin of ``DualEncoder.encode_text``."""
        if not len(texts):
            return np.zeros((0, self.embed_dim), np.float32)
        return self.text_embeddings(self.tokenize(texts))

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images → (n, embed_dim) normalised embeddings: the numpy twin of ``DualEncoder.encode_image``."""
        if not len(images):
            return np.zeros((0, self.embed_dim), np.float32)
        return self.image_embeddings(self.preprocess(images))


COMPONENTS = ("image_tower", "text_tower", "image_head", "text_head")


def load_export(folder: str | Path, *, int8: bool | Collection[str] = False, threads: int | None = None) -> ExportedModel:
    """Open an export folder written by ``modalens export``; every file is checked against its sha256.

    ``int8``: True runs every component that has an int8 file in int8; a
    collection of component names (e.g. ``{"text_tower"}``) only those.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    components = manifest["components"]
    missing = set(COMPONENTS) - set(components)
    if missing:
        raise CorruptExportError(f"{folder} lacks {sorted(missing)}: export a whole model with `modalens export`")
    quantised = set(COMPONENTS) if int8 is True else set(int8 or ())
    unknown = quantised - set(COMPONENTS)
    if unknown:
        raise ValueError(f"int8 names unknown components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")

    def open_(name: str) -> OrtModel:
        component = components[name]
        file = component.get("int8_file") if name in quantised and component.get("int8_file") else component["file"]
        return OrtModel.from_folder(folder, file, manifest, threads=threads)

    return ExportedModel(folder, manifest, *(open_(n) for n in COMPONENTS))
