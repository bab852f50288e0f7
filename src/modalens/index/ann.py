"""Approximate nearest-neighbour search (faiss IVF-Flat) and its crash-safe cache file.

:class:`FaissIVFSearch` offers :class:`~modalens.index.search.ExactSearch`'s
contract (``ids``, ``n_rows``, ``search(queries, k, mask)`` returning
``(row, score)`` pairs) plus incremental ``upsert``/``remove``, so the SQLite
store can keep it in step with its own writes instead of rebuilding it.

Why IVF-Flat (see docs/index.md for the measurements): on the catalogue's real
embeddings it reaches recall@10 >= 0.99 at a fraction of exact search's cost,
builds several times faster than any HNSW, removes vectors for real
(``remove_ids``), and takes filters *inside* the scan (``IDSelectorBitmap``):
only allowed rows are ever scored, so a filter never costs recall the way
over-fetch-and-drop does. It stores the raw float32 vectors, so the scores it
returns are exact cosines, and scanning every list that holds an allowed row
is an exact filtered search, which is what a very selective filter ends up doing.

A filter chooses its lists by what they hold (:meth:`FaissIVFSearch._probe_lists`):
lists nearest the query first, lists without an allowed row skipped, until the
allowed rows scanned reach what a plain query scans. Attribute filters
correlate with the embedding (a colour, an article type), so a global "probe
1/selectivity more lists" rule probes the wrong lists for a query far from the
allowed ones and too many for a query among them; counting allowed rows per
list is what keeps the filtered recall at the unfiltered one (docs/index.md).

Rows are slots: a product keeps its row while it lives (an update replaces the
vector under the same row), a deleted product's row is reused by the next new
one. The cache file is derived data: written atomically, tagged with the
SQLite ``generation`` it reflects and the store's identity, checksummed, and
simply rebuilt from SQLite when anything about it is off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Default probes for a plain query: a fraction of the lists, at least a floor (recall >= 0.99 on real data).
NPROBE_FRACTION, NPROBE_MIN = 0.008, 32
#: A filtered query scans lists until it has seen this many times the allowed rows a plain query scans
#: (nprobe * mean list size), nearest lists first, lists with no allowed row skipped.
FILTER_SCAN_FACTOR = 1.5
#: Per-filter list counts kept (the same facet filters recur); any write clears them.
FILTER_CACHE_SIZE = 16
#: Vectors per coarse list the trainer wants (faiss warns below 39).
MIN_POINTS_PER_LIST = 39
CACHE_FORMAT = 1
_MAGIC = b"MODALENS-ANN\x00\x01"
_TRAILER = b"MLEND\x00"


class AnnCacheError(RuntimeError):
    """The ANN cache file is missing, unreadable, corrupt or belongs to another store; rebuild it."""


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - exercised where faiss is absent
        raise ImportError(
            "the faiss back-end needs faiss-cpu: pip install 'modalens[ann]' (exact search works without it)"
        ) from exc
    return faiss


def nlist_for(n: int) -> int:
    """Coarse lists for n vectors: about 4 * sqrt(n), but never fewer than 39 training points per list."""
    return max(1, min(round(4 * math.sqrt(max(n, 1))), n // MIN_POINTS_PER_LIST))


def nprobe_for(nlist: int) -> int:
    return min(nlist, max(NPROBE_MIN, math.ceil(NPROBE_FRACTION * nlist)))


@dataclass(frozen=True)
class FilterLists:
    """What a filter allows, per coarse list: the selector's bitmap, and the lists holding allowed rows with their counts."""

    bits: np.ndarray  # packed allowed-row bitmap (little bit order), what IDSelectorBitmap reads
    n_allowed: int
    lists: np.ndarray  # ids of the lists holding at least one allowed row
    counts: np.ndarray  # allowed rows in each of ``lists``


class FaissIVFSearch:
    """Cosine top-k over L2-normalised float32 rows with a faiss ``IndexIVFFlat`` (inner product).

    Build with :meth:`build` or :meth:`load`. ``ids[row]`` is the product id in
    a row, ``None`` for a free slot; ``n_rows`` is the length a row mask must have.
    """

    kind = "faiss-ivf"

    def __init__(self, index: Any, ids: list[str | None], *, trained_rows: int, nprobe: int | None = None) -> None:
        self.index = index
        self.ids = ids
        self.trained_rows = trained_rows
        self.nprobe = nprobe or nprobe_for(index.nlist)
        self.generation = -1  # the store generation this reflects; set by the owner
        self.unsaved = 0  # rows changed since the cache file was written
        self._row_of = {pid: row for row, pid in enumerate(ids) if pid is not None}
        self._free = [row for row in range(len(ids) - 1, -1, -1) if ids[row] is None]
        self.alive = np.array([pid is not None for pid in ids], dtype=bool)
        if index.ntotal != len(self._row_of):
            raise AnnCacheError(f"faiss index holds {index.ntotal} vectors but {len(self._row_of)} rows are live")
        self.list_of_row = _list_of_row(index, len(ids))  # -1 for a free slot
        self._centroids: np.ndarray | None = None
        self._filter_lists: OrderedDict[bytes, FilterLists] = OrderedDict()

    # ---------------------------------------------------------------- building

    @classmethod
    def build(cls, ids: Sequence[str], matrix: np.ndarray, *, nlist: int | None = None, seed: int = 0) -> FaissIVFSearch:
        """Train the coarse quantizer on (a sample of) ``matrix`` and add every row; row i holds ids[i]."""
        faiss = _faiss()
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        n, dim = matrix.shape if matrix.ndim == 2 else (0, 0)
        if matrix.ndim != 2 or n != len(ids):
            raise ValueError(f"matrix shape {matrix.shape} does not match {len(ids)} ids")
        nlist = nlist or nlist_for(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if n >= nlist * MIN_POINTS_PER_LIST and nlist > 1:
            sample = matrix
            if n > 64 * nlist:
                sample = matrix[np.sort(np.random.default_rng(seed).choice(n, 64 * nlist, replace=False))]
            index.cp.seed = seed
            index.train(sample)
        else:  # too few vectors to cluster: one list, i.e. an exact scan
            index = faiss.IndexIVFFlat(quantizer, dim, 1, faiss.METRIC_INNER_PRODUCT)
            quantizer.add(np.eye(1, dim, dtype=np.float32))
            index.is_trained = True
        for start in range(0, n, 65536):
            index.add_with_ids(matrix[start : start + 65536], np.arange(start, min(n, start + 65536), dtype=np.int64))
        return cls(index, list(ids), trained_rows=n)

    def needs_rebuild(self) -> bool:
        """True when the live count moved so far from the trained one that the list count no longer fits."""
        n, nlist = len(self), self.index.nlist
        grown = n > 4 * self.trained_rows and nlist_for(n) > nlist
        shrunk = 4 * n < self.trained_rows and nlist > 4 * nlist_for(n)
        return grown or shrunk

    # -------------------------------------------------------------- properties

    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each id, -1 where it is not held."""
        return np.array([self._row_of.get(pid, -1) for pid in ids], dtype=np.int64)

    def index_bytes(self) -> int:
        """Memory the faiss structure holds (vectors, ids, centroids), approximately."""
        return int(self.index.ntotal * (self.dim * 4 + 8) + self.index.nlist * self.dim * 4)

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """Top-k (row, score) per normalised query, best first (ties by id), restricted to ``mask`` rows.

        Unfiltered, a query probes the ``nprobe`` nearest lists. A filter is
        applied inside the scan (only allowed rows are scored), and each query
        scans the nearest lists that hold allowed rows until it has seen
        FILTER_SCAN_FACTOR times the allowed rows a plain query scans; a
        selective filter therefore scans every list holding an allowed row,
        which is an exact filtered search. Whenever fewer than
        ``min(k, allowed rows)`` come back, the query is repeated with a wider
        probe, up to every list, so k results come back whenever k rows match.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if mask is None:
            return self._search_plain(queries, k)
        allowed = self.filter_lists(mask)
        if allowed.n_allowed == 0:
            return [[] for _ in range(queries.shape[0])]
        want = min(k, allowed.n_allowed)
        results: list[list[tuple[int, float]]] = [[] for _ in range(queries.shape[0])]
        todo = np.arange(queries.shape[0])
        target = FILTER_SCAN_FACTOR * self.nprobe * len(self) / self.index.nlist
        while todo.size:
            keys, list_scores = self._probe_lists(queries[todo], allowed, target)
            scores, labels = self._scan_lists(queries[todo], want, keys, list_scores, allowed.bits)
            todo = self._collect(todo, want, results, scores, labels, retry=target < allowed.n_allowed)
            target *= 4
        return results

    def _search_plain(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """The ``nprobe`` nearest lists, through faiss' own search (what the unfiltered targets were measured on)."""
        faiss = _faiss()
        want = min(k, len(self))
        results: list[list[tuple[int, float]]] = [[] for _ in range(queries.shape[0])]
        if want == 0:
            return results
        nlist, nprobe = self.index.nlist, self.nprobe
        todo = np.arange(queries.shape[0])
        while todo.size:
            scores, labels = self.index.search(queries[todo], want, params=faiss.SearchParametersIVF(nprobe=nprobe))
            todo = self._collect(todo, want, results, scores, labels, retry=nprobe < nlist)
            nprobe = min(nlist, nprobe * 4)
        return results

    def _scan_lists(
        self, queries: np.ndarray, want: int, keys: np.ndarray, list_scores: np.ndarray, bits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """faiss' scan of the given lists per query (-1: none), only the rows set in ``bits``: (scores, rows)."""
        faiss = _faiss()
        n, width = keys.shape
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        list_scores = np.ascontiguousarray(list_scores, dtype=np.float32)
        params = faiss.SearchParametersIVF(nprobe=max(1, width))
        params.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # points into ``bits``: the caller keeps it
        scores = np.empty((n, want), dtype=np.float32)
        labels = np.empty((n, want), dtype=np.int64)
        self.index.search_preassigned_c(
            n, faiss.swig_ptr(queries), want, faiss.swig_ptr(keys), faiss.swig_ptr(list_scores),
            faiss.swig_ptr(scores), faiss.swig_ptr(labels), False, params,
        )  # fmt: skip
        return scores, labels

    def _collect(
        self,
        todo: np.ndarray,
        want: int,
        results: list[list[tuple[int, float]]],
        scores: np.ndarray,
        labels: np.ndarray,
        *,
        retry: bool,
    ) -> np.ndarray:
        """Fill ``results`` for the queries ``todo`` (best first, ties by id); return those that came back short."""
        short = []
        for qi, row_scores, row_labels in zip(todo, scores, labels):
            found = row_labels >= 0
            if found.sum() < want and retry:
                short.append(qi)
                continue
            pairs = sorted(
                zip(row_labels[found].tolist(), row_scores[found].tolist()),
                key=lambda pair: (-pair[1], self.ids[pair[0]]),
            )
            results[qi] = [(int(row), float(score)) for row, score in pairs]
        return np.array(short, dtype=np.int64)

    def filter_lists(self, mask: np.ndarray) -> FilterLists:
        """The allowed rows of ``mask`` per coarse list, cached per mask until the next write (facet filters recur)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_rows,):
            raise ValueError(f"mask has shape {mask.shape}, the index {self.n_rows} rows")
        key = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
        cached = self._filter_lists.get(key)
        if cached is not None:
            self._filter_lists.move_to_end(key)
            return cached
        allowed = mask & self.alive
        per_list = np.bincount(self.list_of_row[allowed], minlength=self.index.nlist)
        lists = np.flatnonzero(per_list)
        found = FilterLists(
            np.packbits(allowed, bitorder="little"), int(np.count_nonzero(allowed)), lists, per_list[lists]
        )
        self._filter_lists[key] = found
        if len(self._filter_lists) > FILTER_CACHE_SIZE:
            self._filter_lists.popitem(last=False)
        return found

    def _probe_lists(self, queries: np.ndarray, allowed: FilterLists, target: float) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the lists holding allowed rows, nearest first, until ``target`` allowed rows are covered.

        Returns (list ids, centroid scores), padded with -1 (faiss skips those) to the longest query's count.
        """
        scores = queries @ self.centroids[allowed.lists].T
        order = np.argsort(-scores, axis=1, kind="stable")
        covered = np.cumsum(allowed.counts[order], axis=1)
        needed = np.minimum(len(allowed.lists), (covered < target).sum(axis=1) + 1)
        width = int(needed.max())
        keys = allowed.lists[order[:, :width]]
        keys[np.arange(width)[None, :] >= needed[:, None]] = -1
        return keys, np.take_along_axis(scores, order[:, :width], axis=1)

    @property
    def centroids(self) -> np.ndarray:
        """The coarse lists' centroids (nlist x dim), read from the quantizer once (training fixes them)."""
        if self._centroids is None:
            self._centroids = self.index.quantizer.reconstruct_n(0, self.index.nlist)
        return self._centroids

    # ----------------------------------------------------------------- writing

    def upsert(self, ids: Sequence[str], matrix: np.ndarray) -> None:
        """Insert or replace vectors (normalised float32 rows); a replaced id keeps its row, a new one takes a free row."""
        faiss = _faiss()
        ids = list(ids)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids) or (ids and matrix.shape[1] != self.dim):
            raise ValueError(f"matrix shape {matrix.shape} does not match {len(ids)} ids of dim {self.dim}")
        if len(set(ids)) != len(ids):
            raise ValueError("an id appears twice in one upsert")
        if not ids:
            return
        replaced = np.array([self._row_of[pid] for pid in ids if pid in self._row_of], dtype=np.int64)
        if replaced.size:
            self.index.remove_ids(faiss.IDSelectorBatch(replaced))
        n_new = len(ids) - replaced.size
        if n_new > len(self._free):  # grow once, not per id
            start, grow = len(self.ids), n_new - len(self._free)
            self.ids.extend([None] * grow)
            self.alive = np.concatenate([self.alive, np.zeros(grow, dtype=bool)])
            self._free = list(range(start + grow - 1, start - 1, -1)) + self._free  # popped after the older free rows
            self.list_of_row = np.concatenate([self.list_of_row, np.full(grow, -1, dtype=self.list_of_row.dtype)])
        rows = np.empty(len(ids), dtype=np.int64)
        for i, pid in enumerate(ids):
            row = self._row_of.get(pid)
            if row is None:
                row = self._free.pop()
                self.ids[row] = pid
                self._row_of[pid] = row
                self.alive[row] = True
            rows[i] = row
        # add_with_ids as faiss does it (assign, then add_core), keeping the list each row went to
        lists = np.ascontiguousarray(self.index.quantizer.assign(matrix, 1)[:, 0], dtype=np.int64)
        self.index.add_core(len(ids), faiss.swig_ptr(matrix), faiss.swig_ptr(rows), faiss.swig_ptr(lists))
        self.list_of_row[rows] = lists
        self._filter_lists.clear()
        self.unsaved += len(ids)

    def remove(self, ids: Sequence[str]) -> int:
        """Drop ids (unknown ones are ignored); their rows become free slots. Returns how many were held."""
        rows = [self._row_of.pop(pid) for pid in dict.fromkeys(ids) if pid in self._row_of]
        if not rows:
            return 0
        self.index.remove_ids(_faiss().IDSelectorBatch(np.array(rows, dtype=np.int64)))
        for row in rows:
            self.ids[row] = None
            self.alive[row] = False
        self.list_of_row[rows] = -1
        self._filter_lists.clear()
        self._free.extend(sorted(rows, reverse=True))
        self.unsaved += len(rows)
        return len(rows)

    # ------------------------------------------------------------- cache file

    def save(self, path: Path, *, tag: dict[str, Any]) -> None:
        """Write the cache file atomically: a temporary file, fsync, rename over the old one, fsync the folder.

        ``tag`` (store identity, model, dim) and ``self.generation`` go into the
        header; a CRC-32 of everything before the trailer guards the rest.
        """
        faiss = _faiss()
        path = Path(path)
        _remove_orphaned_temporaries(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        header = json.dumps(
            {
                **tag,
                "format": CACHE_FORMAT,
                "kind": self.kind,
                "generation": self.generation,
                "trained_rows": self.trained_rows,
                "nprobe": self.nprobe,
                "rows": self.n_rows,
            }
        ).encode()
        ids_blob = json.dumps(self.ids).encode()
        try:
            with open(tmp, "wb") as fh:
                crc = 0

                def write(chunk: bytes) -> int:
                    nonlocal crc
                    crc = zlib.crc32(chunk, crc)
                    fh.write(chunk)
                    return len(chunk)

                write(_MAGIC + struct.pack("<Q", len(header)) + header)
                faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
                write(struct.pack("<Q", len(ids_blob)) + ids_blob)
                fh.write(struct.pack("<I", crc) + _TRAILER)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)
        self.unsaved = 0

    @classmethod
    def load(cls, path: Path, *, tag: dict[str, Any]) -> FaissIVFSearch:
        """Read a cache file written by :meth:`save`; AnnCacheError unless it is whole and matches ``tag``."""
        faiss = _faiss()
        path = Path(path)
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                crc = 0

                def read(n: int) -> bytes:
                    nonlocal crc
                    if n > size - fh.tell():  # a corrupt length must not become a huge allocation
                        raise AnnCacheError(f"{path} is truncated or corrupt")
                    chunk = fh.read(n)
                    if len(chunk) != n:
                        raise AnnCacheError(f"{path} is truncated")
                    crc = zlib.crc32(chunk, crc)
                    return chunk

                if read(len(_MAGIC)) != _MAGIC:
                    raise AnnCacheError(f"{path} is not a modalens ANN cache")
                (length,) = struct.unpack("<Q", read(8))
                if length > 1 << 20:
                    raise AnnCacheError(f"{path} has a corrupt header")
                header = json.loads(read(length))
                if not isinstance(header, dict):
                    raise AnnCacheError(f"{path} has a corrupt header")
                if header.get("format") != CACHE_FORMAT or header.get("kind") != cls.kind:
                    raise AnnCacheError(f"{path} is a {header.get('kind')} cache of format {header.get('format')}")
                for key, value in tag.items():
                    if header.get(key) != value:
                        raise AnnCacheError(f"{path} belongs to another index ({key} {header.get(key)!r} != {value!r})")
                try:
                    index = faiss.read_index(faiss.PyCallbackIOReader(read))
                except AnnCacheError:
                    raise
                except Exception as exc:  # faiss raises RuntimeError on garbage
                    raise AnnCacheError(f"{path} holds an unreadable faiss index ({exc})") from exc
                (length,) = struct.unpack("<Q", read(8))
                if length > size:
                    raise AnnCacheError(f"{path} has a corrupt id block")
                ids = json.loads(read(length))
                (stored_crc,) = struct.unpack("<I", fh.read(4))
                trailer = fh.read(len(_TRAILER) + 1)  # one byte more: trailing garbage fails too
                if trailer != _TRAILER or stored_crc != crc:
                    raise AnnCacheError(f"{path} failed its checksum")
        except AnnCacheError:
            raise
        except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
            raise AnnCacheError(f"{path} cannot be read ({exc})") from exc
        if not isinstance(ids, list) or len(ids) != header.get("rows") or index.d != tag.get("dim", index.d):
            raise AnnCacheError(f"{path} does not match its own header")
        searcher = cls(index, ids, trained_rows=int(header["trained_rows"]), nprobe=int(header["nprobe"]))
        searcher.generation = int(header["generation"])
        return searcher


def _list_of_row(index: Any, n_rows: int) -> np.ndarray:
    """The coarse list holding each row (-1 where none), read from the inverted lists."""
    faiss = _faiss()
    found = np.full(n_rows, -1, dtype=np.int32)
    invlists = index.invlists
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size:
            found[faiss.rev_swig_ptr(invlists.get_ids(list_no), size)] = list_no
    return found


def read_cache_header(path: Path) -> dict[str, Any]:
    """The JSON header of a cache file (generation, tag, ...), without reading the rest."""
    with open(path, "rb") as fh:
        if fh.read(len(_MAGIC)) != _MAGIC:
            raise AnnCacheError(f"{path} is not a modalens ANN cache")
        (length,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(length))


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_orphaned_temporaries(path: Path) -> None:
    """Temporary files left by a writer that was killed (its pid is gone) are removed."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or not _pid_alive(pid):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["AnnCacheError", "FaissIVFSearch", "FilterLists", "faiss_available", "nlist_for", "nprobe_for", "read_cache_header"]
