"""Frozen-tower features, computed once and cached on disk.

With frozen towers, retraining projection heads needs only the towers'
outputs: caching them (keyed by tower, preprocessing and the file's bytes)
turns minutes of CNN/transformer work into a seconds-long head fit.
The cache is append-only shards written atomically, so an interrupted run
keeps everything finished so far and the next run resumes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..paths import cache_dir
from .base import ImageTower, TextTower
from .views import get_view


class FeatureStore:
    """key → float32 vector, for one tower; keys are hex digests."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.dir = Path(root) / "features" / hashlib.sha1(namespace.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "NAMESPACE").write_text(namespace)
        self._table: dict[str, np.ndarray] = {}
        self._pending_keys: list[str] = []
        self._pending: list[np.ndarray] = []
        self.flush_rows = 2048
        for shard in sorted(self.dir.glob("part-*.npz")):
            with np.load(shard) as data:
                self._table.update(zip(data["keys"].tolist(), data["vectors"]))

    def __contains__(self, key: str) -> bool:
        return key in self._table

    def __len__(self) -> int:
        return len(self._table)

    def get(self, key: str) -> np.ndarray | None:
        return self._table.get(key)

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Buffer new vectors; they reach disk in shards of ``flush_rows`` (and on ``flush()``)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        self._table.update(zip(keys, vectors))
        self._pending_keys.extend(keys)
        self._pending.append(vectors)
        if len(self._pending_keys) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending_keys:
            return
        name = f"part-{uuid.uuid4().hex}.npz"
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.asarray(self._pending_keys), vectors=np.concatenate(self._pending))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / name)
        self._pending_keys, self._pending = [], []


@contextmanager
def _flushing(store: FeatureStore | None) -> Iterator[None]:
    """Whatever was computed reaches disk even when the run is interrupted."""
    try:
        yield
    finally:
        if store is not None:
            store.flush()


def file_key(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _prefetched(batches: list[list[int]], load: Callable[[list[int]], object]) -> Iterator[object]:
    """Decode the next batch in a background thread while the current one is encoded."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(load, batches[0]) if batches else None
        for i in range(len(batches)):
            result = future.result()
            if i + 1 < len(batches):
                future = pool.submit(load, batches[i + 1])
            yield result


def image_features(
    tower: ImageTower,
    sources: Sequence[str],
    *,
    store: FeatureStore | None = None,
    batch_size: int = 32,
    progress: bool = True,
    load_image: Callable[[str], object] | None = None,
    view: str | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Pooled features for each image path; unreadable images are reported by position, never fatal.

    Returns ``(features, failures)``: rows of failed images are zeros and
    ``failures[i]`` says why image ``i`` could not be used. ``view`` names a
    deterministic transform from ``encoders.views`` applied after decoding.
    """
    if load_image is None:
        from ..catalog.images import load_image as _load

        load_image = _load
    transform = get_view(view) if view else None
    salt = f"{tower.preprocess_id}|view={view}" if view else tower.preprocess_id
    out = np.zeros((len(sources), tower.output_dim), dtype=np.float32)
    failures: dict[int, str] = {}
    keys: dict[int, str] = {}
    todo: list[int] = []
    for i, src in enumerate(sources):
        try:
            keys[i] = hashlib.sha1(f"{salt}|{file_key(src)}".encode()).hexdigest()
        except OSError as e:
            failures[i] = f"cannot read {src}: {e.strerror or e}"
            continue
        cached = store.get(keys[i]) if store is not None else None
        if cached is not None:
            out[i] = cached
        else:
            todo.append(i)

    # Only torch's convolutions gain from channels-last; ONNX Runtime wants plain NCHW.
    channels_last = getattr(tower, "backend", "torch") == "torch"

    def load(batch: list[int]) -> tuple[list[int], torch.Tensor | None]:
        """Decode, preprocess and stack one batch (in the prefetch thread, overlapping the encoder)."""
        ok, tensors = [], []
        for i in batch:
            try:
                image = load_image(sources[i])
                tensors.append(tower.preprocess(transform(image) if transform else image))
                ok.append(i)
            except Exception as e:  # any decode problem is the image's, not the run's
                failures[i] = str(e)
        if not tensors:
            return ok, None
        pixels = torch.stack(tensors)
        return ok, pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels

    batches = [todo[j : j + batch_size] for j in range(0, len(todo), batch_size)]
    bar = tqdm(total=len(todo), desc=f"{tower.name} images", unit="img", disable=not progress or not todo)
    tower.eval()
    with torch.inference_mode(), _flushing(store):
        for ok, pixels in _prefetched(batches, load):
            if ok:
                feats = tower(pixels).float().numpy()
                out[ok] = feats
                if store is not None:
                    store.put_many([keys[i] for i in ok], feats)
            bar.update(len(ok))
            bar.set_postfix(failed=len(failures))
    bar.close()
    return out, failures


def text_features(
    tower: TextTower,
    texts: Sequence[str],
    *,
    store: FeatureStore | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> np.ndarray:
    """Features for each text; texts are batched by length so padding wastes little work."""
    out = np.zeros((len(texts), tower.output_dim), dtype=np.float32)
    keys = [text_key(t) for t in texts]
    todo = []
    for i, key in enumerate(keys):
        cached = store.get(key) if store is not None else None
        if cached is not None:
            out[i] = cached
        else:
            todo.append(i)
    todo.sort(key=lambda i: len(texts[i]))
    bar = tqdm(total=len(todo), desc=f"{tower.name} texts", unit="txt", disable=not progress or len(todo) < 512)
    tower.eval()
    with torch.inference_mode(), _flushing(store):
        for j in range(0, len(todo), batch_size):
            batch = todo[j : j + batch_size]
            feats = tower([texts[i] for i in batch]).float().numpy()
            out[batch] = feats
            if store is not None:
                store.put_many([keys[i] for i in batch], feats)
            bar.update(len(batch))
    bar.close()
    return out


def default_store(tower: ImageTower | TextTower, kind: str) -> FeatureStore:
    namespace = getattr(tower, "preprocess_id", None) if kind == "image" else f"{tower.name}|len{tower.max_length}"
    return FeatureStore(cache_dir(), f"{kind}|{namespace or tower.name}")
