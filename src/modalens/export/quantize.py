"""int8 versions of exported graphs, and how far their embeddings move from fp32.

Dynamic int8 (weights only) for the text tower and the heads; static int8
(weights and activations, calibrated on photos: :mod:`modalens.export.calibration`)
for the image tower, because ONNX Runtime's CPU kernels run dynamically
quantised convolutions slower than fp32. The agreement of int8 with fp32
final embeddings is measured on every export so a bad quantisation shows.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends.onnx import quiet_exporters, text_tokens
from ..backends.runtime import OrtModel, text_head_inputs
from ..encoders.base import ImageTower, TextTower
from .calibration import CALIBRATION_METHODS, IMAGE_CALIBRATION_METHOD

#: Texts on which int8 text embeddings are compared with fp32 (short, long, empty, one letter).
_INT8_CHECK_TEXTS = [
    "navy blue check shirt", "running shoes", "a red cotton t-shirt for men", "women's black leather handbag",
    "white sneakers", "floral summer dress", "slim fit denim jeans", "gold analogue watch", "", "a",
    "Women's black leather ankle boots with a block heel, perfect for autumn evenings", "grey hooded sweatshirt",
]


def quantize(src: str | Path, dst: str | Path, kind: str) -> None:
    """Dynamic int8 quantisation (onnxruntime.quantization.quantize_dynamic), weights per output channel.

    Text tower and heads: MatMul/Gemm weights int8 (about 2× faster, cosine to fp32 ≈ 0.99).
    Image tower: convolutions become ConvInteger, which ONNX Runtime's CPU
    kernels run about 4× *slower* than fp32 (cosine to fp32 0.83); only
    ``benchmarks/onnx_image_encoder.py`` still makes it, to show that. The
    image tower's int8 is static instead: :func:`quantize_image_static`.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_exporters():
        if kind == "image_tower":
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8, per_channel=True, op_types_to_quantize=["Conv", "MatMul", "Gemm"])
        else:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])


def quantize_image_static(src: str | Path, dst: str | Path, pixels: np.ndarray, *, method: str = IMAGE_CALIBRATION_METHOD, batch: int = 16) -> None:
    """Static int8 of the image tower (``quantize_static``, QDQ): activation ranges fixed from ``pixels``.

    Weights int8 per output channel, activations uint8 with ranges from the
    calibration pixels (``method``: ``minmax``, ``entropy`` or
    ``percentile``); ONNX Runtime fuses each QuantizeLinear/DequantizeLinear
    pair around a convolution into an int8 convolution (QLinearConv), about
    2× faster than fp32 on the CPU (``benchmarks/onnx_image_encoder.py``).
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, not {method!r}")
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"pixels": pixels[i : i + batch]} for i in range(0, len(pixels), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with quiet_exporters(), contextlib.redirect_stdout(sys.stderr):  # the calibrators print their progress
        quantize_static(
            str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[method]),
        )


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = (a * b).sum(1)
    return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5), "n": len(cos)}


def int8_agreement(
    folder: Path, components: Mapping[str, Any], text_tower: TextTower, image_tower: ImageTower, images: Sequence[str | Path]
) -> dict[str, dict[str, float]]:
    """Cosine between fp32 and int8 final embeddings (tower + head), for texts and for the given photos."""

    def model(name: str, int8: bool) -> OrtModel:  # int8 where there is one, else fp32
        component = components[name]
        return OrtModel(folder / ((int8 and component.get("int8_file")) or component["file"]), device="cpu")

    out: dict[str, dict[str, float]] = {}
    tokens = {k: v.numpy() for k, v in text_tokens(text_tower, _INT8_CHECK_TEXTS).items()}
    runs = {}
    for int8 in (False, True):
        tower, head = model("text_tower", int8), model("text_head", int8)
        runs[int8] = head.run(text_head_inputs(tower, head, tokens))[0]
    if len(runs) == 2:
        out["text"] = _cosines(runs[False], runs[True])
    if images:
        from ..catalog.images import load_image

        pixels = torch.stack([image_tower.preprocess(load_image(str(p))) for p in images]).numpy()
        runs = {}
        for int8 in (False, True):
            tower, head = model("image_tower", int8), model("image_head", int8)
            feats = np.concatenate([tower.run({"pixels": pixels[i : i + 16]}, ["pooled"])[0] for i in range(0, len(pixels), 16)])
            runs[int8] = head.run({"features": feats})[0]
        if len(runs) == 2:
            out["image"] = _cosines(runs[False], runs[True])
    return out
