"""Colour dropout: some training images reach the head without their colour histogram, the cache untouched."""

import pytest
import torch
import yaml

from modalens.recipes import ConfigError, run_recipe
from modalens.recipes.config import check_config
from modalens.recipes.contrastive import Trainer
from recipe_testkit import SMALL_MODEL, small_config

COLOUR_MODEL = {**SMALL_MODEL, "image_tower": {"name": "efficientnet-lite0", "pooling": "mean+colour", "dim": 1344}}


def _head_inputs(trainer: Trainer) -> list[torch.Tensor]:
    """Every image feature batch the image head reads during one planned epoch."""
    seen: list[torch.Tensor] = []
    hook = trainer.model.image_head.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    trainer.plan_epoch()
    bs, position = trainer.config.optim.batch_size, trainer.position
    for step in range(trainer.steps_per_epoch):
        batch = position["order"][step * bs : (step + 1) * bs]
        trainer.step(batch, position["views"][step], None, None, position["colour_off"][step])
    hook.remove()
    return seen


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_colour_dropout_zeroes_the_histogram_of_its_share_of_images(tmp_path, mini_catalog, share):
    config = small_config(tmp_path, mini_catalog, model_overrides=COLOUR_MODEL, colour_dropout=share, optim={"batch_size": 8})
    trainer = Trainer(config, progress=False)
    cached = trainer.data.images.clone()
    assert cached[..., -64:].abs().sum() > 0  # the photos have colour to drop

    rows = torch.cat(_head_inputs(trainer))
    dropped = (rows[:, -64:] == 0).all(dim=1).float().mean().item()
    assert dropped == 1.0 if share == 1.0 else 0.2 < dropped < 0.8
    assert (rows[:, :-64].abs().sum(dim=1) > 0).all()  # the tower's own features always pass
    assert torch.equal(trainer.data.images, cached)  # the cached features are never written


def test_colour_dropout_trains_end_to_end_and_is_checked(tmp_path, mini_catalog):
    result = run_recipe(small_config(tmp_path / "run", mini_catalog, model_overrides=COLOUR_MODEL, colour_dropout=0.3), progress=False)
    assert len(result.history) == 2
    assert yaml.safe_load((result.output / "train_config.yaml").read_text())["colour_dropout"] == 0.3  # the run says how it was made
    for bad in (1.5, True):
        with pytest.raises(ConfigError, match="colour_dropout"):
            small_config(tmp_path / "range", mini_catalog, colour_dropout=bad)
    built_in_code = small_config(tmp_path / "code", mini_catalog)
    built_in_code.colour_dropout = -0.1
    with pytest.raises(ConfigError, match="colour_dropout must be within"):
        check_config(built_in_code)
    plain = small_config(tmp_path / "plain", mini_catalog, colour_dropout=0.3)  # a tower without a histogram
    with pytest.raises(ConfigError, match="pooling must be mean\\+colour"):
        Trainer(plain, progress=False)
