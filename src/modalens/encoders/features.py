"""Frozen-tower features, computed once and cached on disk.

With frozen towers, retraining projection heads needs only the towers'
outputs: caching them (keyed by tower, preprocessing and the file's bytes)
turns minutes of CNN/transformer work into a seconds-long head fit.
The cache is append-only shards written atomically, so an interrupted run
keeps everything finished so far and the next run resumes.

A tower here is a PyTorch tower (``encoders.base``: tensors in and out) or a
*numpy tower* (``numpy_io = True``: arrays in and out, such as an ONNX export's,
:mod:`modalens.backends.runtime`); this module imports torch only for the former,
so a torch-free evaluation reads and fills the same cache.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from contextlib import closing, contextmanager, nullcontext
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..catalog.images import MAX_IMAGE_BYTES, ImageError, image_sha1, normalise_pixels
from ..paths import cache_dir
from ..progress import show_progress
from .views import get_view, view_id

if TYPE_CHECKING:
    from .base import ImageTower, TextTower


class FeatureStore:
    """key → vector (float32, or ``dtype``: spatial maps keep float16), for one tower; keys are hex digests.

    Opening reads only the shards' key lists; a shard's vectors are read the first time one of its keys is asked
    for. A cache grows with every catalogue, view and run on a machine, and a command that needs a thousand
    vectors should not read (and hold) all of them.
    """

    def __init__(self, root: Path, namespace: str, dtype: Any = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        self.dir = Path(root) / "features" / hashlib.sha1(namespace.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "NAMESPACE").write_text(namespace)
        self._table: dict[str, np.ndarray] = {}  # vectors in memory: those put here, and those of shards read
        self._pending_keys: list[str] = []
        self._pending: list[np.ndarray] = []
        self.flush_rows = 2048
        self._shards = sorted(self.dir.glob("part-*.npz"))
        self._shard_of: dict[str, int] = {}  # a key on disk → the shard holding it
        self._unread = set(range(len(self._shards)))
        for i, shard in enumerate(self._shards):
            with np.load(shard) as data:
                self._shard_of.update(dict.fromkeys(data["keys"].tolist(), i))

    def __contains__(self, key: str) -> bool:
        return key in self._table or key in self._shard_of

    def __len__(self) -> int:
        return len(self._shard_of.keys() | self._table.keys())

    def get(self, key: str) -> np.ndarray | None:
        vector = self._table.get(key)
        if vector is None and key in self._shard_of:
            self._read(self._shard_of[key])
            vector = self._table.get(key)
        return vector

    def _read(self, index: int) -> None:
        if index not in self._unread:
            return
        self._unread.discard(index)
        with np.load(self._shards[index]) as data:
            for key, vector in zip(data["keys"].tolist(), data["vectors"]):
                self._table.setdefault(key, vector)  # a vector put since opening stays

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Buffer new vectors; they reach disk in shards of ``flush_rows`` (and on ``flush()``)."""
        vectors = np.asarray(vectors, dtype=self.dtype)
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


def file_key(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """SHA-1 of a photo file's bytes (the cache key's part that changes when the photo does).

    The first thing that opens a user's photo, so it checks the file first
    (:func:`~modalens.catalog.images.image_sha1`): a FIFO, a device, a link to
    one or a file over ``max_bytes`` raises ``ImageError`` instead of hanging.
    """
    return image_sha1(path, max_bytes=max_bytes)


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


#: Marks features computed from JPEG draft (DCT-scaled) decoding; part of the cache key and store namespace.
DRAFT_DECODE_ID = "decode=jpeg-draft"


def numpy_tower(tower: Any) -> bool:
    """A tower that takes and returns numpy arrays (``numpy_io``: an ONNX export's), so no torch on its path."""
    return bool(getattr(tower, "numpy_io", False))


def _encoder(tower: Any, numpy_method: str) -> tuple[Callable[[Any], np.ndarray], ContextManager[Any]]:
    """The tower as a function to numpy arrays, and the context to call it in (torch's inference mode for a torch tower)."""
    if numpy_tower(tower):
        return getattr(tower, numpy_method), nullcontext()
    import torch

    tower.eval()

    def encode(inputs: Any) -> np.ndarray:
        return tower(torch.from_numpy(inputs) if isinstance(inputs, np.ndarray) else inputs).float().numpy()

    return encode, torch.inference_mode()


def uses_standard_decode(tower: ImageTower) -> bool:
    """Whether image_features decodes for ``tower`` itself (letterbox, JPEG draft, worker processes).

    True for every tower with the shared letterbox preprocessing (a numpy tower's is); a tower with
    its own ``preprocess`` (a crop, say) gets full-size decodes and its own code.
    """
    if numpy_tower(tower):
        return True
    from .base import ImageTower

    return type(tower).preprocess is ImageTower.preprocess


def image_feature_salt(tower: ImageTower, *, draft: bool, view: str | None = None) -> str:
    """What, besides the file's bytes, decides a cached image feature.

    JPEG draft decoding is always on where image_features decodes (see
    :func:`uses_standard_decode`): it makes big photos several times cheaper
    and changes a big JPEG's pixels slightly, so it is named here and in the
    store's namespace, and features from full decodes are never reused for it.
    It is not folded into ``tower.preprocess_id`` on purpose: the tower's own
    preprocessing (PIL image → tensor) has not changed, and that id is also
    the identity of the tower's ONNX export, which would otherwise be redone.
    Keying only the photos that draft really shrinks would keep more of an old
    cache, but would tie the key to predicting the decoder's scale choice from
    the header; one recompute of an old cache is the cheaper price.
    """
    salt = f"{tower.preprocess_id}|{DRAFT_DECODE_ID}" if draft else tower.preprocess_id
    return f"{salt}|view={view_id(view)}" if view else salt


def image_features(
    tower: ImageTower,
    sources: Sequence[str],
    *,
    store: FeatureStore | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
    load_image: Callable[[str], object] | None = None,
    view: str | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Pooled features for each image path; unreadable images are reported by position, never fatal.

    Returns ``(features, failures)``: rows of failed images are zeros and
    ``failures[i]`` says why image ``i`` could not be used. ``view`` names a
    deterministic transform from ``encoders.views`` applied after decoding.
    Decoding runs ahead of the encoder in ``workers`` processes (default:
    :func:`~modalens.encoders.pipeline.default_workers`; 0 = one thread),
    JPEGs decoded at the smallest DCT scale the letterbox needs; a custom
    ``load_image`` or a tower with its own ``preprocess`` decodes in a thread
    at full size, as given.
    """
    from ..catalog.images import load_image as safe_load_image

    standard = load_image in (None, safe_load_image) and uses_standard_decode(tower)
    salt = image_feature_salt(tower, draft=standard, view=view)
    out = np.zeros((len(sources), tower.output_dim), dtype=np.float32)
    failures: dict[int, str] = {}
    keys, todo, copies = _cached_image_rows(sources, salt, store, out, failures)
    bar = tqdm(total=len(todo), desc=f"{tower.name} images", unit="img", disable=not show_progress(progress) or not todo)
    if standard:
        batches = _standard_batches(tower, [sources[i] for i in todo], batch_size, view, workers)
    else:
        batches = _custom_batches(tower, [sources[i] for i in todo], batch_size, view, load_image or safe_load_image)
    encode, inference = _encoder(tower, "encode_pixels")
    with inference, _flushing(store), closing(batches):
        for ok, bad, pixels in batches:
            for j, reason in bad:
                failures[todo[j]] = reason
            rows = [todo[j] for j in ok]
            if rows:
                feats = encode(pixels)
                out[rows] = feats
                if store is not None:
                    store.put_many([keys[i] for i in rows], feats)
            bar.update(len(ok) + len(bad))
            bar.set_postfix(failed=len(failures))
    bar.close()
    for i, first in copies.items():  # the same photo named again (same bytes, same view): computed once
        if first in failures:
            failures[i] = failures[first]
        else:
            out[i] = out[first]
    return out, failures


def grid_shape(tower: ImageTower) -> tuple[int, int, int]:
    """(C, h, w) of the tower's feature map: an export records it; a torch tower is asked once, on a blank image."""
    shape = getattr(tower, "feature_shape", None)
    if shape:
        return tuple(int(v) for v in shape)  # type: ignore[return-value]
    import torch

    with torch.inference_mode():
        probe = tower.forward_features(torch.zeros(1, 3, tower.image_size, tower.image_size))
    return tuple(int(v) for v in probe.shape[1:])  # type: ignore[return-value]


def _pooled_and_grid(tower: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The tower as pixels → (pooled (B, C), map (B, C, h, w)) from one pass (an ONNX tower's two outputs, or torch)."""
    if hasattr(tower, "run"):  # OnnxImageTower, or an export's (runtime.ExportImageTower): both outputs of one graph
        return lambda pixels: tuple(tower.run(pixels, ["pooled", "features"]))  # type: ignore[return-value]
    if numpy_tower(tower) or not hasattr(tower, "forward_features") or not uses_standard_decode(tower):
        raise ValueError(f"image tower {getattr(tower, 'name', tower)!r} does not give a spatial feature map here")
    import torch

    from .base import ImageTower

    tower.eval()
    pools_map = type(tower).forward is ImageTower.forward  # the pooled vector comes from the map: no second pass

    def encode(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs = torch.from_numpy(pixels)
        maps = tower.forward_features(inputs).float()
        pooled = tower.pool(maps, inputs).float() if pools_map else tower(inputs).float()
        return pooled.numpy(), maps.numpy()

    return encode


def image_grids(
    tower: ImageTower,
    sources: Sequence[str],
    *,
    store: FeatureStore | None = None,
    pooled_store: FeatureStore | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Spatial feature maps (n, h·w, C) float16, one row per grid cell in reading order, for each image path.

    What ECLIP-style instance queries attend to (:mod:`modalens.models.instance_decoder`). Decoded as
    :func:`image_features` decodes (letterbox, JPEG draft, workers); cached in ``store`` (float16:
    a 7×7×1280 map is 125 KB). The same pass gives the pooled vector, which goes into
    ``pooled_store`` (the pooled cache) when given, so the global embedding of a photo whose map was
    computed costs nothing more. Failures are reported by position as in :func:`image_features`.
    """
    channels, height, width = grid_shape(tower)
    cells = height * width
    salt = image_feature_salt(tower, draft=True)
    out = np.zeros((len(sources), cells * channels), dtype=np.float16)
    failures: dict[int, str] = {}
    keys, todo, copies = _cached_image_rows(sources, salt, store, out, failures)
    bar = tqdm(total=len(todo), desc=f"{tower.name} grids", unit="img", disable=not show_progress(progress) or not todo)
    encode = _pooled_and_grid(tower)
    batches = _standard_batches(tower, [sources[i] for i in todo], batch_size, None, workers)
    inference = nullcontext() if hasattr(tower, "run") else _torch_inference()
    with inference, _flushing(store), _flushing(pooled_store), closing(batches):
        for ok, bad, pixels in batches:
            for j, reason in bad:
                failures[todo[j]] = reason
            rows = [todo[j] for j in ok]
            if rows:
                pooled, maps = encode(np.ascontiguousarray(pixels))
                flat = maps.reshape(len(rows), channels, cells).transpose(0, 2, 1).reshape(len(rows), -1)
                out[rows] = flat
                if store is not None:
                    store.put_many([keys[i] for i in rows], flat)
                if pooled_store is not None:
                    fresh = [(keys[i], v) for i, v in zip(rows, pooled) if keys[i] not in pooled_store]
                    if fresh:
                        pooled_store.put_many([k for k, _ in fresh], np.stack([v for _, v in fresh]))
            bar.update(len(ok) + len(bad))
    bar.close()
    for i, first in copies.items():
        if first in failures:
            failures[i] = failures[first]
        else:
            out[i] = out[first]
    return out.reshape(len(sources), cells, channels), failures


def _torch_inference() -> ContextManager[Any]:
    import torch

    return torch.inference_mode()


#: One step of image_features: positions (into the todo list) encoded, failed ``(position, reason)``, and their
#: pixels (a numpy array, or a torch tensor from a torch tower's own ``preprocess``).
_Batch = tuple[list[int], list[tuple[int, str]], Any]


def _cached_image_rows(
    sources: Sequence[str], salt: str, store: FeatureStore | None, out: np.ndarray, failures: dict[int, str]
) -> tuple[dict[int, str], list[int], dict[int, int]]:
    """Fill ``out`` from the cache; return every readable image's key, the positions still to compute, and
    the positions whose key an earlier position already has (position → that earlier one), computed once."""
    keys: dict[int, str] = {}
    todo: list[int] = []
    first_with_key: dict[str, int] = {}
    copies: dict[int, int] = {}
    for i, src in enumerate(sources):
        try:
            keys[i] = hashlib.sha1(f"{salt}|{file_key(src)}".encode()).hexdigest()
        except ImageError as e:  # missing, unreadable, not a regular file, too big: the message names the file
            failures[i] = str(e)
            continue
        except OSError as e:
            failures[i] = f"cannot read {src}: {e.strerror or e}"
            continue
        cached = store.get(keys[i]) if store is not None else None
        if cached is not None:
            out[i] = cached
        elif keys[i] in first_with_key:
            copies[i] = first_with_key[keys[i]]
        else:
            first_with_key[keys[i]] = i
            todo.append(i)
    return keys, todo, copies


def _standard_batches(tower: ImageTower, sources: list[str], batch_size: int, view: str | None, workers: int | None) -> Iterator[_Batch]:
    """Letterboxed uint8 photos from the decode pipeline, stacked and normalised here (the only per-batch work left to this process)."""
    from .pipeline import batches_of, decode_in_order, default_workers

    if workers is None:
        workers = default_workers(len(sources))
    if view and workers:
        # Views render in the decode thread, as they always have: decode processes have never been
        # tested with them (views no longer import torch; a seeded view is a functools.partial).
        workers = 0
    # Only torch's convolutions gain from channels-last; ONNX Runtime wants plain NCHW.
    channels_last = getattr(tower, "backend", "torch") == "torch"
    failed: list[tuple[int, str]] = []
    decoded = decode_in_order(sources, tower.image_size, workers=workers, draft=True, view=get_view(view) if view else None, ahead=4 * batch_size)
    for batch in batches_of(decoded, batch_size, lambda item: failed.append((item.position, str(item.error)))):
        pixels = normalise_pixels(np.stack([item.pixels for item in batch]), tower.pixel_mean, tower.pixel_std, channels_last=channels_last)
        bad = failed.copy()
        failed.clear()
        yield [item.position for item in batch], bad, pixels
    if failed:
        yield [], failed, None


def _custom_batches(
    tower: ImageTower, sources: list[str], batch_size: int, view: str | None, load_image: Callable[[str], object]
) -> Iterator[_Batch]:
    """The tower's own ``preprocess`` on each full-size decode, one batch prepared in a thread while the last is encoded
    (a numpy tower's ``preprocess_numpy``: the letterbox, on numpy)."""
    transform = get_view(view) if view else None
    channels_last = getattr(tower, "backend", "torch") == "torch"
    as_numpy = numpy_tower(tower)
    preprocess = tower.preprocess_numpy if as_numpy else tower.preprocess

    def load(batch: list[int]) -> _Batch:
        ok, bad, tensors = [], [], []
        for j in batch:
            try:
                image = load_image(sources[j])
                tensors.append(preprocess(transform(image) if transform else image))
                ok.append(j)
            except Exception as e:  # any decode problem is the image's, not the run's
                bad.append((j, str(e)))
        if not tensors:
            return ok, bad, None
        if as_numpy:
            return ok, bad, np.stack(tensors)
        import torch

        pixels = torch.stack(tensors)
        return ok, bad, pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels

    positions = list(range(len(sources)))
    yield from _prefetched([positions[j : j + batch_size] for j in range(0, len(positions), batch_size)], load)


def _prefetched(batches: list[list[int]], load: Callable[[list[int]], _Batch]) -> Iterator[_Batch]:
    """Prepare the next batch in a background thread while the current one is encoded."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(load, batches[0]) if batches else None
        for i in range(len(batches)):
            result = future.result()
            if i + 1 < len(batches):
                future = pool.submit(load, batches[i + 1])
            yield result


def text_features(
    tower: TextTower,
    texts: Sequence[str],
    *,
    store: FeatureStore | None = None,
    batch_size: int = 128,
    progress: bool | None = None,
    by_length: bool = True,
) -> np.ndarray:
    """Features for each text, in input order.

    The tokenizer pads a batch to its longest text, so with ``by_length``
    (the default) texts are encoded shortest first: each batch holds texts of
    similar length and padding wastes little work (titles of 5 and 60 words
    no longer share a batch). Padding is masked, so the features equal
    unsorted batching to float rounding; rows go back to their input positions.
    """
    out = np.zeros((len(texts), tower.output_dim), dtype=np.float32)
    keys = [text_key(t) for t in texts]
    todo = []
    for i, key in enumerate(keys):
        cached = store.get(key) if store is not None else None
        if cached is not None:
            out[i] = cached
        else:
            todo.append(i)
    if by_length:
        todo.sort(key=lambda i: len(texts[i]))  # characters: a free, close proxy for the token count
    bar = tqdm(total=len(todo), desc=f"{tower.name} texts", unit="txt", disable=not show_progress(progress) or len(todo) < 512)
    encode, inference = _encoder(tower, "encode_texts")
    with inference, _flushing(store):
        for j in range(0, len(todo), batch_size):
            batch = todo[j : j + batch_size]
            feats = encode([texts[i] for i in batch])
            out[batch] = feats
            if store is not None:
                store.put_many([keys[i] for i in batch], feats)
            bar.update(len(batch))
    bar.close()
    return out


class TokenStates:
    """Per text, a text tower's last-layer token states (tokens × dim, float16): what a token head reads
    (``models.heads.TokenHead``). The rows are kept as given (views into the cache's shards, no copy);
    ``batch(rows)`` pads the chosen texts into one array and its mask."""

    def __init__(self, rows: Sequence[np.ndarray], dim: int) -> None:
        self.rows = list(rows)
        self.dim = int(dim)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, i: int) -> np.ndarray:
        return self.rows[i]

    def batch(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(len(rows), longest, dim) float32 states, zero-padded, and the (len(rows), longest) int64 mask."""
        chosen = [self.rows[int(i)] for i in rows]
        longest = max((len(r) for r in chosen), default=0)
        states = np.zeros((len(chosen), longest, self.dim), np.float32)
        mask = np.zeros((len(chosen), longest), np.int64)
        for k, r in enumerate(chosen):
            states[k, : len(r)] = r
            mask[k, : len(r)] = 1
        return states, mask


class TokenStore(FeatureStore):
    """key → one text's token states (tokens × dim, float16): rows of any length.

    A shard is two files: ``part-<id>.states.npy`` (every row's states, stacked) and ``part-<id>.index.npz``
    (keys and row lengths), the index written last, so a shard without one is unfinished and ignored.
    States are memory-mapped, not read: 200k captions' states are 3-4 GB, which the page cache holds
    (shared between every store of a process, and given back under memory pressure) instead of the heap.
    """

    def __init__(self, root: Path, namespace: str) -> None:
        self.dtype = np.dtype(np.float16)
        self.dir = Path(root) / "features" / hashlib.sha1(namespace.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "NAMESPACE").write_text(namespace)
        self._table = {}
        self._shards, self._shard_of, self._unread = [], {}, set()  # states are memory-mapped: every key in _table
        self._pending_keys, self._pending = [], []
        self.flush_rows = 4096
        for index in sorted(self.dir.glob("part-*.index.npz")):
            states = np.load(index.with_name(index.name.replace(".index.npz", ".states.npy")), mmap_mode="r")
            with np.load(index) as data:
                bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
                self._table.update((k, states[a:b]) for k, a, b in zip(data["keys"].tolist(), bounds[:-1], bounds[1:]))

    def put_many(self, keys: Sequence[str], vectors: Sequence[np.ndarray]) -> None:  # type: ignore[override]
        rows = [np.asarray(v, dtype=np.float16) for v in vectors]
        self._table.update(zip(keys, rows))
        self._pending_keys.extend(keys)
        self._pending.extend(rows)
        if len(self._pending_keys) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending_keys:
            return
        name = f"part-{uuid.uuid4().hex}"
        for suffix, write in (
            (".states.npy", lambda f: np.save(f, np.concatenate(self._pending))),
            (".index.npz", lambda f: np.savez(f, keys=np.asarray(self._pending_keys), lengths=np.array([len(r) for r in self._pending]))),
        ):
            tmp = self.dir / f".{name}{suffix}.tmp"
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / f"{name}{suffix}")
        self._pending_keys, self._pending = [], []


def text_states(
    tower: Any,
    texts: Sequence[str],
    *,
    store: TokenStore | None = None,
    pooled_store: FeatureStore | None = None,
    batch_size: int = 128,
    progress: bool | None = None,
) -> TokenStates:
    """Each text's last-layer token states (its real tokens only, padding dropped), cached in ``store``.

    The tower's ``encode_states`` gives the pooled embedding from the same pass; it fills ``pooled_store``
    (the pooled cache) too, so a model with a pooled head reads these texts for free afterwards. Texts are
    encoded shortest first, as :func:`text_features` does.
    """
    if not hasattr(tower, "encode_states"):
        raise ValueError(f"text tower {getattr(tower, 'name', tower)!r} gives no token states (encode_states)")
    keys = [text_key(t) for t in texts]
    rows: list[np.ndarray | None] = [store.get(k) if store is not None else None for k in keys]
    todo = sorted((i for i, r in enumerate(rows) if r is None), key=lambda i: len(texts[i]))
    first: dict[str, int] = {}
    bar = tqdm(total=len(todo), desc=f"{tower.name} token states", unit="txt", disable=not show_progress(progress) or len(todo) < 512)
    with _flushing(store), _flushing(pooled_store):
        for j in range(0, len(todo), batch_size):
            batch = [i for i in todo[j : j + batch_size] if first.setdefault(keys[i], i) == i]
            if batch:
                pooled, states, mask = tower.encode_states([texts[i] for i in batch])
                fresh = [states[k, : int(mask[k].sum())].astype(np.float16) for k in range(len(batch))]
                for i, r in zip(batch, fresh):
                    rows[i] = r
                if store is not None:
                    store.put_many([keys[i] for i in batch], fresh)
                if pooled_store is not None:
                    new = [k for k, i in enumerate(batch) if keys[i] not in pooled_store]
                    if new:
                        pooled_store.put_many([keys[batch[k]] for k in new], pooled[new])
            bar.update(len(todo[j : j + batch_size]))
    bar.close()
    for i in todo:
        if rows[i] is None:
            rows[i] = rows[first[keys[i]]]
    dim = rows[0].shape[1] if rows else int(getattr(tower, "output_dim", 0))
    return TokenStates(rows, dim)  # type: ignore[arg-type]


def default_token_store(tower: Any) -> TokenStore:
    """The on-disk cache of ``tower``'s token states, beside its pooled features (same namespace plus ``tokens``)."""
    return TokenStore(cache_dir(), f"text-tokens|{tower.name}|len{tower.max_length}")


def default_store(tower: ImageTower | TextTower, kind: str) -> FeatureStore:
    """The on-disk cache for ``tower``'s features under ``cache_dir()``; image features decoded with JPEG draft get their own."""
    if kind == "image":
        namespace = image_feature_salt(tower, draft=uses_standard_decode(tower)) if _is_image_tower(tower) else None
    else:
        namespace = f"{tower.name}|len{tower.max_length}"
    return FeatureStore(cache_dir(), f"{kind}|{namespace or tower.name}")


def default_grid_store(tower: ImageTower) -> FeatureStore:
    """The on-disk cache of ``tower``'s spatial feature maps (float16), beside its pooled features."""
    store = FeatureStore(cache_dir(), f"image-grid|{image_feature_salt(tower, draft=True)}", dtype=np.float16)
    store.flush_rows = 256  # 256 maps of 7×7×1280 in float16 are 32 MB a shard
    return store


def _is_image_tower(tower: Any) -> bool:
    if numpy_tower(tower):
        return True
    from .base import ImageTower

    return isinstance(tower, ImageTower)
