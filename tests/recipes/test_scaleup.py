"""Scale-up training: exact gradient accumulation, bf16 autocast, and DDP on two CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from modalens.recipes import run_recipe

from recipe_testkit import saved_weights, small_config

REPO = Path(__file__).resolve().parents[2]


def _close(a: dict, b: dict, atol: float) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_accumulated_micro_batches_train_like_the_whole_batch(tmp_path, mini_catalog):
    """Four micro-batches of 4 give the 16-batch gradient (other micro-batches as negatives), so the same weights."""
    whole = saved_weights(run_recipe(small_config(tmp_path / "whole", mini_catalog), progress=False).output)
    pieces = saved_weights(run_recipe(small_config(tmp_path / "pieces", mini_catalog, optim={"accumulate_steps": 4}), progress=False).output)
    assert _close(whole, pieces, atol=1e-5)
    # ... and the comparison has teeth: a different batch size lands elsewhere.
    smaller = saved_weights(run_recipe(small_config(tmp_path / "small", mini_catalog, optim={"batch_size": 4, "epochs": 1}), progress=False).output)
    assert not _close(whole, smaller, atol=1e-3)


def test_bf16_autocast_trains(tmp_path, mini_catalog):
    config = small_config(tmp_path, mini_catalog, optim={"precision": "bf16", "epochs": 6})
    result = run_recipe(config, progress=False)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
    assert all(v.dtype == torch.float32 for v in saved_weights(result.output).values())  # weights stay fp32


def _torchrun(config_path: Path, output: Path, **changes) -> subprocess.CompletedProcess:
    """Two gloo processes under ``torchrun`` running ``ddp_probe.py``: rank r trains into ``output/rank{r}`` and
    records what it did in ``output.parent/probe/rank{r}.pt``."""
    data = yaml.safe_load(config_path.read_text())
    data["output"] = str(output)
    for key, value in changes.items():
        data.setdefault(key, {}).update(value)
    ddp_config = output.parent / "ddp.yaml"
    output.parent.mkdir(parents=True, exist_ok=True)
    ddp_config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    probe = Path(__file__).with_name("ddp_probe.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(probe), str(ddp_config), str(output.parent / "probe")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _probes(folder: Path) -> list[dict]:
    return [torch.load(folder / "probe" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def _on_its_shard_alone(config, monkeypatch) -> dict:
    """One process trained only on the first half of every global batch: what rank 0 would learn without the others."""
    from modalens.recipes import contrastive

    step = contrastive.Trainer.step
    monkeypatch.setattr(contrastive.Trainer, "step", lambda self, batch, views, pixels, partners=None, colour_off=None: step(self, batch[: len(batch) // 2], views[: len(batch) // 2], pixels))
    try:
        return saved_weights(run_recipe(config, progress=False).output)
    finally:
        monkeypatch.setattr(contrastive.Trainer, "step", step)


@pytest.mark.parametrize("pieces", [1, 2])
def test_ddp_on_two_cpu_processes_equals_one_process(tmp_path, mini_catalog, pieces, monkeypatch):
    """``torchrun`` with 2 gloo processes, each encoding half of every batch (in ``pieces`` micro-batches),
    ends with the weights of one process training on whole batches, and not with those of one rank alone."""
    single = small_config(tmp_path / "single", mini_catalog, optim={"epochs": 3})
    expected = saved_weights(run_recipe(single, progress=False).output)
    done = _torchrun(tmp_path / "single" / "config.yaml", tmp_path / "ddp" / "run", optim={"accumulate_steps": pieces})
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = _probes(tmp_path / "ddp")

    # the two processes joined one group...
    assert rank0["group"] == {"initialized": True, "rank": 0, "world_size": 2}
    assert rank1["group"] == {"initialized": True, "rank": 1, "world_size": 2}
    # ...drew the same global batches and each encoded its own half: disjoint shards that make up the batch
    assert len(rank0["steps"]) == len(rank1["steps"]) == 3  # one step per epoch on the mini catalogue
    for a, b in zip(rank0["steps"], rank1["steps"]):
        assert a["batch"] == b["batch"] and len(a["batch"]) == 16
        assert a["encoded"] == a["batch"][:8] and b["encoded"] == b["batch"][8:]
    # ...and yet ended every step with the very same weights: only exchanged embeddings and gradients do that
    assert rank0["weights"] and rank0["weights"].keys() == rank1["weights"].keys()
    assert all(torch.equal(rank0["weights"][k], rank1["weights"][k]) for k in rank0["weights"])

    # only rank 0 saved, validated and logged; its weights are those of one process on whole batches
    assert not (tmp_path / "ddp" / "run" / "rank1").exists()
    got = saved_weights(tmp_path / "ddp" / "run" / "rank0")
    assert _close(expected, got, atol=1e-5)
    log = (tmp_path / "ddp" / "run" / "rank0" / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 3
    if pieces == 1:  # the comparison has teeth: rank 0 trained on its shard alone lands elsewhere
        alone = _on_its_shard_alone(small_config(tmp_path / "alone", mini_catalog, optim={"epochs": 3}), monkeypatch)
        assert not _close(expected, alone, atol=1e-3)


def test_ddp_trains_a_whole_text_tower(tmp_path, mini_catalog):
    """Every trainable weight must get a gradient each step under DDP (BERT's unused pooler stays frozen)."""
    small_config(tmp_path / "single", mini_catalog, optim={"epochs": 1})
    done = _torchrun(tmp_path / "single" / "config.yaml", tmp_path / "ddp" / "run", tune={"text_tower": "all", "tower_lr": 1e-4})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "text_tower.safetensors/transformer.encoder.layer.0.attention.self.query.weight" in saved_weights(tmp_path / "ddp" / "run" / "rank0")
