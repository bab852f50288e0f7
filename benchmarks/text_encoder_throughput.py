"""Text tower on the CPU: PyTorch against ONNX Runtime (fp32 and int8), measured in the same run.

    .venv/bin/python benchmarks/text_encoder_throughput.py [--tower minilm-l6] [--texts 512] [--batch 128]

Texts are product titles (the mini-catalogue's, varied and repeated to
``--texts``), encoded the way modalens does (sorted by length, batches of
``--batch``, tokenising included). Rows: PyTorch (the baseline), ONNX
Runtime fp32 (the default back-end when onnxruntime is installed) and ONNX
Runtime int8 (dynamic quantisation, per-channel). Also one query's latency
(batch 1), and accuracy: ORT fp32's largest difference from torch and the
int8 cosine to fp32. Calls are interleaved round-robin, so a busy machine
slows every row alike. Prints the machine; writes
benchmarks/results/text_encoder_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from modalens.backends.onnx import OnnxTextTower, cached_export
from modalens.export import quantize
from modalens.backends.runtime import default_threads
from modalens.encoders import create_text_tower
from machine import cpu_model, load_average, timed_round_robin  # noqa: E402  (benchmarks/machine.py)

HERE = Path(__file__).resolve().parent
CATALOG = HERE.parent / "tests" / "fixtures" / "mini-catalog" / "products.csv"




def texts_for(n: int) -> list[str]:
    titles: list[str] = []
    if CATALOG.exists():
        with open(CATALOG, newline="") as f:
            titles = [row["title"] for row in csv.DictReader(f) if row.get("title")]
    extra = ["navy blue check shirt", "running shoes", "a photo of a red dress", "", "women's leather handbag with gold buckle"]
    pool = titles + extra
    out = []
    i = 0
    while len(out) < n:  # vary the texts so the batches are not identical
        base = pool[i % len(pool)]
        out.append(base if i < len(pool) else f"{base} {pool[(i * 7) % len(pool)].lower()}"[: 20 + (i * 13) % 160])
        i += 1
    return out


def encode_all(fn: Callable[[list[str]], object], texts: Sequence[str], batch: int) -> None:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # as modalens.encoders.features does
    for j in range(0, len(order), batch):
        fn([texts[i] for i in order[j : j + batch]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", default="minilm-l6")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    tower = create_text_tower(args.tower).eval()
    threads = args.threads or default_threads()
    folder, manifest, data = cached_export(tower, "text_tower")
    component = manifest["components"]["text_tower"]
    ort_tower = OnnxTextTower(data, component, tower.tokenizer, max_length=tower.max_length, threads=threads)
    tmp = Path(tempfile.mkdtemp(prefix="modalens-int8-"))
    quantize(folder / component["file"], tmp / "text_tower.int8.onnx", "text_tower")
    int8_tower = OnnxTextTower(tmp / "text_tower.int8.onnx", component, tower.tokenizer, max_length=tower.max_length, threads=threads)

    def torch_fn(batch: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return tower(batch).numpy()

    candidates = {
        "torch (baseline)": torch_fn,
        "ORT fp32 (onnx backend)": ort_tower.encode_numpy,
        "ORT int8 dynamic": int8_tower.encode_numpy,
    }
    texts = texts_for(args.texts)
    all_times = timed_round_robin({n: (lambda fn=fn: encode_all(fn, texts, args.batch)) for n, fn in candidates.items()}, args.repeats)
    one_times = timed_round_robin({n: (lambda fn=fn: fn(["navy blue check shirt"])) for n, fn in candidates.items()}, 20)
    throughput = {n: len(texts) / t for n, t in all_times.items()}
    latency = {n: 1000 * t for n, t in one_times.items()}

    sample = texts[: min(256, len(texts))]
    ref = torch_fn(sample)
    fp32 = ort_tower.encode_numpy(sample)
    q = int8_tower.encode_numpy(sample)
    cos = (q * fp32).sum(1) / np.maximum(np.linalg.norm(q, axis=1) * np.linalg.norm(fp32, axis=1), 1e-12)
    accuracy = {
        "ort_fp32_max_abs_diff": float(np.abs(fp32 - ref).max()),
        "int8_cosine_mean": float(cos.mean()),
        "int8_cosine_min": float(cos.min()),
    }

    baseline, base_latency = throughput["torch (baseline)"], latency["torch (baseline)"]
    print(
        f"machine: {os.cpu_count()} cores ({default_threads()} usable), {cpu_model()}, "
        f"load {load_average()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {__import__('onnxruntime').__version__} ({threads} threads)"
    )
    print(f"tower: {args.tower}, {len(texts)} texts, batch {args.batch}, max_length {tower.max_length}; "
          f"export: {component['exporter']}, opset {component['opset']}")
    for name in candidates:
        print(f"  {name:<26} {throughput[name]:8.1f} texts/s  ×{throughput[name] / baseline:<5.2f}"
              f"   one query {latency[name]:6.1f} ms  ×{base_latency / latency[name]:.2f}")
    for key, value in accuracy.items():
        print(f"  {key}: {value:.3g}" if "diff" in key else f"  {key}: {value:.5f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {
        "benchmark": "text_encoder_throughput",
        "tower": args.tower,
        "texts": len(texts),
        "batch": args.batch,
        "cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "cpu": cpu_model(),
        "load_average_at_end": load_average(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "ort_threads": threads,
        "exporter": component["exporter"],
        "texts_per_second": throughput,
        "ratio_vs_baseline": {k: v / baseline for k, v in throughput.items()},
        "one_query_latency_ms": latency,
        "accuracy": accuracy,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "text_encoder_throughput.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
