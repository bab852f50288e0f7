"""One text query end to end on the CPU: text → tokenise → text tower → text head → search of a 100k index.

    PYTHONPATH=src .venv/bin/python benchmarks/text_query_latency.py [--model modalens-photo] [--products 100000]

What a search server does per query (``SearchEngine.search`` on an export: ``OnnxQueryEncoder`` then
``CatalogIndex.search``, products read back), stage by stage, for the model's export in fp32 and with
the text tower and head in int8 (dynamic quantisation, as ``modalens export --int8`` writes them).
Each query is a distinct KAGL title, so no vector cache answers it; fp32 and int8 take turns per query,
so load from other processes falls on both alike. The index is ``serve_load.build_index``'s: real KAGL
photo embeddings, copied with noise up to ``--products`` (faiss IVF above 20k, as served). Accuracy
cost of int8: cosine of its query vectors to fp32's, and the overlap of their top-10s. Prints the machine
and its load; writes benchmarks/results/text_query_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from modalens.backends.runtime import ExportedModel, default_threads, load_export, text_head_inputs
from modalens.export.cache import ensure_model_export
from modalens.index import CatalogIndex

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_model, load_average  # noqa: E402
from serve_load import build_index  # noqa: E402

STAGES = ("tokenise", "tower", "head", "search", "total")
#: The components ``--int8`` runs quantised: a text query touches only these two.
INT8_TEXT = {"text_tower", "text_head"}


def one_query(exported: ExportedModel, index: CatalogIndex, text: str) -> tuple[dict[str, float], np.ndarray, list[str]]:
    """Seconds per stage of one query, its vector and its top-10 ids."""
    t0 = time.perf_counter()
    tokens = exported.tokenize([text])
    t1 = time.perf_counter()
    inputs = text_head_inputs(exported.text_tower, exported.text_head, tokens)  # pooled, or a token head's states
    t2 = time.perf_counter()
    vector = exported.text_head.run(inputs)[0]
    t3 = time.perf_counter()
    hits = index.search(vector[0], k=10)[0]
    t4 = time.perf_counter()
    times = {"tokenise": t1 - t0, "tower": t2 - t1, "head": t3 - t2, "search": t4 - t3, "total": t4 - t0}
    return times, vector[0], [h.id for h in hits]


def summarise(times: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for stage in STAGES:
        values = sorted(1000 * t[stage] for t in times)
        out[stage] = {"p50_ms": statistics.median(values), "p90_ms": values[int(0.9 * (len(values) - 1))]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="modalens-photo", help="a model name or trained folder (its cached export is used, made if missing)")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: modalens's default)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "text_query_latency.json")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; load {load_average()}; {threads} ORT threads")
    folder = ensure_model_export(args.model)
    manifest = json.loads((folder / "manifest.json").read_text())
    if not all(manifest["components"][c].get("int8_file") for c in INT8_TEXT):
        from modalens.export import export_model

        folder = Path(tempfile.mkdtemp()) / "export"
        export_model(args.model, folder, int8=True)
    runs = {"fp32": load_export(folder, threads=threads), "int8": load_export(folder, int8=INT8_TEXT, threads=threads)}
    with tempfile.TemporaryDirectory() as tmp:
        titles = build_index(Path(tmp) / "index", args.products)
        queries = list(dict.fromkeys(titles))
        random.Random(0).shuffle(queries)
        queries = queries[: args.queries + 5]
        index = CatalogIndex.open(Path(tmp) / "index")
        for name, exported in runs.items():  # warm: sessions, the search structure, SQLite pages
            for q in queries[:5]:
                one_query(exported, index, q)
        times = {name: [] for name in runs}
        vectors, top = {name: [] for name in runs}, {name: [] for name in runs}
        for q in queries[5:]:
            for name, exported in runs.items():
                t, v, ids = one_query(exported, index, q)
                times[name].append(t)
                vectors[name].append(v)
                top[name].append(ids)
        backend = index.search_backend
        index.close()
    cosine = np.sum(np.array(vectors["fp32"]) * np.array(vectors["int8"]), axis=1)
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(top["fp32"], top["int8"])]
    record = {
        "model": args.model, "products": args.products, "queries": len(queries) - 5, "search_backend": backend,
        "cores": os.cpu_count(), "cpu": cpu_model(), "load_after": load_average(), "ort_threads": threads,
        "latency": {name: summarise(t) for name, t in times.items()},
        "int8_vs_fp32": {"query_cosine_mean": float(cosine.mean()), "query_cosine_min": float(cosine.min()),
                         "top10_overlap_mean": float(np.mean(overlap))},
    }
    print(f"{args.products} products ({backend}), {record['queries']} distinct queries, p50 (p90) in ms:")
    print(f"{'':6}" + "".join(f"{s:>16}" for s in STAGES))
    for name, summary in record["latency"].items():
        print(f"{name:6}" + "".join(f"{summary[s]['p50_ms']:>9.2f} ({summary[s]['p90_ms']:.1f})" for s in STAGES))
    print(f"int8 vs fp32: query cosine mean {cosine.mean():.4f} (min {cosine.min():.4f}), top-10 overlap {np.mean(overlap):.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
