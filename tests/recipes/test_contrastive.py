"""The heads recipe trains from a config on real photos, improves on its untrained start, and saves a usable model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from modalens.catalog import read_catalog
from modalens.embedding import CachedEncoder
from modalens.evaluation import tasks
from modalens.models import create_model
from modalens.recipes import ConfigError, load_train_config, run_recipe
from modalens.recipes.contrastive import build_model, caption_table

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path, mini_catalog, **optim):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = {
        "model": "modalens-lite",
        "output": str(tmp_path / "run"),
        "data": {"catalog": str(mini_catalog)},
        "model_overrides": {"embed_dim": 64, "head": {"kind": "linear"}},
        "optim": {"epochs": 30, "batch_size": 16, "lr": 0.003, "warmup_steps": 5, **optim},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_training_beats_the_untrained_heads_and_saves_a_loadable_model(tmp_path, mini_catalog):
    config = load_train_config(write_config(tmp_path, mini_catalog))
    train_products = read_catalog(mini_catalog).split("train").products
    untrained = CachedEncoder(build_model(config), progress=False)
    before = tasks.retrieval(untrained, train_products)["text_to_image"]["R@1"]

    result = run_recipe(config, progress=False)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0] * 0.5

    model = create_model(result.output)
    after = tasks.retrieval(CachedEncoder(model, progress=False), train_products)["text_to_image"]["R@1"]
    assert after > before + 0.3
    assert model.config.embed_dim == 64
    lines = (result.output / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and "zero_shot" in json.loads(lines[0])["val"]
    assert yaml.safe_load((result.output / "train_config.yaml").read_text())["optim"]["epochs"] == 30


def test_same_seed_same_model(tmp_path, mini_catalog):
    a = run_recipe(load_train_config(write_config(tmp_path / "a", mini_catalog, epochs=2)), progress=False)
    b = run_recipe(load_train_config(write_config(tmp_path / "b", mini_catalog, epochs=2)), progress=False)
    c = run_recipe(load_train_config(write_config(tmp_path / "c", mini_catalog, epochs=2, seed=1)), progress=False)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    # the saved weights, not only the losses: the same seed gives the very same tensors...
    wa, wb, wc = _weights(a.output), _weights(b.output), _weights(c.output)
    assert wa.keys() == wb.keys() == wc.keys() and wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # ...while another seed gives other weights
    assert any(not torch.allclose(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())


def test_captions_come_from_each_products_own_fields(mini_catalog):
    products = read_catalog(mini_catalog).products[:3]
    texts, choices = caption_table(products, ["title", "colour_type"])
    for product, picks in zip(products, choices):
        assert product.title in [texts[i] for i in picks]
        assert f"{product.get('colour').lower()} " in " ".join(texts[i] for i in picks)


def test_bad_configs_are_rejected_by_name(tmp_path, mini_catalog):
    path = tmp_path / "bad.yaml"
    path.write_text("optim: {epochs: 3, learning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_train_config(path)
    path.write_text("captions: [title, nonsense]\n")
    with pytest.raises(ConfigError, match="nonsense"):
        load_train_config(path)
    path.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_train_config(path)


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "heads.safetensors"))


def test_resume_after_a_stop_continues_exactly(tmp_path, mini_catalog):
    """Stopped mid-epoch and resumed, a run ends with the very same weights as an uninterrupted one."""
    from modalens.recipes.contrastive import train

    straight = load_train_config(write_config(tmp_path / "straight", mini_catalog, epochs=4))
    train(straight, progress=False)
    config = load_train_config(write_config(tmp_path / "stopped", mini_catalog, epochs=4))
    config.output = straight.output.replace("straight", "stopped")
    train(config, progress=False, stop_after_steps=3)  # epoch 3's step done, its validation not (1 step per epoch)
    assert not (tmp_path / "stopped" / "run" / "heads.safetensors").exists()
    log = tmp_path / "stopped" / "run" / "metrics.jsonl"
    with open(log, "a") as f:  # as if killed after epoch 3's line but before its checkpoint, then mid-line
        f.write(json.dumps({"epoch": 3, "loss": 9.9}) + '\n{"epoch": 4, "lo')
    result = train(config, progress=False, resume=True)
    a, b = _weights(tmp_path / "straight" / "run"), _weights(result.output)
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4] and json.loads(log.read_text().splitlines()[2])["loss"] != 9.9


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path, mini_catalog):
    from modalens.recipes.contrastive import train

    config = load_train_config(write_config(tmp_path, mini_catalog, epochs=2))
    train(config, progress=False, stop_after_steps=1)
    config.optim.lr = 0.5
    with pytest.raises(ValueError, match="another config"):
        train(config, progress=False, resume=True)


def test_resume_on_another_device_is_the_same_run(tmp_path, mini_catalog):
    """``optim.device`` is where a run computes, not what it is: a checkpoint (saved on the CPU) resumes under ``auto``."""
    from modalens.recipes.contrastive import train

    config = load_train_config(write_config(tmp_path, mini_catalog, epochs=2))
    config.optim.device = "cpu"
    train(config, progress=False, stop_after_steps=1)
    config.optim.device = "auto"  # the default: the CPU here, a GPU where there is one
    result = train(config, progress=False, resume=True)
    assert [json.loads(line)["epoch"] for line in (Path(result.output) / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize(
    "extra",
    [{"loss": "siglip"}, {"field_weights": {"title": 1.0, "colour": 0.5, "category": 0.5}}, {"field_weights": {"caption": 1.0, "colour": 0.5}}],
)
def test_other_losses_train_and_beat_untrained(tmp_path, mini_catalog, extra):
    path = write_config(tmp_path, mini_catalog, epochs=20)
    data = yaml.safe_load(path.read_text())
    data.update(extra)
    path.write_text(yaml.safe_dump(data))
    config = load_train_config(path)
    train_products = read_catalog(mini_catalog).split("train").products
    before = tasks.retrieval(CachedEncoder(build_model(config), progress=False), train_products)["text_to_image"]["R@5"]
    result = run_recipe(config, progress=False)
    after = tasks.retrieval(CachedEncoder(create_model(result.output), progress=False), train_products)["text_to_image"]["R@5"]
    assert after > before + 0.2


def test_tensorboard_mirrors_the_metrics_log(tmp_path, mini_catalog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = write_config(tmp_path, mini_catalog, epochs=3)
    data = yaml.safe_load(path.read_text())
    data["tensorboard"] = True
    path.write_text(yaml.safe_dump(data))
    result = run_recipe(load_train_config(path), progress=False)
    events = EventAccumulator(str(result.output / "tensorboard"))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("loss")]
    logged = [json.loads(line) for line in (result.output / "metrics.jsonl").read_text().splitlines()]
    assert losses == [(r["epoch"], pytest.approx(r["loss"], rel=1e-6)) for r in logged]
    assert "val/zero_shot/ensemble/accuracy" in events.Tags()["scalars"]


#: Caption sets kept beside the experiments that use them (data, not training configs).
CAPTION_SETS = REPO / "configs" / "caption_sets"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml") if CAPTION_SETS not in p.parents))
def test_every_shipped_config_loads(path):
    from modalens.recipes import RECIPES

    config = load_train_config(REPO / path)
    assert config.recipe in RECIPES


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in CAPTION_SETS.glob("*.yaml")))
def test_every_kept_caption_set_loads(path):
    from modalens.prompts import load_caption_set

    assert load_caption_set(str(REPO / path)).templates


def test_multi_field_caption_term_is_the_plain_loss(tmp_path, mini_catalog):
    """A multi-field loss with the ``caption`` term alone trains exactly as the plain caption loss does."""
    plain = run_recipe(load_train_config(write_config(tmp_path / "plain", mini_catalog, epochs=2)), progress=False)
    path = write_config(tmp_path / "fields", mini_catalog, epochs=2)
    data = yaml.safe_load(path.read_text())
    data["field_weights"] = {"caption": 1.0}
    path.write_text(yaml.safe_dump(data))
    fields = run_recipe(load_train_config(path), progress=False)
    a, b = _weights(plain.output), _weights(fields.output)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_killed_training_resumes_from_the_command_line(tmp_path, mini_catalog):
    """SIGKILL mid-run (after a checkpoint), then `modalens train --resume`: the very weights of a run never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def config_for(name):
        path = write_config(tmp_path / name, mini_catalog, epochs=60)
        data = yaml.safe_load(path.read_text())
        data["data"]["val_split"] = "none"  # no validation: every step is training, the kill lands mid-run
        data["checkpoint_every"] = 1
        path.write_text(yaml.safe_dump(data))
        return path

    command = [sys.executable, "-m", "modalens", "train"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    straight = config_for("straight")
    subprocess.run([*command, str(straight)], check=True, env=env, capture_output=True, timeout=300)

    killed = config_for("killed")
    run = subprocess.Popen([*command, str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "run" / "heads.safetensors").exists()
    subprocess.run([*command, str(killed), "--resume"], check=True, env=env, capture_output=True, timeout=300)
    a, b = _weights(tmp_path / "straight" / "run"), _weights(tmp_path / "killed" / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _view_gap(result, products) -> float:
    """Mean cosine of each photo to its own greyscale view, minus its mean cosine to the other photos' views."""
    encoder = CachedEncoder(create_model(result.output), progress=False)
    photos = encoder.image_embeddings(products)[0]
    views = encoder.image_embeddings(products, view="greyscale")[0]
    sims = photos @ views.T
    n = len(sims)
    return float(sims.trace() / n - (sims.sum() - sims.trace()) / (n * n - n))


def test_view_consistency_pulls_a_photo_and_its_view_together(tmp_path, mini_catalog):
    """The term's point: a photo and its own view end closer, relative to other products' views, than without it."""
    products = read_catalog(mini_catalog).split("train").products

    def run(name: str, weight: float):
        path = write_config(tmp_path / name, mini_catalog, epochs=8)
        config = yaml.safe_load(path.read_text())
        config.update(image_views=["greyscale"], view_probability=0.5, view_consistency=weight)
        path.write_text(yaml.safe_dump(config))
        return run_recipe(load_train_config(path), progress=False)

    with_term, without = _view_gap(run("with", 2.0), products), _view_gap(run("without", 0.0), products)
    assert with_term > without + 0.02


def test_view_consistency_needs_views_and_cached_features(tmp_path, mini_catalog):
    for extra, message in [({"view_consistency": 0.5}, "list some in image_views"), ({"view_consistency": -1}, "positive weight")]:
        path = write_config(tmp_path, mini_catalog, epochs=2)
        config = {**yaml.safe_load(path.read_text()), **extra}
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError, match=message):
            load_train_config(path)


def test_a_run_without_view_consistency_saves_the_config_older_checkpoints_hold(tmp_path, mini_catalog):
    """Checkpoints compare saved configs whole: the new key is left out at 0, so runs started before it resume."""
    from modalens.recipes.contrastive import train

    config = load_train_config(write_config(tmp_path, mini_catalog, epochs=2))
    train(config, progress=False, stop_after_steps=1)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert "view_consistency" not in saved["config"]  # what every checkpoint written before the key looks like
    assert train(config, progress=False, resume=True).history
    config.view_consistency = 0.5
    assert config.to_dict()["view_consistency"] == 0.5
