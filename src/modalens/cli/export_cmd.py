"""`modalens export`: write a model's towers, heads and tokenizer as ONNX files, with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import MODEL_OPTION, user_errors

# Plain constants (the same as modalens.export.calibration's), so `--help` needs neither torch nor onnx.
IMAGE_CALIBRATION_PHOTOS = 128
IMAGE_CALIBRATION_METHOD = "percentile"

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@user_errors
def export(
    model: str = MODEL_OPTION,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder to write (default: ./<model>-onnx)."),
    int8: bool = typer.Option(False, "--int8", help="Also write int8 (dynamically quantised) text tower and heads."),
    calibration: Optional[str] = typer.Option(
        None, "--calibration",
        help="With --int8: also write a static int8 image tower, calibrated on these photos (a catalogue source such as "
        "kagl:train, or a folder of photos). Off by default: it costs 2 points of text-to-image R@1 (docs/onnx.md).",
    ),
    calibration_photos: int = typer.Option(
        IMAGE_CALIBRATION_PHOTOS, "--calibration-photos", min=1, help="How many photos of --calibration (a fixed draw)."
    ),
    calibration_method: str = typer.Option(IMAGE_CALIBRATION_METHOD, "--calibration-method", help="percentile, minmax or entropy."),
    check_images: Optional[Path] = typer.Option(
        None, "--check-images", help="With --int8: a folder of photos on which to measure int8 against fp32."
    ),
    exporter: str = typer.Option("auto", help="auto (dynamo, then TorchScript), dynamo or torchscript."),
) -> None:
    """Export a model to ONNX files (for ONNX Runtime, with or without PyTorch)."""
    from ..backends import onnx_export_available, onnxruntime_available

    if not (onnx_export_available() and onnxruntime_available()):
        raise ValueError("exporting needs the packages onnx and onnxruntime: pip install 'modalens[onnx]'")
    from ..export import CALIBRATION_METHODS, export_model

    if calibration_method not in CALIBRATION_METHODS:  # before minutes of exporting, not after
        raise ValueError(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)}, not {calibration_method!r}")
    images: list[Path] = []
    if check_images is not None:
        if not check_images.is_dir():
            raise ValueError(f"--check-images {check_images} is not a folder")
        images = sorted(p for p in check_images.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)[:256]
    report = export_model(
        model, output, int8=int8, exporter=exporter, check_images=images, calibration=calibration,
        calibration_photos_n=calibration_photos, calibration_method=calibration_method, progress=lambda m: typer.echo(m, err=True),
    )
    manifest = report.manifest
    for name, component in manifest["components"].items():
        files = component["file"] + (f" + {component['int8_file']}" if component.get("int8_file") else "")
        note = f"  (int8: {component['int8_error']})" if component.get("int8_error") else ""
        if int8 and component.get("int8_calibration_error"):
            note = f"  (int8 skipped, no calibration: {component['int8_calibration_error']})"
        typer.echo(f"{name:<12} {files:<44} {component.get('exporter', ''):<11} opset {component.get('opset')}{note}")
    for kind, cos in report.int8_cosine.items():
        typer.echo(f"int8 vs fp32 {kind} embeddings: cosine mean {cos['mean']:.4f}, min {cos['min']:.4f} over {cos['n']}")
    if calibration is not None and not int8:
        typer.echo("--calibration does nothing without --int8", err=True)
    if int8 and "image" not in report.int8_cosine:
        typer.echo("int8 vs fp32 image embeddings: not measured (pass --check-images DIR)")
    typer.echo(f"wrote {report.folder} in {report.seconds:.0f}s")
    typer.echo(f"serve queries from it without PyTorch: modalens serve --onnx {report.folder} (docs/onnx.md)")
