"""One scene query ("shop the look") against one photo query, on the CPU, measured in the same run.

    .venv/bin/python benchmarks/instance_query.py [--products 100000] [--repeats 20] [--threads 1]

Rows: a photo query (the baseline: the image tower, the image head, exact search of one vector over
``--products`` random unit vectors) and a scene query (the tower's feature map, the instance decoder,
exact search of its 5 instance vectors), each split into encoding and search, medians over
``--repeats`` calls interleaved round-robin (a busy machine slows both alike). The ratio is scene /
photo. A second pair of rows searches the index's faiss IVF back-end (what ``CatalogIndex`` uses above
20k products) instead of exact search, the 5 instance vectors in one batched call as ``SearchEngine.look``
makes it. The photo is a scene of three fixture-catalogue products (no KAGL needed). Writes
benchmarks/results/instance_query.json. Issue 15's target: a scene query under 50 ms at 100k products.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modalens.catalog import read_catalog
from modalens.catalog.images import load_image
from modalens.index.ann import FaissIVFSearch
from modalens.instances import InstanceEncoder
from modalens.models import load
from modalens.scenes import build_scenes, scene_products

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mini-catalog" / "products.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load("modalens-photo").model
    instances = InstanceEncoder.for_model("modalens-photo")
    scene = build_scenes(read_catalog(str(FIXTURE)).products, 1, seed=0, min_products=3, max_products=3)
    photo = load_image(scene_products(scene, tempfile.mkdtemp())[0].image)
    gallery = np.random.default_rng(0).normal(size=(args.products, model.config.embed_dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    ivf = FaissIVFSearch.build([str(i) for i in range(args.products)], gallery)

    def photo_query() -> tuple[float, float]:
        t0 = time.perf_counter()
        vector = model.encode_image([photo])
        t1 = time.perf_counter()
        np.argpartition(-(vector @ gallery.T), 10, axis=1)[:, :10]
        return t1 - t0, time.perf_counter() - t1

    def scene_query() -> tuple[float, float]:
        t0 = time.perf_counter()
        vectors = instances.encode_images([photo]).embeddings[0]
        t1 = time.perf_counter()
        np.argpartition(-(vectors @ gallery.T), 10, axis=1)[:, :10]
        return t1 - t0, time.perf_counter() - t1

    def photo_query_ivf() -> tuple[float, float]:
        t0 = time.perf_counter()
        vector = model.encode_image([photo])
        t1 = time.perf_counter()
        ivf.search(vector, 10)
        return t1 - t0, time.perf_counter() - t1

    def scene_query_ivf() -> tuple[float, float]:
        t0 = time.perf_counter()
        vectors = instances.encode_images([photo]).embeddings[0]
        t1 = time.perf_counter()
        ivf.search(np.ascontiguousarray(vectors, dtype=np.float32), 10)
        return t1 - t0, time.perf_counter() - t1

    rows = {"photo query": photo_query, "scene query": scene_query, "photo query, faiss IVF": photo_query_ivf, "scene query, faiss IVF": scene_query_ivf}
    for run in rows.values():  # warm-up: towers built, sessions ready
        run()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, run in rows.items():
            times[name].append(run())
    results = {}
    for name, samples in times.items():
        encode, search = (1000 * float(np.median([s[i] for s in samples])) for i in (0, 1))
        results[name] = {"encode_ms": round(encode, 1), "search_ms": round(search, 1), "total_ms": round(encode + search, 1)}
    results["scene / photo"] = round(results["scene query"]["total_ms"] / results["photo query"]["total_ms"], 2)
    results["scene / photo, faiss IVF"] = round(results["scene query, faiss IVF"]["total_ms"] / results["photo query, faiss IVF"]["total_ms"], 2)
    record = {"machine": f"{platform.machine()} {platform.processor()}".strip(), "threads": args.threads, "products": args.products, "results": results}
    print(json.dumps(record, indent=1))
    out = Path(__file__).with_name("results") / "instance_query.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
