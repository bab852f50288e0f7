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
    data = yaml.safe_load(config_path.read_text())
    data["output"] = str(output)
    for key, value in changes.items():
        data.setdefault(key, {}).update(value)
    ddp_config = output.parent / "ddp.yaml"
    output.parent.mkdir(parents=True, exist_ok=True)
    ddp_config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "modalens", "train", str(ddp_config)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("pieces", [1, 2])
def test_ddp_on_two_cpu_processes_equals_one_process(tmp_path, mini_catalog, pieces):
    """``torchrun`` with 2 gloo processes, each encoding half of every batch (in ``pieces`` micro-batches),
    ends with the weights of one process training on whole batches."""
    single = small_config(tmp_path / "single", mini_catalog, optim={"epochs": 3})
    expected = saved_weights(run_recipe(single, progress=False).output)
    done = _torchrun(tmp_path / "single" / "config.yaml", tmp_path / "ddp" / "run", optim={"accumulate_steps": pieces})
    assert done.returncode == 0, done.stderr[-3000:]
    got = saved_weights(tmp_path / "ddp" / "run")
    assert _close(expected, got, atol=1e-5)
    log = (tmp_path / "ddp" / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 3  # one process (rank 0) validated and logged


def test_ddp_trains_a_whole_text_tower(tmp_path, mini_catalog):
    """Every trainable weight must get a gradient each step under DDP (BERT's unused pooler stays frozen)."""
    small_config(tmp_path / "single", mini_catalog, optim={"epochs": 1})
    done = _torchrun(tmp_path / "single" / "config.yaml", tmp_path / "ddp" / "run", tune={"text_tower": "all", "tower_lr": 1e-4})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "text_tower.safetensors/transformer.encoder.layer.0.attention.self.query.weight" in saved_weights(tmp_path / "ddp" / "run")
