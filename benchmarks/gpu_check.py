"""Prepared for a machine with an NVIDIA GPU: the GPU path as modalens ships it, against the CPU path, in one run.

    PYTHONPATH=src .venv/bin/python benchmarks/gpu_check.py [--photos 512] [--batch 64] [--index-limit 946] [--train] [--device cuda]

Needs ``onnxruntime-gpu`` in place of ``onnxruntime`` (``pip uninstall -y onnxruntime && pip install
onnxruntime-gpu``) and a CUDA build of torch for ``--train``. What it measures (issue #19, item 3):

1. The card: ``nvidia-smi``, torch's view of it, and ONNX Runtime's providers (the GPU build lists
   ``CUDAExecutionProvider``; the default wheel is CPU-only).
2. Image encoding, photos/s (pixels decoded and letterboxed before timing, so this is the encoder alone):
   the shipped model's ONNX Runtime towers with ``MODALENS_DEVICE=cpu`` (the baseline) against the same
   sessions with ``MODALENS_DEVICE=cuda`` (``CUDAExecutionProvider``, chosen by
   ``modalens.backends.device``, exactly what ``auto`` picks on a GPU machine); the providers each session
   got are reported, so a silent CPU fallback cannot pass for a GPU figure. For comparison, the model's torch
   tower and head on the device in fp32 and under bf16 autocast (not a shipped path).
3. Agreement: the largest |CPU - GPU| of the unit embeddings, per row (the issue allows 1e-3).
4. Indexing throughput end to end: ``modalens index kagl:test --limit N`` in a fresh process, fresh feature
   cache and fresh index, once with ``MODALENS_DEVICE=cpu`` and once with ``cuda``: products/s
   (photo decoding included; the towers' ONNX export comes from the shared cache).
5. With ``--train``: ``modalens train`` on a copy of configs/modalens-lite.yaml, one epoch, ``optim.device:
   cuda`` (``auto``, the default, picks it too), its wall time.

Photos: the KAGL test photos when ``../shared/data`` is present, else generated photo-like images
(smooth colour fields), which time the same (step 4 needs KAGL). ``--device cpu`` runs every step on
the CPU: a dry run where there is no GPU. Writes JSON to benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import argparse
import contextlib
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


@contextlib.contextmanager
def device_env(device: str):
    """``MODALENS_DEVICE`` for what is built inside (ONNX Runtime sessions read it when they open)."""
    before = os.environ.get("MODALENS_DEVICE")
    os.environ["MODALENS_DEVICE"] = device
    try:
        yield
    finally:
        os.environ.pop("MODALENS_DEVICE") if before is None else os.environ.__setitem__("MODALENS_DEVICE", before)


def shipped_model(model_name: str, device: str):
    """The model as modalens runs it (ONNX Runtime towers), its sessions opened on ``device``; and the providers they got."""
    from modalens.models import create_model

    with device_env(device):
        model = create_model(model_name)
        tower = model.image_tower  # built now, under the variable
    if not hasattr(tower, "run"):
        sys.exit(f"{model_name}: the image tower runs in {getattr(tower, 'backend', 'torch')}, not ONNX Runtime; the GPU path needs onnxruntime-gpu")
    return model, tower.session.providers


def encoders(model_name: str, images: list[Image.Image], batch: int, device: str) -> tuple[dict, dict]:
    """name -> a function encoding all the photos; name -> the providers (or torch device) it runs on."""
    import torch

    from modalens.models import create_model

    cpu_model_, cpu_providers = shipped_model(model_name, "cpu")
    gpu_model, gpu_providers = shipped_model(model_name, device)
    os.environ["MODALENS_BACKEND"] = "torch"  # read when the towers are built, on first use
    torch_model = create_model(model_name)
    tower, head = torch_model.image_tower, torch_model.image_head
    os.environ.pop("MODALENS_BACKEND")
    tower.to(device).eval()
    head.to(device).eval()
    pixels = torch.stack([tower.preprocess(im) for im in images]).contiguous(memory_format=torch.channels_last)
    array = pixels.contiguous().numpy()

    def onnx(model) -> np.ndarray:  # the towers' numpy path, as CachedEncoder drives it (pixels -> features -> head)
        features = np.concatenate([model.image_tower.run(array[i : i + batch], ["pooled"])[0] for i in range(0, len(array), batch)])
        return model.project_features(features, "image")

    def on_torch(dtype: torch.dtype | None) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = [head(tower(pixels[i : i + batch].to(device, non_blocking=True))).float() for i in range(0, len(pixels), batch)]
            result = torch.cat(out).cpu().numpy()
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    runs = {
        "onnx cpu (MODALENS_DEVICE=cpu, baseline)": (lambda: onnx(cpu_model_), cpu_providers),
        f"onnx {device} (MODALENS_DEVICE={device}, shipped path)": (lambda: onnx(gpu_model), gpu_providers),
        f"torch {device} fp32 (comparison)": (lambda: on_torch(None), [device]),
        f"torch {device} bf16 (comparison)": (lambda: on_torch(torch.bfloat16), [device]),
    }
    return {k: fn for k, (fn, _) in runs.items()}, {k: providers for k, (_, providers) in runs.items()}


def index_once(device: str, limit: int, model_name: str) -> dict:
    """``modalens index kagl:test --limit N`` in a fresh process, feature cache and index, on ``device``."""
    with tempfile.TemporaryDirectory(prefix="gpu-index-") as folder:
        env = {**os.environ, "MODALENS_DEVICE": device, "MODALENS_CACHE": str(Path(folder) / "cache")}
        env.setdefault("MODALENS_ONNX_CACHE", str(Path.home() / ".cache" / "modalens" / "onnx"))
        command = [sys.executable, "-m", "modalens", "index", "kagl:test", "--limit", str(limit), "--model", model_name,
                   "--index", str(Path(folder) / "index"), "--no-progress"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    row = {"seconds": round(seconds, 1), "exit": done.returncode, "products_per_s": round(limit / seconds, 1)}
    if done.returncode:
        row["tail"] = (done.stdout + done.stderr)[-600:]
    return row


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
    parser.add_argument("--index-limit", type=int, default=946, help="products for the indexing rows (0: skip them; needs KAGL)")
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
    runs, providers = encoders(args.model, images, args.batch, args.device)
    for name, fn in runs.items():
        vectors, seconds = timed(fn, args.repeats)
        reference = vectors if reference is None else reference
        rows[name] = {
            "photos_per_s": round(len(images) / seconds, 1),
            "max_abs_diff_to_cpu": float(np.abs(vectors - reference).max()),
            "runs_on": providers[name],
        }
        print(f"  {name} on {providers[name]}: {rows[name]['photos_per_s']} photos/s, "
              f"max |diff| to the CPU path {rows[name]['max_abs_diff_to_cpu']:.2e}", flush=True)  # fmt: skip
    report["encode"] = rows
    if args.index_limit:
        report["index"] = {}
        for device in dict.fromkeys(["cpu", args.device]):
            report["index"][device] = row = index_once(device, args.index_limit, args.model)
            print(f"  modalens index kagl:test --limit {args.index_limit}, MODALENS_DEVICE={device}: "
                  f"{row['products_per_s']} products/s ({row['seconds']} s, exit {row['exit']})", flush=True)  # fmt: skip
    if args.train:
        report["train_one_epoch"] = train_once(args.device)
        print(f"  train, one epoch on {args.device}: {report['train_one_epoch']['seconds']} s (exit {report['train_one_epoch']['exit']})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "gpu_check.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
