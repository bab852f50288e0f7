"""Bounded load test of `modalens serve` on loopback: text-search QPS and p50/p99, reads with writes interleaved.

    .venv/bin/python benchmarks/serve_load.py [--products 10000 100000] [--seconds 20] [--concurrency 8]

For each catalogue size it builds an index from the KAGL photos' real embeddings
(the shipped model; sizes beyond the 8.6k photos are noisy copies of real
vectors, renormalised, with the copied product's metadata under a new id),
starts the real server in a subprocess on 127.0.0.1, and drives it with an
asyncio HTTP client for a bounded time. Baseline, measured in the same run: the
same queries answered in-process (SearchEngine.search, no HTTP), one at a time.
Prints the machine and a table; writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from modalens.catalog import read_catalog
from modalens.catalog.schema import Product
from modalens.index import CatalogIndex
from modalens.index.build import product_content_key
from modalens.models import model_identity
from modalens.search import SearchEngine

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_model  # noqa: E402

API_KEY = "bench-key"


def build_index(folder: Path, size: int, seed: int = 0) -> list[str]:
    """An index of ``size`` products from real KAGL embeddings; returns query texts (real titles)."""
    engine = SearchEngine(folder, progress=False)
    products = read_catalog("kagl").products
    vectors, failures = engine.encoder.image_embeddings(products)
    keep = [i for i in range(len(products)) if i not in failures]
    products, vectors = [products[i] for i in keep], vectors[keep]
    rng = np.random.default_rng(seed)
    index = CatalogIndex.create(folder, model=model_identity("modalens-lite"), dim=vectors.shape[1])
    for start in range(0, size, 5000):
        rows = np.arange(start, min(size, start + 5000))
        source = rows % len(products)
        batch_vectors = vectors[source].copy()
        copies = rows >= len(products)
        batch_vectors[copies] += rng.normal(scale=0.03, size=(int(copies.sum()), vectors.shape[1])).astype(np.float32)
        batch = [_copy(products[s], r) for s, r in zip(source, rows)]
        index.add(batch, batch_vectors, [product_content_key(p) for p in batch])
    index.close()
    engine.close()
    return [p.title for p in products]


def _copy(product: Product, row: int) -> Product:
    data = product.to_dict()
    data["id"] = f"{product.id}-{row}" if row >= 8613 else product.id
    return Product.from_dict(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MODALENS_API_KEYS": API_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "modalens", "serve", "--index", str(folder), "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


async def load(url: str, queries: list[str], seconds: float, concurrency: int, write_every: int, photo: bytes) -> dict:
    import httpx

    latencies: list[float] = []
    writes = errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(0)

    async def worker(client: httpx.AsyncClient, wid: int) -> None:
        nonlocal writes, errors
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            if write_every and n % write_every == 0:
                body = {"product": json.dumps({"title": f"bench write {wid}-{n}", "attributes": {"article_type": "Tshirts"}})}
                files = {"image": ("p.jpg", photo, "image/jpeg")}
                r = await client.put(f"/api/products/bench-{wid}-{n}", data=body, files=files, headers={"X-API-Key": API_KEY})
                writes += 1
                errors += r.status_code != 200
                continue
            started = time.perf_counter()
            r = await client.post("/api/search", json={"q": rng.choice(queries), "k": 10})
            latencies.append(time.perf_counter() - started)
            errors += r.status_code != 200

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client, w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "queries": len(latencies),
        "qps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "writes": writes,
        "errors": errors,
    }


def in_process_baseline(folder: Path, queries: list[str], n: int = 100) -> dict:
    engine = SearchEngine(folder, progress=False)
    engine.search(queries[0])  # warm
    times = []
    for q in queries[:n]:
        started = time.perf_counter()
        engine.search(q, k=10)
        times.append(time.perf_counter() - started)
    engine.close()
    return {"qps": 1 / statistics.mean(times), "p50_ms": 1000 * statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--write-every", type=int, default=10, help="each client's every Nth request is a write with a photo (0: none)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; {args.concurrency} clients, {args.seconds:.0f}s per run")
    records = []
    for size in args.products:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "index"
            queries = build_index(folder, size)
            random.Random(1).shuffle(queries)
            base = in_process_baseline(folder, queries)
            proc, url = start_server(folder)
            try:
                photo = Path(read_catalog("kagl:test").products[0].image).read_bytes()
                reads = asyncio.run(load(url, queries, args.seconds, args.concurrency, 0, photo))
                mixed = asyncio.run(load(url, queries, args.seconds, args.concurrency, args.write_every, photo))
            finally:
                proc.terminate()
                proc.wait(30)
        for name, result in (("reads", reads), ("reads+writes", mixed)):
            print(
                f"{size:>8} products {name:<13} {result['qps']:7.1f} q/s  p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms"
                f"  errors {result['errors']}  writes {result['writes']}  (in-process baseline {base['qps']:.1f} q/s,"
                f" p50 {base['p50_ms']:.1f} ms; ×{result['qps'] / base['qps']:.2f})"
            )
            records.append({"products": size, "mode": name, **result, "baseline": base})
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps({"cores": os.cpu_count(), "cpu": cpu_model(), "runs": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
