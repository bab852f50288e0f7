"""What the int8 files of `modalens export --int8` cost in task metrics, and what the text tower's gain in speed.

    .venv/bin/python benchmarks/int8_accuracy.py [--data kagl:test] [--export DIR] [--batch 1] [--resamples 1000]

Rows, all in one run on the same products:

* ``normal path``: ``CachedEncoder`` over the model as ``modalens eval`` runs it (the reference);
* ``export fp32`` (the baseline): the export's fp32 text tower and heads in ONNX Runtime;
* ``int8 text tower``: the int8 text tower, fp32 heads;
* ``int8 text tower + heads``: the int8 text tower and both int8 heads;
* ``int8 image tower``: the image tower in static int8 (calibrated, QDQ), everything else fp32;
* ``int8 all``: every component ``modalens export --int8`` quantised (``load_export(int8=True)``).

Rows with the fp32 image tower share the fp32 image features (the feature
cache); the int8 image tower's features are computed from the photos with
the same decoding (``encoders.features.image_features``, no cache), and
their cosine to the fp32 features is reported. The export must have an
int8 image tower (``modalens export --int8 --calibration kagl:train``; the
export made here has one, calibrated on ``--calibration``), else those rows
are left out.

Metrics are the evaluation tasks' own (``modalens.evaluation.tasks``):
zero-shot articleType accuracy / weighted F1 (prompt ensemble and single
prompt) and text→image / image→text Recall@1/5/10, with each int8 row's
difference from the baseline and its paired-bootstrap 95% interval. Texts
are encoded ``--batch`` at a time (default 1, as the server encodes a
query: dynamic int8 scales each batch's activations, so padding in a batch
moves int8 results a little). Also texts/s of text tower + head, fp32
against int8, batch 1 and batch 32, interleaved round-robin. Prints the
machine; writes JSON to benchmarks/results/int8_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from modalens.backends.onnx import OnnxImageTower
from modalens.export import IMAGE_CALIBRATION_METHOD, IMAGE_CALIBRATION_PHOTOS, IMAGE_CALIBRATION_SOURCE, export_model
from modalens.backends.runtime import ExportedModel, default_threads, load_export
from modalens.catalog import read_catalog
from modalens.catalog.schema import Product
from modalens.embedding import CachedEncoder
from modalens.encoders.features import image_features
from modalens.evaluation.bootstrap import paired_difference
from modalens.evaluation.tasks import TaskOutput, retrieval_output, zero_shot_output
from modalens.models import create_model
from machine import cpu_model, load_average, timed_round_robin  # noqa: E402  (benchmarks/machine.py)

#: (task, metric path) shown per row, in order.
HEADLINE = [
    ("zero_shot", "ensemble/accuracy"),
    ("zero_shot", "ensemble/weighted_f1"),
    ("zero_shot", "single_prompt/accuracy"),
    ("zero_shot", "single_prompt/weighted_f1"),
    *[("retrieval", f"{d}/R@{k}") for d in ("text_to_image", "image_to_text") for k in (1, 5, 10)],
]
BASELINE = "export fp32"
VARIANTS: dict[str, Any] = {
    BASELINE: (),
    "int8 text tower": ("text_tower",),
    "int8 text tower + heads": ("text_tower", "image_head", "text_head"),
    "int8 image tower": ("image_tower",),
    "int8 all": True,
}
IMAGE_INT8_ROWS = ("int8 image tower", "int8 all")


class ExportVariantEncoder:
    """``CachedEncoder``'s interface (what the tasks call) over one configuration of an export.

    Image tower features come from ``base`` (the fp32 feature cache, shared by
    every row); the heads and the text tower run in ONNX Runtime as the
    variant says. It is also its own ``model`` (``project_features`` and
    ``logit_scale``, what ``build_classifier`` uses).
    """

    def __init__(self, base: CachedEncoder, exported: ExportedModel, batch: int, image_tower: OnnxImageTower | None = None) -> None:
        self.base = base
        self.exported = exported
        self.batch = batch
        self.image_tower = image_tower  # None: the fp32 features of the feature cache
        self.model = self
        self.logit_scale = base.model.logit_scale
        self._features: dict[tuple[Any, ...], tuple[np.ndarray, dict[int, str]]] = {}

    def image_features(self, products: Sequence[Product], view: str | None = None) -> tuple[np.ndarray, dict[int, str]]:
        if self.image_tower is None:
            return self.base.image_features(products, view=view)
        key = (tuple(p.image for p in products), view)
        if key not in self._features:  # both tasks ask for the same photos
            positions = [i for i, p in enumerate(products) if p.image]
            feats, failed = image_features(self.image_tower, [products[i].image for i in positions], store=None, progress=False, view=view)
            out = np.zeros((len(products), feats.shape[1]), np.float32)
            out[positions] = feats
            failures = {i: "product has no image" for i, p in enumerate(products) if not p.image}
            failures.update({positions[j]: reason for j, reason in failed.items()})
            self._features[key] = out, failures
        return self._features[key]

    def image_embeddings(self, products: Sequence[Product], view: str | None = None) -> tuple[np.ndarray, dict[int, str]]:
        features, failures = self.image_features(products, view=view)
        return self.project_features(features, "image"), failures

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        chunks = [self.exported.text_features(self.exported.tokenize(texts[i : i + self.batch])) for i in range(0, len(texts), self.batch)]
        return np.concatenate(chunks) if chunks else np.zeros((0, 384), np.float32)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        return self.project_features(self.text_features(texts), "text")

    def project_features(self, features: np.ndarray, kind: str) -> np.ndarray:
        head = self.exported.image_head if kind == "image" else self.exported.text_head
        features = np.ascontiguousarray(features, dtype=np.float32)
        return np.concatenate([head.run({"features": features[i : i + 4096]})[0] for i in range(0, max(len(features), 1), 4096)])


def run_tasks(encoder: Any, products: list[Product], resamples: int) -> dict[str, TaskOutput]:
    return {
        "zero_shot": zero_shot_output(encoder, products, resamples=resamples),
        "retrieval": retrieval_output(encoder, products, resamples=resamples),
    }


def column_title(path: str) -> str:
    """``ensemble/weighted_f1`` → ``ZS wF1``, ``single_prompt/accuracy`` → ``ZS1 acc``, ``text_to_image/R@1`` → ``t→i R@1``."""
    group, metric = path.split("/")
    prefix = {"ensemble": "ZS", "single_prompt": "ZS1", "text_to_image": "t→i", "image_to_text": "i→t"}[group]
    short = {"accuracy": "acc", "weighted_f1": "wF1"}.get(metric, metric)
    return f"{prefix} {short}"


def lookup(tree: dict[str, Any], path: str) -> float:
    for part in path.split("/"):
        tree = tree[part]
    return float(tree)  # type: ignore[arg-type]


def texts_per_second(exports: dict[str, ExportedModel], titles: list[str], repeats: int) -> dict[str, dict[str, float]]:
    """Text tower + head, tokenising included: batch-1 latency (as a query) and batch-32 throughput."""
    one, many = titles[:1], titles[:32]
    fns = {}
    for name, exported in exports.items():
        fns[f"{name}|1"] = lambda e=exported: e.encode_texts(one)
        fns[f"{name}|32"] = lambda e=exported: e.encode_texts(many)
    seconds = timed_round_robin(fns, repeats)
    return {name: {"batch1_ms": 1000 * seconds[f"{name}|1"], "batch32_texts_per_s": 32 / seconds[f"{name}|32"]} for name in exports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="kagl:test")
    parser.add_argument("--model", default="modalens-lite")
    parser.add_argument("--export", type=Path, default=None, help="an export made with --int8 (default: export now, to a temporary folder)")
    parser.add_argument("--batch", type=int, default=1, help="texts per text-tower call in the task rows")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the intervals (0: none)")
    parser.add_argument("--repeats", type=int, default=20, help="rounds of the speed measurement")
    parser.add_argument("--calibration", default=IMAGE_CALIBRATION_SOURCE, help="the export made here: photos for the static int8 image tower")
    parser.add_argument("--calibration-photos", type=int, default=IMAGE_CALIBRATION_PHOTOS)
    parser.add_argument("--calibration-method", default=IMAGE_CALIBRATION_METHOD, help="percentile, minmax or entropy")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "int8_accuracy.json", help="where to write the JSON")
    args = parser.parse_args()

    started = time.time()
    folder = args.export or Path(tempfile.mkdtemp(prefix="modalens-int8-")) / "export"
    if args.export is None:
        export_model(args.model, folder, int8=True, calibration=args.calibration,
                     calibration_photos_n=args.calibration_photos, calibration_method=args.calibration_method)
    image_component = load_export(folder).manifest["components"]["image_tower"]
    image_int8 = bool(image_component.get("int8_file"))
    variants = {k: v for k, v in VARIANTS.items() if image_int8 or k not in IMAGE_INT8_ROWS}
    exports = {name: load_export(folder, int8=int8) for name, int8 in variants.items()}
    products = read_catalog(args.data).products
    base = CachedEncoder(create_model(args.model), progress=False)
    outputs = {"normal path": run_tasks(base, products, args.resamples)}
    int8_tower = OnnxImageTower.from_folder(folder, int8=True) if image_int8 else None
    image_cosine: dict[str, float] = {}
    for name, exported in exports.items():
        encoder = ExportVariantEncoder(base, exported, args.batch, int8_tower if name in IMAGE_INT8_ROWS else None)
        outputs[name] = run_tasks(encoder, products, args.resamples)
        if name in IMAGE_INT8_ROWS and not image_cosine:
            (q, failures), (f, _) = encoder.image_features(products), base.image_features(products)
            keep = np.array([i not in failures for i in range(len(products))])
            cos = (q * f).sum(1)[keep] / (np.linalg.norm(q, axis=1) * np.linalg.norm(f, axis=1))[keep]
            image_cosine = {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.quantile(cos, 0.01)), "n": int(keep.sum())}
    titles = [p.title for p in products if p.title][:64]
    speed = texts_per_second({BASELINE: exports[BASELINE], "int8 text tower": exports["int8 text tower"]}, titles, args.repeats)

    metrics = {row: {f"{task}/{path}": lookup(out[task].metrics, path) for task, path in HEADLINE} for row, out in outputs.items()}
    deltas = {
        row: {
            f"{task}/{path}": paired_difference(outputs[BASELINE][task].estimates[path], outputs[row][task].estimates[path], args.resamples)
            if args.resamples
            else {"difference": metrics[row][f"{task}/{path}"] - metrics[BASELINE][f"{task}/{path}"]}
            for task, path in HEADLINE
        }
        for row in outputs
        if row != BASELINE
    }
    manifest = exports[BASELINE].manifest
    print(
        f"machine: {os.cpu_count()} cores ({default_threads()} usable), {cpu_model()}, load {load_average()}; "
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}"
    )
    print(f"data: {args.data}, {len(products)} products; model {manifest['model']}; texts encoded {args.batch} at a time")
    print(f"  {'':<20}" + "".join(f"{column_title(path):>15}" for _, path in HEADLINE))
    for row in outputs:
        cells = []
        for task, path in HEADLINE:
            key = f"{task}/{path}"
            cell = f"{metrics[row][key]:.3f}"
            if row in deltas:
                cell += f" {deltas[row][key]['difference']:+.3f}"
            cells.append(f"{cell:>15}")
        print(f"  {row:<20}" + "".join(cells))
    for row in [r for r in variants if r != BASELINE]:
        significant = [k for k, d in deltas[row].items() if d.get("significant")]
        print(f"  {row}: differences outside their 95% paired interval: {', '.join(significant) or 'none'}")
    if image_cosine:
        print(
            f"  int8 image tower ({image_component.get('int8_quantization', {}).get('method')}, "
            f"{image_component.get('int8_quantization', {}).get('calibration_photos')} calibration photos): pooled features' cosine "
            f"to fp32 mean {image_cosine['mean']:.4f}, 1st percentile {image_cosine['p01']:.4f}, min {image_cosine['min']:.4f} over {image_cosine['n']}"
        )
    else:
        print("  no int8 image tower in this export: its rows are left out")
    for name, s in speed.items():
        ratio = speed[BASELINE]["batch1_ms"] / s["batch1_ms"]
        throughput = s["batch32_texts_per_s"] / speed[BASELINE]["batch32_texts_per_s"]
        print(
            f"  speed {name:<18} batch 1: {s['batch1_ms']:6.2f} ms ×{ratio:.2f} ({1000 / s['batch1_ms']:.0f} texts/s)"
            f"   batch 32: {s['batch32_texts_per_s']:6.0f} texts/s ×{throughput:.2f}"
        )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "int8_accuracy",
        "data": args.data,
        "products": len(products),
        "model": manifest["model"],
        "text_batch": args.batch,
        "resamples": args.resamples,
        "cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "cpu": cpu_model(),
        "load_average_at_end": load_average(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "baseline": BASELINE,
        "metrics": metrics,
        "differences_vs_baseline": deltas,
        "speed": speed,
        "image_int8_pooled_cosine": image_cosine,
        "image_int8_quantization": image_component.get("int8_quantization"),
        "int8_components": {n: c.get("int8_file") for n, c in manifest["components"].items()},
        "seconds": round(time.time() - started, 1),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
