"""Which weights train (heads only, top blocks of a tower, whole towers) and WiSE-FT interpolation.

Frozen towers are the default because they are cheap and keep the pretrained
knowledge intact; unfreezing buys in-domain accuracy at the risk of
forgetting, which WiSE-FT (Wortsman et al., 2022) guards against by averaging
the fine-tuned weights with the starting ones.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..backends import tower_options
from ..encoders import create_image_tower, create_text_tower
from ..models import DualEncoder
from .config import TuneConfig


def trainable_tower(model: DualEncoder, kind: str, blocks: int | str) -> nn.Module:
    """A torch copy of the model's ``kind`` tower with its top ``blocks`` (or ``"all"``) trainable, the rest frozen.

    The tower is installed in the model so validation sees the weights being
    trained. Batch-norm statistics stay frozen (``freeze_norm_stats``): small
    fine-tuning batches would only make them noisier.
    """
    spec = getattr(model.config, f"{kind}_tower")
    tower = (create_image_tower if kind == "image" else create_text_tower)(spec["name"], **tower_options(spec))  # torch, always
    tower.requires_grad_(False)
    if blocks == "all":
        tower.requires_grad_(True)
        for unused in getattr(tower, "unused_modules", list)():  # no gradient ever reaches them (DDP would wait on it)
            unused.requires_grad_(False)
    else:
        units = tower_blocks(tower)
        if blocks > len(units):
            raise ValueError(f"{kind} tower {tower.name!r} has {len(units)} blocks; cannot train the last {blocks}")
        for unit in units[len(units) - int(blocks) :]:
            unit.requires_grad_(True)
    model._towers[kind] = tower
    return tower


def tower_blocks(tower: nn.Module) -> list[nn.Module]:
    """A tower's units from input to output, as the tower itself declares them (``tuning_blocks``)."""
    if not hasattr(tower, "tuning_blocks"):
        raise ValueError(f"tower {getattr(tower, 'name', tower)!r} does not list its blocks; train it whole with 'all'")
    return tower.tuning_blocks()


def train_mode(tower: nn.Module) -> None:
    """Training mode with batch-norm statistics frozen (dropout on, running means untouched)."""
    tower.train()
    for module in tower.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def parameter_groups(model: DualEncoder, loss: nn.Module, towers: dict[str, nn.Module], lr: float, tower_lr: float) -> list[dict[str, Any]]:
    """Heads (+ temperature + loss parameters) at ``lr``; tower weights at the smaller ``tower_lr``."""
    groups = [{"params": [p for p in [*model.parameters(), *loss.parameters()] if p.requires_grad], "lr": lr}]
    tower_params = [p for tower in towers.values() for p in tower.parameters() if p.requires_grad]
    if tower_params:
        groups.append({"params": tower_params, "lr": tower_lr})
    return groups


def trained_state(model: DualEncoder, towers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every trained weight, heads and tuned towers alike, detached and copied (``tower.<kind>.`` prefixes)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for kind, tower in towers.items():
        state.update({f"tower.{kind}.{k}": v.detach().clone() for k, v in tower.state_dict().items()})
    return state


def load_trained_state(model: DualEncoder, towers: dict[str, nn.Module], state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("tower.")})
    for kind, tower in towers.items():
        prefix = f"tower.{kind}."
        tower.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})


def interpolate(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT: ``(1 - alpha) * start + alpha * end`` for float weights; integer buffers (counters) from ``end``."""
    if start.keys() != end.keys():
        raise ValueError("WiSE-FT needs the same weights at both ends")
    return {k: torch.lerp(start[k].to(end[k].device), end[k], alpha) if end[k].is_floating_point() else end[k] for k in end}


def describe(tune: TuneConfig, towers: dict[str, nn.Module]) -> str:
    """A short line for the progress bar and the metrics log: what trains."""
    parts = ["heads"] + [f"{kind} tower ({getattr(tune, f'{kind}_tower')} blocks)" for kind in towers]
    trainable = sum(p.numel() for t in towers.values() for p in t.parameters() if p.requires_grad)
    return " + ".join(parts) + (f", {trainable / 1e6:.1f} M tower weights" if towers else "")
