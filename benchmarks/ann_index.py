"""Approximate nearest-neighbour back-ends for the catalogue index, on real embeddings.

    nice .venv/bin/python benchmarks/ann_index.py [--sizes real,100000] [--engines exact,faiss-ivf,faiss-hnsw,usearch,hnswlib]
                                                  [--queries 300] [--threads 2] [--noise 0.25]
                                                  [--settings "milvus-lite=default modalens=default,64"]

Data: the image embeddings of the KAGL photos from the shipped default model
(``modalens-lite``, 8,613 x 512, read from the feature cache). 300 products
are held out as image queries (query by photo of a product not in the index)
and their titles, embedded by the text tower, are the text queries (search by
words: cross-modal, so further from the indexed points than image queries).
Size ``real`` is the other 8,313 real vectors. Larger sizes are SYNTHESISED
from them: each real vector is copied many times with gaussian noise shaped
by the embeddings' own covariance (``--noise`` x covariance; a copy keeps a
median cosine of about 0.88 to its source, about the distance to a real
product's nearest neighbour) and renormalised, so the data keeps the real
clusters instead of being uniform noise (where every ANN index collapses).
Each synthetic vector inherits its source product's attributes, so filters
are real attribute filters, correlated with the vectors as they are in a
catalogue: ``colour=White`` (about 11%) and ``article_type=Jackets`` (about 1.4%).

Baseline, measured in the same run: exact search as modalens does it
(``modalens.index.ExactSearch``: numpy matmul + partial sort; a filter is a
row mask applied before ranking). Ground truth for recall@10 is exact float32
search. Latency is one query at a time (what a search request does), p50 and
p99 over the queries. Memory is the process RSS growth while building
(the data matrix itself excluded) and the serialised size.

Engines: faiss-cpu IVF-Flat (inner product; filters through ``IDSelectorBitmap``
inside the search), faiss-cpu HNSW-Flat (filters through the same selector),
usearch (HNSW; its Python ``search`` has no filter argument, so a filter is
over-fetch-and-drop, reported as such), hnswlib (HNSW; filter is a Python
callable per visited node). ``modalens`` is the back-end the index ships
(``modalens.index.ann.FaissIVFSearch``), through the same code path as
``CatalogIndex.search``. ``milvus-lite`` is the shipped Milvus store
(``modalens.index.milvus.MilvusIndex``, ``modalens[milvus]``) on Milvus Lite,
with each filter pushed into Milvus as the ``where`` a search would give.

Writes JSON to benchmarks/results/ann_index-<size>-<engines>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

K = 10
RESULTS = Path(__file__).resolve().parent / "results"
FILTERS = {"10%": ("colour", "White"), "1%": ("article_type", "Jackets")}


# ----------------------------------------------------------------- machine




def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def versions() -> dict[str, str]:
    found = {"numpy": np.__version__}
    for name in ("faiss", "usearch", "hnswlib"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "?")
        except ImportError:
            pass
    return found


# -------------------------------------------------------------------- data


def real_data(n_queries: int, seed: int = 0):
    """KAGL image embeddings (base and held-out queries), title embeddings of the held-out products, attributes."""
    from modalens.catalog import read_catalog
    from modalens.embedding import CachedEncoder
    from modalens.models import create_model

    products = read_catalog("kagl").products
    encoder = CachedEncoder(create_model("modalens-lite"))
    emb, failures = encoder.image_embeddings(products)
    ok = np.array([i for i in range(len(products)) if i not in failures])
    rng = np.random.default_rng(seed)
    held = rng.choice(ok, n_queries, replace=False)
    base = np.setdiff1d(ok, held)
    text = encoder.text_embeddings([products[i].title for i in held])
    attrs = {
        key: np.array([products[i].attributes.get(key, "") for i in base])
        for key, _ in FILTERS.values()
    }
    return (
        np.ascontiguousarray(emb[base], dtype=np.float32),
        np.ascontiguousarray(emb[held], dtype=np.float32),
        unit(np.asarray(text, dtype=np.float32)),
        attrs,
    )


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthesise(
    real: np.ndarray, n: int, noise: float, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """n vectors: real ones plus copies with covariance-shaped gaussian noise; returns (vectors, source row)."""
    if n <= len(real):
        return real[:n].copy(), np.arange(n)
    rng = np.random.default_rng(seed)
    centred = real - real.mean(axis=0)
    cov = centred.T @ centred / len(real)
    vals, vecs = np.linalg.eigh(cov.astype(np.float64))
    shape = (vecs * np.sqrt(np.clip(vals, 0, None) * noise)).T.astype(
        np.float32
    )  # g @ shape ~ N(0, noise*cov)
    source = np.concatenate(
        [np.arange(len(real)), rng.integers(0, len(real), n - len(real))]
    )
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    out[: len(real)] = real
    for start in range(len(real), n, 65536):
        stop = min(n, start + 65536)
        g = rng.standard_normal((stop - start, real.shape[1]), dtype=np.float32)
        out[start:stop] = unit(real[source[start:stop]] + g @ shape)
    return out, source


def ground_truth(
    base: np.ndarray, queries: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Exact top-k row ids (float32 matmul), chunked over the base to bound memory."""
    rows = np.arange(len(base)) if mask is None else np.flatnonzero(mask)
    best_s = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), K), -1, dtype=np.int64)
    for start in range(0, len(rows), 200_000):
        chunk = rows[start : start + 200_000]
        s = queries @ base[chunk].T
        s = np.concatenate([best_s, s], axis=1)
        i = np.concatenate(
            [best_i, np.broadcast_to(chunk, (len(queries), len(chunk)))], axis=1
        )
        top = np.argpartition(-s, K - 1, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_i


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    hits = sum(
        len(set(f.tolist()) & set(t.tolist()) - {-1}) for f, t in zip(found, truth)
    )
    return hits / sum(len(set(t.tolist()) - {-1}) for t in truth)


def timed(
    fn: Callable[[np.ndarray], np.ndarray], queries: np.ndarray
) -> tuple[list[np.ndarray], float, float]:
    """Run fn one query at a time, REPEATS passes; (results, p50 ms, p99 ms) of the pass with the lowest p50.

    The machine is shared, so the best of a few passes is the least disturbed one.
    """
    fn(queries[0])  # warm-up
    best = None
    for _ in range(REPEATS):
        found, times = [], []
        for q in queries:
            start = time.perf_counter()
            found.append(np.asarray(fn(q)))
            times.append(time.perf_counter() - start)
        ms = np.array(times) * 1000
        p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        if best is None or p50 < best[1]:
            best = (found, p50, p99)
    return best


# ----------------------------------------------------------------- engines
# Each engine: build(base) -> state; search(state, q, param, mask) -> row ids; add/remove; size.


class Exact:
    name = "exact"
    params = (None,)

    def build(self, base):
        from modalens.index import ExactSearch

        return ExactSearch([str(i) for i in range(len(base))], base)

    def search(self, s, q, param, mask=None):
        return np.array([row for row, _ in s.search(q[None, :], K, mask)[0]])

    def add(self, s, vectors, start):
        s.matrix = np.concatenate([s.matrix, vectors])
        s.ids = s.ids + [str(i) for i in range(start, start + len(vectors))]

    def remove(self, s, rows):
        keep = np.ones(len(s.ids), dtype=bool)
        keep[rows] = False
        s.matrix = s.matrix[keep]
        s.ids = [i for i, k in zip(s.ids, keep) if k]

    def nbytes(self, s):
        return s.matrix.nbytes


class FaissIVF:
    name = "faiss-ivf"
    params = (
        4,
        8,
        16,
        32,
    )

    def build(self, base):
        import faiss

        n, d = base.shape
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = base[
            np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        ]
        index.train(sample)
        index.add_with_ids(base, np.arange(n, dtype=np.int64))
        return index

    def search(self, index, q, nprobe, mask=None):
        import faiss

        params = faiss.SearchParametersIVF(nprobe=nprobe)
        if mask is not None:
            bits = np.packbits(
                mask, bitorder="little"
            )  # must outlive the search: the selector only points at it
            params.sel = sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # noqa: F841
            params.nprobe = min(
                index.nlist, math.ceil(nprobe * len(mask) / max(1, mask.sum()))
            )
        _, ids = index.search(q[None, :], K, params=params)
        return ids[0][ids[0] >= 0]

    def add(self, index, vectors, start):
        index.add_with_ids(
            vectors, np.arange(start, start + len(vectors), dtype=np.int64)
        )

    def remove(self, index, rows):
        import faiss

        index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64)))

    def nbytes(self, index):
        import faiss

        return int(faiss.serialize_index(index).nbytes)


class FaissHNSW:
    name = "faiss-hnsw"
    params = (
        32,
        64,
        128,
    )

    def build(self, base):
        import faiss

        index = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 100
        index.add(base)
        return index

    def search(self, index, q, ef, mask=None):
        import faiss

        params = faiss.SearchParametersHNSW(efSearch=ef)
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            params.sel = sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # noqa: F841
        _, ids = index.search(q[None, :], K, params=params)
        return ids[0][ids[0] >= 0]

    def add(self, index, vectors, start):
        index.add(vectors)

    def remove(self, index, rows):
        raise NotImplementedError("faiss HNSW has no remove_ids")

    def nbytes(self, index):
        import faiss

        return int(faiss.serialize_index(index).nbytes)


class USearch:
    name = "usearch"
    params = (
        32,
        64,
        128,
    )

    def build(self, base):
        from usearch.index import Index

        index = Index(
            ndim=base.shape[1],
            metric="ip",
            dtype="f32",
            connectivity=16,
            expansion_add=128,
        )
        index.add(np.arange(len(base)), base, threads=THREADS)
        return index

    def search(self, index, q, ef, mask=None):
        index.expansion_search = ef
        if mask is None:
            return index.search(q, K, threads=1).keys
        # no predicate in the Python search: over-fetch by 1/selectivity, drop non-matching
        count = min(len(index), math.ceil(2 * K * len(mask) / max(1, mask.sum())))
        keys = index.search(q, count, threads=1).keys
        return keys[mask[keys]][:K]

    def add(self, index, vectors, start):
        index.add(np.arange(start, start + len(vectors)), vectors, threads=THREADS)

    def remove(self, index, rows):
        index.remove(np.asarray(rows))

    def nbytes(self, index):
        return int(index.serialized_length)


class HNSWLib:
    name = "hnswlib"
    params = (
        32,
        64,
        128,
    )

    def build(self, base):
        import hnswlib

        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.init_index(
            max_elements=len(base) + 20_000,
            ef_construction=128,
            M=16,
            allow_replace_deleted=False,
        )
        index.add_items(base, np.arange(len(base)), num_threads=THREADS)
        return index

    def search(self, index, q, ef, mask=None):
        index.set_ef(max(ef, K))
        if mask is None:
            labels, _ = index.knn_query(q, k=K, num_threads=1)
        else:
            labels, _ = index.knn_query(
                q, k=K, num_threads=1, filter=lambda label: bool(mask[label])
            )
        return labels[0]

    def add(self, index, vectors, start):
        index.add_items(
            vectors, np.arange(start, start + len(vectors)), num_threads=THREADS
        )

    def remove(self, index, rows):
        for row in rows:
            index.mark_deleted(int(row))

    def nbytes(self, index):
        return int(
            index.get_current_count() * (index.dim * 4 + 16 * 2 * 4 + 16)
        )  # data + level-0 links (approx.)


class Modalens:
    """The back-end the index ships, driven exactly as CatalogIndex.search drives it.

    Parameter: the probe count; ``None`` is the shipped default for the list count.
    """

    name = "modalens"
    params = (None, 16, 32, 64, 128, 256)

    def build(self, base):
        from modalens.index.ann import FaissIVFSearch

        searcher = FaissIVFSearch.build([str(i) for i in range(len(base))], base)
        searcher.default_nprobe = searcher.nprobe
        return searcher

    def label(self, s, param):
        nprobe = min(s.index.nlist, param or s.default_nprobe)
        return f"nprobe {nprobe}/{s.index.nlist}" + (
            " (default)" if param is None else ""
        )

    def search(self, s, q, param, mask=None):
        s.nprobe = min(s.index.nlist, param or s.default_nprobe)
        return np.array([row for row, _ in s.search(q[None, :], K, mask)[0]])

    def add(self, s, vectors, start):
        s.upsert([f"new{i}" for i in range(start, start + len(vectors))], vectors)

    def remove(self, s, rows):
        s.remove([s.ids[r] for r in rows])

    def nbytes(self, s):
        return int(s.index_bytes())


class MilvusLite:
    """The shipped Milvus store (``modalens.index.milvus.MilvusIndex``) on Milvus Lite in a temporary file.

    Each vector is a product carrying its source's attributes, and a filter is
    the ``where`` the index would get, pushed into Milvus as a boolean
    expression (not a row mask). Parameter: nprobe of Milvus' IVF-Flat.
    """

    name = "milvus-lite"
    params = (None, 16)
    uri: str | None = None  # --milvus-uri: a Milvus server (a fresh collection per size) instead of a Milvus Lite file
    attributes: dict[str, np.ndarray] = {}  # per base row, set by run_size
    wheres: dict[int, dict] = {}  # id(mask) -> the where it stands for, set by run_size

    def build(self, base):
        import tempfile

        from modalens.catalog.schema import Product
        from modalens.index import milvus

        self.folder = tempfile.TemporaryDirectory(prefix="ann-milvus-")
        where = f"{self.uri}#bench_{os.getpid()}_{len(base)}" if self.uri else f"{self.folder.name}/bench.db"
        store = milvus.MilvusIndex.create(where, model="bench", dim=base.shape[1])
        began = time.perf_counter()
        for start in range(0, len(base), 5000):
            stop = min(len(base), start + 5000)
            products = [
                Product(id=str(i), attributes={key: str(col[i]) for key, col in self.attributes.items()})
                for i in range(start, stop)
            ]
            store.add(products, base[start:stop], ["k"] * len(products))
            if stop % 100_000 < 5000:
                print(f"    milvus-lite: {stop} inserted, {time.perf_counter() - began:.0f}s, load {os.getloadavg()[0]:.1f}", flush=True)
        store.sync()
        store.default_nprobe = milvus.SEARCH_PARAMS["params"]["nprobe"]
        return store

    def label(self, s, param):
        return f"nprobe {param or s.default_nprobe}" + (" (default)" if param is None else "")

    def search(self, s, q, param, mask=None):
        from modalens.index import milvus

        milvus.SEARCH_PARAMS["params"] = {"nprobe": param or s.default_nprobe}
        where = None if mask is None else self.wheres[id(mask)]
        return np.array([int(h.id) for h in s.search(q, K, where=where)[0]])

    def add(self, s, vectors, start):
        from modalens.catalog.schema import Product

        s.add([Product(id=str(i)) for i in range(start, start + len(vectors))], vectors, ["k"] * len(vectors))

    def remove(self, s, rows):
        s.delete([str(r) for r in rows])

    def nbytes(self, s):  # a server's storage is not ours to measure: 0
        return sum(f.stat().st_size for f in Path(self.folder.name).rglob("*") if f.is_file())


ENGINES = {e.name: e for e in (Exact, FaissIVF, FaissHNSW, USearch, HNSWLib, Modalens, MilvusLite)}
THREADS = 2
REPEATS = 3


# --------------------------------------------------------------------- run


def run_size(size_name, base, source, attrs, image_q, text_q, engine_names, log):
    n = len(base)
    masks = {
        label: attrs[key][source] == value for label, (key, value) in FILTERS.items()
    }
    truth = {"image": ground_truth(base, image_q), "text": ground_truth(base, text_q)}
    truth_f = {label: ground_truth(base, image_q, m) for label, m in masks.items()}
    extra = (
        synthesise(base[:2000], 1000, 0.25, seed=9)[0][-1000:]
        if n > 2000
        else unit(base[:1000] + 0.01)
    )
    rows: list[dict] = []
    exact_p50 = exact_f = None
    MilvusLite.attributes = {key: attrs[key][source] for key, _ in FILTERS.values()}
    MilvusLite.wheres = {id(masks[label]): {key: value} for label, (key, value) in FILTERS.items()}
    for name in engine_names:
        engine = ENGINES[name]()
        gc.collect()
        before = rss_bytes()
        start = time.perf_counter()
        try:
            state = engine.build(base)
        except ImportError as exc:
            log(f"  {name}: not installed ({exc})")
            continue
        build_s = time.perf_counter() - start
        rss = max(0, rss_bytes() - before)
        nbytes = engine.nbytes(state)
        log(
            f"  {name}: built in {build_s:.1f}s, rss +{rss / 2**20:.0f} MiB, serialised {nbytes / 2**20:.0f} MiB"
        )
        for param in engine.params:
            row = {
                "size": size_name,
                "n": n,
                "engine": name,
                "param": engine.label(state, param)
                if hasattr(engine, "label")
                else param,
                "build_s": round(build_s, 2),
                "rss_mib": round(rss / 2**20, 1),
                "bytes_mib": round(nbytes / 2**20, 1),
                "load_1min": round(os.getloadavg()[0], 1),
            }

            def plain(q, engine=engine, state=state, param=param):
                return engine.search(state, q, param)

            found, p50, p99 = timed(plain, image_q)
            row.update(
                p50_ms=round(p50, 3),
                p99_ms=round(p99, 3),
                recall_image=round(recall(found, truth["image"]), 4),
            )
            found, _, _ = timed(plain, text_q)
            row["recall_text"] = round(recall(found, truth["text"]), 4)
            for label, mask in masks.items():

                def filtered(q, engine=engine, state=state, param=param, mask=mask):
                    return engine.search(state, q, param, mask)

                found, fp50, _ = timed(filtered, image_q)
                row[f"filter{label}_p50_ms"] = round(fp50, 3)
                row[f"filter{label}_recall"] = round(recall(found, truth_f[label]), 4)
                row[f"filter{label}_full_k"] = round(
                    float(np.mean([len(f) == K for f in found])), 4
                )
            if name == "exact":
                exact_p50, exact_f = (
                    p50,
                    {label: row[f"filter{label}_p50_ms"] for label in masks},
                )
            if exact_p50:
                row["speedup_vs_exact"] = round(exact_p50 / p50, 1)
                for label in masks:
                    row[f"filter{label}_speedup_vs_exact"] = round(
                        exact_f[label] / row[f"filter{label}_p50_ms"], 1
                    )
            rows.append(row)
            log(
                "    "
                + json.dumps(
                    {k: v for k, v in row.items() if k not in ("size", "n", "engine")}
                )
            )
        # incremental add / delete (not timed for engines that cannot)
        start = time.perf_counter()
        engine.add(state, extra, n)
        add_ms = (time.perf_counter() - start) * 1000 / len(extra)
        try:
            start = time.perf_counter()
            engine.remove(state, np.arange(0, 1000))
            remove_ms = (time.perf_counter() - start) * 1000 / 1000
        except NotImplementedError:
            remove_ms = None
        log(
            f"    add {add_ms:.3f} ms/vector, delete {remove_ms if remove_ms is None else round(remove_ms, 3)} ms/vector"
        )
        for row in rows:
            if row["engine"] == name:
                row["add_ms_per_vector"] = round(add_ms, 4)
                row["delete_ms_per_vector"] = (
                    None if remove_ms is None else round(remove_ms, 4)
                )
        del state
        gc.collect()
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as the table docs/index.md shows."""
    lines = [
        (
            "| engine | setting | build s | p50 / p99 ms | x exact | R@10 image / text "
            "| 10% filter ms, R@10 | 1% filter ms, R@10 | add / delete ms per vector |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delete = (
            "n/a"
            if r.get("delete_ms_per_vector") is None
            else f"{r['delete_ms_per_vector']:.3f}"
        )
        lines.append(
            f"| {r['engine']} | {r['param'] if r['param'] is not None else ''} | {r['build_s']:.1f} "
            f"| {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {r.get('speedup_vs_exact', 1.0):.0f} "
            f"| {r['recall_image']:.3f} / {r['recall_text']:.3f} "
            f"| {r['filter10%_p50_ms']:.2f}, {r['filter10%_recall']:.3f} "
            f"| {r['filter1%_p50_ms']:.2f}, {r['filter1%_recall']:.3f} "
            f"| {r.get('add_ms_per_vector', float('nan')):.3f} / {delete} |"
        )
    return "\n".join(lines)


def settings(spec: str) -> dict[str, tuple]:
    """``ENGINE=V1,V2 ENGINE=...`` (space-separated engines) -> {engine: (values)}; ``default`` is the shipped setting (None)."""
    chosen = {}
    for item in spec.split():
        name, _, values = item.partition("=")
        if name not in ENGINES or not values:
            raise SystemExit(f"--settings: {item!r} is not ENGINE=V1,V2 with ENGINE one of {', '.join(ENGINES)}")
        chosen[name] = tuple(None if v == "default" else int(v) for v in values.split(","))
    return chosen


def main() -> None:
    global THREADS, REPEATS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="real,100000",
        help="comma-separated: real and/or vector counts",
    )
    parser.add_argument(
        "--engines", default="exact,faiss-ivf,faiss-hnsw,usearch,hnswlib,modalens"
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--table", help="print the markdown table of a results JSON file and exit"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="latency passes; the least disturbed one is kept",
    )
    parser.add_argument(
        "--settings",
        default="",
        help="engine settings to run instead of each engine's list, e.g. milvus-lite=default or modalens=default,64",
    )
    parser.add_argument(
        "--milvus-uri",
        help="run the milvus-lite engine against this Milvus server (http://HOST:19530) instead of Milvus Lite",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.25,
        help="synthetic noise as a fraction of the covariance",
    )
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())["rows"]))
        return
    THREADS, REPEATS = args.threads, args.repeats
    MilvusLite.uri = args.milvus_uri
    for name, values in settings(args.settings).items():
        ENGINES[name].params = values
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass

    def log(text: str) -> None:
        print(text, flush=True)

    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **versions(),
    }
    log(f"machine: {machine}, load average {os.getloadavg()[0]:.1f}")
    real, image_q, text_q, attrs = real_data(args.queries)
    log(
        f"real: {real.shape[0]} x {real.shape[1]} base vectors, {len(image_q)} image + {len(text_q)} text queries"
    )
    RESULTS.mkdir(exist_ok=True)
    for size in args.sizes.split(","):
        n = len(real) if size == "real" else int(float(size))
        base, source = synthesise(real, n, args.noise)
        src_cos = np.einsum(
            "ij,ij->i",
            base[len(real) : len(real) + 5000],
            real[source[len(real) : len(real) + 5000]],
        )
        log(
            f"size {size}: {n} vectors"
            + (
                f" (synthetic; median cosine to source {np.median(src_cos):.3f})"
                if n > len(real)
                else ""
            )
        )
        for label, (key, value) in FILTERS.items():
            log(
                f"  filter {label}: {key}={value} selects {np.mean(attrs[key][source] == value):.3%}"
            )
        rows = run_size(
            size, base, source, attrs, image_q, text_q, args.engines.split(","), log
        )
        out = RESULTS / f"ann_index-{size}-{args.engines.replace(',', '+')}.json"
        out.write_text(
            json.dumps(
                {"machine": machine, "args": vars(args), "n": n, "rows": rows}, indent=1
            )
        )
        log(markdown_table(rows))
        log(f"wrote {out}")
        del base
        gc.collect()


if __name__ == "__main__":
    main()
