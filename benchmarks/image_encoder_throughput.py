"""Image-tower throughput (images/s) on this machine, against a baseline measured in the same run.

    .venv/bin/python benchmarks/image_encoder_throughput.py [--tower efficientnet-lite0] [--batch 32] [--repeats 3]

Baseline: the tower in plain eager PyTorch (NCHW memory layout). Candidate: the
same tower as modalens runs it (channels-last memory layout, inference mode).
Also measured end to end from JPEG files (decode + letterbox + encode) when
the KAGL photos are present. Prints the machine, a table, the ratio, and
writes JSON next to this script (results/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from modalens.catalog import read_catalog
from modalens.encoders import create_image_tower
from modalens.encoders.features import image_features
from modalens.paths import shared_data_dir
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)




def images_per_second(tower, pixels: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        tower(pixels)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            tower(pixels)
            times.append(time.perf_counter() - start)
    return len(pixels) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", default="efficientnet-lite0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=256, help="JPEGs for the end-to-end measurement")
    args = parser.parse_args()

    torch.manual_seed(0)
    tower = create_image_tower(args.tower).eval()
    size = tower.image_size
    pixels = torch.randn(args.batch, 3, size, size)
    rows = {"eager NCHW (baseline)": images_per_second(tower, pixels, args.repeats)}
    tower = tower.to(memory_format=torch.channels_last)
    rows["channels-last (modalens)"] = images_per_second(tower, pixels.contiguous(memory_format=torch.channels_last), args.repeats)

    kagl = shared_data_dir()
    if kagl and (kagl / "kagl-fashion").is_dir():
        products = read_catalog("kagl:test", limit=args.files).products
        start = time.perf_counter()
        image_features(tower, [p.image for p in products], store=None, batch_size=args.batch, progress=False)
        rows[f"JPEG → features, {len(products)} KAGL files"] = len(products) / (time.perf_counter() - start)

    baseline = rows["eager NCHW (baseline)"]
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"tower: {args.tower} at {size}px, batch {args.batch}")
    for name, value in rows.items():
        print(f"  {name:<40} {value:8.1f} images/s   ×{value / baseline:.2f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {
        "benchmark": "image_encoder_throughput",
        "tower": args.tower,
        "batch": args.batch,
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "images_per_second": rows,
        "ratio_vs_baseline": {k: v / baseline for k, v in rows.items()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "image_encoder_throughput.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
