"""Tower fine-tuning (LiT, partial unfreezing, full), WiSE-FT, and mixed training sources, on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modalens.catalog import read_catalog
from modalens.models import create_model
from modalens.recipes import ConfigError, run_recipe
from modalens.recipes.contrastive import train
from modalens.recipes.data import TrainingData, epoch_order
from modalens.recipes.tuning import interpolate

from recipe_testkit import saved_weights, small_config


def _frozen_text_features(texts):
    return create_model("modalens-lite").text_tower(texts)


def test_lit_text_tuning_trains_only_the_top_layers_and_reloads(tmp_path, mini_catalog):
    """Locked image, tuned text (last 2 of 6 MiniLM layers): the tuned tower is saved, reloaded, and kept apart."""
    config = small_config(tmp_path, mini_catalog, tune={"text_tower": 2, "tower_lr": 1e-4})
    result = run_recipe(config, progress=False)
    saved = saved_weights(result.output)
    tower = {k.split("/", 1)[1]: v for k, v in saved.items() if k.startswith("text_tower.safetensors/")}
    assert tower, "the tuned text tower was not saved"

    reference = create_model("modalens-lite").text_tower  # the ONNX or torch frozen tower
    model = create_model(result.output)
    assert "+tuned-" in model.text_tower.name and "+tuned-" not in reference.name
    fresh = torch.nn.Module.state_dict(_pretrained_minilm())
    changed = {k for k in tower if not torch.equal(tower[k], fresh[k])}
    assert changed and all(k.startswith(("transformer.encoder.layer.4.", "transformer.encoder.layer.5.")) for k in changed)

    texts = [p.title for p in read_catalog(mini_catalog).products[:5]]
    tuned = model.text_tower(texts).numpy()
    frozen = reference(texts).numpy()
    assert np.abs(tuned - frozen).max() > 1e-3  # the reloaded tower is the tuned one, not the cached frozen one
    log = [json.loads(line) for line in (result.output / "metrics.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 0 and "zero_shot" in log[0]["val"]  # zero-shot before training is reported

    # Starting from (or building on) this folder keeps its tuned tower, and a new run's folder stands alone.
    from modalens.recipes.contrastive import build_model

    tuned_file = str(result.output / "text_tower.safetensors")
    assert build_model(small_config(tmp_path / "next", mini_catalog, tune={"init": str(result.output)})).config.text_tower["tuned_weights"] == tuned_file
    onward = run_recipe(small_config(tmp_path / "onward", mini_catalog, model=str(result.output), optim={"epochs": 1}), progress=False)
    assert (onward.output / "text_tower.safetensors").read_bytes() == (result.output / "text_tower.safetensors").read_bytes()
    assert "+tuned-" in create_model(onward.output).text_tower.name


def _pretrained_minilm():
    from modalens.encoders import create_text_tower

    return create_text_tower("minilm-l6")


def test_partial_image_unfreezing_reads_pixels_in_worker_processes(tmp_path, mini_catalog):
    """The image tower's last block trains on decoded photos; worker processes give the very same run."""
    runs = {}
    for workers in (0, 2):
        config = small_config(tmp_path / f"w{workers}", mini_catalog, tune={"image_tower": 1}, data={"catalog": str(mini_catalog), "workers": workers})
        config.optim.epochs = 1
        runs[workers] = saved_weights(run_recipe(config, progress=False).output)
    assert any(k.startswith("image_tower.safetensors/_conv_head") for k in runs[0])
    assert runs[0].keys() == runs[2].keys()
    assert all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
    from modalens.encoders import create_image_tower

    fresh = create_image_tower("efficientnet-lite0").state_dict()
    changed = {k.split("/", 1)[1] for k, v in runs[0].items() if k.startswith("image_tower") and not torch.equal(v, fresh[k.split("/", 1)[1]])}
    assert changed == {"_conv_head.weight", "_bn1.weight", "_bn1.bias"}  # batch-norm statistics stay frozen


def test_wise_ft_scores_interpolations_and_keeps_the_best(tmp_path, mini_catalog):
    start = run_recipe(small_config(tmp_path / "start", mini_catalog), progress=False).output
    config = small_config(tmp_path / "tuned", mini_catalog, tune={"init": str(start), "wise_ft": [0.0, 0.5, 1.0]}, optim={"epochs": 3, "lr": 0.01})
    result = run_recipe(config, progress=False)
    log = [json.loads(line) for line in (result.output / "metrics.jsonl").read_text().splitlines()]
    before, wise = log[0], log[-1]
    assert before["epoch"] == 0
    scores = {r["alpha"]: r["score"] for r in wise["wise_ft"]}
    assert scores[0.0] == pytest.approx(before["score"], abs=1e-9)  # alpha 0 is the start, exactly
    assert wise["chosen_alpha"] == max(scores, key=scores.get)

    chosen = saved_weights(result.output)
    start_w, best_w = saved_weights(start), None
    alpha = wise["chosen_alpha"]
    # The saved heads lie on the segment start → fine-tuned at the chosen alpha.
    if alpha == 0.0:
        assert all(torch.allclose(chosen[k], start_w[k]) for k in start_w)
    else:
        best_w = {k: start_w[k] + (chosen[k] - start_w[k]) / alpha for k in start_w}
        again = interpolate(start_w, best_w, alpha)
        assert all(torch.allclose(again[k], chosen[k], atol=1e-6) for k in chosen)


def test_configs_that_cannot_work_fail_before_training(tmp_path, mini_catalog):
    with pytest.raises(ConfigError, match="wise_ft"):
        small_config(tmp_path, mini_catalog, tune={"wise_ft": [0.5]})
    with pytest.raises(ConfigError, match="optim.lr: expected float"):
        small_config(tmp_path, mini_catalog, optim={"lr": "fast"})
    assert small_config(tmp_path, mini_catalog, optim={"lr": "3e-3"}).optim.lr == 0.003  # YAML 1.1 reads 3e-3 as a string
    with pytest.raises(ConfigError, match="at least 1"):
        small_config(tmp_path, mini_catalog, optim={"epochs": 0})
    with pytest.raises(ConfigError, match="larger than"):
        run_recipe(small_config(tmp_path, mini_catalog, optim={"batch_size": 64}), progress=False)
    start = run_recipe(small_config(tmp_path / "start", mini_catalog, optim={"epochs": 1}), progress=False).output
    no_val = small_config(tmp_path / "noval", mini_catalog, data={"catalog": str(mini_catalog), "val_split": "none"}, tune={"init": str(start), "wise_ft": [0, 1]})
    with pytest.raises(ConfigError, match="has no products"):
        run_recipe(no_val, progress=False)
    with pytest.raises(ConfigError, match="text_tower"):
        small_config(tmp_path, mini_catalog, tune={"text_tower": "some"})


def test_tuned_text_run_resumes_exactly(tmp_path, mini_catalog):
    """Killed after one step of two epochs and resumed, a LiT run ends bit-identical to an uninterrupted one."""
    tune = {"text_tower": 1, "tower_lr": 1e-4}
    straight = run_recipe(small_config(tmp_path / "a", mini_catalog, tune=tune), progress=False)
    config = small_config(tmp_path / "b", mini_catalog, tune=tune)
    config.output = str(tmp_path / "a" / "run").replace("/a/", "/b/")
    train(config, progress=False, stop_after_steps=1)
    resumed = train(config, progress=False, resume=True)
    a, b = saved_weights(straight.output), saved_weights(resumed.output)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _data(sources: list[int]) -> TrainingData:
    n = len(sources)
    return TrainingData([None] * n, torch.tensor(sources), None, [], None, [[0]] * n, {}, [])


def test_mixed_sources_fill_each_epoch_by_weight(tmp_path, mini_catalog):
    config = small_config(
        tmp_path,
        mini_catalog,
        data={"catalog": str(mini_catalog), "sources": [{"catalog": str(mini_catalog), "split": "train", "weight": 1}, {"catalog": str(mini_catalog), "split": "val", "weight": 3}]},
    )
    data = _data([0] * 30 + [1] * 10)
    order = epoch_order(data, config, torch.Generator().manual_seed(0))
    counts = torch.bincount(data.source_of[order], minlength=2).tolist()
    assert counts == [10, 30] and len(order) == 40
    assert len(set(order[data.source_of[order] == 0].tolist())) == 10  # the down-sampled source: no repeats
    assert torch.bincount(order[data.source_of[order] == 1]).max() == 3  # the up-sampled one cycles evenly


def test_mixed_sources_train_end_to_end(tmp_path, mini_catalog):
    sources = [{"catalog": str(mini_catalog), "split": "train", "weight": 2}, {"catalog": str(mini_catalog), "split": "val", "weight": 1}]
    config = small_config(tmp_path, mini_catalog, data={"catalog": str(mini_catalog), "sources": sources})
    result = run_recipe(config, progress=False)
    assert len(result.history) == 2 and create_model(result.output).config.embed_dim == 32
    with pytest.raises(ConfigError, match="weight"):
        small_config(tmp_path / "bad", mini_catalog, data={"sources": [{"catalog": "x", "weight": 0}]})
    with pytest.raises(ConfigError, match="missing keys"):
        small_config(tmp_path / "bad2", mini_catalog, data={"sources": [{"weight": 1}]})


def test_image_tower_run_resumes_exactly(tmp_path, mini_catalog):
    """The photo path replays its planned order, views and dropout masks after a stop: same final weights."""
    extra = {"tune": {"image_tower": 1}, "image_views": ["greyscale"], "model_overrides": {"embed_dim": 32, "head": {"kind": "mlp", "hidden_dim": 64, "dropout": 0.1}}}
    optim = {"batch_size": 8}  # 3 steps per epoch, so the stop falls inside an epoch
    run_recipe(small_config(tmp_path / "a", mini_catalog, optim=optim, **extra), progress=False)
    config = small_config(tmp_path / "b", mini_catalog, optim=optim, **extra)
    train(config, progress=False, stop_after_steps=4)
    train(config, progress=False, resume=True)
    a, b = (torch.load(tmp_path / run / "run" / "checkpoint.pt", weights_only=False)["weights"] for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the last epoch's, not only the best
