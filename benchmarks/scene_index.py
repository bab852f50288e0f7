"""Scene photos in the index: how fast they are added, and a text → scenes query at a realistic size, on the CPU.

    .venv/bin/python benchmarks/scene_index.py [--photos 120] [--scenes 20000] [--repeats 20] [--threads 1]

Indexing (``SearchEngine.add_scenes``): ``--photos`` seeded scenes of fixture-catalogue products (no KAGL
needed), rendered before the clock starts, added with a cold feature cache, once with the decoder on the
model's ONNX export (what ``modalens index --scenes`` uses) and once in PyTorch. The baseline, in the same
run: the same photos indexed as plain products (``SearchEngine.build``: tower + head, one vector each),
so the ratio says what the feature map and the decoder add.

Query (``SearchEngine.search_scenes``): ``--scenes`` scenes of 3 random unit instance vectors each (what
the decoder keeps of a 2-4 product scene), a text query encoded by the export, best-instance exact search
over all instances; against a text → products search over as many random products in the same index.
Medians over ``--repeats`` calls interleaved round-robin (a busy machine slows both alike; absolute
numbers are for a quiet machine only). Writes benchmarks/results/scene_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mini-catalog" / "products.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--scenes", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["MODALENS_CACHE"] = tempfile.mkdtemp()  # cold feature caches: every photo goes through the tower
    os.environ.setdefault("MODALENS_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from modalens.catalog import read_catalog
    from modalens.export.cache import query_handle
    from modalens.index.scenes import SceneInstances
    from modalens.models import load
    from modalens.scenes import build_scenes, scene_products
    from modalens.search import SearchEngine

    chosen = build_scenes(read_catalog(str(FIXTURE)).products, args.photos, seed=0, min_products=2, max_products=4)
    photos = scene_products(chosen, tempfile.mkdtemp())
    results: dict[str, object] = {}
    onnx_handle, torch_handle = query_handle("modalens-photo"), load("modalens-photo")
    assert onnx_handle.torch_free, "no ONNX export of modalens-photo could be made here"
    runs = {
        "products (baseline: tower + head)": lambda e: e.build(photos),
        "scenes, decoder on the ONNX export": lambda e: e.add_scenes(photos),
        "scenes, decoder in PyTorch": lambda e: e.add_scenes(photos),
    }
    for name, run in runs.items():
        os.environ["MODALENS_CACHE"] = tempfile.mkdtemp()
        handle = torch_handle if "PyTorch" in name or "baseline" in name else onnx_handle
        engine = SearchEngine(tempfile.mkdtemp(), handle, progress=False)
        run(engine)  # warm-up on a throw-away index: sessions and towers built, then a cold cache again
        os.environ["MODALENS_CACHE"] = tempfile.mkdtemp()
        engine = SearchEngine(tempfile.mkdtemp(), handle, progress=False)
        started = time.perf_counter()
        report = run(engine)
        seconds = time.perf_counter() - started
        assert report.added == len(photos), report
        results[name] = {"per_s": round(len(photos) / seconds, 1), "seconds": round(seconds, 2)}
    base = results["products (baseline: tower + head)"]["per_s"]  # type: ignore[index]
    for name in list(runs)[1:]:
        results[name]["vs products"] = round(results[name]["per_s"] / base, 2)  # type: ignore[index]

    engine = SearchEngine(tempfile.mkdtemp(), onnx_handle, progress=False)
    index = engine.ensure_index()
    rng = np.random.default_rng(0)
    dim = index.dim
    template = photos[0]
    for start in range(0, args.scenes, 2000):
        n = min(2000, args.scenes - start)
        scenes = [template.__class__(id=f"s{start + i:07d}", images=template.images, title="scene") for i in range(n)]
        sets = [SceneInstances(np.arange(3), rng.normal(size=(3, dim)), np.ones(3), np.full((3, 49), 1 / 49)) for _ in range(n)]
        index.add_scenes(scenes, sets, ["k"] * n)
        products = [template.__class__(id=f"p{start + i:07d}", images=template.images, title="product") for i in range(n)]
        index.add(products, rng.normal(size=(n, dim)), ["k"] * n)
    texts = ["brown leather belt", "white sports shoes", "black analog watch", "blue denim jeans"]
    queries = {
        "text -> products (baseline)": lambda t: engine.search(t, k=10),
        "text -> scenes (best instance)": lambda t: engine.search_scenes(t, k=10),
    }
    for run in queries.values():
        run(texts[0])  # warm-up: the matrices load, the text session opens
    times: dict[str, list[float]] = {name: [] for name in queries}
    for r in range(args.repeats):
        for name, run in queries.items():
            engine._text_vector.cache_clear()  # every query encodes its text
            started = time.perf_counter()
            run(texts[r % len(texts)])
            times[name].append(1000 * (time.perf_counter() - started))
    for name, samples in times.items():
        results[name] = {"median_ms": round(float(np.median(samples)), 1)}
    results["scenes / products query"] = round(
        results["text -> scenes (best instance)"]["median_ms"] / results["text -> products (baseline)"]["median_ms"], 2  # type: ignore[index]
    )
    record = {
        "machine": f"{platform.machine()} {platform.processor()}".strip(), "load": os.getloadavg()[0], "threads": args.threads,
        "photos": args.photos, "scenes": args.scenes, "instances": 3 * args.scenes, "products": args.scenes, "results": results,
    }  # fmt: skip
    print(json.dumps(record, indent=1))
    out = Path(__file__).with_name("results") / "scene_index.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
