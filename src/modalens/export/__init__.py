"""Whole-model export: a model's towers, heads and tokenizer as ONNX files, with int8 and calibration.

``modalens export`` writes one folder that answers queries without PyTorch
(:class:`modalens.query_encoder.OnnxQueryEncoder`). It is its own package,
above everything it uses, so the imports run one way (nothing below
imports anything above it)::

    export                 whole-model export
      |
    models                 the dual encoder (towers + heads), model_identity, the one handle (models.load)
      |
    query_encoder          queries -> vectors: the protocol, and the torch-free encoder on an export folder
      |
    backends               towers in ONNX Runtime or torch, the cache of tower exports

- :mod:`.model`: :func:`export_model` (the folder and its manifest) and :func:`export_head`;
- :mod:`.quantize`: dynamic and static int8, and the int8-vs-fp32 agreement;
- :mod:`.calibration`: which photos calibrate the image tower's static int8.

``tests/test_import_graph.py`` keeps the graph free of circles.
"""

from .calibration import (
    CALIBRATION_METHODS,
    IMAGE_CALIBRATION_METHOD,
    IMAGE_CALIBRATION_PHOTOS,
    IMAGE_CALIBRATION_SOURCE,
    calibration_photos,
    calibration_pixels,
)
from .model import INT8_COMPONENTS, INT8_SKIPPED, ExportReport, export_head, export_model
from .quantize import int8_agreement, quantize, quantize_image_static

__all__ = [
    "CALIBRATION_METHODS",
    "IMAGE_CALIBRATION_METHOD",
    "IMAGE_CALIBRATION_PHOTOS",
    "IMAGE_CALIBRATION_SOURCE",
    "INT8_COMPONENTS",
    "INT8_SKIPPED",
    "ExportReport",
    "calibration_photos",
    "calibration_pixels",
    "export_head",
    "export_model",
    "int8_agreement",
    "quantize",
    "quantize_image_static",
]
