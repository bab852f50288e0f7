"""``modalens export``: a whole model (towers, heads, tokenizer, and its instance decoder when it has one) as one
folder of ONNX files with a manifest.

This sits above :mod:`modalens.models` (it builds the model to export) and
:mod:`modalens.backends` (whose tower exports and their cache it reuses:
the towers in an export are the very graphs the model runs with). Nothing
below imports it, so exporting can change without touching how a model runs.
The folder is what :class:`modalens.query_encoder.OnnxQueryEncoder` answers
queries from without torch.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backends import tower_options
from ..backends.onnx import (
    cached_export,
    discard_folder,
    export_graph,
    export_image_tower,
    export_text_tower,
    export_versions,
    fsync_dir,
)
from ..backends.runtime import INSTANCE_DECODER, OrtModel, read_manifest, write_manifest
from ..models import DEFAULT_MODEL, ModelHandle, as_handle
from ..paths import instance_decoder_path
from .calibration import IMAGE_CALIBRATION_METHOD, IMAGE_CALIBRATION_PHOTOS, read_calibration
from .instances import OUTPUTS as INSTANCE_OUTPUTS, export_instance_decoder
from .quantize import int8_agreement, quantize, quantize_image_static


@dataclass
class ExportReport:
    """What :func:`export_model` wrote: the folder, its manifest, how long it took, int8-vs-fp32 cosines."""

    folder: Path
    manifest: dict[str, Any]
    seconds: float
    int8_cosine: dict[str, dict[str, float]] = field(default_factory=dict)


#: Components ``export_model(int8=True)`` quantises, and why the others are left in fp32. The image
#: tower is quantised (statically) only when calibration photos are named: see docs/onnx.md.
INT8_COMPONENTS = ("text_tower", "image_head", "text_head")
INT8_SKIPPED = {
    "image_tower": "not by default: static int8 (QDQ, calibrated) is about 2x faster than fp32 but costs 2 points of "
    "text-to-image R@1 on KAGL test, outside its 95% interval; dynamic int8 (ConvInteger) is slower than fp32. "
    "Name calibration photos (modalens export --int8 --calibration kagl:train) to write the static one anyway"
}


@torch.inference_mode(False)
def export_head(head: nn.Module, path: str | Path, *, kind: str, exporter: str = "auto") -> dict[str, Any]:
    """Write a projection head: input ``features`` (batch, in_dim) → ``projected`` (batch, embed_dim), normalised.

    A token head (``models.heads.TokenHead``) reads ``tokens`` (batch, sequence, in_dim) and ``mask``
    (batch, sequence, int64) instead: the text tower export's ``tokens`` output and the tokenizer's attention mask.
    """
    path = Path(path)
    head = head.eval()
    if getattr(head, "reads_tokens", False):
        return _export_token_head(head, path, kind=kind, exporter=exporter)
    in_dim = int(head.norm.normalized_shape[0])  # type: ignore[union-attr]
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(2, in_dim, generator=generator) * 4
    checks = [(torch.randn(1, in_dim, generator=generator),), (torch.rand(5, in_dim, generator=generator) * 6,)]
    record = export_graph(
        head, (example,), path, input_names=["features"], output_names=["projected"],
        dynamic={"features": {0: "batch"}, "projected": {0: "batch"}}, checks=checks, exporter=exporter,
    )
    with torch.no_grad():
        embed_dim = int(head(example).shape[1])
    return {"file": path.name, "kind": kind, "in_dim": in_dim, "embed_dim": embed_dim,
            "inputs": ["features"], "outputs": ["projected"], **record}


def _export_token_head(head: nn.Module, path: Path, *, kind: str, exporter: str) -> dict[str, Any]:
    in_dim = int(head.in_dim)  # type: ignore[union-attr]
    generator = torch.Generator().manual_seed(0)

    def example(batch: int, length: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.ones(batch, length, dtype=torch.int64)
        mask[0, length - pad :] = 0  # padding in the batch, as the tokenizer pads a batch to its longest text
        return torch.randn(batch, length, in_dim, generator=generator), mask

    record = export_graph(
        head, example(2, 7, 2), path, input_names=["tokens", "mask"], output_names=["projected"],
        dynamic={"tokens": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"}, "projected": {0: "batch"}},
        checks=[example(1, 3, 0), example(5, 12, 9)], exporter=exporter,
    )
    with torch.no_grad():
        embed_dim = int(head(*example(1, 3, 0)).shape[1])
    return {"file": path.name, "kind": kind, "in_dim": in_dim, "embed_dim": embed_dim,
            "inputs": ["tokens", "mask"], "outputs": ["projected"], **record}


def export_model(
    model: str | Path | ModelHandle = DEFAULT_MODEL,
    output: str | Path | None = None,
    *,
    int8: bool = False,
    exporter: str = "auto",
    check_images: Sequence[str | Path] = (),
    calibration: str | Path | Sequence[str | Path] | None = None,
    calibration_photos_n: int = IMAGE_CALIBRATION_PHOTOS,
    calibration_method: str = IMAGE_CALIBRATION_METHOD,
    progress: Callable[[str], None] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Export a model's towers, heads and tokenizer to ``output`` (default ``./<model>-onnx``), with a manifest.

    ``model`` is a name, a saved folder, or a handle (``modalens.models.load``) whose model is then reused.

    The towers are copied from the on-disk cache when it holds them (the same
    graphs the model runs with), else exported. With ``int8`` the text tower
    and the heads also get a dynamically quantised ``*.int8.onnx``; the image
    tower stays fp32 (:data:`INT8_SKIPPED`) unless ``calibration`` names
    photos: a catalogue source for :func:`~modalens.export.calibration.calibration_photos` (e.g.
    ``kagl:train``; ``calibration_photos_n`` photos of it) or
    a list of photos, on which it is then statically quantised
    (:func:`quantize_image_static`, ``calibration_method``). Calibration
    photos that cannot be read leave it fp32, with the reason recorded. The agreement of int8 with fp32 final
    embeddings (cosine) is measured on built-in texts and on ``check_images``
    and recorded. The folder is written beside ``output`` and renamed into
    place when done. ``manifest_extra`` is added to the manifest (the export
    cache records its key there: :mod:`modalens.export.cache`).
    """
    from ..encoders import create_image_tower, create_text_tower
    say = progress or (lambda message: None)
    start = time.perf_counter()
    handle = as_handle(model)
    dual = handle.model
    output = Path(output) if output else Path(f"{dual.name}-onnx")
    if output.exists() and any(output.iterdir()) and not (output / "manifest.json").exists():
        raise ValueError(f"{output} exists and is not a modalens ONNX export; choose another --output")

    def torch_tower(spec: Mapping[str, Any], create: Callable[..., Any]) -> Any:
        return create(spec["name"], **tower_options(spec)).eval()

    image_tower = torch_tower(dual.config.image_tower, create_image_tower)
    text_tower = torch_tower(dual.config.text_tower, create_text_tower)
    if int8 and calibration is not None and getattr(image_tower, "pooling", "mean") == "mean+colour":
        # static int8 quantises the whole tower graph, the colour histogram's pixel arithmetic and binning too
        raise ValueError(f"{dual.name}: its image tower pools with a colour histogram, which static int8 breaks; "
                         "export it with --int8 and no --calibration (dynamic int8: heads and text tower)")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".tmp-{output.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    report_cos: dict[str, dict[str, float]] = {}
    try:
        components: dict[str, Any] = {}
        for kind, tower in (("image_tower", image_tower), ("text_tower", text_tower)):
            say(f"exporting {kind.replace('_', ' ')} {tower.name}")
            if exporter == "auto":  # the cached export (made on first use) is the same graph: copy it
                _, cached, data = cached_export(tower, kind, exporter=exporter, progress=False)
                (tmp / f"{kind}.onnx").write_bytes(data)
                components[kind] = dict(cached["components"][kind], file=f"{kind}.onnx")
                if kind == "text_tower":  # truncation is this model's setting, not the cached graph's (one graph serves any)
                    components[kind]["max_length"] = int(tower.max_length)
            else:
                export = export_image_tower if kind == "image_tower" else export_text_tower
                components[kind] = export(tower, tmp / f"{kind}.onnx", exporter=exporter)  # type: ignore[operator]
        say("exporting projection heads")
        components["image_head"] = export_head(dual.image_head, tmp / "image_head.onnx", kind="image_head", exporter=exporter)
        components["text_head"] = export_head(dual.text_head, tmp / "text_head.onnx", kind="text_head", exporter=exporter)
        if instance_decoder_path(handle.name).is_file():
            say("exporting the instance decoder")
            components[INSTANCE_DECODER] = {
                "file": f"{INSTANCE_DECODER}.onnx", "inputs": ["grid"], "outputs": list(INSTANCE_OUTPUTS),
                **export_instance_decoder(handle, tmp / f"{INSTANCE_DECODER}.onnx", exporter=exporter),
            }  # fmt: skip
        text_tower.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        if int8:
            say("quantising to int8 (dynamic" + ("; image tower static)" if calibration is not None else ")"))
            pixels, calibration_record = None, {}
            if calibration is not None:
                pixels, calibration_record = read_calibration(image_tower, calibration, calibration_photos_n, say)
            for name, component in components.items():
                static_image = name == "image_tower" and pixels is not None
                if name not in INT8_COMPONENTS and not static_image:
                    component["int8_skipped"] = INT8_SKIPPED.get(name, "not quantised")
                    if name == "image_tower" and calibration_record.get("error"):
                        component["int8_calibration_error"] = calibration_record["error"]
                    continue
                target = tmp / component["file"].replace(".onnx", ".int8.onnx")
                try:
                    if name == "image_tower":
                        quantize_image_static(tmp / component["file"], target, pixels, method=calibration_method)  # type: ignore[arg-type]
                        component["int8_quantization"] = {"kind": "static", "format": "QDQ", "weights": "int8 per channel",
                                                          "activations": "uint8", "method": calibration_method, **calibration_record}
                    else:
                        quantize(tmp / component["file"], target, name)
                        component["int8_quantization"] = {"kind": "dynamic", "weights": "int8 per channel"}
                    OrtModel(target, threads=1, device="cpu")  # it must load (int8 is for CPU kernels)
                    component["int8_file"] = target.name
                except Exception as e:  # e.g. an op the quantiser or the CPU kernels do not support
                    target.unlink(missing_ok=True)
                    component["int8_error"] = f"{type(e).__name__}: {e}"[:300]
            report_cos = int8_agreement(tmp, components, text_tower, image_tower, check_images)
            for kind, cos in report_cos.items():
                components[f"{kind}_tower"]["int8_embedding_cosine"] = cos
        manifest = {
            "model": dual.name,
            # What the search index records; a server answering queries from this folder checks it (query_encoder).
            "model_identity": handle.identity,
            "embed_dim": int(dual.config.embed_dim),
            "logit_scale": float(dual.logit_scale.detach()),
            "tokenizer": "tokenizer",
            **export_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "components": components,
            **(manifest_extra or {}),
        }
        write_manifest(tmp, manifest)
        fsync_dir(tmp)
        discard_folder(output)
        os.rename(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportReport(output, read_manifest(output), time.perf_counter() - start, report_cos)

