"""The towers in ONNX Runtime: graph export, a verified on-disk cache of tower exports, and drop-in tower classes.

``OnnxImageTower`` and ``OnnxTextTower`` subclass ``ImageTower`` / ``TextTower``
and keep the torch tower's ``name``, ``output_dim``, ``preprocess`` and
``preprocess_id`` (and ``max_length``), so the feature cache keys do not
change: features from either back-end are interchangeable (they agree to
about 2e-5; the tests hold them to 1e-4). They take and return torch tensors
like the torch towers; ``run`` / ``encode_numpy`` are the numpy path.

Exports go to ``cache_dir()/onnx/<tower-name>-<fingerprint>`` (the root can
be moved with ``$MODALENS_ONNX_CACHE``), where the fingerprint covers the
tower's class, code, configuration and weights. An export is written to a
temporary folder under a file lock and renamed into place when complete, so
a killed export never leaves a half file; a folder whose files do not match
their recorded sha256 is discarded and exported again.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``, which needs
``onnxscript``) is tried first, the TorchScript exporter second; every export
is checked against torch on other batch sizes (and text lengths) before it
is used, and the manifest records which exporter made it.

A whole model (towers, heads, tokenizer, int8) is exported by
:mod:`modalens.export`, which builds on :func:`export_graph` and the cache
here. This module imports nothing above ``backends`` (not ``models``,
``export`` or ``query_encoder``), so models can be built on it without an
import circle (``tests/test_import_graph.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..encoders.base import ImageTower, TextTower
from ..encoders.pooling import pooling_of
from .runtime import (  # noqa: F401  (ONNX_CACHE_ENV, onnx_cache_root: torch-free, named here too)
    ONNX_CACHE_ENV,
    CorruptExportError,
    OrtModel,
    onnx_cache_root,
    read_manifest,
    read_verified,
    write_manifest,
)

#: Bump when the exported graphs change meaning, so cached exports are made again.
EXPORT_VERSION = 1
#: Largest difference from torch an export may show on its check inputs and still be used.
EXPORT_TOLERANCE = 1e-4
#: Opset for the TorchScript exporter (the dynamo exporter picks its own, 18+).
TORCHSCRIPT_OPSET = 17
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: What an exported text tower gives: the pooled embedding, and the last layer's token states (batch, sequence, dim).
TEXT_OUTPUTS = ("pooled", "tokens")

_CHECK_TEXTS = (
    ["a red cotton t-shirt for men", "blue denim jeans with five pockets and a zip fly"],
    ["a", "Women's black leather ankle boots with a block heel, perfect for autumn evenings", ""],
)


log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """A tower or head could not be exported to ONNX (or its export disagrees with torch)."""


# --------------------------------------------------------------------------------------------
# Exporting
# --------------------------------------------------------------------------------------------


class _ImageGraph(nn.Module):
    """(B, 3, H, W) → pooled (B, D) and the feature map (B, C, h, w), one graph."""

    def __init__(self, tower: ImageTower) -> None:
        super().__init__()
        self.tower = tower
        # The default forward pools the feature map: reuse the map rather than computing it twice.
        self.pool_map = type(tower).forward is ImageTower.forward

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.tower.forward_features(pixels)
        pooled = self.tower.pool(features, pixels) if self.pool_map else self.tower(pixels)
        return pooled, features


class _TextGraph(nn.Module):
    """Token ids → the tower's pooled (and, for sentence-transformers towers, normalised) embedding, and its last
    layer's token states (:data:`TEXT_OUTPUTS`; a token head reads the states, a pooled head the first)."""

    def __init__(self, tower: TextTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.tower.forward_states(input_ids, attention_mask, **extra)  # type: ignore[attr-defined]


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """The exporters talk a lot (deprecation and tracer warnings, log lines); failures still raise."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx", None)  # None: root (the quantiser)
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _exporters(exporter: str) -> list[str]:
    if exporter == "auto":
        return ["dynamo", "torchscript"]
    if exporter not in ("dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'torchscript', not {exporter!r}")
    return [exporter]


def export_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic: Mapping[str, Mapping[int, str]],
    checks: Sequence[tuple[torch.Tensor, ...]],
    exporter: str = "auto",
    dim_max: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Export ``module`` to ``path`` (dynamo first, then TorchScript) and check it against torch.

    ``dynamic`` names the dynamic axes of each input and output; ``checks``
    are inputs (of other batch sizes / lengths than ``args``) on which the
    export must agree with torch to :data:`EXPORT_TOLERANCE`. Returns what
    the manifest records: exporter, opset, the largest difference seen.
    """
    module = module.eval()
    errors: dict[str, str] = {}
    for name in _exporters(exporter):
        path.unlink(missing_ok=True)
        try:
            with torch.inference_mode(False), torch.no_grad(), quiet_exporters():
                if name == "dynamo":
                    dims = {
                        axis: torch.export.Dim(axis, min=1, max=(dim_max or {}).get(axis, 1 << 16))
                        for axes in dynamic.values()
                        for axis in axes.values()
                    }
                    shapes = tuple({i: dims[a] for i, a in dynamic.get(n, {}).items()} or None for n in input_names)
                    torch.onnx.export(
                        module, args, str(path), dynamo=True, input_names=list(input_names), output_names=list(output_names),
                        dynamic_shapes=shapes, external_data=False, verbose=False, optimize=True,
                    )
                else:
                    torch.onnx.export(
                        module, args, str(path), dynamo=False, input_names=list(input_names), output_names=list(output_names),
                        dynamic_axes={k: dict(v) for k, v in dynamic.items()}, opset_version=TORCHSCRIPT_OPSET,
                        do_constant_folding=True,
                    )
            max_diff = _check_export(module, path, input_names, output_names, [args, *checks])
        except Exception as e:  # any exporter failure: try the next one, report all if none works
            errors[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            continue
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        record: dict[str, Any] = {"exporter": name, "opset": opset, "max_abs_diff_vs_torch": max_diff}
        if errors:
            record["exporter_errors"] = errors
        return record
    path.unlink(missing_ok=True)
    raise ExportError("; ".join(f"{k} exporter: {v}" for k, v in errors.items()))


def _check_export(
    module: nn.Module, path: Path, input_names: Sequence[str], output_names: Sequence[str], inputs: Sequence[tuple[torch.Tensor, ...]]
) -> float:
    session = OrtModel(path, threads=1, device="cpu")  # the check is against torch on the CPU, to 1e-4
    if session.input_names != list(input_names):
        raise ExportError(f"exported inputs {session.input_names} ≠ {list(input_names)}")
    worst = 0.0
    for args in inputs:
        with torch.no_grad():
            expected = module(*args)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        got = session.run({n: a.numpy() for n, a in zip(input_names, args)}, output_names)
        for name, e, g in zip(output_names, expected, got):
            if tuple(e.shape) != tuple(g.shape):
                raise ExportError(f"output {name}: shape {tuple(g.shape)} ≠ torch's {tuple(e.shape)}")
            worst = max(worst, float(np.abs(e.float().numpy() - g).max()) if g.size else 0.0)
    if worst > EXPORT_TOLERANCE:
        raise ExportError(f"export differs from torch by {worst:.2e} > {EXPORT_TOLERANCE:.0e}")
    return worst


@torch.inference_mode(False)  # the first use may come from inside inference mode
def export_image_tower(tower: ImageTower, path: str | Path, *, exporter: str = "auto") -> dict[str, Any]:
    """Write the image tower as one ONNX graph: input ``pixels`` (batch, 3, S, S) → outputs ``pooled``, ``features``.

    The batch axis is dynamic, the image size fixed at ``tower.image_size``.
    Returns the manifest entry for it (file, names, preprocessing, exporter, opset).
    """
    path = Path(path)
    tower = tower.eval()
    size = tower.image_size
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, size, size, generator=generator)  # batch 2: torch.export specialises 0/1
    checks = [(torch.randn(1, 3, size, size, generator=generator) * 2,), (torch.randn(3, 3, size, size, generator=generator),)]
    with torch.no_grad():
        feature_shape = list(tower.forward_features(example[:1]).shape[1:])
    record = export_graph(
        _ImageGraph(tower), (example,), path, input_names=["pixels"], output_names=["pooled", "features"],
        dynamic={"pixels": {0: "batch"}, "pooled": {0: "batch"}, "features": {0: "batch"}}, checks=checks, exporter=exporter,
    )
    return {
        "file": path.name,
        "kind": "image_tower",
        "tower": tower.name,
        "class": f"{type(tower).__module__}.{type(tower).__qualname__}",
        "preprocess_id": tower.preprocess_id,
        "image_size": size,
        "pixel_mean": list(tower.pixel_mean),
        "pixel_std": list(tower.pixel_std),
        "output_dim": int(tower.output_dim),
        "feature_shape": feature_shape,
        "inputs": ["pixels"],
        "outputs": ["pooled", "features"],
        **record,
    }


def text_tokens(tower: TextTower, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """The tower's tokens for ``texts``: the inputs of its exported graph, int64, in :data:`TEXT_INPUTS` order."""
    tokens = dict(tower.tokenize(list(texts)))  # type: ignore[attr-defined]
    unknown = set(tokens) - set(TEXT_INPUTS)
    if unknown:
        raise ExportError(f"text tower {tower.name!r}: tokenizer gives inputs {sorted(unknown)} this exporter does not know")
    return {k: tokens[k].to(torch.int64) for k in TEXT_INPUTS if k in tokens}


@torch.inference_mode(False)
def export_text_tower(tower: TextTower, path: str | Path, *, exporter: str = "auto") -> dict[str, Any]:
    """Write the text tower (transformer + masked mean pooling + L2 norm) as one ONNX graph.

    Inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
    tokenizer gives it), int64 (batch, sequence), both axes dynamic; output
    ``pooled`` (batch, output_dim) and ``tokens`` (batch, sequence, output_dim), the last layer's states.
    Needs a tower with ``tokenize`` and ``forward_states`` (every Hugging Face tower here has them).
    """
    if not (hasattr(tower, "tokenize") and hasattr(tower, "forward_states")):
        raise ExportError(f"text tower {tower.name!r} has no tokenize/forward_states: it cannot be split at the tokenizer")
    path = Path(path)
    tower = tower.eval()
    example = text_tokens(tower, _CHECK_TEXTS[0])
    names = list(example)
    checks = [tuple(text_tokens(tower, t)[n] for n in names) for t in (_CHECK_TEXTS[1], _CHECK_TEXTS[1][:1])]
    config = getattr(getattr(tower, "transformer", None), "config", None)
    max_positions = int(getattr(config, "max_position_embeddings", 512) or 512)
    record = export_graph(
        _TextGraph(tower), tuple(example[n] for n in names), path, input_names=names, output_names=list(TEXT_OUTPUTS),
        dynamic={**{n: {0: "batch", 1: "sequence"} for n in names}, "pooled": {0: "batch"}, "tokens": {0: "batch", 1: "sequence"}},
        checks=checks,
        exporter=exporter, dim_max={"sequence": max_positions},
    )
    return {
        "file": path.name,
        "kind": "text_tower",
        "tower": tower.name,
        "class": f"{type(tower).__module__}.{type(tower).__qualname__}",
        "output_dim": int(tower.output_dim),
        "max_length": int(tower.max_length),
        "normalize": bool(getattr(tower, "normalize", False)),
        "inputs": names,
        "outputs": list(TEXT_OUTPUTS),
        **record,
    }


def export_versions() -> dict[str, str]:
    """The versions an export depends on (modalens, torch, the exporters, ONNX Runtime), for its manifest."""
    out = {"modalens_version": __version__, "torch_version": torch.__version__}
    for module in ("onnx", "onnxscript", "onnxruntime", "transformers"):
        try:
            out[f"{module}_version"] = __import__(module).__version__
        except Exception:  # absent or broken: not recorded
            pass
    return out


# --------------------------------------------------------------------------------------------
# The on-disk cache of tower exports
# --------------------------------------------------------------------------------------------


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _source_digest(cls: type) -> str:
    """The source of every modalens module in the class's MRO: a code change re-exports."""
    h = hashlib.sha256()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("modalens."):
            continue
        try:
            h.update(Path(inspect.getsourcefile(klass) or "").read_bytes())
        except (OSError, TypeError):
            h.update(klass.__qualname__.encode())
    return h.hexdigest()


def tower_fingerprint(tower: nn.Module, kind: str) -> str:
    """sha256 over what the exported graph depends on: class, code, configuration and weights."""
    h = hashlib.sha256()
    identity: dict[str, Any] = {
        "export_version": EXPORT_VERSION,
        "kind": kind,
        "class": f"{type(tower).__module__}.{type(tower).__qualname__}",
        "code": _source_digest(type(tower)),
        "name": getattr(tower, "name", ""),
    }
    if kind == "image_tower":
        identity.update(image_size=tower.image_size, preprocess_id=tower.preprocess_id)  # type: ignore[attr-defined]
    else:
        identity["normalize"] = bool(getattr(tower, "normalize", False))
        identity["outputs"] = list(TEXT_OUTPUTS)
        try:
            import transformers

            identity["transformers"] = transformers.__version__  # the transformer's code lives there
        except ImportError:
            pass
    h.update(json.dumps(identity, sort_keys=True, default=str).encode())
    for key, value in tower.state_dict().items():
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}".encode())
        h.update(_tensor_bytes(value))
    return h.hexdigest()


def tower_cache_dir(tower: nn.Module, kind: str, root: str | Path | None = None) -> Path:
    """``onnx_cache_root()/<tower-name>-<fingerprint[:16]>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(getattr(tower, "name", kind))).strip("._") or kind
    return Path(root or onnx_cache_root()) / f"{safe}-{tower_fingerprint(tower, kind)[:16]}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (released by the OS if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            import fcntl
        except ImportError:  # not POSIX: the atomic rename alone still protects the cache
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def discard_folder(folder: Path) -> None:
    """Move a folder aside first (one atomic step), then delete it."""
    if not folder.exists():
        return
    aside = folder.with_name(f".stale-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(aside)
    except OSError:
        aside = folder
    shutil.rmtree(aside, ignore_errors=True)


def _load_cached(folder: Path, kind: str) -> tuple[dict[str, Any], bytes]:
    manifest = read_manifest(folder)
    component = manifest["components"].get(kind)
    if not component:
        raise CorruptExportError(f"{folder} holds no {kind}")
    if manifest.get("fingerprint") != folder.name.rsplit("-", 1)[-1]:
        raise CorruptExportError(f"{folder} holds an export of another tower (fingerprint {manifest.get('fingerprint')})")
    return manifest, read_verified(folder, component["file"], manifest)


def cached_export(
    tower: nn.Module, kind: str, *, root: str | Path | None = None, exporter: str = "auto", progress: bool = True
) -> tuple[Path, dict[str, Any], bytes]:
    """The tower's verified export in the cache, exported now if missing or corrupt.

    Returns ``(folder, manifest, onnx_bytes)``. Safe against concurrent
    processes (file lock) and kills (temporary folder, then one rename).
    """
    if kind not in ("image_tower", "text_tower"):
        raise ValueError(f"kind must be 'image_tower' or 'text_tower', not {kind!r}")
    folder = tower_cache_dir(tower, kind, root)
    try:
        return folder, *_load_cached(folder, kind)
    except CorruptExportError:
        pass
    with _file_lock(folder.with_name(f".{folder.name}.lock")):
        try:  # another process may have finished it while we waited for the lock
            return folder, *_load_cached(folder, kind)
        except CorruptExportError:
            pass
        # Holding the lock, any temporary folder for this export is a dead process's leftovers.
        for leftover in [*folder.parent.glob(f".tmp-{folder.name}-*"), *folder.parent.glob(f".stale-{folder.name}-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        discard_folder(folder)
        tmp = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            message = f"modalens: exporting {getattr(tower, 'name', kind)} to ONNX once → {folder}"
            log.info(message)
            if progress and sys.stderr.isatty():  # a one-off pause of seconds deserves a word; pipes stay clean
                print(message, file=sys.stderr, flush=True)
            start = time.perf_counter()
            export = export_image_tower if kind == "image_tower" else export_text_tower
            component = export(tower, tmp / f"{kind}.onnx", exporter=exporter)  # type: ignore[operator]
            component["export_seconds"] = round(time.perf_counter() - start, 1)
            write_manifest(tmp, {"fingerprint": folder.name.rsplit("-", 1)[-1], **export_versions(),
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "components": {kind: component}})
            fsync_dir(tmp)
            os.rename(tmp, folder)
            _fsync(folder.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return folder, *_load_cached(folder, kind)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's files and the folder itself, so a rename after it publishes complete files."""
    for file in path.iterdir():
        if file.is_file():
            _fsync(file)
    _fsync(path)


# --------------------------------------------------------------------------------------------
# The towers
# --------------------------------------------------------------------------------------------


def _as_numpy(x: torch.Tensor | np.ndarray, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        x = x.contiguous().numpy()  # channels-last → plain NCHW; ORT wants C order
    return np.ascontiguousarray(x, dtype=dtype)


def _mark_int8(tower: Any) -> Any:
    """An int8 tower's features differ from fp32's (cosine ≈ 0.99): its name and preprocessing id say so, because
    the feature cache is keyed by them and must never serve one for the other."""
    tower.name = f"{tower.name}+int8"
    if hasattr(tower, "_preprocess_id"):
        tower._preprocess_id = f"{tower._preprocess_id}|int8"
    return tower


class OnnxImageTower(ImageTower):
    """An image tower running in ONNX Runtime, interchangeable with the torch tower it was exported from."""

    backend = "onnx"

    def __init__(self, model: bytes | str | Path, component: Mapping[str, Any], *, threads: int | None = None, spinning: bool = False) -> None:
        super().__init__()
        self.name = str(component["tower"])
        self.output_dim = int(component["output_dim"])
        self.image_size = int(component["image_size"])
        self.pixel_mean = tuple(float(v) for v in component["pixel_mean"])  # type: ignore[assignment]
        self.pixel_std = tuple(float(v) for v in component["pixel_std"])  # type: ignore[assignment]
        self.feature_shape = tuple(int(v) for v in component["feature_shape"])
        self.component = dict(component)
        self._preprocess_id = str(component["preprocess_id"])
        self.pooling = pooling_of(self._preprocess_id)
        self.session = OrtModel(model, threads=threads, spinning=spinning)

    @property
    def preprocess_id(self) -> str:
        return self._preprocess_id

    @property
    def map_channels(self) -> int:
        return self.feature_shape[0]

    @classmethod
    def from_torch(cls, tower: ImageTower, *, root: str | Path | None = None, exporter: str = "auto", **kwargs: Any) -> OnnxImageTower:
        """The cached export of ``tower`` (exported on first use)."""
        if type(tower).preprocess is not ImageTower.preprocess:
            raise ExportError(f"image tower {tower.name!r} has its own preprocess(); ONNX towers use the standard letterbox")
        _, manifest, data = cached_export(tower, "image_tower", root=root, exporter=exporter)
        onnx_tower = cls(data, manifest["components"]["image_tower"], **kwargs)
        if onnx_tower.preprocess_id != tower.preprocess_id:
            raise ExportError(f"cached export of {tower.name!r} has another preprocess_id")
        return onnx_tower

    @classmethod
    def from_folder(cls, folder: str | Path, *, int8: bool = False, **kwargs: Any) -> OnnxImageTower:
        """From a folder written by ``modalens export`` (or the cache); the file's sha256 is checked."""
        manifest = read_manifest(folder)
        component = manifest["components"]["image_tower"]
        file = (int8 and component.get("int8_file")) or component["file"]  # int8 where there is one
        tower = cls(read_verified(folder, file, manifest), component, **kwargs)
        return _mark_int8(tower) if file != component["file"] else tower

    def run(self, pixels: np.ndarray, outputs: Sequence[str] = ("pooled",)) -> list[np.ndarray]:
        """The numpy path: (B, 3, S, S) float32 → the named outputs (``pooled``, ``features``)."""
        pixels = _as_numpy(pixels, np.float32)
        if len(pixels) == 0:
            shapes = {"pooled": (0, self.output_dim), "features": (0, *self.feature_shape)}
            return [np.zeros(shapes[o], np.float32) for o in outputs]
        return self.session.run({"pixels": pixels}, outputs)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(pixels, ["pooled"])[0])

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(pixels, ["features"])[0])

    def forward_both(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled vector and feature map from one pass."""
        pooled, features = self.run(pixels, ["pooled", "features"])
        return torch.from_numpy(pooled), torch.from_numpy(features)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, exporter={self.component.get('exporter')}, opset={self.component.get('opset')}"


class OnnxTextTower(TextTower):
    """A text tower running in ONNX Runtime; tokenising stays in Python (the same tokenizer as the torch tower)."""

    backend = "onnx"

    def __init__(
        self,
        model: bytes | str | Path,
        component: Mapping[str, Any],
        tokenizer: Any,
        *,
        max_length: int | None = None,
        threads: int | None = None,
        spinning: bool = False,
    ) -> None:
        super().__init__()
        self.name = str(component["tower"])
        self.output_dim = int(component["output_dim"])
        self.max_length = int(max_length if max_length is not None else component.get("max_length", 64))
        self.normalize = bool(component.get("normalize", False))
        self.tokenizer = tokenizer
        self.component = dict(component)
        self.input_names = list(component["inputs"])
        self.session = OrtModel(model, threads=threads, spinning=spinning)

    @classmethod
    def from_torch(cls, tower: TextTower, *, root: str | Path | None = None, exporter: str = "auto", **kwargs: Any) -> OnnxTextTower:
        if not hasattr(tower, "tokenizer"):
            raise ExportError(f"text tower {tower.name!r} has no tokenizer to keep")
        _, manifest, data = cached_export(tower, "text_tower", root=root, exporter=exporter)
        return cls(data, manifest["components"]["text_tower"], tower.tokenizer, max_length=tower.max_length, **kwargs)  # type: ignore[attr-defined]

    @classmethod
    def from_folder(cls, folder: str | Path, *, int8: bool = False, max_length: int | None = None, **kwargs: Any) -> OnnxTextTower:
        """From a folder written by ``modalens export`` (its ``tokenizer/`` is used)."""
        from transformers import AutoTokenizer

        manifest = read_manifest(folder)
        component = manifest["components"]["text_tower"]
        tokenizer = AutoTokenizer.from_pretrained(str(Path(folder) / "tokenizer"), local_files_only=True)
        file = (int8 and component.get("int8_file")) or component["file"]
        tower = cls(read_verified(folder, file, manifest), component, tokenizer, max_length=max_length, **kwargs)
        return _mark_int8(tower) if file != component["file"] else tower

    def _tokenize(self, texts: Sequence[str], tensors: str) -> Any:
        texts = [str(t) for t in texts]
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors=tensors)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self._tokenize(texts, "pt")

    def run(self, tokens: Mapping[str, Any]) -> np.ndarray:
        """The numpy path: token arrays (int64, batch × sequence) → (batch, output_dim)."""
        feeds = {n: _as_numpy(tokens[n], np.int64) for n in self.input_names}
        if len(feeds[self.input_names[0]]) == 0:
            return np.zeros((0, self.output_dim), np.float32)
        return self.session.run(feeds, ["pooled"])[0]

    def encode_states(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texts → pooled (n, dim), token states (n, tokens, dim), mask (n, tokens): as ``HFTextTower.encode_states``."""
        if "tokens" not in self.component.get("outputs", []):
            raise ExportError(f"text tower export {self.name!r} gives no token states: export it again")
        tokens = self._tokenize(texts, "np")
        feeds = {n: _as_numpy(tokens[n], np.int64) for n in self.input_names}
        pooled, states = self.session.run(feeds, ["pooled", "tokens"])
        return pooled, states, feeds["attention_mask"]

    def encode_numpy(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.output_dim), np.float32)
        return self.run(self._tokenize(texts, "np"))

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run({"input_ids": input_ids, "attention_mask": attention_mask, **extra}))

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.encode_numpy(list(texts)))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, exporter={self.component.get('exporter')}, opset={self.component.get('opset')}"
