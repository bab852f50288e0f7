"""Image tower on the CPU: eager PyTorch against ONNX Runtime, measured in the same run.

    .venv/bin/python benchmarks/onnx_image_encoder.py [--tower efficientnet-lite0] [--batch 32] [--repeats 5]

Rows: eager PyTorch NCHW (the baseline), PyTorch channels-last (the torch
back-end as modalens runs it), ONNX Runtime fp32 (the default back-end when
onnxruntime is installed), ONNX Runtime int8 dynamic (the convolutions
become ConvInteger) and ONNX Runtime int8 static (QDQ, calibrated on
``--calibration-photos`` photos of ``--calibration``, default 128 of
kagl:train, as ``modalens export --int8`` makes it; the mini-catalogue photos
when that cannot be read). Each gives images/s at batch ``--batch``
and the latency of one image; the ratio is against the baseline. When the
KAGL photos are present, also JPEG files → features end to end (decoding
included) for the torch and the ONNX back-ends. Accuracy:
the largest difference of ORT fp32 from torch, and the cosine of int8 to
fp32 pooled features (each int8 row), on the mini-catalogue photos (tests/fixtures). Calls
are interleaved round-robin, so a busy machine slows every row alike. The ONNX
export comes from modalens' cache (made there once if missing). Prints the
machine and writes JSON to benchmarks/results/onnx_image_encoder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from modalens.backends.onnx import OnnxImageTower, cached_export
from modalens.export import (
    IMAGE_CALIBRATION_METHOD,
    IMAGE_CALIBRATION_PHOTOS,
    IMAGE_CALIBRATION_SOURCE,
    calibration_photos,
    calibration_pixels,
    quantize,
    quantize_image_static,
)
from modalens.backends.runtime import OrtModel, default_threads
from modalens.catalog import read_catalog
from modalens.catalog.images import load_image
from modalens.encoders import create_image_tower
from modalens.encoders.features import image_features
from modalens.paths import shared_data_dir
from machine import cpu_model, load_average, timed_round_robin  # noqa: E402  (benchmarks/machine.py)

PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mini-catalog" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", default="efficientnet-lite0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-repeats", type=int, default=20)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: usable cores)")
    parser.add_argument("--spinning", action="store_true", help="let ORT worker threads busy-wait (off by default)")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--calibration", default=IMAGE_CALIBRATION_SOURCE, help="catalogue whose photos calibrate static int8")
    parser.add_argument("--calibration-photos", type=int, default=IMAGE_CALIBRATION_PHOTOS)
    parser.add_argument("--calibration-method", default=IMAGE_CALIBRATION_METHOD, help="minmax, entropy or percentile")
    parser.add_argument("--files", type=int, default=256, help="KAGL JPEGs for the end-to-end rows (0: skip)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    torch.manual_seed(0)
    tower = create_image_tower(args.tower).eval()
    size = tower.image_size
    pixels = torch.randn(args.batch, 3, size, size)
    one = pixels[:1].clone()
    threads = args.threads or default_threads()

    folder, manifest, data = cached_export(tower, "image_tower")
    component = manifest["components"]["image_tower"]
    ort_tower = OnnxImageTower(data, component, threads=threads, spinning=args.spinning)
    candidates: dict[str, Callable[[torch.Tensor], object]] = {}

    def torch_call(module: torch.nn.Module, channels_last: bool) -> Callable[[torch.Tensor], object]:
        def call(x: torch.Tensor) -> object:
            with torch.inference_mode():
                return module(x.contiguous(memory_format=torch.channels_last) if channels_last else x)

        return call

    candidates["torch eager NCHW (baseline)"] = torch_call(tower, False)
    cl_tower = create_image_tower(args.tower).eval().to(memory_format=torch.channels_last)
    candidates["torch channels-last (torch backend)"] = torch_call(cl_tower, True)
    candidates["ORT fp32 (onnx backend)"] = lambda x: ort_tower.run(x.numpy())

    int8_note = None
    int8_models: dict[str, OrtModel] = {}
    calibration = None
    if not args.no_int8:
        tmp = Path(tempfile.mkdtemp(prefix="modalens-int8-"))
        try:
            quantize(folder / component["file"], tmp / "image_tower.int8.onnx", "image_tower")
            int8_models["ORT int8 dynamic (ConvInteger)"] = OrtModel(tmp / "image_tower.int8.onnx", threads=threads, spinning=args.spinning)
        except Exception as e:  # the quantiser or the CPU kernels may not support it
            int8_note = f"dynamic: {type(e).__name__}: {e}"[:200]
        try:
            try:
                photos, calibration = calibration_photos(args.calibration, args.calibration_photos), args.calibration
            except Exception:  # no KAGL here
                photos, calibration = [str(p) for p in sorted(PHOTOS.glob("*.jpg"))], "mini-catalogue photos"
            start = time.perf_counter()
            quantize_image_static(folder / component["file"], tmp / "image_tower.static.onnx", calibration_pixels(tower, photos),
                                  method=args.calibration_method)
            calibration = f"{len(photos)} photos of {calibration}, {args.calibration_method}, {time.perf_counter() - start:.0f}s"
            int8_models["ORT int8 static (QDQ)"] = OrtModel(tmp / "image_tower.static.onnx", threads=threads, spinning=args.spinning)
        except Exception as e:
            int8_note = f"static: {type(e).__name__}: {e}"[:200]
        for name, model in int8_models.items():
            candidates[name] = lambda x, m=model: m.run({"pixels": x.numpy()}, ["pooled"])

    batch_times = timed_round_robin({n: (lambda fn=fn: fn(pixels)) for n, fn in candidates.items()}, args.repeats)
    one_times = timed_round_robin({n: (lambda fn=fn: fn(one)) for n, fn in candidates.items()}, args.latency_repeats)
    throughput = {n: args.batch / t for n, t in batch_times.items()}
    latency = {n: 1000 * t for n, t in one_times.items()}

    # End to end on real JPEGs (decode + letterbox in a prefetch thread + encode), as `modalens index` runs.
    end_to_end: dict[str, float] = {}
    kagl = shared_data_dir()
    if args.files and kagl and (kagl / "kagl-fashion").is_dir():
        sources = [p.image for p in read_catalog("kagl:test", limit=args.files).products if p.image]
        for name, module in (("torch channels-last (torch backend)", cl_tower), ("ORT fp32 (onnx backend)", ort_tower)):
            start = time.perf_counter()
            image_features(module, sources, store=None, batch_size=args.batch, progress=False)
            end_to_end[f"{name}: {len(sources)} KAGL JPEGs → features"] = len(sources) / (time.perf_counter() - start)

    # Accuracy on real photos.
    photos = sorted(PHOTOS.glob("*.jpg"))
    accuracy: dict[str, float] = {}
    if photos:
        real = torch.stack([tower.preprocess(load_image(str(p))) for p in photos])
        with torch.inference_mode():
            ref_pooled, ref_map = tower(real).numpy(), tower.forward_features(real).numpy()
        ort_pooled, ort_map = ort_tower.run(real.numpy(), ["pooled", "features"])
        accuracy["ort_fp32_max_abs_diff_pooled"] = float(np.abs(ort_pooled - ref_pooled).max())
        accuracy["ort_fp32_max_abs_diff_feature_map"] = float(np.abs(ort_map - ref_map).max())
        for name, model in int8_models.items():
            key = "int8_static" if "static" in name else "int8"
            q = model.run({"pixels": real.numpy()}, ["pooled"])[0]
            cos = (q * ref_pooled).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(ref_pooled, axis=1))
            accuracy[f"{key}_pooled_cosine_mean"] = float(cos.mean())
            accuracy[f"{key}_pooled_cosine_min"] = float(cos.min())

    baseline = throughput["torch eager NCHW (baseline)"]
    base_latency = latency["torch eager NCHW (baseline)"]
    print(
        f"machine: {os.cpu_count()} cores ({default_threads()} usable), {cpu_model()}, load {load_average()}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {__import__('onnxruntime').__version__} "
        f"({threads} threads, spinning {'on' if args.spinning else 'off'})"
    )
    print(f"tower: {args.tower} at {size}px; export: {component['exporter']} exporter, opset {component['opset']}")
    print(f"  {'':<38} {'batch ' + str(args.batch):>14} {'':>7}   {'batch 1 latency':>16}")
    for name in candidates:
        print(
            f"  {name:<38} {throughput[name]:8.1f} img/s  ×{throughput[name] / baseline:<5.2f}"
            f"   {latency[name]:8.1f} ms  ×{base_latency / latency[name]:.2f}"
        )
    if int8_note:
        print(f"  int8: not measured ({int8_note})")
    if calibration:
        print(f"  int8 static calibration: {calibration}")
    for name, value in end_to_end.items():
        print(f"  {name:<70} {value:8.1f} img/s")
    for key, value in accuracy.items():
        print(f"  {key}: {value:.3g}" if "diff" in key else f"  {key}: {value:.5f}")

    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {
        "benchmark": "onnx_image_encoder",
        "tower": args.tower,
        "image_size": size,
        "batch": args.batch,
        "cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "cpu": cpu_model(),
        "load_average_at_end": load_average(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "ort_threads": threads,
        "ort_spinning": args.spinning,
        "exporter": component["exporter"],
        "opset": component["opset"],
        "images_per_second": throughput,
        "ratio_vs_baseline": {k: v / baseline for k, v in throughput.items()},
        "batch1_latency_ms": latency,
        "end_to_end_images_per_second": end_to_end,
        "accuracy": accuracy,
        "int8_note": int8_note,
        "int8_static_calibration": calibration,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "onnx_image_encoder.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
