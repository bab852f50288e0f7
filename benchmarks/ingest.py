"""End-to-end ingest: a folder of JPEGs → an index, pipelined against a naive loop, in the same run.

    .venv/bin/python benchmarks/ingest.py [--files 512] [--large 256] [--large-side 1500] [--repeats 3]

Rows, each in products/s (photo file → vector in the on-disk index):

- naive loop (the baseline): for each batch of 64 products, open every file
  with the safe loader at full size, ``tower.preprocess`` it, encode the batch,
  project, write it to the index; nothing overlaps.
- ``SearchEngine.build`` as ``modalens index`` runs it, decoding in one
  background thread (``MODALENS_DECODE_WORKERS=0``, the default below 4 cores)
  and in worker processes (``default_workers`` from 4 cores; one is forced here
  on smaller machines so the row exists); JPEG draft
  decoding, batched normalisation and the feature cache's writes included.

Two photo sets: the KAGL test photos (224 px, where draft changes nothing) and
the same photos upscaled to ``--large-side`` px and saved as JPEGs in a temp
folder (what a shop exports; draft decoding decodes them at 1/4 scale).
Every measured run gets a fresh feature cache and a fresh index, so no run
reuses another's work; the ONNX export of the towers comes from modalens'
cache (made once if missing, before timing). Runs are interleaved round-robin
after one warm-up each (which also starts the worker pool; the pool's start-up
is timed on its own). Prints the machine and writes JSON to
benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modalens.catalog import read_catalog
from modalens.catalog.images import load_image
from modalens.catalog.schema import Product
from modalens.encoders import pipeline
from modalens.encoders.features import image_features
from modalens.index import CatalogIndex, build_index
from modalens.index.build import EmbedResult, product_content_key
from modalens.models import DualEncoder, create_model
from modalens.search import SearchEngine
from machine import cpu_model, load_average, timed_round_robin  # noqa: E402  (benchmarks/machine.py)

MODEL = "modalens-lite"
BATCH = 64  # products per committed index batch, as `modalens index`


def large_copies(products: list[Product], side: int, folder: Path) -> list[Product]:
    """The same products with their photo upscaled to ``side`` px and saved as a quality-90 JPEG."""
    out = []
    for p in products:
        path = folder / f"{p.id}.jpg"
        image = load_image(p.image)
        image.resize((side, round(side * image.height / image.width)), Image.Resampling.BICUBIC).save(path, quality=90)
        out.append(Product(id=p.id, images=[str(path)], title=p.title, attributes=dict(p.attributes)))
    return out


def fresh_dirs(scratch: Path) -> Path:
    """A new, empty feature cache (``MODALENS_CACHE``) and index folder for one measured run."""
    run = Path(tempfile.mkdtemp(dir=scratch))
    os.environ["MODALENS_CACHE"] = str(run / "cache")
    return run / "index"


def naive_ingest(model: DualEncoder, products: list[Product], scratch: Path) -> None:
    """Baseline: decode, preprocess and encode each batch serially, then write it."""
    index_dir = fresh_dirs(scratch)
    index = CatalogIndex.create(index_dir, model=MODEL, dim=model.config.embed_dim)
    tower = model.image_tower

    def embed_batch(batch: list[Product]) -> EmbedResult:
        pixels = torch.stack([tower.preprocess(load_image(p.image)) for p in batch])
        with torch.inference_mode():
            feats = tower(pixels).float().numpy()
        return EmbedResult(model.project_features(feats, "image"), [p.id for p in batch], [])

    build_index(index, products, embed_batch, batch_size=BATCH, content_key=product_content_key, progress=False)
    index.close()


def pipelined_ingest(model: DualEncoder, products: list[Product], scratch: Path, workers: int) -> None:
    """What `modalens index` runs: ``SearchEngine.build``, decoding in ``workers`` processes (0: a thread)."""
    os.environ[pipeline.WORKERS_ENV] = str(workers)
    engine = SearchEngine(fresh_dirs(scratch), MODEL, progress=False, shared_model=model)
    report = engine.build(products, batch_size=BATCH)
    engine.close()
    if report.failed:
        raise RuntimeError(f"ingest failed for {report.failed} products")


def pool_start_seconds(image: str, size: int, workers: int) -> float:
    """Seconds from no pool to the first decoded photo, in a fresh process whose main module is light, like `modalens`.

    A spawned worker re-imports its parent's main module; this script's is
    heavy (torch, the model), the ``modalens`` command's is not, so the
    start-up is timed from a ``python -c`` parent that has imported torch.
    """
    code = (
        "import time, torch\n"
        "from modalens.encoders import pipeline\n"
        "start = time.perf_counter()\n"
        f"next(pipeline.decode_in_order([{image!r}], {size}, workers={workers}))\n"
        "print(time.perf_counter() - start)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def draft_cosines(model: DualEncoder, products: list[Product]) -> np.ndarray:
    """Cosine of each photo's tower features from a draft decode to those from a full decode."""
    tower = model.image_tower
    paths = [p.image for p in products]
    drafted, _ = image_features(tower, paths, progress=False, workers=0)
    full, _ = image_features(tower, paths, progress=False, load_image=lambda path: load_image(path))
    return (drafted * full).sum(1) / (np.linalg.norm(drafted, axis=1) * np.linalg.norm(full, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=512, help="KAGL test photos (224 px)")
    parser.add_argument("--large", type=int, default=256, help="large JPEGs made from them (0: skip)")
    parser.add_argument("--large-side", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("MODALENS_ONNX_CACHE", str(Path.home() / ".cache" / "modalens" / "onnx"))
    scratch = Path(tempfile.mkdtemp(prefix="modalens-ingest-"))
    products = [p for p in read_catalog("kagl:test", limit=args.files).products if p.image]
    model = create_model(MODEL)
    size = model.image_tower.image_size
    workers = pipeline.default_workers(BATCH) or 1
    sets = {"KAGL 224 px": products}
    if args.large:
        folder = scratch / "large"
        folder.mkdir()
        sets[f"KAGL upscaled to {args.large_side} px"] = large_copies(products[: args.large], args.large_side, folder)
    start_s = pool_start_seconds(products[0].image, size, workers)
    large = list(sets.values())[-1] if args.large else []
    cosines = draft_cosines(model, large[:64]) if large else np.ones(1)

    candidates: dict[str, Callable[[list[Product]], None]] = {
        "naive loop (baseline)": lambda ps: naive_ingest(model, ps, scratch),
        "pipelined, decode in a thread": lambda ps: pipelined_ingest(model, ps, scratch, 0),
        f"pipelined, {workers} decode process(es)": lambda ps: pipelined_ingest(model, ps, scratch, workers),
    }
    rates: dict[str, dict[str, float]] = {}
    for set_name, ps in sets.items():
        seconds = timed_round_robin({name: (lambda fn=fn, ps=ps: fn(ps)) for name, fn in candidates.items()}, args.repeats)
        rates[set_name] = {name: len(ps) / s for name, s in seconds.items()}

    print(
        f"machine: {os.cpu_count()} cores ({pipeline.usable_cores()} usable), {cpu_model()}, load {load_average()}; "
        f"torch {torch.__version__}, image tower backend {getattr(model.image_tower, 'backend', 'torch')}"
    )
    print(f"decode pool ({pipeline.START_METHOD}, {workers} worker(s)): {start_s:.2f} s to the first photo from a light main module (paid once per process)")
    if large:
        print(f"draft vs full decode of the large JPEGs, tower-feature cosine: mean {cosines.mean():.5f}, min {cosines.min():.5f}")
    for set_name, by_name in rates.items():
        n = len(sets[set_name])
        base = by_name["naive loop (baseline)"]
        print(f"{set_name}, {n} products, median of {args.repeats} (fresh cache and index each run):")
        for name, rate in by_name.items():
            print(f"  {name:<40} {rate:7.1f} products/s  ×{rate / base:.2f}")

    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {
        "benchmark": "ingest",
        "model": MODEL,
        "cores": os.cpu_count(),
        "usable_cores": pipeline.usable_cores(),
        "cpu": cpu_model(),
        "load_average_at_end": load_average(),
        "torch": torch.__version__,
        "image_backend": getattr(model.image_tower, "backend", "torch"),
        "batch": BATCH,
        "repeats": args.repeats,
        "start_method": pipeline.START_METHOD,
        "workers": workers,
        "pool_start_seconds": start_s,
        "draft_feature_cosine": {"mean": float(cosines.mean()), "min": float(cosines.min()), "n": int(len(cosines))} if large else None,
        "products": {name: len(ps) for name, ps in sets.items()},
        "products_per_second": rates,
        "ratio_vs_baseline": {s: {n: r / by["naive loop (baseline)"] for n, r in by.items()} for s, by in rates.items()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "ingest.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
