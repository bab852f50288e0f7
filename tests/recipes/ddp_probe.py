"""Run under ``torchrun``: train a config with ``run_recipe`` and record, per rank, what that rank did.

``python ddp_probe.py CONFIG PROBE_DIR`` writes ``PROBE_DIR/rank{RANK}.pt`` with, for every optimiser step,
the global batch the rank drew and the rows it encoded itself (its shard), the process group it saw, and
the trainable weights after its last step (when small: heads, not tuned towers). The output folder is made per rank (``<output>/rank{RANK}``), so
ranks that wrongly each believe they are the main process write to separate folders instead of racing
on one checkpoint file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from modalens.recipes import contrastive, load_train_config, run_recipe


def main(config_path: str, probe_dir: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    steps: list[dict] = []
    last: dict = {}
    step, images = contrastive.Trainer.step, contrastive.Batches.images

    def recording_step(self, batch, views, pixels, partners=None, colour_off=None):
        steps.append({"batch": batch.tolist(), "encoded": []})
        loss = step(self, batch, views, pixels, partners, colour_off)
        trainable = {n: p for n, p in self.step_module.named_parameters() if p.requires_grad}
        if sum(p.numel() for p in trainable.values()) <= 1_000_000:  # heads: kept whole; tuned towers: left out
            last.update({n: p.detach().clone() for n, p in trainable.items()})
        return loss

    def recording_images(self, batch, views, pixels):
        if steps:
            steps[-1]["encoded"].extend(batch.tolist())
        return images(self, batch, views, pixels)

    contrastive.Trainer.step = recording_step
    contrastive.Batches.images = recording_images
    config = load_train_config(config_path)
    config.output = str(Path(config.output) / f"rank{rank}")
    run_recipe(config, progress=False)
    group = {"initialized": dist.is_initialized()}
    if dist.is_initialized():
        group.update(rank=dist.get_rank(), world_size=dist.get_world_size())
    Path(probe_dir).mkdir(parents=True, exist_ok=True)
    torch.save({"steps": steps, "group": group, "weights": last}, Path(probe_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:3])
