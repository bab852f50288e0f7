"""Prepared for a machine with an NVIDIA GPU (not yet run: no GPU was lent to the session that wrote it).

    PYTHONPATH=src .venv/bin/python benchmarks/gpu_check.py [--photos 512] [--batch 64] [--train] [--device cuda]

What it measures, all in one run on the same machine (issue #19, item 3):

1. The card: ``torch.cuda.get_device_name``, its memory, ``nvidia-smi`` if present, and ONNX
   Runtime's providers (the GPU build lists ``CUDAExecutionProvider``; the default wheel is CPU-only).
2. Image encoding throughput (pixels -> unit embeddings; decoding and preprocessing done before
   timing, so this is the ceiling a GPU indexing path could reach): the shipped CPU path (the
   model's ONNX Runtime tower on every core, the baseline) against the same model's torch tower and
   head on the GPU in fp32 and under bf16 autocast, photos/s, median of ``--repeats`` passes.
3. Agreement: the largest |CPU - GPU| over the unit embeddings (the issue asks for 1e-3).
4. With ``--train``: ``modalens train`` on a copy of configs/modalens-lite.yaml with
   ``optim.device: cuda`` and one epoch (needs the KAGL photos), its wall time.

Photos: the KAGL test photos when ``../shared/data`` is present, else generated photo-like images
(smooth colour fields), which time the same. ``--device cpu`` runs every step on the CPU (a dry run
of the script where there is no GPU). Writes JSON to benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_model, load_average  # noqa: E402  (benchmarks/machine.py)
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def card(device: str) -> dict:
    import onnxruntime
    import torch

    found = {"torch": torch.__version__, "onnxruntime_providers": onnxruntime.get_available_providers()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        found.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1))
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        found["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    return found


def photos(n: int) -> tuple[list[Image.Image], str]:
    from modalens.catalog import read_catalog
    from modalens.catalog.images import load_image

    try:
        products = read_catalog("kagl:test", limit=n).products
        return [load_image(p.image) for p in products], f"KAGL test ({len(products)})"
    except Exception:  # no ../shared here: photo-like stand-ins
        rng = np.random.default_rng(0)
        grid = np.linspace(0, 1, 224, dtype=np.float32)
        images = []
        for _ in range(n):
            a, b = rng.random(3), rng.random(3)
            field = grid[:, None, None] * a + grid[None, :, None] * b
            images.append(Image.fromarray((255 * np.clip(field / 2 + rng.random(3) * 0.3, 0, 1)).astype(np.uint8)))
        return images, f"generated ({n})"


def timed(fn, repeats: int) -> tuple[np.ndarray, float]:
    fn()  # warm-up (CUDA context, cuDNN autotuning, ONNX sessions)
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, float(np.median(times))


def encoders(model_name: str, images: list[Image.Image], batch: int, device: str):
    """The CPU baseline (the shipped model as it is) and the torch model on ``device``, fp32 and bf16."""
    import torch

    from modalens.models import create_model

    baseline = create_model(model_name)
    os.environ["MODALENS_BACKEND"] = "torch"  # read when the towers are built, on first use
    gpu_model = create_model(model_name)
    tower, head = gpu_model.image_tower, gpu_model.image_head
    tower.to(device).eval()
    head.to(device).eval()
    os.environ.pop("MODALENS_BACKEND")
    pixels = torch.stack([tower.preprocess(im) for im in images]).contiguous(memory_format=torch.channels_last)

    def cpu() -> np.ndarray:
        return np.concatenate([baseline.encode_image(images[i : i + batch]) for i in range(0, len(images), batch)])

    def on_device(dtype: torch.dtype | None) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = [head(tower(pixels[i : i + batch].to(device, non_blocking=True))).float() for i in range(0, len(pixels), batch)]
            result = torch.cat(out).cpu().numpy()
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    return {"cpu (shipped path)": cpu, f"torch {device} fp32": lambda: on_device(None), f"torch {device} bf16": lambda: on_device(torch.bfloat16)}


def train_once(device: str) -> dict:
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "modalens-lite.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="gpu-train-") as folder:
        config["optim"].update(epochs=1, device=device)
        config["output"] = str(Path(folder) / "run")
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "modalens", "train", str(path), "--no-progress"], capture_output=True, text=True)
        return {"seconds": round(time.perf_counter() - start, 1), "exit": done.returncode, "tail": (done.stdout + done.stderr)[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="modalens-photo")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--train", action="store_true", help="also time one epoch of `modalens train` on the device")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu for a dry run, or on a GPU machine")
    report = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load": load_average(), **card(args.device)}}
    images, source = photos(args.photos)
    report["photos"] = source
    print(json.dumps(report["machine"]), f"\nphotos: {source}", flush=True)
    rows, reference = {}, None
    for name, fn in encoders(args.model, images, args.batch, args.device).items():
        vectors, seconds = timed(fn, args.repeats)
        reference = vectors if reference is None else reference
        rows[name] = {"photos_per_s": round(len(images) / seconds, 1), "max_abs_diff_to_cpu": float(np.abs(vectors - reference).max())}
        print(f"  {name}: {rows[name]['photos_per_s']} photos/s, max |diff| to the CPU path {rows[name]['max_abs_diff_to_cpu']:.2e}", flush=True)
    report["encode"] = rows
    if args.train:
        report["train_one_epoch"] = train_once(args.device)
        print(f"  train, one epoch on {args.device}: {report['train_one_epoch']['seconds']} s (exit {report['train_one_epoch']['exit']})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "gpu_check.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
