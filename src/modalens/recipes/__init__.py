"""Training recipes: each paper is a recipe on the shared parts (catalogue, towers, heads, losses)."""

from .config import ConfigError, TrainConfig, load_train_config

#: Recipe name → module with ``train(config, progress, resume)``. ``contrastive-heads`` is the name the
#: shipped default's config uses (frozen towers); the same loop tunes towers when ``tune`` asks.
#: ``instances`` trains only an instance decoder on multi-product scenes (docs/instances.md).
RECIPES = {
    "contrastive": "modalens.recipes.contrastive",
    "contrastive-heads": "modalens.recipes.contrastive",
    "instances": "modalens.recipes.instances",  # ECLIP instance queries on a trained model's frozen heads
}


def run_recipe(config: TrainConfig, progress: bool = True, resume: bool = False):
    """Dispatch a config to its recipe's ``train`` function."""
    import importlib

    if config.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {config.recipe!r}; known: {sorted(RECIPES)}")
    return importlib.import_module(RECIPES[config.recipe]).train(config, progress=progress, resume=resume)


__all__ = ["ConfigError", "TrainConfig", "load_train_config", "run_recipe", "RECIPES"]
