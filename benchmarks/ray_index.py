"""Batch embedding on Ray against the embedded path, in one run: photos/s with 1 and 2 Ray workers.

    PYTHONPATH=src .venv/bin/python benchmarks/ray_index.py [--catalogue kagl:test] [--limit 512] [--workers 1,2] [--repeats 1]

Rows (products/s, photo file -> vector in a fresh on-disk index):

- ``embedded``: ``SearchEngine.build`` as ``modalens index`` runs it (the baseline).
- ``ray N``: ``SearchEngine.build(executor="ray")`` with N actors of one CPU
  each on a local Ray cluster started once before timing (``ray.init`` with
  all the machine's cores), shards of 128 products; the time includes starting
  the actors (each loads the model) and loading the shards into the index.

Every run gets a fresh feature cache, a fresh shard folder and a fresh index,
so no run reuses another's work; the towers' ONNX export comes from modalens'
cache. Runs are interleaved round-robin. The figure that matters is
``ray 2 / ray 1`` (target >= 1.6 on >= 4 cores). Writes JSON to
benchmarks/results/ray_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from machine import cpu_model, load_average  # noqa: E402  (benchmarks/machine.py)

from modalens.catalog import read_catalog
from modalens.search import SearchEngine

RESULTS = Path(__file__).resolve().parent / "results"


def one_build(products, executor: str, workers: int | None) -> float:
    """Seconds for one build into a fresh index with a fresh feature cache (and shard folder)."""
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as folder:
        os.environ["MODALENS_CACHE"] = str(Path(folder) / "cache")  # the Ray workers get it too
        engine = SearchEngine(Path(folder) / "index", progress=False)
        options = {"workers": workers, "shards": Path(folder) / "shards", "shard_size": 128}
        start = time.perf_counter()
        report = engine.build(products, executor=executor, ray=options if executor == "ray" else None)
        seconds = time.perf_counter() - start
        engine.close()
        assert report.added + report.failed == len(products), report
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogue", default="kagl:test")
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import ray

    os.environ.setdefault("MODALENS_ONNX_CACHE", str(Path.home() / ".cache" / "modalens" / "onnx"))
    products = read_catalog(args.catalogue, limit=args.limit).products
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "ray": ray.__version__, "load_before": load_average()}
    print(f"machine: {machine}; {len(products)} products from {args.catalogue}", flush=True)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    runs = {"embedded": ("local", None), **{f"ray {n}": ("ray", int(n)) for n in args.workers.split(",")}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (executor, workers) in runs.items():
            times[name].append(one_build(products, executor, workers))
            print(f"  {name}: {times[name][-1]:.1f} s, {len(products) / times[name][-1]:.1f} products/s", flush=True)
    ray.shutdown()
    rows = {name: {"seconds": min(t), "products_per_s": round(len(products) / min(t), 2)} for name, t in times.items()}
    machine["load_after"] = load_average()
    for name, row in rows.items():
        print(f"| {name} | {row['seconds']:.1f} s | {row['products_per_s']:.1f} products/s |")
    if "ray 1" in rows and "ray 2" in rows:
        print(f"ray 2 / ray 1: {rows['ray 2']['products_per_s'] / rows['ray 1']['products_per_s']:.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "ray_index.json"
    out.write_text(json.dumps({"machine": machine, "args": vars(args), "n": len(products), "rows": rows}, indent=1))
    print(f"wrote {out} (load average {machine['load_after']})")


if __name__ == "__main__":
    main()
