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
- :mod:`.calibration`: which photos calibrate the image tower's static int8;
- :mod:`.cache`: the per-machine cache of whole-model exports the CLI's query commands answer from
  (found without torch, made once on first use), and :func:`query_handle`.

``tests/test_import_graph.py`` keeps the graph free of circles. Names are imported on first use
(PEP 562): ``modalens.export.cache`` must load without torch, and :mod:`.model` imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .cache import cached_model_export, ensure_model_export, model_export_dir, query_handle
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

#: Each public name and the submodule it lives in.
_NAMES = {
    **dict.fromkeys(("cached_model_export", "ensure_model_export", "model_export_dir", "query_handle"), ".cache"),
    **dict.fromkeys(
        ("CALIBRATION_METHODS", "IMAGE_CALIBRATION_METHOD", "IMAGE_CALIBRATION_PHOTOS", "IMAGE_CALIBRATION_SOURCE",
         "calibration_photos", "calibration_pixels"),
        ".calibration",
    ),
    **dict.fromkeys(("INT8_COMPONENTS", "INT8_SKIPPED", "ExportReport", "export_head", "export_model"), ".model"),
    **dict.fromkeys(("int8_agreement", "quantize", "quantize_image_static"), ".quantize"),
}


__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, globals())


__all__ = sorted(_NAMES)
