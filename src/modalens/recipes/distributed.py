"""Data-parallel training under ``torchrun``: process group, batch slices, and a gather that keeps gradients.

Every rank draws the same global batch (same seed, same order) and encodes
its own contiguous slice; embeddings are gathered from all ranks so the
contrastive loss sees the whole batch's negatives, and DDP averages the
gradients. With :class:`GatherWithGrad` the result equals one process
training on the whole batch (tested with two CPU processes on gloo).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (equal shares: the batch size must divide)."""
        if not self.enabled:
            return batch
        if len(batch) % self.world_size:
            raise ValueError(f"batch of {len(batch)} does not split over {self.world_size} processes")
        return batch.chunk(self.world_size)[self.rank]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str) -> DistEnv:
    """Join the process group ``torchrun`` describes in the environment (one process: nothing to join)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)  # else every rank's collectives (barriers included) land on cuda:0
        # Rank 0 validates (and scores WiSE-FT) while the others wait in a collective: allow it hours, not minutes.
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", timeout=datetime.timedelta(hours=2))
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank)


class GatherWithGrad(torch.autograd.Function):
    """All ranks' slices, concatenated in rank order; the backward sums every rank's gradient for our slice.

    ``torch.distributed.nn.all_gather`` needs reduce-scatter, which gloo (the
    CPU back-end) lacks; an all-reduce of the whole gradient works everywhere.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.world = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(ctx.world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(ctx.world)[ctx.rank]


def gather(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    return GatherWithGrad.apply(tensor) if env.enabled else tensor
