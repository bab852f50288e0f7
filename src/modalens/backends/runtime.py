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
:func:`letterbox_pixels` pixels from photos; :class:`ExportImageTower` and
:class:`ExportTextTower` are an export's towers as the feature cache sees a
tower (numpy in and out), for a torch-free evaluation.

A one-shot command loads with ``verify="stat"``: files that passed their
sha256 check before, unchanged since (size, times, inode: :func:`verify_by_stat`),
are not hashed again, and each session is opened from its file on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
#: Version of the manifest layout (bump on incompatible changes).
FORMAT = 1
#: Beside the manifest: the size, times and inode of files once checked against their sha256 (``verify="stat"``).
VERIFIED_STAMP = ".verified.json"
#: Overrides where exports are cached (default ``cache_dir()/onnx``): exports depend only on the
#: weights and code, so a test run with a fresh feature cache can still reuse them.
ONNX_CACHE_ENV = "MODALENS_ONNX_CACHE"


def onnx_cache_root() -> Path:
    """``$MODALENS_ONNX_CACHE`` or ``cache_dir()/onnx``: the tower exports, and whole-model exports under ``models/``."""
    from ..paths import cache_dir

    return Path(os.environ.get(ONNX_CACHE_ENV) or cache_dir() / "onnx")


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
    """Cores this process may run on (the affinity mask, which a container or ``taskset`` narrows), or ``$MODALENS_THREADS``.

    The variable is how a worker that shares its machine with others (a Ray actor given one CPU) keeps
    its ONNX Runtime sessions to its own share instead of one thread per core.
    """
    if os.environ.get("MODALENS_THREADS", "").strip().isdigit() and int(os.environ["MODALENS_THREADS"]) > 0:
        return int(os.environ["MODALENS_THREADS"])
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


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def verify_by_stat(folder: str | Path, files: Sequence[str], manifest: Mapping[str, Any]) -> None:
    """Check ``files`` against the manifest's sha256, except those this very file (same size, times and inode,
    and the same manifest) already passed: hashing 100 MB of towers costs a cold command a fifth of a second.

    The stamp (:data:`VERIFIED_STAMP`) is written after a successful check. ``ctime`` cannot be set by a
    user, so a file rewritten in place (even with its old mtime restored) is hashed again; a copy or a
    new export has new inodes. A folder that cannot be written is hashed every time.
    """
    folder = Path(folder)
    try:
        stamp = json.loads((folder / VERIFIED_STAMP).read_text())
        known = stamp["files"] if stamp.get("manifest") == _stat_key(folder / MANIFEST) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        known = {}
    fresh: dict[str, list[int]] = {}
    for file in files:
        try:
            key = _stat_key(folder / file)
        except OSError as e:
            raise CorruptExportError(f"{folder / file} cannot be read: {e.strerror or e}") from None
        if known.get(file) == key:
            continue
        expected = manifest.get("files", {}).get(file)
        if not expected:
            raise CorruptExportError(f"{folder / MANIFEST} records no sha256 for {file}")
        actual = sha256_file(folder / file)
        if actual != expected:
            raise CorruptExportError(f"{folder / file} is corrupt or partial: sha256 {actual[:12]}… ≠ recorded {expected[:12]}…")
        fresh[file] = key
    if fresh:
        tmp = folder / f"{VERIFIED_STAMP}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps({"manifest": _stat_key(folder / MANIFEST), "files": {**known, **fresh}}))
            os.replace(tmp, folder / VERIFIED_STAMP)
        except OSError:  # a read-only cache: verified, just not remembered
            tmp.unlink(missing_ok=True)


def verify_export(folder: str | Path) -> dict[str, Any]:
    """Check every file of an export folder against its manifest; returns the manifest."""
    manifest = read_manifest(folder)
    for file in manifest.get("files", {}):
        read_verified(folder, file, manifest)
    return manifest


class OrtModel:
    """One verified ONNX file in an InferenceSession, run on numpy arrays.

    On CUDA when ``device`` (or, under ``auto``, ``$MODALENS_DEVICE`` or the machine) chooses it and this
    onnxruntime offers it, else on the CPU (:mod:`modalens.backends.device`); ``providers`` says which it got.
    """

    def __init__(self, model: bytes | str | Path, *, threads: int | None = None, spinning: bool = False, device: str | None = None) -> None:
        import onnxruntime as ort

        from .device import CUDA_PROVIDER, check_session_device, onnx_providers, prepare_cuda

        source = model if isinstance(model, bytes) else str(model)
        providers = onnx_providers(ort.get_available_providers(), device)
        if providers[0] == CUDA_PROVIDER:
            prepare_cuda(ort)
        self.session = ort.InferenceSession(source, session_options(threads, spinning), providers=providers)
        check_session_device(self.session, providers, device)
        self.providers = list(self.session.get_providers())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @classmethod
    def from_folder(cls, folder: str | Path, file: str, manifest: Mapping[str, Any] | None = None, **kwargs: Any) -> OrtModel:
        return cls(read_verified(folder, file, manifest), **kwargs)

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        return self.session.run(list(outputs) if outputs else None, dict(feeds))


def text_head_inputs(tower: OrtModel, head: OrtModel, tokens: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a text head reads from one pass of the text tower: ``features`` (pooled) for a pooled head, or
    ``tokens`` (the last layer's states) and ``mask`` for a token head (``models.heads.TokenHead``)."""
    feeds = {k: np.asarray(tokens[k], dtype=np.int64) for k in tower.input_names}
    if "tokens" not in head.input_names:
        return {"features": tower.run(feeds, ["pooled"])[0]}
    if "tokens" not in tower.output_names:
        raise CorruptExportError("the text head reads token states but this text tower export gives none: export the model again")
    return {"tokens": tower.run(feeds, ["tokens"])[0], "mask": feeds["attention_mask"]}


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


class ExportedModel:
    """A whole exported model (towers + heads) on numpy: photos, pixels, texts or tokens → normalised embeddings.

    Preprocessing a photo is the manifest's ``image_tower`` recipe (letterbox to
    ``image_size`` on white, then ``(x - pixel_mean) / pixel_std`` per channel,
    NCHW float32); tokenising is the tokenizer saved in ``tokenizer/``.

    Each component's ONNX Runtime session is made by ``open_component`` on first
    use (once, under a lock): a text query never loads the image tower.
    :func:`load_export` opens all four at once unless asked for ``verify="stat"``.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], open_component: Callable[[str], OrtModel]) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self._open = open_component
        self._sessions: dict[str, OrtModel] = {}
        self._lock = threading.Lock()
        self._tokenizer: ExportTokenizer | None = None

    def __repr__(self) -> str:
        return f"ExportedModel({str(self.folder)!r}, opened={sorted(self._sessions)})"

    def session(self, component: str) -> OrtModel:
        """The component's session (``image_tower``, ``text_tower``, ``image_head``, ``text_head``), opened on first use."""
        session = self._sessions.get(component)
        if session is None:
            with self._lock:
                session = self._sessions.get(component)
                if session is None:
                    session = self._sessions[component] = self._open(component)
        return session

    @property
    def opened(self) -> list[str]:
        """The components whose sessions exist so far."""
        return sorted(self._sessions)

    @property
    def image_tower(self) -> OrtModel:
        return self.session("image_tower")

    @property
    def text_tower(self) -> OrtModel:
        return self.session("text_tower")

    @property
    def image_head(self) -> OrtModel:
        return self.session("image_head")

    @property
    def text_head(self) -> OrtModel:
        return self.session("text_head")

    @property
    def logit_scale(self) -> float:
        """The model's learned logit scale (before ``exp``), as the export recorded it."""
        return float(self.manifest["logit_scale"])

    @property
    def embed_dim(self) -> int:
        return int(self.manifest.get("embed_dim") or self.manifest["components"]["text_head"]["embed_dim"])

    def image_features(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        return self.image_tower.run({"pixels": pixels}, ["pooled"])[0]

    def image_embeddings(self, pixels: np.ndarray) -> np.ndarray:
        return self.image_head.run({"features": self.image_features(pixels)})[0]

    @property
    def has_instance_decoder(self) -> bool:
        """Whether the export holds the model's instance decoder (``modalens export`` of a model that has one)."""
        return INSTANCE_DECODER in self.manifest["components"]

    def image_grids(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) pixels → the image tower's feature maps as (n, h·w, C) float32, cells in reading order."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        maps = self.image_tower.run({"pixels": pixels}, ["features"])[0]
        return np.ascontiguousarray(maps.reshape(maps.shape[0], maps.shape[1], -1).transpose(0, 2, 1))

    def decode_instances(self, grids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, cells, C) feature maps → instance embeddings (n, K, D), objectness (n, K) and attention (n, K, cells):
        the numpy twin of ``InstanceDecoder`` through the image head (``modalens.export.instances``)."""
        if not self.has_instance_decoder:
            raise CorruptExportError(f"{self.folder} holds no instance decoder: export a model that has one (`modalens export`)")
        embeddings, objectness, attention = self.session(INSTANCE_DECODER).run({"grid": np.ascontiguousarray(grids, dtype=np.float32)})
        return embeddings, objectness, attention

    @property
    def text_reads_tokens(self) -> bool:
        """Whether the text head reads token states (a token head) rather than the pooled vector."""
        return "tokens" in self.manifest["components"]["text_head"].get("inputs", [])

    def text_features(self, tokens: Mapping[str, np.ndarray]) -> np.ndarray:
        feeds = {k: np.asarray(tokens[k], dtype=np.int64) for k in self.text_tower.input_names}
        return self.text_tower.run(feeds, ["pooled"])[0]

    def text_states(self, tokens: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features and token states (batch, sequence, dim) from one pass of the text tower."""
        feeds = {k: np.asarray(tokens[k], dtype=np.int64) for k in self.text_tower.input_names}
        pooled, states = self.text_tower.run(feeds, ["pooled", "tokens"])
        return pooled, states

    def text_embeddings(self, tokens: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.text_head.run(text_head_inputs(self.text_tower, self.text_head, tokens))[0]

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

    def project_features(self, features: np.ndarray, kind: str) -> np.ndarray:
        """Tower features → embeddings through the ``image`` or ``text`` head, in chunks (the twin of
        ``DualEncoder.project_features``, which the feature cache's users call)."""
        if kind not in ("image", "text"):
            raise ValueError(f"kind must be 'image' or 'text', not {kind!r}")
        if kind == "text" and self.text_reads_tokens:  # token states (encoders.features.TokenStates), batched here
            chunks = []
            for i in range(0, len(features), 512):
                states, mask = features.batch(range(i, min(i + 512, len(features))))  # type: ignore[union-attr]
                chunks.append(self.text_head.run({"tokens": states, "mask": mask})[0])
            return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)
        head = self.image_head if kind == "image" else self.text_head
        features = np.ascontiguousarray(features, dtype=np.float32)
        chunks = [head.run({"features": features[i : i + 4096]})[0] for i in range(0, len(features), 4096)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)

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


class ExportImageTower:
    """An export's image tower as the feature cache sees a tower (``encoders.features``), on numpy: no torch.

    Name, size, normalisation and ``preprocess_id`` are the PyTorch tower's, as the manifest recorded them,
    so its features land in (and are read from) the same cache entries as the PyTorch model's.
    """

    numpy_io = True
    backend = "onnx"

    def __init__(self, exported: ExportedModel) -> None:
        component = exported.manifest["components"]["image_tower"]
        self.exported = exported
        self.name = str(component["tower"])
        self.output_dim = int(component["output_dim"])
        self.image_size = int(component["image_size"])
        self.pixel_mean = tuple(float(v) for v in component["pixel_mean"])
        self.pixel_std = tuple(float(v) for v in component["pixel_std"])
        self.preprocess_id = str(component["preprocess_id"])
        #: (C, h, w) of the feature map (the tower export's second output), which instance decoders read.
        self.feature_shape = tuple(int(v) for v in component.get("feature_shape", ()))

    def __repr__(self) -> str:
        return f"ExportImageTower({self.name!r}, folder={str(self.exported.folder)!r})"

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) float32 → (n, output_dim) pooled features."""
        if len(pixels) == 0:
            return np.zeros((0, self.output_dim), np.float32)
        return self.exported.image_features(pixels)

    def run(self, pixels: np.ndarray, outputs: Sequence[str] = ("pooled",)) -> list[np.ndarray]:
        """(n, 3, S, S) float32 → the named outputs (``pooled``, ``features``) of one pass, as ``OnnxImageTower.run``."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if len(pixels) == 0:
            shapes = {"pooled": (0, self.output_dim), "features": (0, *self.feature_shape)}
            return [np.zeros(shapes[o], np.float32) for o in outputs]
        return self.exported.image_tower.run({"pixels": pixels}, list(outputs))

    def preprocess_numpy(self, image: Any) -> np.ndarray:
        """One PIL image → (3, S, S) float32: the letterbox, as ``ImageTower.preprocess`` does it."""
        return letterbox_pixels(image, self.image_size, self.pixel_mean, self.pixel_std)


class ExportTextTower:
    """An export's text tower as the feature cache sees a tower, on numpy (the export's tokenizer): no torch."""

    numpy_io = True
    backend = "onnx"

    def __init__(self, exported: ExportedModel) -> None:
        component = exported.manifest["components"]["text_tower"]
        self.exported = exported
        self.name = str(component["tower"])
        self.output_dim = int(component["output_dim"])
        self.max_length = int(component.get("max_length", 64))

    def __repr__(self) -> str:
        return f"ExportTextTower({self.name!r}, folder={str(self.exported.folder)!r})"

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, output_dim) tower features."""
        if not len(texts):
            return np.zeros((0, self.output_dim), np.float32)
        return self.exported.text_features(self.exported.tokenize(list(texts)))

    def encode_states(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texts → pooled (n, dim), token states (n, tokens, dim), mask (n, tokens): what a token head reads."""
        tokens = self.exported.tokenize(list(texts))
        pooled, states = self.exported.text_states(tokens)
        return pooled, states, tokens["attention_mask"]


COMPONENTS = ("image_tower", "text_tower", "image_head", "text_head")
#: The optional component: a model's instance decoder with its image head (feature map → instances), when it has one.
INSTANCE_DECODER = "instance_decoder"


def load_export(
    folder: str | Path, *, int8: bool | Collection[str] = False, threads: int | None = None, verify: str = "sha256"
) -> ExportedModel:
    """Open an export folder written by ``modalens export``; every file is checked against its sha256.

    ``int8``: True runs every component that has an int8 file in int8; a
    collection of component names (e.g. ``{"text_tower"}``) only those.

    ``verify``: ``"sha256"`` (the default, what a server does once at start) reads and hashes every
    component now and opens all four sessions; ``"stat"`` hashes only files whose size, times or inode
    changed since they last passed (:func:`verify_by_stat`) and opens each session from its file on
    first use: what a one-shot command wants (no 100 MB hashed, no image tower for a text query).
    """
    if verify not in ("sha256", "stat"):
        raise ValueError(f"verify must be 'sha256' or 'stat', not {verify!r}")
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

    def file_of(name: str) -> str:
        component = components[name]
        return component.get("int8_file") if name in quantised and component.get("int8_file") else component["file"]

    present = [*COMPONENTS, *([INSTANCE_DECODER] if INSTANCE_DECODER in components else [])]
    if verify == "stat":
        verify_by_stat(folder, [file_of(n) for n in present], manifest)
        return ExportedModel(folder, manifest, lambda name: OrtModel(folder / file_of(name), threads=threads))
    exported = ExportedModel(folder, manifest, lambda name: OrtModel.from_folder(folder, file_of(name), manifest, threads=threads))
    for name in COMPONENTS:  # the decoder's session is opened (from its checked bytes) on first use
        exported.session(name)
    return exported
