"""A model's instance decoder as one ONNX graph: feature map in, instance embeddings, objectness and attention out.

The graph holds the decoder and the model's frozen image head (each query's attention-pooled map goes
through it), so with the tower export's ``features`` output it gives instance embeddings on ONNX Runtime
alone. Checked against torch on several batch sizes as every modalens export is
(:func:`~modalens.backends.onnx.export_graph`). ``modalens export`` writes it into a model's folder
(``instance_decoder.onnx``) when the model has a decoder, and
:class:`~modalens.instances.OnnxInstanceEncoder` runs it there (``search --look``, scenes) without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backends.onnx import export_graph
from ..models import ModelHandle, as_handle

OUTPUTS = ("embeddings", "objectness", "attention")


class _DecoderGraph(nn.Module):
    def __init__(self, decoder: nn.Module, image_head: nn.Module) -> None:
        super().__init__()
        self.decoder, self.image_head = decoder.eval(), image_head.eval()

    def forward(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.decoder(grid, self.image_head)
        return out.embeddings, torch.sigmoid(out.objectness), out.attention


def export_instance_decoder(
    model: str | Path | ModelHandle, path: str | Path, *, decoder_file: str | Path | None = None, exporter: str = "auto"
) -> dict[str, Any]:
    """Write ``model``'s instance decoder (with its image head) to ``path``; returns what was exported, how close
    to torch it came and the decoder file's digest. Input ``grid``: (batch, cells, channels) float32; objectness
    comes out as a probability. ``model``: a name, a saved folder, or a handle whose loaded model is reused."""
    from ..instances import InstanceEncoder

    handle = as_handle(model)
    encoder = InstanceEncoder._with_model(handle.model, handle.name, None, decoder_file)
    config = encoder.decoder.config
    generator = torch.Generator().manual_seed(0)

    def grids(batch: int) -> tuple[torch.Tensor]:
        return (torch.rand(batch, config.cells, config.feature_dim, generator=generator) * 6,)  # ReLU6-range maps

    dynamic = {name: {0: "batch"} for name in ("grid", *OUTPUTS)}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused inference kernel has no ONNX form; the plain ops do
    try:
        record = export_graph(
            _DecoderGraph(encoder.decoder, encoder.image_head), grids(2), Path(path), input_names=["grid"], output_names=list(OUTPUTS),
            dynamic=dynamic, checks=[grids(1), grids(5)], exporter=exporter,
        )  # fmt: skip
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return {**record, "queries": config.queries, "cells": config.cells, "feature_dim": config.feature_dim, "decoder_digest": encoder.digest}
